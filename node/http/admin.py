"""The operator's endpoints, for holders of the admin token only (never peers):

    GET /metrics      Prometheus text exposition (node/http/metrics.py)
    GET /v1/status    origin health as JSON (node/services/health.py), the same verdict as
                      'hashfed status': {"state", "code", "reason", "logs": [...]}

Both need ``Authorization: Bearer <keys/admin.token>`` (compared in constant time);
anything else, a peer session included, gets 401. They are served on the main port,
or, with ``[metrics] listen`` set, only on a separate admin listener at that address
and ``[metrics] port`` (an interface only the monitoring network reaches).
``[metrics] enabled = false`` leaves both out. The token is created with the node's
other keys (mode 0600).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from hashfed.node.config import NodeConfig
from hashfed.node.http import accesslog
from hashfed.node.http.accesslog import ACCESS_CALLER_KEY
from hashfed.node.http.auth import API_AUTH_KEY, bearer_matches
from hashfed.node.http.match import INDEX_PROVIDER_KEY
from hashfed.node.http.metrics import METRICS_KEY, NodeCollector
from hashfed.node.services.health import status_document
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

METRICS_PATH = "/metrics"
STATUS_PATH = "/v1/status"
ADMIN_PATHS = (METRICS_PATH, STATUS_PATH)

ADMIN_TOKEN_KEY = web.AppKey("hashfed_admin_token", str)
ADMIN_CONFIG_KEY = web.AppKey("hashfed_admin_config", NodeConfig)
ADMIN_CONN_KEY = web.AppKey("hashfed_admin_conn", sqlite3.Connection)


def _has_admin_token(request: web.Request) -> bool:
    if request.path not in ADMIN_PATHS:
        return False
    ok = bearer_matches(request, request.app.get(ADMIN_TOKEN_KEY))
    if ok:
        request[ACCESS_CALLER_KEY] = "admin"
    return ok


def _refuse() -> web.Response:
    return web.json_response(
        {"error": "the admin token is required (Authorization: Bearer <keys/admin.token>)"},
        status=401,
        headers={"Cache-Control": "no-store", "WWW-Authenticate": 'Bearer realm="hashfed-admin"'},
    )


async def metrics_handler(request: web.Request) -> web.Response:
    if not _has_admin_token(request):
        return _refuse()
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


async def status_handler(request: web.Request) -> web.Response:
    if not _has_admin_token(request):
        return _refuse()
    document = status_document(request.app[ADMIN_CONN_KEY], request.app[ADMIN_CONFIG_KEY])
    return web.json_response(document, headers={"Cache-Control": "no-store"})


def _index_sizes(app: web.Application) -> Callable[[], tuple[dict[str, int], float | None] | None]:
    def sizes() -> tuple[dict[str, int], float | None] | None:
        provider = app.get(INDEX_PROVIDER_KEY)
        index = None if provider is None else provider()
        if index is None:
            return None
        return {kind: len(i) for kind, i in index.indexes.items()}, index.load_seconds

    return sizes


def setup_admin(
    app: web.Application, conn: sqlite3.Connection, config: NodeConfig, token: str
) -> None:
    """Adds ``GET /metrics`` and ``GET /v1/status`` to a node app (from create_app),
    for requests carrying token. conn is read at each scrape, in the event loop (the
    app's own read connection: a few small queries per log)."""
    app[METRICS_KEY].registry.register(NodeCollector(conn, config, _index_sizes(app)))
    if config.metrics.listen:
        app.cleanup_ctx.append(_admin_listener(app, conn, config, token))
        return
    _add_routes(app, conn, config, token)
    previous = app.get(API_AUTH_KEY)

    def admin_or_previous(request: web.Request) -> bool:
        return _has_admin_token(request) or (previous is not None and previous(request))

    app[API_AUTH_KEY] = admin_or_previous


def _add_routes(
    app: web.Application, conn: sqlite3.Connection, config: NodeConfig, token: str
) -> None:
    app[ADMIN_TOKEN_KEY] = token
    app[ADMIN_CONFIG_KEY] = config
    app[ADMIN_CONN_KEY] = conn
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get(STATUS_PATH, status_handler)


def _admin_listener(
    main: web.Application, conn: sqlite3.Connection, config: NodeConfig, token: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Returns a cleanup context that serves the admin routes on [metrics] listen:port,
    from the main app's metrics, for as long as the main app runs."""

    async def listener(_app: web.Application) -> AsyncIterator[None]:
        admin = web.Application()
        admin[METRICS_KEY] = main[METRICS_KEY]
        accesslog.install(admin)
        _add_routes(admin, conn, config, token)
        runner = web.AppRunner(admin, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.metrics.listen, config.metrics.port).start()
            yield
        finally:
            await runner.cleanup()

    return listener
