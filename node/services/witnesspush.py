"""The publisher's side of witnessing: push each checkpoint to the witnesses in its policy.

After every append, and at a steady cadence even when nothing is new (so an
idle log stays provably fresh), the node sends its latest checkpoint to each
witness listed with a URL in its tlog-policy file (``<home>/policy``), with a
consistency proof from the size that witness last cosigned (C2SP tlog-witness).
A 409 answer tells the size the witness holds; the node retries once from it.
The cosignatures that verify against the witnesses' keys are appended to the
stored checkpoint, so the node serves its checkpoint with them, and every
mirror serves them onward.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from hashfed.node.config import NodeConfig
from hashfed.node.policyfile import load_policy
from hashfed.node.store import logstore
from hashfed.node.store import witness as witness_store
from hashfed.node.store.db import transaction
from hashfed.protocol.merkle import consistency_proof
from hashfed.protocol.policy import Policy, PolicyWitness
from hashfed.protocol.tiles import TileHashReader
from hashfed.protocol.witness import AddCheckpoint
from hashfed.signing.errors import SigningError
from hashfed.signing.note import VerifierList, open_note

if TYPE_CHECKING:
    import sqlite_utils

MAX_ANSWER = 16 * 1024


@dataclass
class PushReport:
    """What each witness answered to one push."""

    size: int
    cosigned: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def split_note(note: str) -> tuple[str, list[str]]:
    """Returns (text, signature lines) of a signed note."""
    text, _, sigs = note.partition("\n\n")
    return text + "\n", [line + "\n" for line in sigs.split("\n") if line]


def log_signed_note(note: str, origin: str) -> str:
    """Returns note with only the log's own signature lines (cosignatures dropped)."""
    text, lines = split_note(note)
    return text + "\n" + "".join(line for line in lines if line.split(" ", 2)[1] == origin)


async def _set_witness_size(
    db: sqlite_utils.Database, name: str, size: int, turn: asyncio.Lock
) -> None:
    # In a worker thread: a sync applying in its own thread may hold the write lock
    # for a while, and waiting for it must never hold the event loop. One at a time:
    # the witnesses of a round share db.
    async with turn:
        await asyncio.to_thread(_write_witness_size, db, name, size)


def _write_witness_size(db: sqlite_utils.Database, name: str, size: int) -> None:
    with transaction(db) as conn:
        witness_store.set_pushed_size(conn, name, size)


async def _push_one(
    session: aiohttp.ClientSession,
    db: sqlite_utils.Database,
    log: logstore.LogRow,
    note: str,
    witness: PolicyWitness,
    timeout: aiohttp.ClientTimeout,
    turn: asyncio.Lock,
) -> str:
    """Returns the witness's verified cosignature line, or raises RuntimeError saying why."""
    conn = db.conn
    old = witness_store.pushed_size(conn, witness.name)
    for _attempt in range(2):
        if old > log.size:
            raise RuntimeError(f"it holds size {old}, larger than this log's {log.size}")
        proof: list[bytes] = []
        if 0 < old < log.size:
            reader = TileHashReader(
                log.size, lambda lvl, idx, w: logstore.read_tile(conn, log.id, lvl, idx, w)
            )
            proof = consistency_proof(old, log.size, reader)
        body = AddCheckpoint(old, tuple(proof), note).format()
        url = f"{witness.url.rstrip('/')}/add-checkpoint" if witness.url else ""
        async with session.post(url, data=body.encode(), timeout=timeout) as response:
            answer = (await response.content.read(MAX_ANSWER)).decode("utf-8", "replace")
            if response.status == 409 and answer.strip().isdigit():
                old = int(answer.strip())
                await _set_witness_size(db, witness.name, old, turn)
                continue
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {answer.strip()[:200]}")
        try:
            opened = open_note(note + answer, VerifierList(witness.verifier))
        except SigningError as exc:
            raise RuntimeError(f"its cosignature does not verify: {exc}") from None
        lines = [s.line() for s in opened.sigs if s.name == witness.verifier.name]
        if not lines:
            raise RuntimeError("it answered no cosignature by its key")
        await _set_witness_size(db, witness.name, log.size, turn)
        return lines[0]
    raise RuntimeError("it kept answering 409")


