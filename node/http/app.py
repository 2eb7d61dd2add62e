"""The node's aiohttp app factory: :func:`create_app` wires the route groups onto one app.

Every route group has its own module and ``setup_*`` function; each reads what it
needs from typed app keys (``web.AppKey``), never from module globals:

    node/http/logs.py        GET /logs, /log/<hash>/checkpoint, tiles, bundles, content
    node/http/auth.py        POST /v1/auth/session: peer authentication
    node/http/authcheck.py   GET /v1/auth/check: may this request be served? (for nginx)
    node/http/readiness.py   GET /healthz (liveness), GET /readyz (database, match index)
    node/http/match.py       POST /v1/match: match a batch of hashes
    node/http/witness.py     POST /witness/add-checkpoint (C2SP tlog-witness)
    node/http/admin.py       GET /metrics, GET /v1/status (the admin token)
    node/http/cases.py       the case desk's API and the person's page (a publisher)
    node/http/feedback.py    POST /v1/feedback: publish feedback (the admin token, a writer)

What the routes use arrives in one :class:`NodeServices`; the composition root
(node/root.py) builds it and owns the lifetimes of what it holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from hashfed.node.config import NodeConfig, ServerConfig
from hashfed.node.http import accesslog, reqtimeout
from hashfed.node.http.admin import setup_admin
from hashfed.node.http.auth import SessionStore, setup_auth
from hashfed.node.http.authcheck import setup_auth_check
from hashfed.node.http.casepage import setup_case_page
from hashfed.node.http.cases import setup_case_api
from hashfed.node.http.errors import json_errors
from hashfed.node.http.feedback import FeedbackAccess, setup_feedback
from hashfed.node.http.logs import DIRECTORY, setup_logs
from hashfed.node.http.match import IndexProvider, setup_match_api
from hashfed.node.http.metrics import METRICS_KEY, Metrics
from hashfed.node.http.readiness import setup_health
from hashfed.node.http.witness import Witness, setup_witness
from hashfed.node.readiness import Readiness
from hashfed.node.services.casedesk import CaseDesk
from hashfed.node.store import peers
from hashfed.node.store.db import change_marker

if TYPE_CHECKING:  # numpy and the index: loaded once the port is bound
    from hashfed.node.match.bank import BankIndex
from hashfed.protocol.merkle import HASH_SIZE
from hashfed.signing.keys import Signer


@dataclass(frozen=True)
class AdminAccess:
    """What the operator's routes (node/http/admin.py) need: the node's config and the
    admin token (keys/admin.token)."""

    config: NodeConfig
    token: str


@dataclass(frozen=True)
class NodeServices:
    """Every service the routes of one node app use; None leaves a route group out.

    The caller owns each of them (opens and closes the connections, runs the loops):
    :func:`create_app` only wires them onto the app.
    """

    conn: sqlite3.Connection
    """The app's read connection (logs, peers, readiness, match feedback, metrics)."""
    origin: str
    """This node's origin: the audience peers name in their session requests."""
    server: ServerConfig
    readiness: Readiness = field(default_factory=Readiness)
    """What ``GET /readyz`` reports on besides the database (default: nothing to wait for)."""
    clock: Callable[[], int] | None = None
    """The session store's clock (default: the system's)."""
    match_index: BankIndex | IndexProvider | None = None
    """Serves ``POST /v1/match`` to peers and holders of api_token: a BankIndex, or a
    function returning the current one (None while it loads)."""
    api_token: str | None = None
    witness: Witness | None = None
    """Serves ``POST /witness/add-checkpoint`` (C2SP tlog-witness)."""
    session_secret: bytes | None = None
    """keys/session.key: session tokens valid at every serve process of the node
    (node/services/tokens.py)."""
    peer_signer: Signer | None = None
    """The node's peer key: signs session replies (specs/peer-auth.md)."""
    admin: AdminAccess | None = None
    """Serves ``GET /metrics`` and ``GET /v1/status`` ([metrics] enabled)."""
    case_desk: CaseDesk | None = None
    """Serves the case API and the person's page (a publisher)."""
    feedback: FeedbackAccess | None = None
    """Serves ``POST /v1/feedback`` to holders of the admin token (a writer)."""


SERVICES = web.AppKey("hashfed_services", NodeServices)
"""The services an app was built over, for route groups added after create_app."""


def _timeout_middleware(seconds: float) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[reqtimeout.REQUEST_TIMEOUT] = seconds
        if reqtimeout.has_own_timeout(request.match_info.handler):
            return await handler(request)  # it bounds its own waits (node/http/reqtimeout.py)
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            raise web.HTTPServiceUnavailable(text="request timed out\n") from None

    return middleware


def create_app(services: NodeServices) -> web.Application:
    """Builds the node's HTTP application over services: one route group per service."""
    server = services.server
    app = web.Application(
        client_max_size=server.max_body,
        middlewares=[json_errors, _timeout_middleware(server.request_timeout)],
    )
    app[SERVICES] = services
    app[METRICS_KEY] = Metrics()
    accesslog.install(app)  # first: it logs and counts every answer (node/http/accesslog.py)
    conn = services.conn
    setup_logs(app, conn, server.public_logs)
    directory = app[DIRECTORY]
    setup_auth(app, _session_store(services), is_public=directory.is_public_path)
    setup_health(app, services.readiness, conn)
    setup_auth_check(app, directory.origin_of)
    if services.match_index is not None:
        index = services.match_index
        provider = index if callable(index) else (lambda: index)
        setup_match_api(app, provider, services.api_token, conn)
    if services.witness is not None:
        setup_witness(app, services.witness)
    if services.admin is not None:
        setup_admin(app, conn, services.admin.config, services.admin.token)
    if services.case_desk is not None:
        setup_case_api(app, services.case_desk, services.case_desk.config)
        setup_case_page(app)  # the person's page (node/http/casepage.py)
    if services.feedback is not None:
        setup_feedback(app, services.feedback)
    return app


def _session_store(services: NodeServices) -> SessionStore:
    """Returns the session store over the configured peers.

    It asks for the peers on every request: they are kept in memory and re-read
    whenever the database changed (a removed peer loses access at once)."""
    conn = services.conn
    cached: list[tuple[tuple[int, int], dict[str, peers.Peer]]] = []

    def configured_peers() -> dict[str, peers.Peer]:
        version = change_marker(conn)
        if not cached or cached[0][0] != version:
            cached[:] = [(version, {peer.name: peer for peer in peers.list_peers(conn)})]
        return cached[0][1]

    secret, signer = services.session_secret, services.peer_signer
    if services.clock is None:
        return SessionStore(services.origin, configured_peers, secret=secret, signer=signer)
    return SessionStore(
        services.origin, configured_peers, clock=services.clock, secret=secret, signer=signer
    )


__all__ = ["HASH_SIZE", "SERVICES", "AdminAccess", "NodeServices", "create_app"]
