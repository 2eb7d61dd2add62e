"""The publisher's case desk: the ``cases`` and ``case_hashes`` tables (specs/case-api.md).

Every SQL statement of the case desk lives here. A case is known by the digest
of its number and the scrypt hash of its PIN (node/services/casecrypto.py),
never either in clear; ``case_hashes.hash`` is held only until a batch
publishes it, after which the row keeps only the hash's log index.

Transactions stay with the caller (node/store/db.py ``transaction``): a batch
marks its cases inside the append's transaction, so none of these functions
begins or commits one.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FEEDBACK_CHUNK = 500
"""Most log indices named in one feedback query (SQLite's bound on parameters)."""


@dataclass(frozen=True)
class CaseLogin:
    """What a PIN check needs of a case: its id and the stored form of its PIN."""

    id: str
    pin_hash: str


@dataclass(frozen=True)
class CaseSummary:
    """A case's state, the day it was opened (Unix time) and how many hashes it holds."""

    state: str
    opened: int
    count: int


@dataclass(frozen=True)
class CaseListing:
    """One case as the operator sees it: never a number or a PIN."""

    id: str
    state: str
    opened: int
    count: int
    published: int


@dataclass(frozen=True)
class PendingHash:
    """An unpublished hash of a pending case, at its position in the case."""

    case_id: str
    position: int
    kind: str
    hash: bytes
    quality: int | None


def insert_case(
    conn: sqlite3.Connection,
    case_id: str,
    number_hash: bytes,
    pin_hash: str,
    state: str,
    opened: int,
    hashes: Sequence[tuple[str, bytes, int | None]],
) -> None:
    """insert_case stores a new case and its (kind, hash, quality) hashes, in order."""
    conn.execute(
        "INSERT INTO cases (id, number_hash, pin_hash, state, opened, count)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (case_id, number_hash, pin_hash, state, opened, len(hashes)),
    )
    conn.executemany(
        "INSERT INTO case_hashes (case_id, position, kind, hash, quality) VALUES (?, ?, ?, ?, ?)",
        [(case_id, n, kind, digest, quality) for n, (kind, digest, quality) in enumerate(hashes)],
    )


def find_case(conn: sqlite3.Connection, number_hash: bytes) -> CaseLogin | None:
    """find_case returns the case whose number has this digest, or None."""
    row = conn.execute(
        "SELECT id, pin_hash FROM cases WHERE number_hash = ?", (number_hash,)
    ).fetchone()
    return None if row is None else CaseLogin(str(row[0]), str(row[1]))


def case_state(conn: sqlite3.Connection, case_id: str) -> str | None:
    """case_state returns the state of the case with this id, or None when there is none."""
    row = conn.execute("SELECT state FROM cases WHERE id = ?", (case_id,)).fetchone()
    return None if row is None else str(row[0])


def case_summary(conn: sqlite3.Connection, case_id: str) -> CaseSummary:
    """case_summary returns the state, opening day and size of a case that exists."""
    state, opened, count = conn.execute(
        "SELECT state, opened, count FROM cases WHERE id = ?", (case_id,)
    ).fetchone()
    return CaseSummary(str(state), int(opened), int(count))


def case_log_indices(conn: sqlite3.Connection, case_id: str) -> list[int]:
    """case_log_indices returns the log index of every published hash of the case,
    retracted or not."""
    return [
        int(r[0])
        for r in conn.execute(
            "SELECT log_index FROM case_hashes WHERE case_id = ? AND log_index IS NOT NULL",
            (case_id,),
        )
    ]


def active_log_indices(conn: sqlite3.Connection, log_id: int, case_id: str) -> list[int]:
    """active_log_indices returns, in order, the log indices of the case's hashes that
    the bank of log log_id (the node's own) holds as active: published, not retracted."""
    return sorted(
        int(r[0])
        for r in conn.execute(
            "SELECT h.log_index FROM case_hashes h JOIN bank b ON b.log_id = ?"
            " AND b.idx = h.log_index WHERE h.case_id = ? AND b.status = 'active'",
            (log_id, case_id),
        )
    )


def list_cases(conn: sqlite3.Connection, state: str | None = None) -> list[CaseListing]:
    """list_cases returns every case (or those in state), oldest first, with how many
    of its hashes are published."""
    rows = conn.execute(
        "SELECT c.id, c.state, c.opened, c.count,"
        " (SELECT count(*) FROM case_hashes h WHERE h.case_id = c.id"
        "  AND h.log_index IS NOT NULL)"
        " FROM cases c WHERE ? IS NULL OR c.state = ? ORDER BY c.opened, c.rowid",
        (state, state),
    ).fetchall()
    return [CaseListing(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def set_state(conn: sqlite3.Connection, case_id: str, state: str) -> None:
    """set_state moves a case to state, whatever it was in (the caller checked)."""
    conn.execute("UPDATE cases SET state = ? WHERE id = ?", (state, case_id))


def delete_hashes(conn: sqlite3.Connection, case_id: str) -> None:
    """delete_hashes deletes every hash row of a case (rejecting it before publication)."""
    conn.execute("DELETE FROM case_hashes WHERE case_id = ?", (case_id,))


def withdraw_case(conn: sqlite3.Connection, case_id: str) -> None:
    """withdraw_case deletes the case's unpublished hashes, forgets the content of the
    published ones (their log indices stay) and marks the case withdrawn."""
    conn.execute("DELETE FROM case_hashes WHERE case_id = ? AND log_index IS NULL", (case_id,))
    conn.execute("UPDATE case_hashes SET hash = NULL WHERE case_id = ?", (case_id,))
    conn.execute("UPDATE cases SET state = 'withdrawn' WHERE id = ?", (case_id,))


def pending_hashes(conn: sqlite3.Connection) -> list[PendingHash]:
    """pending_hashes returns every unpublished hash of every pending case."""
    return [
        PendingHash(str(r[0]), int(r[1]), str(r[2]), bytes(r[3]), r[4])
        for r in conn.execute(
            "SELECT h.case_id, h.position, h.kind, h.hash, h.quality FROM case_hashes h"
            " JOIN cases c ON c.id = h.case_id WHERE c.state = 'pending'"
            " AND h.log_index IS NULL AND h.hash IS NOT NULL"
        )
    ]


def pending_opened(conn: sqlite3.Connection) -> dict[str, int]:
    """pending_opened returns the opening day of every pending case, by case id."""
    return {
        str(r[0]): int(r[1])
        for r in conn.execute("SELECT id, opened FROM cases WHERE state = 'pending'")
    }


def mark_published(conn: sqlite3.Connection, placed: Iterable[tuple[int, str, int]]) -> int:
    """mark_published records, for each (log index, case id, position), that the hash
    was published there and forgets its content; returns how many rows changed.

    A row changes only if its case is still pending and the hash still unpublished,
    so a count short of the input says another process got there first.
    """
    return conn.executemany(
        "UPDATE case_hashes SET log_index = ?, hash = NULL"
        " WHERE case_id = ? AND position = ? AND log_index IS NULL"
        " AND hash IS NOT NULL"
        " AND case_id IN (SELECT id FROM cases WHERE state = 'pending')",
        list(placed),
    ).rowcount


def activate_cases(conn: sqlite3.Connection, case_ids: Iterable[str]) -> None:
    """activate_cases moves each pending case all of whose hashes are published to active."""
    conn.executemany(
        "UPDATE cases SET state = 'active' WHERE id = ? AND state = 'pending'"
        " AND NOT EXISTS (SELECT 1 FROM case_hashes WHERE case_id = ?"
        " AND log_index IS NULL)",
        [(c, c) for c in case_ids],
    )


def feedback_verdicts(
    conn: sqlite3.Connection, target_origin: str, indices: Iterable[int]
) -> Counter[str]:
    """feedback_verdicts counts the feedback records about the entries indices of the log
    target_origin, by verdict as stored."""
    counts: Counter[str] = Counter()
    wanted = list(indices)
    for start in range(0, len(wanted), FEEDBACK_CHUNK):
        chunk = wanted[start : start + FEEDBACK_CHUNK]
        rows = conn.execute(
            "SELECT verdict, count(*) FROM feedback WHERE target_origin = ? AND target_idx"
            f" IN ({','.join('?' * len(chunk))}) GROUP BY verdict",
            (target_origin, *chunk),
        )
        for verdict, n in rows:
            counts[str(verdict)] += int(n)
    return counts
