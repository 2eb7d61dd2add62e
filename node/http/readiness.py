"""Liveness and readiness: ``GET /healthz`` and ``GET /readyz``, unauthenticated, JSON.

``/healthz`` answers 200 as soon as the port is bound: the process is alive and
its event loop answers. ``/readyz`` answers 200 only when this process can serve
every route: its database is open and writable, and its match index is loaded.
Until then it answers 503 with ``Retry-After`` and names what it waits for::

    GET /readyz
    503 {"status": "starting", "waiting": {"index": "loading the match index"}}

    GET /readyz
    200 {"status": "ready", "waiting": {}}

Readiness is about this process only. Whether the bank is fresh (a halted or
stale log) is for monitoring (``hashfed status``): a stale bank still matches.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from aiohttp import web
from hashfed.node.readiness import Readiness
from hashfed.node.store.db import database_file

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

RETRY_AFTER = 2
"""Seconds a client is told to wait (``Retry-After``) while the node starts."""


READINESS_KEY = web.AppKey("hashfed_readiness", Readiness)
DATABASE_KEY = web.AppKey("hashfed_readiness_db", sqlite3.Connection)


def database_problem(conn: sqlite3.Connection) -> str | None:
    """database_problem returns why the database cannot be used, or None if it is open
    and writable (its file, and the folder its journal lives in)."""
    try:
        path = database_file(conn)
    except sqlite3.Error as exc:
        return f"the database is not open: {exc}"
    if not path:
        return None  # an in-memory database
    if not os.access(path, os.W_OK) or not os.access(Path(path).parent, os.W_OK):
        return f"the database {path} is not writable"
    return None


def _json(status: int, body: dict[str, object]) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    return web.json_response(body, status=status, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Answers ``GET /healthz``: 200 whenever the process answers at all."""
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Answers ``GET /readyz``: 200 when the process can serve, else 503 naming what waits."""
    waiting = request.app[READINESS_KEY].waiting()
    conn = request.app.get(DATABASE_KEY)
    problem = None if conn is None else database_problem(conn)
    if problem is not None:
        waiting["database"] = problem
    if waiting:
        return _json(503, {"status": "starting", "waiting": waiting})
    return _json(200, {"status": "ready", "waiting": {}})


def setup_health(
    app: web.Application, readiness: Readiness, conn: sqlite3.Connection | None = None
) -> None:
    """setup_health adds ``GET /healthz`` and ``GET /readyz`` to app; conn is the
    database whose state ``/readyz`` checks on every call."""
    app[READINESS_KEY] = readiness
    if conn is not None:
        app[DATABASE_KEY] = conn
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)


__all__ = [
    "HEALTH_PATH",
    "READY_PATH",
    "RETRY_AFTER",
    "Readiness",
    "database_problem",
    "setup_health",
]
