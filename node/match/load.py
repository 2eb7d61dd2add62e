"""Loading the match index while the node already serves.

``hashfed serve`` binds its port first; the match index follows on a daemon thread,
which never holds the event loop (nor, for long, the GIL):

1. it reads the bank on a read-only connection of its own (SQLite releases the GIL
   while it reads);
2. it builds the :class:`~hashfed.node.match.bank.BankIndex` (numpy, and C loops
   that release the GIL: node/match/_mih.c).

The thread is a daemon and only reads, so a stop request never waits for it.

Once loaded, the index is kept current the same way (:class:`IndexUpdates`): what a
sync round applied, and what other processes wrote (``hashfed publish`` beside
``hashfed serve``), is read and added on a daemon thread, one change at a time, so
neither a million-entry catch-up nor a stop request ever waits on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hashfed.node.readiness import Readiness
from hashfed.node.threads import in_daemon_thread

if TYPE_CHECKING:
    import sqlite3

    from hashfed.node.match.bank import BankIndex, BankRows
    from hashfed.sync.engine import SyncResult

LOADER_THREAD = "hashfed-index-load"
"""The name of the daemon thread that loads the index."""

UPDATE_THREAD = "hashfed-index-update"
"""The name of the daemon threads that apply changes to a loaded index."""

REFRESH_INTERVAL = 5.0
"""Seconds between :func:`refresh_loop`'s checks for changes made by other processes."""

log = logging.getLogger("hashfed.serve")


def read_rows(database: Path) -> BankRows:
    """read_rows reads the bank's applied, active rows from the database at path, on a
    read-only connection of its own."""
    from hashfed.node.match.bank import read_bank
    from hashfed.node.store.db import open_read_only

    conn = open_read_only(database)
    try:
        return read_bank(conn)
    finally:
        conn.close()


def build_index(rows: BankRows, thresholds: Mapping[str, int], default_threshold: int) -> BankIndex:
    """build_index builds the match index from rows."""
    from hashfed.node.match.bank import BankIndex

    return BankIndex.from_rows(rows, thresholds=thresholds, default_threshold=default_threshold)


class IndexLoader:
    """IndexLoader loads a node's match index off the event loop and reports its
    progress in a :class:`~hashfed.node.readiness.Readiness` (part ``"index"``)."""

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
        self.updates: IndexUpdates | None = None
        """Keeps the index current once it is loaded (None until then)."""
        self._early: list[SyncResult] = []
        readiness.wait_for(self.PART, "the match index has not started loading")

    def apply_sync(self, result: SyncResult) -> None:
        """apply_sync brings the index up to date with one sync round's result, now if
        it is loaded, else as soon as it is: the bank it reads may already hold the
        new entries, but not content that arrived late for older ones (refills),
        which only the result names. Applying a result twice changes nothing."""
        if self.updates is None:
            self._early.append(result)
        else:
            self.updates.apply_sync(result)

    def current(self) -> BankIndex | None:
        """current returns the loaded index, or None while it loads."""
        return self._index

    async def load(self) -> BankIndex:
        """load reads the bank and builds the index in a daemon thread, and returns it
        (also from :meth:`current` from then on). A failure stays in the readiness
        report and is raised."""
        started = time.perf_counter()
        try:
            self.readiness.wait_for(self.PART, "reading the bank")
            rows = await in_daemon_thread(lambda: read_rows(self.database), LOADER_THREAD)
            self.readiness.wait_for(self.PART, "building the match index")
            index = await in_daemon_thread(
                lambda: build_index(rows, self.thresholds, self.default_threshold),
                LOADER_THREAD,
            )
        except Exception as exc:
            self.readiness.wait_for(self.PART, f"the match index failed to load: {exc}")
            raise
        index.load_seconds = time.perf_counter() - started
        self._index = index
        self.updates = IndexUpdates(index, self.database)
        for result in self._early:  # rounds that ended while the index loaded
            self.updates.apply_sync(result)
        self._early.clear()
        self.readiness.ready(self.PART)
        return index


class IndexUpdates:
    """IndexUpdates applies changes to a loaded index off the event loop: each in a
    daemon thread on a read-only connection of its own, one at a time and in the
    order asked. Searches go on meanwhile (the index's own lock keeps them
    consistent); the index is memory only, so a stop never waits for an update."""

    def __init__(self, index: BankIndex, database: Path) -> None:
        self.index = index
        self.database = database
        self._turn = asyncio.Lock()
        self._queued: set[asyncio.Task[None]] = set()

    async def refresh(self) -> None:
        """refresh picks up what other processes changed since the index last looked."""
        await self._apply(self.index.refresh)

    def apply_sync(self, result: SyncResult) -> None:
        """apply_sync queues what one sync round applied and returns at once."""
        task = asyncio.create_task(
            self._apply(lambda conn: self.index.update_from_sync(conn, result))
        )
        self._queued.add(task)
        task.add_done_callback(self._settled)

    async def settled(self) -> None:
        """settled returns once every queued change is in the index."""
        while self._queued:
            await asyncio.gather(*self._queued, return_exceptions=True)

    async def _apply(self, change: Callable[[sqlite3.Connection], None]) -> None:
        async with self._turn:
            await in_daemon_thread(lambda: _on_reader(self.database, change), UPDATE_THREAD)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._queued.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The periodic refresh picks up the new entries and retractions it missed
            # (not content that arrived late for older ones: that waits for a restart).
            log.error("the match index missed a sync round's changes: %s", task.exception())


def _on_reader(database: Path, change: Callable[[sqlite3.Connection], None]) -> None:
    from hashfed.node.store.db import open_read_only

    conn = open_read_only(database)
    try:
        change(conn)
    finally:
        conn.close()


async def refresh_loop(updates: IndexUpdates, interval: float = REFRESH_INTERVAL) -> None:
    """refresh_loop refreshes the index every interval seconds until cancelled, so that
    hashes published or retracted by another process are picked up."""
    while True:
        await asyncio.sleep(interval)
        try:
            await updates.refresh()
        except Exception as exc:  # e.g. the database busy past its timeout: next time
            log.error("the match index could not refresh (%s); retrying", exc)


__all__ = [
    "LOADER_THREAD",
    "REFRESH_INTERVAL",
    "UPDATE_THREAD",
    "IndexLoader",
    "IndexUpdates",
    "build_index",
    "read_rows",
    "refresh_loop",
]
