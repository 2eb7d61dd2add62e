"""One middleware that makes every error under ``/v1/`` a JSON answer (specs/openapi.yaml).

The API's handlers answer their own errors as ``{"error": "..."}``; this
middleware covers what they never see: aiohttp's router (404 for an unknown
path, 405 for a method a path does not take), a body over the app's size limit
(413), a request that timed out (503), JSON nested so deeply that Python's
decoder gives up (``RecursionError``: 400, never a 500), and any bug (500, the
traceback logged without the request's path, which may hold a case number).

The C2SP endpoints (``/log/...``, ``/witness/add-checkpoint``) keep their own
formats; outside ``/v1/`` only ``RecursionError`` is turned into a 400.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("hashfed.server")

API_PREFIX = "/v1/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MESSAGES = {
    400: "the request is malformed",
    401: "authentication required",
    403: "not allowed",
    404: "no such resource on this node",
    405: "this method is not allowed here",
    413: "the request body is too large",
    415: "unsupported content type; send JSON",
    429: "too many requests; try again later",
    500: "internal error; the node's log has the details",
    503: "the node is busy; try again shortly",
}


def is_api_path(path: str) -> bool:
    """Reports whether path is under the JSON API (``/v1/``)."""
    return path.startswith(API_PREFIX) or path == API_PREFIX[:-1]


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Returns the API's error answer: ``{"error": message}`` with ``Cache-Control: no-store``."""
    return web.json_response(
        {"error": message}, status=status, headers={**(headers or {}), "Cache-Control": "no-store"}
    )


def _message(request: web.Request, exc: web.HTTPException) -> str:
    text = (exc.text or "").strip()
    if text and text != f"{exc.status}: {exc.reason}":
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            return text
        error = decoded.get("error") if isinstance(decoded, dict) else None
        return error if isinstance(error, str) else text
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} is not allowed here; use {allowed}"
    return _MESSAGES.get(exc.status, exc.reason)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers errors under ``/v1/`` as JSON, and nested-JSON failures anywhere as 400."""
    api = is_api_path(request.path)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not api or exc.status < 400 or exc.content_type == "application/json":
            raise
        keep = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length", "content-encoding")
        }
        return json_error(exc.status, _message(request, exc), keep)
    except RecursionError:
        if not api:
            raise web.HTTPBadRequest(text="the request is nested too deeply\n") from None
        return json_error(400, "the request body is nested too deeply")
    except Exception:
        if not api:
            raise
        log.exception("internal error answering a %s request under /v1/", request.method)
        return json_error(500, _MESSAGES[500])
