"""The access log: one line per request, naming the matched route, never the raw path.

Each request is logged by the ``hashfed.access`` logger with these fields::

    method    GET, POST, ...
    route     the matched route's template, e.g. /v1/cases/{number}/withdraw or
              /log/{origin_hash}/tile/{tail}; "unmatched" when no route matched
    status    the HTTP status sent
    duration  seconds, to the microsecond
    peer      the authenticated peer's name, "api-token" or "admin", or null
    client    the TCP peer's address, or null (see below)

Redaction is decided by the route, not by looking at the path: the path and the
query string are never logged at all, so a case number cannot reach the log
however it is smuggled in (``/v1/cases?HF-...``, ``/v1/cases;HF-...``,
``/V1/CASES/HF-.../withdraw``, ``/x/v1/cases/HF-...`` all match no case route and
are logged as "unmatched"). No header is logged (Authorization, X-Case-PIN,
cookies). The client's address is logged only for matched routes outside the case
desk: a person using the case desk, or mistyping its URL, leaves no address.

The same middleware counts requests by route and status for Prometheus when the
app has metrics (node/http/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from hashfed.node.http.auth import request_peer
from hashfed.node.http.match import API_CLIENT_KEY
from hashfed.node.http.metrics import METRICS_KEY

log = logging.getLogger("hashfed.access")

UNMATCHED = "unmatched"
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's convention)
CASE_ROUTES = ("/v1/cases", "/case")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ACCESS_CALLER_KEY = web.RequestKey("hashfed_access_caller", str)
"""Set by handlers that authenticate a caller by other means than a peer session."""


def route_name(request: web.Request) -> str:
    """Returns the name of the route request matched: its name if it has one, else its
    template (``/v1/cases/{number}``); :data:`UNMATCHED` when none matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED
    return resource.name or resource.canonical


def is_case_route(route: str) -> bool:
    """Reports whether route (from :func:`route_name`) belongs to the case desk or to
    the person's page (node/http/casepage.py): their lines carry no client address."""
    return any(route == prefix or route.startswith(prefix + "/") for prefix in CASE_ROUTES)


def _caller(request: web.Request) -> str | None:
    peer = request_peer(request)
    if peer is not None:
        return peer.name
    if request.get(API_CLIENT_KEY, False):
        return "api-token"
    return request.get(ACCESS_CALLER_KEY)


def _record(request: web.Request, status: int, started: float) -> None:
    duration = time.perf_counter() - started
    route = route_name(request)
    metrics = request.app.get(METRICS_KEY)
    if metrics is not None:
        metrics.observe_request(route, request.method, status)
    if not log.isEnabledFor(logging.INFO):
        return
    client = None if route == UNMATCHED or is_case_route(route) else request.remote
    peer = _caller(request)
    log.info(
        "%s %s %d %.3fs%s",
        request.method,
        route,
        status,
        duration,
        f" peer={peer}" if peer else "",
        extra={
            "event": "request",
            "method": request.method,
            "route": route,
            "status": status,
            "duration": round(duration, 6),
            "peer": peer,
            "client": client,
        },
    )


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Logs (and counts) every request once it is answered; see the module docstring."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _record(request, exc.status, started)
        raise
    except asyncio.CancelledError:
        _record(request, CLIENT_CLOSED, started)
        raise
    except BaseException:
        _record(request, 500, started)
        raise
    _record(request, response.status, started)
    return response


def install(app: web.Application) -> None:
    """Makes the access log the app's outermost middleware, so it sees every answer
    (also the authentication middleware's 401s and the timeout's 503s)."""
    app.middlewares.insert(0, access_log_middleware)
