"""The logs the node holds, over HTTP, in the C2SP tlog-tiles layout.

Each log is served under its own prefix, ``/log/<lowercase hex SHA-256 of the
origin>`` (as C2SP tlog-mirror derives a mirrored log's prefix), whether it is
the node's own log or one it mirrors; mirrored logs are served byte for byte as
their origin wrote them.

    GET /logs                                  the logs this caller may read (JSON)
    GET /log/<hash>/checkpoint                 the latest checkpoint (a signed note)
    GET /log/<hash>/tile/<L>/<N>[.p/<W>]       hash tiles
    GET /log/<hash>/tile/entries/<N>[.p/<W>]   entry bundles (gzip when accepted)
    GET /log/<hash>/content/<N>[.p/<W>]        content bundles (specs/protocol.md)

Caching follows tlog-tiles: tiles and entry bundles are immutable (a partial
tile of a given width never changes), the checkpoint may be cached for a few
seconds at most, and content bundles, which change when content is erased,
must be revalidated. Every log that is not public is served with
``Cache-Control: private`` so no shared cache hands bank data to anyone else.
"""

from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass

from aiohttp import web
from hashfed.node.http.auth import check_read, request_peer
from hashfed.node.store import logstore
from hashfed.node.store.db import change_marker
from hashfed.protocol.errors import MalformedTile
from hashfed.protocol.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    encode_bundle,
    log_prefix,
    parse_content_path,
    parse_tile_path,
    split_bundle,
)

IMMUTABLE = "max-age=31536000, immutable"
CHECKPOINT_CACHE = "max-age=2, must-revalidate"
CONTENT_CACHE = "no-store"  # content is erased after a retraction: no cache may keep it


@dataclass
class _Served:
    """What the server needs to know about one log it serves."""

    log: logstore.LogRow
    public: bool


class LogDirectory:
    """Maps URL prefixes to the logs the node holds, re-read when the database changes."""

    def __init__(self, conn: sqlite3.Connection, public_logs: tuple[str, ...]) -> None:
        self.conn = conn
        self.public = set(public_logs)
        self._seen: tuple[int, int] | None = None
        self._by_hash: dict[str, logstore.LogRow] = {}

    def _logs(self) -> dict[str, logstore.LogRow]:
        version = change_marker(self.conn)
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


def setup_logs(
    app: web.Application, conn: sqlite3.Connection, public_logs: tuple[str, ...]
) -> None:
    """Adds the log routes to app, reading the logs through conn; public_logs are served
    to anyone, every other log only to peers allowed to read it."""
    app[DIRECTORY] = LogDirectory(conn, public_logs)
    app.router.add_get("/logs", list_logs)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/checkpoint", get_checkpoint)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/tile/{tail:.+}", get_tile)
    app.router.add_get("/log/{origin_hash:[0-9a-f]{64}}/content/{tail:.+}", get_content)
