"""Shared helpers for the sync tests: small networks of real nodes on loopback.

Every node is a real node directory (``init_node``) with its own database; every
server is the node's real aiohttp app (``create_app``) on 127.0.0.1, port 0. A
``Relay`` is a real HTTP server that forwards every request to an upstream
node and may rewrite what comes back: the tampering peer of the fault tests.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from hashfed.node.config import ServerConfig, write_config
from hashfed.node.home import Node, init_node
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.services.ownlog import NewHash
from hashfed.node.services.syncer import Outcome, sync_node
from hashfed.node.store import logstore, peers
from hashfed.node.store.db import open_database, transaction
from hashfed.node.store.syncstore import staging_path
from hashfed.protocol.records import Kind
from hashfed.protocol.tiles import encode_bundle, split_bundle

# A URL for peers that only read from a node (it never dials them).
NOWHERE = "http://127.0.0.1:9"

NOW = 1_700_000_000


def clock(now: int = NOW) -> Callable[[], int]:
    """Returns a clock fixed at now (publish times are then reproducible)."""
    return lambda: now


def origin_of(name: str) -> str:
    return f"{name}.test/hashfed"


def make_node(tmp_path: Path, name: str, role: str = "partner", **config: Any) -> Node:
    """Creates the node called name in tmp_path/name, with config overrides written to disk."""
    node = init_node(tmp_path / name, origin_of(name), role)
    if config:
        node.config = replace(node.config, **config)
        write_config(node.config)
    return node


def pdq_hashes(count: int, seed: int, quality: int = 100) -> list[NewHash]:
    """Returns count distinct, valid PDQ additions derived from seed."""
    out = []
    for i in range(count):
        digest = (seed.to_bytes(4, "big") + i.to_bytes(4, "big")) * 4
        out.append(NewHash(Kind.PDQ, digest, quality, ("ncii",)))
    return out


def publish(node: Node, count: int, seed: int = 1, quality: int = 100) -> None:
    """Publishes count PDQ additions on node's own log."""
    node.own_log(clock()).publish(pdq_hashes(count, seed, quality))


def allow(server: Node, client: Node, read: tuple[str, ...] | None = None) -> None:
    """Lets client read server's logs (server lists client as a peer)."""
    with transaction(server.db) as conn:
        peers.add_peer(
            conn, client.config.origin.split(".")[0], NOWHERE, client.peer_signer.vkey(), read
        )


def use(client: Node, server: Node, url: str, name: str | None = None) -> str:
    """Makes client sync from server, served at url, under name (default server's name)."""
    name = name or server.config.origin.split(".")[0]
    with transaction(client.db) as conn:
        peers.add_peer(conn, name, url, server.peer_signer.vkey())
    return name


def trust(client: Node, origin_node: Node, role: str = "publisher") -> None:
    """Makes client follow origin_node's own log in role."""
    with transaction(client.db) as conn:
        peers.add_trust(conn, origin_node.signer.vkey(), role)


@asynccontextmanager
async def serve(
    node: Node, server_clock: Callable[[], int] | None = None, **config: Any
) -> AsyncIterator[str]:
    """Serves node's logs on 127.0.0.1 (its own database connection); yields the base URL."""
    db = open_database(node.config.database)
    app = create_app(
        NodeServices(
            db.conn,
            node.config.origin,
            ServerConfig(**config),
            clock=server_clock,
            peer_signer=node.peer_signer,
        )
    )
    async with run_app(app, config.get("port", 0)) as url:
        yield url
    db.conn.close()


@asynccontextmanager
async def run_app(app: web.Application, port: int = 0) -> AsyncIterator[str]:
    """Runs app on a loopback port (ephemeral by default); yields its base URL."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# A tamper hook gets the request, the upstream status and body, and returns the
# body to send (bytes) or a complete response of its own.
Tamper = Callable[[web.Request, int, bytes], Awaitable[bytes | web.StreamResponse]]

_FORWARD = ("Authorization", "Content-Type", "Accept")
_BACK = ("Content-Type", "Cache-Control", "WWW-Authenticate")


class Relay:
    """A real HTTP server that forwards to upstream and lets a test rewrite responses."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.tamper: Tamper | None = None
        self.paths: list[str] = []
        self.fail = False  # answer every log request with 500
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        self.paths.append(request.path)
        if self.fail and request.path.startswith("/log/"):
            return web.Response(status=500, text="relay is down\n")
        headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read() if request.can_read_body else None,
        ) as upstream:
            status, body = upstream.status, await upstream.read()
            back = {k: upstream.headers[k] for k in _BACK if k in upstream.headers}
        if self.tamper is not None:
            out = await self.tamper(request, status, body)
            if isinstance(out, web.StreamResponse):
                return out
            body = out
        response = web.Response(status=status, body=body)
        for key, value in back.items():
            response.headers[key] = value
        return response

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        async with aiohttp.ClientSession() as session:
            self.session = session
            async with run_app(app) as url:
                yield url


