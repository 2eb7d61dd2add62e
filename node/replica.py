"""``hashfed serve --read-only``: a read replica over the database another process writes.

A replica serves what partners read — logs, tiles, bundles, content, the match
API and the proxy's authorisation check — from the node's SQLite database,
which the writer (``hashfed serve``, ``hashfed publish``…) writes on the same
host. SQLite's WAL mode lets any number of readers run beside one writer, each
seeing a consistent snapshot, so replicas need no coordination:

* the connection is ``PRAGMA query_only``: a replica never writes, never
  migrates the schema (a writer and replicas of different schema versions are
  refused), and runs no sync, no witness push, no case desk, no export;
* new checkpoints, tiles, bank changes and peers are picked up without a
  restart: the server re-reads logs and peers whenever ``PRAGMA data_version``
  says another connection committed, and the match index refreshes every few
  seconds (node/match/bank.py);
* tokens any process of the node issued are accepted (node/services/tokens.py), given
  the same ``keys/session.key``.

It starts and stops like the writer (node/serving.py, ``ServeOptions(read_only=True)``):
bind first, then load the index; READY=1, /metrics, /v1/status; a prompt stop.
This module holds only what differs: the read connection and the keys it reads.

Across hosts, replicas serve the exported tree instead (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from hashfed.node.config import NodeConfig, ServerConfig
from hashfed.node.errors import NodeError
from hashfed.node.home import API_TOKEN_FILE
from hashfed.node.http.app import create_app
from hashfed.node.services.tokens import SESSION_SECRET_FILE, load_session_secret
from hashfed.node.store.db import SCHEMA_VERSION
from hashfed.signing.keys import Ed25519Signer, parse_signer, read_key_file


def open_replica_database(path: Path) -> sqlite3.Connection:
    """Returns a connection that reads the node database at path and can never write it.

    Raises NodeError if there is no database, it is not in WAL mode, or its schema
    is not the one this hashfed reads (replicas never migrate: upgrade the writer).
    """
    if not path.is_file():
        raise NodeError(f"no node database at {path}; start the writer ('hashfed serve') first")
    # Read-write open (without writing) so SQLite can use the WAL index beside the file.
    conn = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=60000")
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise NodeError(f"cannot read the node database {path}: {exc}") from None
    if str(mode).lower() != "wal" or version != SCHEMA_VERSION:
        conn.close()
        raise NodeError(
            f"the node database {path} has schema {version} in {mode} mode; a read replica "
            f"of this hashfed needs schema {SCHEMA_VERSION} in WAL mode (upgrade and start "
            "the writer first)"
        )
    return conn


@dataclass(frozen=True)
class ReplicaKeys:
    """What a replica reads from the node directory (and never creates)."""

    api_token: str | None
    peer_signer: Ed25519Signer
    session_secret: bytes


def read_replica_keys(config: NodeConfig) -> ReplicaKeys:
    """Reads the API token (if the node has one), the peer key and ``keys/session.key``."""
    api_token_path = config.home / API_TOKEN_FILE
    return ReplicaKeys(
        api_token=read_key_file(api_token_path) if api_token_path.exists() else None,
        peer_signer=parse_signer(read_key_file(config.peer_key).strip()),
        session_secret=load_session_secret(config.home / SESSION_SECRET_FILE),
    )


def create_replica_app(
    config: NodeConfig,
    server: ServerConfig | None = None,
    refresh: float | None = None,
) -> web.Application:
    """Builds a read replica's app for the node configured in config (its home), with
    its index loaded first: for tests and embedding. ``hashfed serve --read-only`` runs
    through node/serving.py (bind first, readiness, admin routes, prompt stop). The index
    is refreshed every refresh seconds (None: every REFRESH_INTERVAL)."""
    from hashfed.node.match.bank import REFRESH_INTERVAL, BankIndex, refresh_loop

    conn = open_replica_database(config.database)
    try:
        index = BankIndex.load(
            conn, thresholds=config.match.thresholds, default_threshold=config.match.threshold
        )
        keys = read_replica_keys(config)
        app = create_app(
            conn,
            config.origin,
            server or config.server,
            match_index=index,
            api_token=keys.api_token,
            session_secret=keys.session_secret,
            peer_signer=keys.peer_signer,
        )
    except BaseException:
        conn.close()
        raise

    async def background(_app: web.Application) -> AsyncIterator[None]:
        refresher = asyncio.create_task(
            refresh_loop(index, conn, REFRESH_INTERVAL if refresh is None else refresh)
        )
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        conn.close()

    app.cleanup_ctx.append(background)
    return app
