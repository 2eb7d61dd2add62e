"""Sync for a node: every trusted origin, from the configured peers, once or in a loop.

The background loop of ``hashfed serve`` (:func:`sync_loop`) runs each round in a
thread of its own (:func:`sync_in_thread`), so that a catch-up, minutes of CPU for a
large log, never holds the serving event loop: requests and a stop signal are
answered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import aiohttp
from hashfed.node.errors import NodeError
from hashfed.node.home import Node
from hashfed.node.policyfile import load_policy, quorum_check
from hashfed.node.store import peers
from hashfed.node.store.db import open_database
from hashfed.node.store.syncstore import SqliteSyncStore
from hashfed.node.threads import in_daemon_thread
from hashfed.signing.keys import parse_verifier
from hashfed.sync.auth import SessionClient
from hashfed.sync.engine import ApplyPolicy, Progress, SyncResult, sync_origin
from hashfed.sync.errors import Equivocation, Halted, SyncError
from hashfed.sync.failover import peer_fetcher
from hashfed.sync.fetch import Fetcher, Limits

Clock = Callable[[], int]
log = logging.getLogger("hashfed.sync")
ProgressFactory = Callable[[str, str], Progress | None]
T = TypeVar("T")

SYNC_THREAD = "hashfed-sync"
"""The name of the thread a background sync round runs in."""


@dataclass
class Outcome:
    """How the sync of one origin went: the result from the peer that served it, or why not."""

    origin: str
    result: SyncResult | None = None
    errors: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # what each peer's sync reported

    @property
    def ok(self) -> bool:
        return self.result is not None


def fetcher_for(
    session: aiohttp.ClientSession, node: Node, peer: peers.Peer, limits: Limits | None = None
) -> Fetcher:
    """Returns the fetcher this node reads peer with: its URLs in order (failing over
    to mirrors), a session signed with the node's peer key, and the peer's own key
    checked in the session reply (specs/peer-auth.md)."""
    auth = SessionClient(node.peer_signer, peer.key_name, server_key=peer.verifier())
    return peer_fetcher(session, peer.name, peer.urls, auth, limits)


async def sync_node(
    node: Node,
    *,
    peer_name: str | None = None,
    origin: str | None = None,
    progress: ProgressFactory | None = None,
    limits: Limits | None = None,
    clock: Clock = lambda: int(time.time()),
) -> list[Outcome]:
    """Syncs each trusted origin (or just origin) from the peers (or just peer_name)."""
    conn = node.db.conn
    trusted = [t for t in peers.list_trust(conn) if origin is None or t.origin == origin]
    peer_list = [
        p for p in peers.list_peers(conn) if p.url and (peer_name is None or p.name == peer_name)
    ]
    if origin is not None and not trusted:
        raise NodeError(f"this node does not trust {origin}; add it with 'hashfed trust add'")
    if peer_name is not None and not peer_list:
        raise NodeError(f"no peer named {peer_name!r} to sync from; see 'hashfed peers list'")
    if not trusted:
        raise NodeError("this node trusts no log yet; add one with 'hashfed trust add VKEY'")
    if not peer_list:
        raise NodeError("this node has no peers to sync from; add one with 'hashfed peers add'")
    store = SqliteSyncStore(node.db, retention=node.config.sync.retention)
    store.prune()  # expired retentions, staging of logs no longer followed
    witness_policy = load_policy(node.config.home)
    outcomes = []
    async with aiohttp.ClientSession() as session:
        fetchers = [fetcher_for(session, node, p, limits) for p in peer_list]
        for log in trusted:
            policy = ApplyPolicy(
                log.role,
                node.config.min_pdq_quality,
                node.config.sync.retention,
                quorum_check(witness_policy, log.origin, clock),
            )
            outcome = Outcome(log.origin, errors=[])
            started = time.perf_counter()
            for fetcher in fetchers:
                report = progress(log.origin, fetcher.name) if progress else None
                try:
                    result = await sync_origin(
                        store, fetcher, log.origin, parse_verifier(log.vkey), policy, report
                    )
                except (Equivocation, Halted) as exc:
                    outcome.errors = [*(outcome.errors or []), str(exc)]
                    outcome.result = None
                    break
                except SyncError as exc:
                    outcome.errors = [*(outcome.errors or []), str(exc)]
                    continue
                outcome.result = result
                outcome.notes.extend(result.details)
                if result.status not in ("peer-behind", "awaiting-quorum"):
                    break  # else another peer may have a newer (or cosigned) checkpoint
            outcomes.append(outcome)
            log_round(outcome, time.perf_counter() - started)
    return outcomes


def log_round(outcome: Outcome, seconds: float) -> None:
    """Logs one line for the sync of one origin: from and to sizes, applied, flagged,
    peer, duration and the error (INFO when it worked, WARNING when it did not)."""
    result = outcome.result
    error = "; ".join(outcome.errors or []) or None
    fields = {
        "event": "sync",
        "origin": outcome.origin,
        "peer": result.peer if result else None,
        "status": result.status if result else "failed",
        "from_size": result.old_size if result else None,
        "to_size": result.new_size if result else None,
        "applied": result.applied if result else 0,
        "flagged": result.flagged if result else 0,
        "duration": round(seconds, 3),
        "error": error,
    }
    if result is None:
        log.warning("%s: sync failed after %.3fs: %s", outcome.origin, seconds, error, extra=fields)
        return
    log.info(
        "%s: %s %d -> %d from %s; %d applied, %d flagged (%.3fs)",
        outcome.origin,
        result.status,
        result.old_size,
        result.new_size,
        result.peer,
        result.applied,
        result.flagged,
        seconds,
        extra=fields,
    )


def next_delay(
    interval: float, jitter: float, failures: int, backoff_max: float, rng: random.Random
) -> float:
    """Returns the wait before the next background sync: the interval, doubled per
    consecutive failure up to backoff_max, spread by ±jitter so nodes do not sync
    in lockstep."""
    base = min(interval * 2**failures, backoff_max) if failures else interval
    return base * (1 + rng.uniform(-jitter, jitter))


async def sync_in_thread(node: Node) -> list[Outcome]:
    """Runs :func:`sync_node` once in a daemon thread, on an event loop and a database
    connection of its own, and returns its outcomes.

    Cancelling the caller cancels the round at its next await, in its own thread, and
    does not wait for that: its apply transaction rolls back there or, if the process
    exits first, is never committed (SQLite discards it), so the database stays as it
    was and the staged bundles resume the catch-up next time.
    """
    worker = _Worker()

    def run() -> list[Outcome]:
        db = open_database(node.config.database)
        try:
            return worker.run(sync_node(replace(node, db=db)))
        finally:
            db.conn.close()

    return await worker.start(run, SYNC_THREAD)


class _Worker:
    """One coroutine run to completion on an event loop in a daemon thread, which the
    starting event loop awaits and may cancel (without waiting for the thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    async def start(self, fn: Callable[[], T], name: str) -> T:
        """Runs fn (which calls :meth:`run`) in a new daemon thread; returns its result."""
        try:
            return await in_daemon_thread(fn, name)
        except asyncio.CancelledError:
            self.cancel()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs coro on a new event loop in the calling (worker) thread."""

        async def main() -> T:
            with self._lock:
                if self._cancelled:
                    coro.close()
                    raise asyncio.CancelledError
                self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            return await coro

        return asyncio.run(main())

    def cancel(self) -> None:
        """Cancels the coroutine at its next await (or before it starts)."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                with contextlib.suppress(RuntimeError):  # its loop is closed: it is done
                    self._loop.call_soon_threadsafe(self._task.cancel)


async def sync_loop(
    node: Node,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    rounds: int | None = None,
    on_round: Callable[[list[Outcome] | None, float], None] | None = None,
) -> None:
    """Syncs in the background until cancelled (or for rounds rounds, for tests), each
    round in a thread of its own (:func:`sync_in_thread`)."""
    config = node.config.sync
    rng = rng or random.Random()
    failures = 0
    done = 0
    while rounds is None or done < rounds:
        try:
            outcomes: list[Outcome] | None = await sync_in_thread(node)
            failed = any(not o.ok for o in outcomes or [])
        except NodeError:
            outcomes, failed = None, False  # nothing to sync yet: not a failure
        except Exception:  # a bug or a broken database must not end the loop silently
            log.exception("background sync failed")
            outcomes, failed = None, True
        for outcome in outcomes or []:
            for note in outcome.notes:  # an older checkpoint ignored, a quorum missing...
                log.info("%s: %s", outcome.origin, note)
            for error in outcome.errors or []:  # a peer that failed or misbehaved
                log.warning("%s: %s", outcome.origin, error)
        failures = failures + 1 if failed else 0
        delay = next_delay(config.interval, config.jitter, failures, config.backoff_max, rng)
        if on_round is not None:
            on_round(outcomes, delay)
        done += 1
        await sleep(delay)