def is_bundle(request: web.Request) -> bool:
    return "/tile/entries/" in request.path


def is_tile(request: web.Request) -> bool:
    return "/tile/" in request.path and not is_bundle(request)


def map_bundle(data: bytes, change: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """Returns the bundle data with its items rewritten by change."""
    return encode_bundle(change(split_bundle(data, "test bundle")))


# -- comparing nodes -------------------------------------------------------------------------


def log_id(node: Node, origin: str) -> int:
    log = logstore.get_log(node.db.conn, origin)
    assert log is not None, f"{node.config.origin} holds no log for {origin}"
    return log.id


def bank(node: Node, origin: str) -> list[tuple[Any, ...]]:
    """Returns the bank rows node holds for origin, without the log id."""
    return node.db.conn.execute(
        "SELECT idx, kind, hash, quality, labels, added, salt, status, retracted_at,"
        " retract_reason, retracted_by FROM bank WHERE log_id = ? ORDER BY idx",
        (log_id(node, origin),),
    ).fetchall()


def bank_state(node: Node, origin: str) -> list[tuple[Any, ...]]:
    """Returns what matching depends on: (index, hash, salt, status, retraction) per row.

    Unlike bank(), equal for a node that never received content erased before it synced.
    """
    return [(r[0], r[2], r[6], r[7], r[8], r[9], r[10]) for r in bank(node, origin)]


def active_hashes(node: Node, origin: str) -> list[tuple[int, bytes]]:
    return node.db.conn.execute(
        "SELECT idx, hash FROM bank WHERE log_id = ? AND status = 'active' ORDER BY idx",
        (log_id(node, origin),),
    ).fetchall()


def tiles(node: Node, origin: str) -> list[tuple[Any, ...]]:
    return node.db.conn.execute(
        "SELECT level, idx, data FROM tiles WHERE log_id = ? ORDER BY level, idx",
        (log_id(node, origin),),
    ).fetchall()


def bundles(node: Node, origin: str) -> list[tuple[Any, ...]]:
    return node.db.conn.execute(
        "SELECT idx, count, data FROM bundles WHERE log_id = ? ORDER BY idx",
        (log_id(node, origin),),
    ).fetchall()


def flags(node: Node, origin: str) -> dict[int, str]:
    rows = node.db.conn.execute(
        "SELECT idx, reason FROM flags WHERE log_id = ?", (log_id(node, origin),)
    )
    return {int(i): str(r) for i, r in rows}


def staged_count(node: Node) -> int:
    # Staged bundles live in their own file beside the node database (node/store/syncstore.py).
    path = staging_path(Path(node.db.conn.execute("PRAGMA database_list").fetchone()[2]))
    if not path.exists():
        return 0
    with closing(sqlite3.connect(path)) as staging:
        tables = staging.execute("SELECT count(*) FROM sqlite_master WHERE name = 'staged'")
        if not tables.fetchone()[0]:
            return 0
        return int(staging.execute("SELECT count(*) FROM staged").fetchone()[0])


def checkpoint(node: Node, origin: str) -> str | None:
    log = logstore.get_log(node.db.conn, origin)
    assert log is not None
    return log.checkpoint


def snapshot(node: Node, origin: str) -> tuple[Any, ...]:
    """Everything a failed sync must leave unchanged: size, checkpoint, bank, tiles, bundles."""
    log = logstore.get_log(node.db.conn, origin)
    assert log is not None
    return (
        log.size,
        log.root,
        log.checkpoint,
        bank(node, origin),
        tiles(node, origin),
        bundles(node, origin),
        flags(node, origin),
    )


async def sync(node: Node, peer: str | None = None, **kw: Any) -> Outcome:
    """Syncs node (from peer) and returns the one outcome."""
    outcomes = await sync_node(node, peer_name=peer, **kw)
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
