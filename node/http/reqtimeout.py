"""Handlers that bound their own waits instead of the request timeout middleware.

node/http/app.py wraps every request in ``[server] request_timeout``. A handler
registered here with :func:`own_timeout` is run without that wrapper and finds
the timeout in ``request[REQUEST_TIMEOUT]``: it applies the timeout to the steps
that may still be abandoned, and none to the ones that must finish once begun
(opening a case: once it is stored, its number and PIN must reach the person).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_TIMEOUT = web.RequestKey("hashfed_request_timeout", float)
"""Key of a request's timeout in seconds (set by the middleware on every request)."""

DEFAULT_TIMEOUT = 30.0
"""The timeout a handler assumes when no middleware set one."""

_OWN: set[object] = set()

H = TypeVar("H", bound=Handler)


def own_timeout(handler: H) -> H:
    """Marks handler as bounding its own waits; returns it unchanged."""
    _OWN.add(handler)
    return handler


def has_own_timeout(handler: object) -> bool:
    """Says whether handler was marked with :func:`own_timeout`."""
    return handler in _OWN


def request_timeout(request: web.Request) -> float:
    """Returns the request timeout the middleware passed on (or DEFAULT_TIMEOUT)."""
    if REQUEST_TIMEOUT in request:
        return request[REQUEST_TIMEOUT]
    return DEFAULT_TIMEOUT
