"""The bank: the hash additions of every applied log, one row per (log, index).

Every SQL statement that reads or writes the ``bank`` table lives here.
"""

from __future__ import annotations

import sqlite3


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
