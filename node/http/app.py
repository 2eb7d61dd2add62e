"""``hashfed serve``: every log the node holds, over HTTP, in the C2SP tlog-tiles layout.

Each log is served under its own prefix, ``/log/<lowercase hex SHA-256 of the
origin>`` (as C2SP tlog-mirror derives a mirrored log's prefix), whether it is
the node's own log or one it mirrors; mirrored logs are served byte for byte as
their origin wrote them.

    GET /logs                                  the logs this caller may read (JSON)
    GET /log/<hash>/checkpoint                 the latest checkpoint (a signed note)
    GET /log/<hash>/tile/<L>/<N>[.p/<W>]       hash tiles
    GET /log/<hash>/tile/entries/<N>[.p/<W>]   entry bundles (gzip when accepted)
    GET /log/<hash>/content/<N>[.p/<W>]        content bundles (specs/protocol.md)
    POST /v1/auth/session                      peer authentication (node/http/auth.py)
    GET /v1/auth/check                         may this request be served? (for nginx,
                                               node/http/authcheck.py)
    POST /v1/match                             match a batch of hashes (node/http/match.py)
    GET /healthz                               liveness (node/http/readiness.py)
    GET /readyz                                readiness: database and match index

Caching follows tlog-tiles: tiles and entry bundles are immutable (a partial
tile of a given width never changes), the checkpoint may be cached for a few
seconds at most, and content bundles, which change when content is erased,
must be revalidated. Every log that is not public is served with
``Cache-Control: private`` so no shared cache hands bank data to anyone else.
"""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from hashfed.node.config import ServerConfig
from hashfed.node.http import accesslog, reqtimeout
from hashfed.node.http.auth import SessionStore, check_read, request_peer, setup_auth
from hashfed.node.http.authcheck import setup_auth_check
from hashfed.node.http.errors import json_errors
from hashfed.node.http.match import IndexProvider, setup_match_api
from hashfed.node.http.metrics import METRICS_KEY, Metrics
from hashfed.node.http.readiness import Readiness, setup_health
from hashfed.node.http.witness import Witness, setup_witness
from hashfed.node.store import logstore, peers
from hashfed.protocol.errors import MalformedTile
from hashfed.protocol.merkle import HASH_SIZE
from hashfed.protocol.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    encode_bundle,
    log_prefix,
    parse_content_path,
    parse_tile_path,
    split_bundle,
)
from hashfed.signing.keys import Signer

if TYPE_CHECKING:  # numpy and the index: loaded after the port is bound
    from hashfed.node.match.bank import BankIndex

IMMUTABLE = "max-age=31536000, immutable"
CHECKPOINT_CACHE = "max-age=2, must-revalidate"
CONTENT_CACHE = "no-store"  # content is erased after a retraction: no cache may keep it


@dataclass
class _Served:
    """What the server needs to know about one log it serves."""

    log: logstore.LogRow
    public: bool


