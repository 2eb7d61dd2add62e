"""Witnessing state: the logs this node witnesses, what it cosigned, what it caught.

    witnessed         per log this node witnesses (C2SP tlog-witness), the latest
                      checkpoint it cosigned (size 0 and an empty note before the first)
    witness_evidence  proof that a witnessed log signed inconsistent checkpoints
    witness_push      on a publisher, the size each of its witnesses last cosigned

Also here: the statements witnessing runs on other tables (storing the own log's
cosigned checkpoint, halting a followed origin on evidence, listing the sync
evidence beside the witness evidence).

Every function takes a connection; callers that change several rows wrap the
calls in :func:`hashfed.node.store.db.transaction`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class WitnessState:
    """The latest checkpoint this node cosigned for one origin."""

    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class WitnessedLog:
    """One log this node witnesses, as ``hashfed witness list`` shows it."""

    origin: str
    size: int
    updated: int
    vkey: str


@dataclass(frozen=True)
class EvidenceRow:
    """One piece of evidence the node holds, from syncing or from witnessing."""

    id: int
    origin: str
    found: int
    detail: str
    text: str


def witnessed_vkey(conn: sqlite3.Connection, origin: str) -> str | None:
    """Returns the verifier key of origin if this node witnesses it, else None."""
    row = conn.execute("SELECT vkey FROM witnessed WHERE origin = ?", (origin,)).fetchone()
    return None if row is None else str(row[0])


def witness_state(conn: sqlite3.Connection, origin: str) -> WitnessState | None:
    """Returns what this node last cosigned for origin, or None if it does not witness it."""
    row = conn.execute(
        "SELECT size, root, note FROM witnessed WHERE origin = ?", (origin,)
    ).fetchone()
    return None if row is None else WitnessState(*row)


def advance_witness(
    conn: sqlite3.Connection, origin: str, size: int, root: bytes, note: str, updated: int
) -> None:
    """Records note (of size and root) as the latest checkpoint cosigned for origin."""
    conn.execute(
        "UPDATE witnessed SET size = ?, root = ?, note = ?, updated = ? WHERE origin = ?",
        (size, root, note, updated, origin),
    )


def add_witnessed(conn: sqlite3.Connection, origin: str, vkey: str) -> None:
    """Starts witnessing origin, whose log key is vkey, from the empty tree."""
    conn.execute(
        "INSERT INTO witnessed (origin, vkey, size, root, note, updated)"
        " VALUES (?, ?, 0, x'', '', 0)",
        (origin, vkey),
    )


def list_witnessed(conn: sqlite3.Connection) -> list[WitnessedLog]:
    """Returns every log this node witnesses, by origin."""
    return [
        WitnessedLog(*row)
        for row in conn.execute("SELECT origin, size, updated, vkey FROM witnessed ORDER BY origin")
    ]


def remove_witnessed(conn: sqlite3.Connection, origin: str) -> bool:
    """Stops witnessing origin (its evidence is kept); reports whether it was witnessed."""
    return bool(conn.execute("DELETE FROM witnessed WHERE origin = ?", (origin,)).rowcount)


def record_witness_evidence(
    conn: sqlite3.Connection, origin: str, found: int, detail: str, text: str
) -> bool:
    """Keeps evidence text against origin unless the same text is already kept (a log
    that retries its push must not pile up copies); reports whether it was new."""
    if conn.execute(
        "SELECT 1 FROM witness_evidence WHERE origin = ? AND text = ?", (origin, text)
    ).fetchone():
        return False
    conn.execute(
        "INSERT INTO witness_evidence (origin, found, detail, text) VALUES (?, ?, ?, ?)",
        (origin, found, detail, text),
    )
    return True


def halt_followed_log(conn: sqlite3.Connection, origin: str) -> None:
    """Halts the log of origin if this node follows it: nothing more of it is applied."""
    conn.execute("UPDATE logs SET halted = 1 WHERE origin = ? AND own = 0", (origin,))


def list_sync_evidence(conn: sqlite3.Connection) -> list[EvidenceRow]:
    """Returns the evidence sync caught (table evidence), oldest first."""
    return [
        EvidenceRow(*row)
        for row in conn.execute(
            "SELECT e.id, l.origin, e.found, e.detail, e.text FROM evidence e"
            " JOIN logs l ON l.id = e.log_id ORDER BY e.id"
        )
    ]


def list_witness_evidence(conn: sqlite3.Connection) -> list[EvidenceRow]:
    """Returns the evidence witnessing caught, oldest first."""
    return [
        EvidenceRow(*row)
        for row in conn.execute(
            "SELECT id, origin, found, detail, text FROM witness_evidence ORDER BY id"
        )
    ]


def pushed_size(conn: sqlite3.Connection, name: str) -> int:
    """Returns the size the witness called name last cosigned of the own log (0 if none)."""
    row = conn.execute("SELECT size FROM witness_push WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def set_pushed_size(conn: sqlite3.Connection, name: str, size: int) -> None:
    """Records that the witness called name holds the own log at size."""
    conn.execute(
        "INSERT INTO witness_push (name, size) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET size = excluded.size",
        (name, size),
    )


def pushed_sizes(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Returns (witness name, size it last cosigned) for every witness pushed to."""
    return [
        (str(name), int(size)) for name, size in conn.execute("SELECT name, size FROM witness_push")
    ]


def store_cosigned_checkpoint(conn: sqlite3.Connection, log_id: int, note: str) -> None:
    """Replaces the latest checkpoint of a log by note, the same checkpoint with the
    cosignatures its witnesses returned."""
    conn.execute("UPDATE logs SET checkpoint = ? WHERE id = ?", (note, log_id))
