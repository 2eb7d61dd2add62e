"""Backups of the node database, and the case desk's catch-up after a recovery.

:func:`copy_database` takes a consistent copy of a live database with SQLite's
online backup API; :func:`copied_log` reads a log back out of such a copy. The
case functions bring the case desk in line with entries a recovery fetched
back from a mirror (specs/recovery.md): they are the only statements recovery
runs on the ``cases`` and ``case_hashes`` tables.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from hashfed.node.store import logstore


def copy_database(source: sqlite3.Connection, target: Path) -> None:
    """Copies a live database with SQLite's online backup API (a consistent snapshot)
    into target, a new file only its owner can read."""
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)
        dest.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dest.close()


def copied_log(path: Path, origin: str) -> logstore.LogRow | None:
    """Returns the log of origin in the database copy at path, or None if it holds none."""
    copy = sqlite3.connect(path)
    try:
        return logstore.get_log(copy, origin)
    finally:
        copy.close()


def mark_published_cases(conn: sqlite3.Connection, log_id: int, start: int) -> list[str]:
    """Marks published the pending cases' hashes found among the log's entries from start
    on (never published twice), and activates the cases all of whose hashes are now
    published; returns the ids of the cases found, one per hash found (run it in a
    transaction)."""
    rows = conn.execute(
        "SELECT h.case_id, h.position, b.idx FROM case_hashes h"
        " JOIN cases c ON c.id = h.case_id AND c.state = 'pending'"
        " JOIN bank b ON b.log_id = ? AND b.idx >= ? AND b.kind = h.kind AND b.hash = h.hash"
        " WHERE h.log_index IS NULL AND h.hash IS NOT NULL",
        (log_id, start),
    ).fetchall()
    conn.executemany(
        "UPDATE case_hashes SET log_index = ?, hash = NULL WHERE case_id = ? AND position = ?",
        [(idx, case_id, position) for case_id, position, idx in rows],
    )
    conn.executemany(
        "UPDATE cases SET state = 'active' WHERE id = ? AND state = 'pending' AND NOT"
        " EXISTS (SELECT 1 FROM case_hashes WHERE case_id = ? AND log_index IS NULL)",
        [(case_id, case_id) for case_id in {r[0] for r in rows}],
    )
    return [str(r[0]) for r in rows]


def published_case_indices(conn: sqlite3.Connection) -> set[int]:
    """Returns the log indices of every case hash the case desk knows to be published."""
    return {
        int(i)
        for (i,) in conn.execute("SELECT log_index FROM case_hashes WHERE log_index IS NOT NULL")
    }
