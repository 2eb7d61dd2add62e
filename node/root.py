"""The composition root: a serving node, built from its directory and config.

This is the one module that knows how a node is put together. For the writer
(``hashfed serve``) it opens three database connections (the app's reads, the
witness endpoint's, the witness push's), the match index loader and readiness,
the witness, the admin routes ([metrics]) and, on a publisher, the case desk;
it hands them to :func:`~hashfed.node.http.app.create_app` in one
:class:`~hashfed.node.http.app.NodeServices`, and owns their lifetimes through the
app's ``cleanup_ctx``: the background loops (sync, witness push, export, the case
desk's batches) start with the app, wait until the port is bound, and are cancelled
before the connections close, which they do last.

A read replica (``hashfed serve --read-only``, node/replica.py) is built here too,
over one ``query_only`` connection and the keys it reads, with nothing that writes.

It also makes the TLS context ([server] tls_cert, tls_key). node/serving.py drives
the result: logging, binding, loading the index after the bind, and a prompt stop.
Tests and embedders build the same apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from hashfed.node import servicelog
from hashfed.node.config import NodeConfig, ServerConfig
from hashfed.node.errors import NodeError
from hashfed.node.home import Node, ensure_admin_token
from hashfed.node.http.app import AdminAccess, NodeServices, create_app
from hashfed.node.http.feedback import FeedbackAccess
from hashfed.node.http.match import IndexProvider
from hashfed.node.http.witness import Witness
from hashfed.node.match.load import REFRESH_INTERVAL, IndexLoader, IndexUpdates, refresh_loop
from hashfed.node.readiness import Readiness
from hashfed.node.replica import open_replica_database, read_replica_keys
from hashfed.node.services.casedesk import CaseDesk, batch_loop, open_case_desk
from hashfed.node.services.export import export_loop
from hashfed.node.services.feedback import FeedbackDesk, open_feedback_desk
from hashfed.node.services.syncer import Outcome, sync_loop
from hashfed.node.services.tokens import SESSION_SECRET_FILE, load_session_secret
from hashfed.node.services.witnesspush import witness_loop
from hashfed.node.store.db import open_database

if TYPE_CHECKING:  # sqlite_utils through store.db; numpy and the index once bound
    import sqlite_utils
    from hashfed.node.match.bank import BankIndex

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


class ServeError(NodeError):
    """The node cannot serve as configured (port, TLS files, database); the message says why."""


@dataclass(frozen=True)
class ServingNode:
    """A node's app, wired, and what the start-up path drives once it is bound."""

    app: web.Application
    conn: sqlite3.Connection
    """The app's read connection: the match index refreshes from it."""
    loader: IndexLoader
    """Loads the match index (after the bind); its readiness is what /readyz reports."""
    bound: asyncio.Event
    """Set once the port is bound: the background loops wait for it."""


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """Returns the TLS context for [server] tls_cert and tls_key, or None without them.
    Raises ServeError, naming the file, if they cannot be read or do not match."""
    files = config.tls_files
    if files is None:
        return None
    cert, key = files
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ServeError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ServeError(f"cannot use TLS certificate {cert} with key {key}: {reason}") from None
    return context


def index_loader(config: NodeConfig) -> IndexLoader:
    """Returns the match index loader (node/match/load.py) for the node, with a readiness
    of its own that turns ready once the index is loaded."""
    return IndexLoader(
        config.database,
        Readiness(),
        thresholds=config.match.thresholds,
        default_threshold=config.match.threshold,
    )


def writer_node(
    node: Node, server: ServerConfig, *, sync: bool = True, export_dir: Path | None = None
) -> ServingNode:
    """Builds the writer's app for node, served as server says: every route the node's
    config enables, the witness push loop, the sync loop (unless not sync), the export
    loop (with export_dir) and, on a publisher, the case desk's batches."""
    config = node.config
    opened: list[sqlite_utils.Database] = []
    desk: CaseDesk | None = None
    feedback: FeedbackDesk | None = None
    try:
        # The app's reads; the witness endpoint's (in worker threads); pushing the own
        # checkpoint to witnesses.
        for _ in range(3):
            opened.append(open_database(config.database))
        read_db, witness_db, push_db = opened
        loader = index_loader(config)
        feedback = open_feedback_desk(config, node.signer)  # a connection of its own
        admin = (
            AdminAccess(config, ensure_admin_token(config.home)) if config.metrics.enabled else None
        )
        if config.role == "publisher":
            desk = open_case_desk(config, node.signer)  # a connection of its own
        services = NodeServices(
            read_db.conn,
            config.origin,
            server,
            readiness=loader.readiness,
            match_index=loader.current,
            api_token=node.api_token(),
            witness=Witness(witness_db, node.witness_signer(), lambda: int(time.time())),
            session_secret=load_session_secret(config.home / SESSION_SECRET_FILE),
            peer_signer=node.peer_signer,
            admin=admin,
            case_desk=desk,
            feedback=FeedbackAccess(feedback, ensure_admin_token(config.home)),
        )
        app = create_app(services)
    except BaseException:
        for service in (desk, feedback):
            if service is not None:
                service.close()
        _close(tuple(opened))
        raise
    databases = (read_db, witness_db, push_db)
    bound = asyncio.Event()
    # First: the node and its connections close after everything else has stopped.
    app.cleanup_ctx.insert(0, _closing(node, databases, feedback))

    def after_round(outcomes: list[Outcome] | None, _delay: float) -> None:
        servicelog.observe_sync_round(app, outcomes)
        for outcome in outcomes or []:
            if outcome.result is not None:
                loader.apply_sync(outcome.result)

    loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
        lambda: witness_loop(push_db, node.config)
    ]
    if sync:
        loops.append(lambda: sync_loop(node, on_round=after_round))
    if export_dir is not None:
        loops.append(lambda: export_loop(config.database, export_dir))
    app.cleanup_ctx.append(_running(loops, bound))
    if desk is not None:
        app.cleanup_ctx.append(_case_batches(desk))
    return ServingNode(app, read_db.conn, loader, bound)


