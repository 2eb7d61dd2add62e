"""Loading the match index while the node already serves, and numba's cache folder.

``hashfed serve`` binds its port first; the match index follows, in two steps that
never hold the event loop (nor, for long, the GIL):

1. the PDQ kernels are compiled into numba's cache by a subprocess,
   ``python -m hashfed.node.match.kernels`` (a fraction of a second when the cache is
   warm; numba's compiler holds the GIL for seconds, so it never runs in the
   serving process);
2. meanwhile a daemon thread reads the bank on a read-only connection of its own
   (SQLite releases the GIL while it reads) and imports numba; once the subprocess
   is done, it loads the kernels from that cache and builds the
   :class:`~hashfed.node.match.bank.BankIndex` (numpy and ``nogil`` kernels).

The thread is a daemon and only reads, so a stop request never waits for it.

numba's cache lives in the node directory, ``<node dir>/cache/numba``, unless
``NUMBA_CACHE_DIR`` is set; so a read-only install, another user or a service
sandbox keeps its compiled kernels between starts. ``make venv`` compiles them
into ``<venv>/share/hashfed/numba-cache``, which seeds a node's empty cache folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hashfed.node.http.readiness import Readiness

if TYPE_CHECKING:
    from hashfed.node.match.bank import BankIndex, BankRows

CACHE_ENV = "NUMBA_CACHE_DIR"

SEED_DIR = Path(sys.prefix) / "share" / "hashfed" / "numba-cache"
"""Where ``make venv`` compiles the kernels (copied into an empty node cache)."""

KERNELS_MODULE = "hashfed.node.match.kernels"

LOADER_THREAD = "hashfed-index-load"
"""The name of the daemon thread that loads the index."""

T = TypeVar("T")


def node_cache_dir(home: Path) -> Path:
    """node_cache_dir returns the folder numba caches compiled kernels in for the node
    in home: ``NUMBA_CACHE_DIR`` if set, else ``<home>/cache/numba``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else home.absolute() / "cache" / "numba"


def use_node_cache(home: Path) -> Path:
    """use_node_cache points numba's cache (in this process and its children) at
    :func:`node_cache_dir`, and seeds an empty node cache from :data:`SEED_DIR`. It must
    run before numba is imported; it changes nothing if ``NUMBA_CACHE_DIR`` is set."""
    path = node_cache_dir(home)
    if os.environ.get(CACHE_ENV):
        return path
    os.environ[CACHE_ENV] = str(path)
    if not path.exists() and SEED_DIR.is_dir():
        try:
            shutil.copytree(SEED_DIR, path)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)  # numba compiles instead
    return path


async def warm_kernels(python: str = sys.executable) -> str | None:
    """warm_kernels compiles the match kernels into numba's cache in a subprocess and
    returns None, or what went wrong (the kernels are then compiled where they are
    first used). Cancelling it kills the subprocess."""
    proc = await asyncio.create_subprocess_exec(
        python,
        "-m",
        KERNELS_MODULE,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        lines = output.decode(errors="replace").strip().splitlines()
        return f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}"
    return None


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """in_daemon_thread runs fn in a new daemon thread and returns its result. Unlike
    ``asyncio.to_thread``, neither the event loop's shutdown nor the interpreter's exit
    waits for the thread: use it only for work that may be abandoned (reads)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


def read_rows(database: Path) -> BankRows:
    """read_rows reads the bank's applied, active rows from the database at path, on a
    read-only connection of its own, and imports the kernels' module meanwhile
    (importing numba needs no compiled kernel)."""
    from hashfed.node.match.bank import read_bank
    from hashfed.node.match.index import kernels

    conn = sqlite3.connect(f"{Path(database).absolute().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        rows = read_bank(conn)
    finally:
        conn.close()
    kernels()
    return rows


def build_index(rows: BankRows, thresholds: Mapping[str, int], default_threshold: int) -> BankIndex:
    """build_index loads the kernels (from numba's cache when it holds them) and builds
    the match index from rows."""
    from hashfed.node.match.bank import BankIndex
    from hashfed.node.match.index import warm_up

    warm_up()
    return BankIndex.from_rows(rows, thresholds=thresholds, default_threshold=default_threshold)


class IndexLoader:
    """IndexLoader loads a node's match index off the event loop and reports its
    progress in a :class:`~hashfed.node.http.readiness.Readiness` (part ``"index"``)."""

    PART = "index"

    def __init__(
        self,
        database: Path,
        readiness: Readiness,
        *,
        thresholds: Mapping[str, int] | None = None,
        default_threshold: int = 31,
    ) -> None:
        self.database = database
        self.readiness = readiness
        self.thresholds = dict(thresholds or {})
        self.default_threshold = default_threshold
        self._index: BankIndex | None = None
        readiness.wait_for(self.PART, "the match index has not started loading")

    def current(self) -> BankIndex | None:
        """current returns the loaded index, or None while it loads."""
        return self._index

    async def load(self, on_warning: Callable[[str], None] = lambda _: None) -> BankIndex:
        """load compiles the kernels in a subprocess while a daemon thread reads the
        bank, then builds the index in a daemon thread from the cached kernels, and
        returns it (also from :meth:`current` from then on). A failure stays in the
        readiness report and is raised."""
        started = time.perf_counter()
        compiling = asyncio.create_task(warm_kernels())
        try:
            self.readiness.wait_for(self.PART, "reading the bank")
            rows = await in_daemon_thread(lambda: read_rows(self.database), LOADER_THREAD)
            self.readiness.wait_for(self.PART, "compiling or loading the match kernels")
            problem = await compiling
            if problem is not None:
                on_warning(f"could not compile the match kernels ahead ({problem})")
            self.readiness.wait_for(self.PART, "building the match index")
            index = await in_daemon_thread(
                lambda: build_index(rows, self.thresholds, self.default_threshold),
                LOADER_THREAD,
            )
        except Exception as exc:
            self.readiness.wait_for(self.PART, f"the match index failed to load: {exc}")
            raise
        finally:
            if not compiling.done():  # cancelled early: the compiler must not outlive us
                compiling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await compiling
        index.load_seconds = time.perf_counter() - started
        self._index = index
        self.readiness.ready(self.PART)
        return index


__all__ = [
    "CACHE_ENV",
    "LOADER_THREAD",
    "SEED_DIR",
    "IndexLoader",
    "build_index",
    "in_daemon_thread",
    "node_cache_dir",
    "read_rows",
    "use_node_cache",
    "warm_kernels",
]
