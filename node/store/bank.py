"""The bank: the hash additions of every applied log, one row per (log, index).

Every SQL statement that reads or writes the ``bank`` table lives here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


def entry_status(conn: sqlite3.Connection, log_id: int, index: int) -> str | None:
    """entry_status returns the bank status of entry index of a log ("active",
    "retracted", ...), or None when that entry is not a hash addition this node holds."""
    row = conn.execute(
        "SELECT status FROM bank WHERE log_id = ? AND idx = ?", (log_id, index)
    ).fetchone()
    return None if row is None else str(row[0])


def content_members(conn: sqlite3.Connection, log_id: int, size: int) -> list[tuple[int, str]]:
    """content_members returns, per content bundle of a log's first size entries that has
    any content, (bundle index, comma-joined offsets of its entries with content), in
    order. Same filter as :func:`hashfed.node.store.logstore.content_bundle`, so it tells
    which bundles an erasure changed without encoding them."""
    rows = conn.execute(
        "SELECT idx >> 8, group_concat(idx & 255) FROM"
        " (SELECT idx FROM bank WHERE log_id = ? AND idx < ? AND status != 'retracted'"
        " AND hash IS NOT NULL AND salt IS NOT NULL ORDER BY idx)"
        " GROUP BY idx >> 8",
        (log_id, size),
    )
    return [(int(index), str(members)) for index, members in rows]


def indices_from(conn: sqlite3.Connection, log_id: int, start: int) -> list[int]:
    """indices_from returns the indices of a log's hash additions from start on, in order."""
    return [
        int(i)
        for (i,) in conn.execute(
            "SELECT idx FROM bank WHERE log_id = ? AND idx >= ? ORDER BY idx", (log_id, start)
        )
    ]


def active_hash_entries(
    conn: sqlite3.Connection, kind: str, hash: bytes, log_id: int | None = None
) -> list[tuple[str, int]]:
    """active_hash_entries returns (origin, index) of every active addition of kind
    with exactly this hash in the logs of others this node holds (or only in log_id),
    ordered by origin and index. A retracted entry's hash is erased, so it never shows.

    The bank has no index on hash: this scans it, which suits feedback (one call per
    reviewed match), not matching (node/match/ keeps its own index)."""
    sql = (
        "SELECT l.origin, b.idx FROM bank b JOIN logs l ON l.id = b.log_id"
        " WHERE b.kind = ? AND b.hash = ? AND b.status = 'active' AND l.own = 0"
    )
    params: tuple[object, ...] = (kind, hash)
    if log_id is not None:
        sql += " AND b.log_id = ?"
        params += (log_id,)
    rows = conn.execute(sql + " ORDER BY l.origin, b.idx", params).fetchall()
    return [(str(origin), int(idx)) for origin, idx in rows]


# -- the match index's reads (node/match/bank.py) ----------------------------------------

_ACTIVE = "status = 'active' AND hash IS NOT NULL"
"""The rows the match index holds: active, with their hash still present."""


def applied_logs(conn: sqlite3.Connection) -> dict[int, str]:
    """applied_logs returns the logs whose hashes this node matches against, by log id:
    its own log and the origins trusted as publishers."""
    rows = conn.execute(
        "SELECT id, origin FROM logs WHERE own = 1 OR origin IN"
        " (SELECT origin FROM trust WHERE role = 'publisher') ORDER BY id"
    ).fetchall()
    return {int(i): str(o) for i, o in rows}


def active_chunks(
    conn: sqlite3.Connection,
    log_id: int,
    start: int,
    end: int,
    kinds: Sequence[tuple[str, int]],
    with_kind: bool,
    chunk: int,
) -> Iterator[list[Any]]:
    """active_chunks yields the active rows of log_id with idx in [start, end) whose
    (kind, hash width) is one of kinds, as (idx, hash) or, with_kind, (idx, hash, kind),
    in idx order and chunk rows at a time. It streams, so loading a million-row bank
    never holds more than one chunk of rows."""
    kind_sql = " OR ".join("(kind = ? AND length(hash) = ?)" for _ in kinds) or "0"
    kind_params = [value for name, width in kinds for value in (name, width)]
    cursor = conn.execute(
        f"SELECT idx, hash{', kind' if with_kind else ''} FROM bank WHERE log_id = ?"
        f" AND {_ACTIVE} AND idx >= ? AND idx < ? AND ({kind_sql}) ORDER BY idx",
        (log_id, start, end, *kind_params),
    )
    while rows := cursor.fetchmany(chunk):
        yield rows


def entry_indices(conn: sqlite3.Connection, log_id: int) -> list[int]:
    """entry_indices returns the index of every bank row of log_id, whatever its status
    (what dropping the log from the match index removes)."""
    rows = conn.execute("SELECT idx FROM bank WHERE log_id = ?", (log_id,)).fetchall()
    return [int(r[0]) for r in rows]


def retracted_since(conn: sqlite3.Connection, log_id: int, first: int) -> list[int]:
    """retracted_since returns the bank rows of log_id that a retraction at index first
    or later retracted (what a catch-up from log size first must remove)."""
    rows = conn.execute(
        "SELECT idx FROM bank WHERE log_id = ? AND retracted_by >= ?", (log_id, first)
    ).fetchall()
    return [int(r[0]) for r in rows]


@dataclass(frozen=True)
class ActiveEntry:
    """What a match shows of an active bank row: its hash, labels (comma-joined) and
    the time it was added."""

    hash: bytes
    labels: str
    added: int | None