def replica_node(config: NodeConfig, server: ServerConfig) -> ServingNode:
    """Builds a read replica's app for the node configured in config: the writer's
    database through a query_only connection, the keys read from the node directory,
    and nothing that writes. The admin routes are served on the main port only
    ([metrics] listen is the writer's)."""
    conn = open_replica_database(config.database)
    try:
        loader = index_loader(config)
        admin = (
            AdminAccess(config, ensure_admin_token(config.home))
            if config.metrics.enabled and not config.metrics.listen
            else None
        )
        app = _replica_app(config, server, conn, loader.current, loader.readiness, admin)
    except BaseException:
        conn.close()
        raise
    return ServingNode(app, conn, loader, asyncio.Event())


def create_replica_app(
    config: NodeConfig,
    server: ServerConfig | None = None,
    refresh: float | None = None,
) -> web.Application:
    """Builds a read replica's app for the node configured in config (its home), with
    its index loaded first and refreshed every refresh seconds (None: the default
    interval): for tests and embedding.
    ``hashfed serve --read-only`` serves :func:`replica_node` through node/serving.py
    (bind first, readiness, admin routes, prompt stop)."""
    from hashfed.node.match.bank import BankIndex

    conn = open_replica_database(config.database)
    try:
        index = BankIndex.load(
            conn, thresholds=config.match.thresholds, default_threshold=config.match.threshold
        )
        app = _replica_app(config, server or config.server, conn, index, Readiness(), None)
    except BaseException:
        conn.close()
        raise

    updates = IndexUpdates(index, config.database)

    async def refreshing(_app: web.Application) -> AsyncIterator[None]:
        refresher = asyncio.create_task(refresh_loop(updates, refresh or REFRESH_INTERVAL))
        yield
        await cancel_tasks([refresher])

    app.cleanup_ctx.append(refreshing)
    return app


def _replica_app(
    config: NodeConfig,
    server: ServerConfig,
    conn: sqlite3.Connection,
    match_index: BankIndex | IndexProvider,
    readiness: Readiness,
    admin: AdminAccess | None,
) -> web.Application:
    keys = read_replica_keys(config)
    app = create_app(
        NodeServices(
            conn,
            config.origin,
            server,
            readiness=readiness,
            match_index=match_index,
            api_token=keys.api_token,
            session_secret=keys.session_secret,
            peer_signer=keys.peer_signer,
            admin=admin,
        )
    )

    async def closing(_app: web.Application) -> AsyncIterator[None]:
        yield
        conn.close()

    app.cleanup_ctx.insert(0, closing)  # first: the connection closes after everything else
    return app


def _closing(
    node: Node, databases: tuple[sqlite_utils.Database, ...], feedback: FeedbackDesk
) -> CleanupContext:
    async def closing(_app: web.Application) -> AsyncIterator[None]:
        yield
        feedback.close()
        node.close()
        _close(databases)

    return closing


def _close(databases: tuple[sqlite_utils.Database, ...]) -> None:
    for db in databases:
        db.conn.close()


def _running(
    loops: list[Callable[[], Coroutine[Any, Any, None]]], bound: asyncio.Event
) -> CleanupContext:
    """Returns a cleanup context that runs each loop once bound is set, and cancels
    them all (an interrupted sync rolls back its transaction) when the app stops."""

    async def running(_app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_once(bound, loop())) for loop in loops]
        yield
        await cancel_tasks(tasks)

    return running


def _case_batches(desk: CaseDesk) -> CleanupContext:
    """Returns a cleanup context that runs the case desk's batch job and closes the desk."""

    async def batches(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(batch_loop(desk, desk.config.batch_interval))
        yield
        await cancel_tasks([task])
        desk.close()

    return batches


async def _once(event: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Runs work once event is set (closing it unstarted if cancelled before)."""
    try:
        await event.wait()
    except asyncio.CancelledError:
        work.close()
        raise
    await work


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels tasks and waits until each has stopped."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "ServeError",
    "ServingNode",
    "cancel_tasks",
    "create_replica_app",
    "index_loader",
    "replica_node",
    "tls_context",
    "writer_node",
]