async def push_checkpoint(
    db: sqlite_utils.Database, origin: str, policy: Policy, timeout: float = 10.0
) -> PushReport:
    """Sends the own log's latest checkpoint to every witness with a URL; stores the
    verified cosignatures with the checkpoint and returns what each witness said."""
    log = logstore.get_log(db.conn, origin)
    assert log is not None and log.own and log.checkpoint is not None
    note = log_signed_note(log.checkpoint, origin)
    report = PushReport(log.size)
    witnesses = [w for w in policy.witnesses if w.url]
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    turn = asyncio.Lock()
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(_push_one(session, db, log, note, w, client_timeout, turn) for w in witnesses),
            return_exceptions=True,
        )
    lines = []
    for witness, answer in zip(witnesses, answers, strict=True):
        if isinstance(answer, str):
            lines.append(answer)
            report.cosigned.append(witness.name)
        else:
            report.errors[witness.name] = str(answer) or type(answer).__name__
    if lines:
        await asyncio.to_thread(_store_cosignatures, db, origin, log, note, lines)
    return report


def _store_cosignatures(
    db: sqlite_utils.Database, origin: str, log: logstore.LogRow, note: str, lines: list[str]
) -> None:
    """Stores the cosignature lines with the checkpoint they cosign, if it is still the
    log's latest (in a worker thread: see _set_witness_size)."""
    with transaction(db) as conn:
        current = logstore.get_log(conn, origin)
        if (
            current is not None
            and current.checkpoint is not None
            and (current.size, current.root) == (log.size, log.root)
        ):
            # Keep the cosignatures of witnesses that did not answer this round
            # (one timing out must not drop the checkpoint below a quorum); replace
            # those that did, whose new lines carry newer timestamps.
            answered = {line.split(" ", 2)[1] for line in lines}
            _, held = split_note(current.checkpoint)
            kept = [
                line
                for line in held
                if line.split(" ", 2)[1] != origin and line.split(" ", 2)[1] not in answered
            ]
            cosigned = note + "".join(kept) + "".join(lines)
            witness_store.store_cosigned_checkpoint(conn, log.id, cosigned)


log = logging.getLogger("hashfed.witness")


def log_push(report: PushReport) -> None:
    """Logs what each witness answered to a push of this node's checkpoint."""
    for name in report.cosigned:
        log.info(
            "pushed size %d: cosigned by %s",
            report.size,
            name,
            extra={"event": "push", "witness": name, "size": report.size},
        )
    for name, error in report.errors.items():
        log.warning(
            "pushed size %d: witness %s: %s",
            report.size,
            name,
            error,
            extra={"event": "push_failed", "witness": name, "size": report.size, "error": error},
        )


async def witness_loop(
    db: sqlite_utils.Database,
    config: NodeConfig,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Submits the own checkpoint to the policy's witnesses within seconds of a change
    (a case batch, a withdrawal) and again at a steady cadence even when nothing is
    new, so that an idle log stays provably fresh (new cosignature timestamps).

    db is a connection of its own: the background sync applies on another one."""
    step = min(2.0, config.sync.witness_interval)
    pushed_size, since = -1, config.sync.witness_interval
    while True:
        log = logstore.get_log(db.conn, config.origin)
        size = -1 if log is None else log.size
        if size != pushed_size or since >= config.sync.witness_interval:
            policy = load_policy(config.home)
            if policy is not None and any(w.url for w in policy.witnesses):
                report = await push_checkpoint(db, config.origin, policy)
                log_push(report)
            pushed_size, since = size, 0.0
        await sleep(step)
        since += step
