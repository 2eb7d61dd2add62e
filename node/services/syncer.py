"""Sync for a node: every trusted origin, from the configured peers, once or in a loop."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from hashfed.node.errors import NodeError
from hashfed.node.home import Node
from hashfed.node.policyfile import load_policy, quorum_check
from hashfed.node.store import peers
from hashfed.node.store.syncstore import SqliteSyncStore
from hashfed.signing.keys import parse_verifier
from hashfed.sync.auth import SessionClient
from hashfed.sync.engine import ApplyPolicy, Progress, SyncResult, sync_origin
from hashfed.sync.errors import Equivocation, Halted, SyncError
from hashfed.sync.failover import peer_fetcher
from hashfed.sync.fetch import Fetcher, Limits

Clock = Callable[[], int]
log = logging.getLogger("hashfed.sync")
ProgressFactory = Callable[[str, str], Progress | None]


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


async def sync_loop(
    node: Node,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    rounds: int | None = None,
    on_round: Callable[[list[Outcome] | None, float], None] | None = None,
) -> None:
    """Syncs in the background until cancelled (or for rounds rounds, for tests)."""
    config = node.config.sync
    rng = rng or random.Random()
    failures = 0
    done = 0
    while rounds is None or done < rounds:
        try:
            outcomes: list[Outcome] | None = await sync_node(node)
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
