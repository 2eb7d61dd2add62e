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