def active_entry(conn: sqlite3.Connection, log_id: int, idx: int, kind: str) -> ActiveEntry | None:
    """active_entry returns bank row idx of log_id if it is an active row of kind with its
    hash present, else None (a match is shown only while its row is active)."""
    row = conn.execute(
        f"SELECT hash, labels, added FROM bank WHERE log_id = ? AND idx = ?"
        f" AND kind = ? AND {_ACTIVE}",
        (log_id, idx, kind),
    ).fetchone()
    if row is None:
        return None
    return ActiveEntry(bytes(row[0]), row[1], None if row[2] is None else int(row[2]))


def verdict_counts(conn: sqlite3.Connection, origin: str, idx: int) -> dict[str, int]:
    """verdict_counts returns, per verdict, how many feedback records the node holds (in
    any log) about entry idx of origin; verdicts no record gave are left out."""
    return {
        str(verdict): int(n)
        for verdict, n in conn.execute(
            "SELECT verdict, count(*) FROM feedback WHERE target_origin = ? AND target_idx = ?"
            " GROUP BY verdict",
            (origin, idx),
        )
    }


# -- the own log's appends (node/services/ownlog.py) -------------------------------------


def add_own_hashes(
    conn: sqlite3.Connection, log_id: int, first: int, rows: Sequence[tuple[object, ...]]
) -> None:
    """add_own_hashes inserts the bank rows of hash additions appended at first, first+1,
    ...; each row is (kind, hash, quality, labels, added, salt)."""
    conn.executemany(
        "INSERT INTO bank (log_id, idx, kind, hash, quality, labels, added, salt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(log_id, first + n, *row) for n, row in enumerate(rows)],
    )


def retract_own(
    conn: sqlite3.Connection, log_id: int, rows: Sequence[tuple[int, str, int, int]]
) -> None:
    """retract_own marks bank rows retracted and erases their hash and salt; each row is
    (retraction time, reason, retracting entry's index, retracted index)."""
    conn.executemany(
        "UPDATE bank SET status = 'retracted', hash = NULL, salt = NULL,"
        " retracted_at = ?, retract_reason = ?, retracted_by = ?"
        " WHERE log_id = ? AND idx = ?",
        [(t, reason, by, log_id, i) for t, reason, by, i in rows],
    )


def add_own_feedback(
    conn: sqlite3.Connection, log_id: int, first: int, rows: Sequence[tuple[object, ...]]
) -> None:
    """add_own_feedback inserts the feedback rows of records appended at first, first+1,
    ...; each row is (target origin, target index, verdict, tags comma-joined, time)."""
    conn.executemany(
        "INSERT INTO feedback (log_id, idx, target_origin, target_idx, verdict, tags, time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(log_id, first + n, *row) for n, row in enumerate(rows)],
    )


# -- re-deriving the bank from the log (node/services/verify.py) -------------------------


def bank_rows(conn: sqlite3.Connection, log_id: int) -> Iterator[tuple[Any, ...]]:
    """bank_rows returns the bank rows of log_id in idx order, each as stored: (idx, kind,
    hash, quality, labels, added, salt, status). The query runs now and the rows stream
    as they are read (plain tuples, straight from the cursor: verify walks every row of
    a million-entry log), so a whole log's bank is never held at once."""
    cursor = conn.execute(
        "SELECT idx, kind, hash, quality, labels, added, salt, status FROM bank"
        " WHERE log_id = ? ORDER BY idx",
        (log_id,),
    )
    return cursor


def feedback_rows(conn: sqlite3.Connection, log_id: int) -> Iterator[tuple[Any, ...]]:
    """feedback_rows returns the feedback rows of log_id in idx order, each as stored:
    (idx, target_origin, target_idx, verdict, tags, time). The query runs now and the
    rows stream as they are read."""
    cursor = conn.execute(
        "SELECT idx, target_origin, target_idx, verdict, tags, time FROM feedback"
        " WHERE log_id = ? ORDER BY idx",
        (log_id,),
    )
    return cursor


def retraction_states(
    conn: sqlite3.Connection, log_id: int
) -> dict[int, tuple[str, int | None, int | None, str | None]]:
    """retraction_states returns, by idx, (status, retracted_by, retracted_at,
    retract_reason) of every bank row of log_id that is not plainly active (a status
    other than active, or any retraction column set)."""
    return {
        int(r[0]): (str(r[1]), r[2], r[3], r[4])
        for r in conn.execute(
            "SELECT idx, status, retracted_by, retracted_at, retract_reason FROM bank"
            " WHERE log_id = ? AND (status != 'active' OR retracted_by IS NOT NULL"
            " OR retracted_at IS NOT NULL OR retract_reason IS NOT NULL)",
            (log_id,),
        )
    }


# -- listings for people (hashfed log show, the demo) ------------------------------------


def rows_between(
    conn: sqlite3.Connection, log_id: int, start: int, end: int
) -> dict[int, tuple[Any, ...]]:
    """rows_between returns, by idx, (kind, hash, quality, labels, status) of the bank
    rows of log_id with idx in [start, end)."""
    return {
        int(r[0]): tuple(r[1:])
        for r in conn.execute(
            "SELECT idx, kind, hash, quality, labels, status FROM bank"
            " WHERE log_id = ? AND idx >= ? AND idx < ?",
            (log_id, start, end),
        )
    }


def origin_bank(conn: sqlite3.Connection, origin: str) -> list[tuple[int, str, str, str]]:
    """origin_bank returns (idx, kind, hash in upper-case hex, status) of every bank row
    of origin's log, in idx order (empty if the node holds no such log)."""
    rows = conn.execute(
        "SELECT b.idx, b.kind, hex(b.hash), b.status FROM bank b JOIN logs l"
        " ON l.id = b.log_id WHERE l.origin = ? ORDER BY b.idx",
        (origin,),
    ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]
