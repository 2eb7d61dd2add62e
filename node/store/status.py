"""What the node reports about each log it holds: sync state, evidence, flags, feedback.

These are the reads behind ``hashfed status``, the admin ``GET /v1/status`` and the
metrics (:mod:`hashfed.node.services.health`); they change nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class SyncState:
    """The outcome of the latest sync attempts of one log (all None before the first)."""

    last_attempt: int | None = None
    last_success: int | None = None
    last_peer: str | None = None
    last_error: str | None = None
    failures: int = 0
    peer_size: int | None = None
    """The largest checkpoint size a peer offered."""


@dataclass(frozen=True)
class LogEvidence:
    """One piece of evidence held against a log."""

    found: int
    detail: str
    text: str


def sync_state(conn: sqlite3.Connection, log_id: int) -> SyncState:
    """Returns the sync state of a log (the empty state if it never synced)."""
    row = conn.execute(
        "SELECT last_attempt, last_success, last_peer, last_error, failures, peer_size"
        " FROM sync_state WHERE log_id = ?",
        (log_id,),
    ).fetchone()
    return SyncState() if row is None else SyncState(*row)


def log_evidence(conn: sqlite3.Connection, log_id: int, origin: str) -> list[LogEvidence]:
    """Returns the evidence held against a log: from syncing it, then from witnessing it."""
    rows = (
        conn.execute(
            "SELECT found, detail, text FROM evidence WHERE log_id = ? ORDER BY id", (log_id,)
        ).fetchall()
        + conn.execute(
            "SELECT found, detail, text FROM witness_evidence WHERE origin = ? ORDER BY id",
            (origin,),
        ).fetchall()
    )
    return [LogEvidence(*row) for row in rows]


def flag_count(conn: sqlite3.Connection, log_id: int) -> int:
    """Returns how many entries of a log are flagged (signed and included, failed a check)."""
    return int(conn.execute("SELECT count(*) FROM flags WHERE log_id = ?", (log_id,)).fetchone()[0])


def is_halted(conn: sqlite3.Connection, log_id: int) -> bool:
    """Reports whether a log is halted (by evidence of equivocation)."""
    return bool(conn.execute("SELECT halted FROM logs WHERE id = ?", (log_id,)).fetchone()[0])


def feedback_count(conn: sqlite3.Connection, origin: str) -> int:
    """Returns how many feedback records the node holds about entries of origin's log."""
    return int(
        conn.execute("SELECT count(*) FROM feedback WHERE target_origin = ?", (origin,)).fetchone()[
            0
        ]
    )
