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

What is served (the app, its databases, witness, case desk and background loops)
is built by the composition root, node/root.py; this module drives it.

SIGTERM or SIGINT stops the node at any moment, warm-up included: the listening
socket closes, requests in flight get :data:`SHUTDOWN_GRACE` seconds, background
tasks are cancelled (an interrupted sync rolls back its transaction), every
database connection is closed, and the process exits 0. The index loader only
reads, so it is abandoned, not awaited.

``hashfed serve --read-only`` (``ServeOptions(read_only=True)``) runs the same
steps as a read replica (node/root.py's ``replica_node``): it reads hashfed.toml
without opening the node (no migration, no writes), reads through a ``query_only``
connection and the keys node/replica.py reads, and runs no witness endpoint, sync,
witness push, export or case desk.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import NoReturn

from aiohttp import web
from hashfed.node import servicelog
from hashfed.node.cli.output import plural
from hashfed.node.config import NodeConfig, ServerConfig, load_config
from hashfed.node.home import Node, open_node
from hashfed.node.logsetup import start_logging
from hashfed.node.match.load import IndexLoader, refresh_loop
from hashfed.node.root import (
    ServeError,
    ServingNode,
    cancel_tasks,
    replica_node,
    tls_context,
    writer_node,
)

SHUTDOWN_GRACE = 1.0
"""Seconds requests in flight may take to finish once a stop is requested."""

log = logging.getLogger("hashfed.serve")


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
            node: Node | None = None
            if options.read_only:
                config = load_config(home)  # a replica never opens (migrates, writes) the node
                server = _start(config, options)
            else:
                node, server = _open(home, options)
                config = node.config
            try:
                tls = tls_context(config)
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
    meet the index loader, a daemon thread that may be mid-import or mid-build: it is
    skipped."""
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
    """Serves until a stop signal: the writer with node, a read replica without; both
    built by the composition root (node/root.py)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if node is None:
        built = replica_node(config, server)
    else:
        config = node.config
        built = writer_node(node, server, sync=not options.no_sync, export_dir=options.export_dir)
    await _run(built, config, server, tls, announce, stopping)


async def _run(
    built: ServingNode,
    config: NodeConfig,
    server: ServerConfig,
    tls: ssl.SSLContext | None,
    announce: Announce,
    stopping: asyncio.Event,
) -> None:
    """Binds, announces, loads the index and serves the built app until stopping is set."""
    runner = web.AppRunner(
        built.app,
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
        built.bound.set()
        matching = asyncio.create_task(_match_index(built.loader, built.conn, announce))
        await stopping.wait()
        await servicelog.stopping(config.origin)
    finally:
        if matching is not None:
            await cancel_tasks([matching])
        await runner.cleanup()


def on_bound(announce: Announce, origin: str, url: str) -> None:
    """on_bound runs once the port is bound and ``GET /healthz`` answers: the one
    place to tell the operator (and a service manager) that the node is up."""
    announce(f"serving {origin} on {url}")
    servicelog.ready(origin, url)


async def _match_index(loader: IndexLoader, conn: sqlite3.Connection, announce: Announce) -> None:
    started = time.monotonic()
    try:
        index = await loader.load()
    except Exception as exc:
        announce(f"the match index failed to load: {exc}")
        return
    index.conn = conn
    updates = loader.updates
    assert updates is not None  # set by load
    with contextlib.suppress(Exception):  # refresh_loop retries it, and logs why
        await updates.refresh()  # what changed while it loaded
    announce(
        f"match index: {plural(len(index), 'active hash', 'active hashes')}, ready in"
        f" {time.monotonic() - started:.1f} s;"
        " POST /v1/match with keys/api.token"
    )
    await refresh_loop(updates)


__all__ = ["SHUTDOWN_GRACE", "ServeError", "ServeOptions", "exit_now", "on_bound", "serve"]