class DbVersion:
    """Tells, in one tiny query, whether the database may have changed since last asked.

    ``PRAGMA data_version`` changes when any other connection commits; the
    connection's own writes show in ``total_changes``. Together they let the
    server keep the peers and the logs in memory and still see a removed peer or
    a grown log on the very next request.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __call__(self) -> tuple[int, int]:
        (version,) = self.conn.execute("PRAGMA data_version").fetchone()
        return int(version), self.conn.total_changes


class LogDirectory:
    """Maps URL prefixes to the logs the node holds, re-read when the database changes."""

    def __init__(self, conn: sqlite3.Connection, public_logs: tuple[str, ...]) -> None:
        self.conn = conn
        self.public = set(public_logs)
        self._version = DbVersion(conn)
        self._seen: tuple[int, int] | None = None
        self._by_hash: dict[str, logstore.LogRow] = {}

    def _logs(self) -> dict[str, logstore.LogRow]:
        version = self._version()
        if version != self._seen:
            self._by_hash = {
                log_prefix(log.origin)[4:]: log for log in logstore.list_logs(self.conn)
            }
            self._seen = version
        return self._by_hash

    def find(self, origin_hash: str) -> _Served | None:
        log = self._logs().get(origin_hash)
        return None if log is None else _Served(log, log.origin in self.public)

    def origin_of(self, origin_hash: str) -> tuple[str, bool] | None:
        """Returns (origin, public) of the log served under origin_hash, or None."""
        served = self.find(origin_hash)
        return None if served is None else (served.log.origin, served.public)

    def is_public_path(self, path: str) -> bool:
        parts = path.split("/", 3)
        if len(parts) < 3 or parts[1] != "log":
            return False
        log = self._logs().get(parts[2])
        return log is not None and log.origin in self.public


DIRECTORY = web.AppKey("hashfed_logs", LogDirectory)


def _cache(served: _Served, policy: str) -> str:
    return ("public, " if served.public else "private, ") + policy


def _served(request: web.Request) -> _Served:
    directory = request.app[DIRECTORY]
    if request_peer(request) is None and not directory.is_public_path(request.path):
        # Anonymous callers get 401 whether or not the node holds the log, so that
        # guessing origins does not reveal which banks a node mirrors.
        check_read(request, "this log", public=False)
    served = directory.find(request.match_info["origin_hash"])
    if served is None:
        raise web.HTTPNotFound(text="no such log on this node\n")
    check_read(request, served.log.origin, served.public)
    return served


async def list_logs(request: web.Request) -> web.Response:
    directory = request.app[DIRECTORY]
    peer = request_peer(request)
    public = directory.public
    rows = []
    for log in logstore.list_logs(directory.conn):
        if log.origin not in public and (peer is None or not peer.may_read(log.origin)):
            continue
        rows.append(
            {
                "origin": log.origin,
                "prefix": "/" + log_prefix(log.origin),
                "own": log.own,
                "size": log.size,
                "root": log.root.hex(),
                "checkpoint": log.checkpoint,
            }
        )
    return web.json_response({"logs": rows}, headers={"Cache-Control": "private, no-cache"})


async def get_checkpoint(request: web.Request) -> web.Response:
    served = _served(request)
    if served.log.checkpoint is None:
        raise web.HTTPNotFound(text="this log has no checkpoint yet\n")
    return web.Response(
        text=served.log.checkpoint,
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": _cache(served, CHECKPOINT_CACHE)},
    )


def _available_width(size: int, level: int, index: int) -> int:
    """Returns how many hashes (or entries) tile (level, index) holds at this size."""
    count = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


async def get_tile(request: web.Request) -> web.StreamResponse:
    served = _served(request)
    try:
        ref = parse_tile_path("tile/" + request.match_info["tail"])
    except (MalformedTile, ValueError):
        raise web.HTTPNotFound(text="not a tile path\n") from None
    log, conn = served.log, request.app[DIRECTORY].conn
    level = 0 if ref.level is None else ref.level
    if _available_width(log.size, level, ref.index) < ref.width:
        raise web.HTTPNotFound(text="the log does not have that tile yet\n")
    headers = {"Cache-Control": _cache(served, IMMUTABLE)}
    if ref.level is not None:
        data = logstore.read_tile(conn, log.id, ref.level, ref.index, ref.width)
        return web.Response(body=data, content_type="application/octet-stream", headers=headers)
    stored = logstore.read_bundle(conn, log.id, ref.index)
    if stored is None or stored[0] < ref.width:
        raise web.HTTPNotFound(text="the log does not have that bundle\n")
    body = (
        encode_bundle(split_bundle(stored[1], "stored bundle")[: ref.width])
        if stored[0] > ref.width
        else stored[1]
    )
    body = _gzip_if_accepted(request, body, headers)
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


GZIP_LEVEL = 1
"""Bundles are mostly random hashes and salts: level 1 compresses them about as
well as the default level 6, in a fraction of the time, and in the event loop
(aiohttp's own compression hands every body over 1 KiB to a thread)."""


def _accepts_gzip(header: str) -> bool:
    """Reports whether an Accept-Encoding header accepts gzip (a q of 0 refuses it)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower()
            if q.startswith("q="):
                try:
                    return float(q[2:]) > 0
                except ValueError:
                    return False
            return True
    return False


def _gzip_if_accepted(request: web.Request, body: bytes, headers: dict[str, str]) -> bytes:
    """Returns body gzipped (and sets Content-Encoding) if the client accepts gzip.

    The answer depends on Accept-Encoding, so caches are told (Vary): a shared cache
    must never hand gzip bytes to a client that did not ask for them."""
    headers["Vary"] = "Accept-Encoding"
    if not _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        return body
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    headers["Content-Encoding"] = "gzip"
    return compressor.compress(body) + compressor.flush()


async def get_content(request: web.Request) -> web.StreamResponse:
    served = _served(request)
    try:
        ref = parse_content_path("content/" + request.match_info["tail"])
    except (MalformedTile, ValueError):
        raise web.HTTPNotFound(text="not a content path\n") from None
    log = served.log
    if _available_width(log.size, 0, ref.index) < ref.width:
        raise web.HTTPNotFound(text="the log does not have that bundle yet\n")
    body = logstore.content_bundle(request.app[DIRECTORY].conn, log.id, ref.index, ref.width)
    headers = {"Cache-Control": _cache(served, CONTENT_CACHE)}
    body = _gzip_if_accepted(request, body, headers)
    return web.Response(body=body, content_type="application/octet-stream", headers=headers)


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


def create_app(
    conn: sqlite3.Connection,
    server_name: str,
    config: ServerConfig,
    clock: Callable[[], int] | None = None,
    match_index: BankIndex | IndexProvider | None = None,
    api_token: str | None = None,
    witness: Witness | None = None,
    readiness: Readiness | None = None,
    session_secret: bytes | None = None,
    peer_signer: Signer | None = None,
) -> web.Application:
    """Builds the node's HTTP application over a database connection.

    server_name is this node's origin: the audience peers name in their session
    requests. With match_index (a BankIndex, or a function returning the current
    one) the app also serves ``POST /v1/match`` (node/http/match.py) to peers and to
    holders of api_token. With witness, it serves ``POST /witness/add-checkpoint``
    (C2SP tlog-witness, node/http/witness.py). readiness is what ``GET /readyz`` reports
    on besides the database (default: nothing to wait for). session_secret
    (keys/session.key) makes its session tokens valid at every serve process of the
    node (node/services/tokens.py). peer_signer, the node's peer key, signs session replies
    (specs/peer-auth.md): clients check it.
    """
    app = web.Application(
        client_max_size=config.max_body,
        middlewares=[json_errors, _timeout_middleware(config.request_timeout)],
    )
    app[METRICS_KEY] = Metrics()
    accesslog.install(app)  # first: it logs and counts every answer (node/http/accesslog.py)
    directory = LogDirectory(conn, config.public_logs)
    app[DIRECTORY] = directory

    # SessionStore asks for the peers on every request: keep them in memory,
    # re-read whenever the database changed (a removed peer loses access at once).
    db_version = DbVersion(conn)
    cached: list[tuple[tuple[int, int], dict[str, peers.Peer]]] = []

    def configured_peers() -> dict[str, peers.Peer]:
        version = db_version()
        if not cached or cached[0][0] != version:
            cached[:] = [(version, {peer.name: peer for peer in peers.list_peers(conn)})]
        return cached[0][1]

    store = (
        SessionStore(server_name, configured_peers, secret=session_secret, signer=peer_signer)
        if clock is None
        else SessionStore(
            server_name, configured_peers, clock=clock, secret=session_secret, signer=peer_signer
        )
    )
    setup_auth(app, store, is_public=directory.is_public_path)
    setup_health(app, readiness or Readiness(), conn)
    setup_auth_check(app, directory.origin_of)
    app.router.add_get("/logs", list_logs)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/checkpoint", get_checkpoint)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/tile/{tail:.+}", get_tile)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/content/{tail:.+}", get_content)
    if match_index is not None:
        index = match_index
        provider = index if callable(index) else (lambda: index)
        setup_match_api(app, provider, api_token, conn)
    if witness is not None:
        setup_witness(app, witness)
    return app


__all__ = ["HASH_SIZE", "create_app"]
