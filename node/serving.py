"""``hashfed serve`` from start to stop: bind first, load the index after, stop at once.

Start-up, in order:

1. open the node (config, keys, database) and the TLS files: a bad config, an
   unreadable database or a missing certificate ends here, with one line on stderr
   (:class:`ServeError` or another :class:`~hashfed.node.errors.NodeError`);
2. bind the port (a port in use is one line too), then call ``announce`` with the
   URL: from here ``GET /healthz`` answers 200, while ``GET /readyz`` and
   ``POST /v1/match`` answer 503 with ``Retry-After``;
3. load the match index off the event loop (node/match/load.py); ``/readyz``
   answers 200 once it is loaded.

SIGTERM or SIGINT stops the node at any moment, warm-up included: the listening
socket closes, requests in flight get :data:`SHUTDOWN_GRACE` seconds, background
tasks are cancelled (an interrupted sync rolls back its transaction), every
database connection is closed, and the process exits 0. The index loader only
reads, so it is abandoned, not awaited.

``hashfed serve --read-only`` (``ServeOptions(read_only=True)``) runs the same
steps as a read replica: it reads hashfed.toml without opening the node (no
migration, no writes), reads through node/replica.py's ``query_only`` connection
and keys, and runs no witness endpoint, sync, witness push, export or case desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sqlite3
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from aiohttp import web
from hashfed.node import servicelog
from hashfed.node.cli.output import plural
from hashfed.node.cli.sync import witness_loop
from hashfed.node.config import NodeConfig, ServerConfig, load_config
from hashfed.node.errors import NodeError
from hashfed.node.home import Node, ensure_admin_token, open_node
from hashfed.node.http.admin import setup_admin
from hashfed.node.http.app import create_app
from hashfed.node.http.cases import serve_cases
from hashfed.node.http.readiness import Readiness
from hashfed.node.http.witness import Witness
from hashfed.node.logsetup import start_logging
from hashfed.node.match.load import IndexLoader, use_node_cache
from hashfed.node.replica import open_replica_database, read_replica_keys
from hashfed.node.services.export import export_loop
from hashfed.node.services.syncer import Outcome, sync_loop
from hashfed.node.services.tokens import SESSION_SECRET_FILE, load_session_secret
from hashfed.node.store.db import open_database

SHUTDOWN_GRACE = 1.0
"""Seconds requests in flight may take to finish once a stop is requested."""

log = logging.getLogger("hashfed.serve")


class ServeError(NodeError):
    """The node cannot serve as configured (port, TLS files, database); the message says why."""


class _Stopped(BaseException):
    """A stop signal arrived before the event loop took over signal handling."""


@dataclass(frozen=True)
class ServeOptions:
    """The ``hashfed serve`` flags; None means "as hashfed.toml says"."""

    listen: str | None = None
    port: int | None = None
    interval: float | None = None
    no_sync: bool = False
    log_level: str | None = None
    log_format: str | None = None
    export_dir: Path | None = None
    read_only: bool = False
    """A read replica (node/replica.py): the writer's database, read only; no sync,
    witness, export or case desk."""


Announce = Callable[[str], None]
"""Called with a line for the operator; serve calls it with "serving ... on URL"
once the port is bound, and again when the match index is ready."""


def serve(home: Path, options: ServeOptions, announce: Announce) -> None:
    """serve runs the node in home until SIGTERM or SIGINT, then returns once every
    database connection is closed. Raises ServeError (or another NodeError) with a
    one-line reason when it cannot start."""
    with _stop_signals_raise():
        try:
            use_node_cache(home)
            node: Node | None = None
            if options.read_only:
                config = load_config(home)  # a replica never opens (migrates, writes) the node
                server = _start(config, options)
            else:
                node, server = _open(home, options)
                config = node.config
            try:
                tls = _tls_context(config)
            except BaseException:
                if node is not None:
                    node.close()
                raise
            asyncio.run(_serve(config, node, server, tls, options, announce))
        except _Stopped:
            return


def exit_now(code: int = 0) -> NoReturn:
    """exit_now ends the process at once, after :func:`serve` returned.

    Nothing is left to write by then, but the interpreter's own teardown would still
    unload numba and LLVM (half a second) and meet the index loader, a daemon thread
    that may be mid-import: both are skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """Until the event loop installs its own handlers, SIGTERM and SIGINT raise _Stopped."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _open(home: Path, options: ServeOptions) -> tuple[Node, ServerConfig]:
    try:
        node = open_node(home)
    except sqlite3.Error as exc:
        raise ServeError(f"cannot open the database {load_config(home).database}: {exc}") from None
    config = node.config
    server = _start(config, options)
    if options.interval is not None:
        node.config = replace(config, sync=replace(config.sync, interval=options.interval))
    return node, server


def _start(config: NodeConfig, options: ServeOptions) -> ServerConfig:
    """Starts logging and returns the server settings the flags override."""
    start_logging(config.log, options.log_level, options.log_format)
    return replace(
        config.server,
        listen=options.listen if options.listen is not None else config.server.listen,
        port=options.port if options.port is not None else config.server.port,
    )


def _tls_context(config: NodeConfig) -> ssl.SSLContext | None:
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


def _bind_error(server: ServerConfig, exc: OSError) -> str:
    where = f"{server.listen}:{server.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use (is another hashfed serve running?)"
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return f"cannot listen on {where}: {reason}"


def _url(tls: bool, addresses: list[object], server: ServerConfig) -> str:
    host, port = server.listen, server.port
    if addresses and isinstance(addresses[0], tuple):
        port = int(addresses[0][1])  # the port actually bound (``--port 0``)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


async def _serve(
    config: NodeConfig,
    node: Node | None,
    server: ServerConfig,
    tls: ssl.SSLContext | None,
    options: ServeOptions,
    announce: Announce,
) -> None:
    """Serves until a stop signal: the writer with node, a read replica without."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if node is None:
        return await _serve_replica(config, server, tls, announce, stopping)
    config = node.config
    read_db = open_database(config.database)
    witness_db = open_database(config.database)  # the witness endpoint's, in worker threads
    push_db = open_database(config.database)  # pushing the own checkpoint to witnesses
    readiness = Readiness()
    loader = IndexLoader(
        config.database,
        readiness,
        thresholds=config.match.thresholds,
        default_threshold=config.match.threshold,
    )
    app = create_app(
        read_db.conn,
        config.origin,
        server,
        match_index=loader.current,
        api_token=node.api_token(),
        witness=Witness(witness_db, node.witness_signer(), lambda: int(time.time())),
        readiness=readiness,
        session_secret=load_session_secret(config.home / SESSION_SECRET_FILE),
        peer_signer=node.peer_signer,
    )

    def after_round(outcomes: list[Outcome] | None, _delay: float) -> None:
        servicelog.observe_sync_round(app, outcomes)
        index = loader.current()
        for outcome in outcomes or []:
            if index is not None and outcome.result is not None:
                index.update_from_sync(read_db.conn, outcome.result)

    bound = asyncio.Event()  # background work starts once the port is bound

    async def background(_app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_once(bound, witness_loop(push_db, node.config)))]
        if not options.no_sync:
            tasks.append(asyncio.create_task(_once(bound, sync_loop(node, on_round=after_round))))
        if options.export_dir is not None:
            exporting = export_loop(config.database, options.export_dir)
            tasks.append(asyncio.create_task(_once(bound, exporting)))
        yield
        await _cancel(tasks)
        node.close()
        for db in (read_db, witness_db, push_db):
            db.conn.close()

    app.cleanup_ctx.append(background)  # first: its databases close after everything else
    if config.metrics.enabled:
        setup_admin(app, read_db.conn, config, ensure_admin_token(config.home))
    if config.role == "publisher":
        serve_cases(app, node)  # the case desk (node/http/cases.py) and its batch job
    await _run(app, config, server, tls, announce, stopping, bound, loader, read_db.conn)


