"""Keeping a loaded match index current off the event loop (node/match/load.py).

What a sync round applied and what another process published reach the index
through :class:`IndexUpdates`: in daemon threads on connections of their own, in
order, so the serving loop never runs the reads or the build itself.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from hashfed.node.match.bank import BankIndex
from hashfed.node.match.load import UPDATE_THREAD, IndexLoader, IndexUpdates
from hashfed.node.readiness import Readiness
from hashfed.node.services.ownlog import NewHash
from hashfed.protocol.records import Kind
from hashfed.sync.engine import SyncResult
from synchelpers import allow, clock, make_node, serve, sync, trust, use

RNG = np.random.default_rng(29)
PDQ = [RNG.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(8)]


class ThreadWatch:
    """Wraps a BankIndex method to note the thread each call runs on."""

    def __init__(self, index: BankIndex, name: str) -> None:
        self.threads: list[str] = []
        method = getattr(index, name)

        def watched(*args: object) -> None:
            self.threads.append(threading.current_thread().name)
            method(*args)

        setattr(index, name, watched)


async def test_sync_rounds_reach_the_index_in_order_off_the_loop(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    log = p.own_log(clock())
    log.publish([NewHash(Kind.PDQ, h, 100) for h in PDQ[:4]])
    allow(p, a)
    trust(a, p)
    index = BankIndex.load(a.db.conn)
    assert len(index) == 0
    updates = IndexUpdates(index, a.config.database)
    watch = ThreadWatch(index, "update_from_sync")
    async with serve(p) as p_url:
        use(a, p, p_url)
        first = await sync(a)
        log.publish([NewHash(Kind.PDQ, h, 100) for h in PDQ[4:]])
        log.retract([1])
        second = await sync(a)
        assert first.result is not None and second.result is not None
        updates.apply_sync(first.result)  # queued: neither is applied on this loop
        updates.apply_sync(second.result)
        await updates.settled()
    assert watch.threads == [UPDATE_THREAD, UPDATE_THREAD]
    assert len(index) == 7  # 8 published, entry 1 retracted
    assert index.search("pdq", [PDQ[1]]) == [[]]
    assert [hit.idx for hit in index.search("pdq", [PDQ[6]])[0]] == [6]


async def test_refresh_picks_up_another_process_off_the_loop(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    index = BankIndex.load(p.db.conn)
    updates = IndexUpdates(index, p.config.database)
    watch = ThreadWatch(index, "refresh")
    p.own_log(clock()).publish([NewHash(Kind.PDQ, PDQ[0], 100)])  # as 'hashfed publish' would
    await updates.refresh()
    assert watch.threads == [UPDATE_THREAD]
    assert [hit.idx for hit in index.search("pdq", [PDQ[0]])[0]] == [0]


async def test_rounds_that_end_while_the_index_loads_are_applied_once_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a round's result names content that arrived late for older entries
    (refills): one that ends before the index is loaded is kept and applied after."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    p.own_log(clock()).publish([NewHash(Kind.PDQ, h, 100) for h in PDQ[:3]])
    allow(p, a)
    trust(a, p)
    applied: list[tuple[str, SyncResult]] = []
    update = BankIndex.update_from_sync

    def watched(index: BankIndex, conn: sqlite3.Connection, result: SyncResult) -> None:
        applied.append((threading.current_thread().name, result))
        update(index, conn, result)

    monkeypatch.setattr(BankIndex, "update_from_sync", watched)
    loader = IndexLoader(a.config.database, Readiness())
    async with serve(p) as p_url:
        use(a, p, p_url)
        outcome = await sync(a)
    assert outcome.result is not None
    loader.apply_sync(outcome.result)  # before the index exists
    assert applied == []
    index = await loader.load()
    assert loader.updates is not None
    await loader.updates.settled()
    assert applied == [(UPDATE_THREAD, outcome.result)]
    assert len(index) == 3