async def _serve_replica(
    config: NodeConfig,
    server: ServerConfig,
    tls: ssl.SSLContext | None,
    announce: Announce,
    stopping: asyncio.Event,
) -> None:
    """A read replica: the writer's database through a query_only connection, the keys
    read from the node directory, and nothing that writes."""
    conn = open_replica_database(config.database)
    try:
        keys = read_replica_keys(config)
        readiness = Readiness()
        loader = IndexLoader(
            config.database,
            readiness,
            thresholds=config.match.thresholds,
            default_threshold=config.match.threshold,
        )
        app = create_app(
            conn,
            config.origin,
            server,
            match_index=loader.current,
            api_token=keys.api_token,
            readiness=readiness,
            session_secret=keys.session_secret,
            peer_signer=keys.peer_signer,
        )
    except BaseException:
        conn.close()
        raise

    async def background(_app: web.Application) -> AsyncIterator[None]:
        yield
        conn.close()

    app.cleanup_ctx.append(background)  # first: the connection closes after everything else
    if config.metrics.enabled and not config.metrics.listen:  # [metrics] port: the writer's
        setup_admin(app, conn, config, ensure_admin_token(config.home))
    await _run(app, config, server, tls, announce, stopping, asyncio.Event(), loader, conn)


async def _run(
    app: web.Application,
    config: NodeConfig,
    server: ServerConfig,
    tls: ssl.SSLContext | None,
    announce: Announce,
    stopping: asyncio.Event,
    bound: asyncio.Event,
    loader: IndexLoader,
    conn: sqlite3.Connection,
) -> None:
    """Binds, announces, loads the index and serves app until stopping is set."""
    runner = web.AppRunner(
        app,
        access_log=None,  # node/http/accesslog.py logs every request, by route name
        shutdown_timeout=SHUTDOWN_GRACE,
    )
    await runner.setup()
    matching: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, server.listen, server.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise ServeError(_bind_error(server, exc)) from None
        on_bound(announce, config.origin, _url(tls is not None, runner.addresses, server))
        bound.set()
        matching = asyncio.create_task(_match_index(loader, conn, announce))
        await stopping.wait()
        await servicelog.stopping(config.origin)
    finally:
        if matching is not None:
            await _cancel([matching])
        await runner.cleanup()


def on_bound(announce: Announce, origin: str, url: str) -> None:
    """on_bound runs once the port is bound and ``GET /healthz`` answers: the one
    place to tell the operator (and a service manager) that the node is up."""
    announce(f"serving {origin} on {url}")
    servicelog.ready(origin, url)


async def _match_index(loader: IndexLoader, conn: sqlite3.Connection, announce: Announce) -> None:
    from hashfed.node.match.bank import refresh_loop  # numpy: once the port is bound

    started = time.monotonic()
    try:
        index = await loader.load(on_warning=lambda text: log.warning("%s", text))
    except Exception as exc:
        announce(f"the match index failed to load: {exc}")
        return
    index.conn = conn
    index.refresh(conn)  # what changed while it loaded
    announce(
        f"match index: {plural(len(index), 'active hash', 'active hashes')}, ready in"
        f" {time.monotonic() - started:.1f} s;"
        " POST /v1/match with keys/api.token"
    )
    await refresh_loop(index, conn)


async def _once(event: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Runs work once event is set (closing it unstarted if cancelled before)."""
    try:
        await event.wait()
    except asyncio.CancelledError:
        work.close()
        raise
    await work


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["SHUTDOWN_GRACE", "ServeError", "ServeOptions", "exit_now", "on_bound", "serve"]
