"""The SQLite implementation of hashfed.sync's storage interface (sync/store.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlite_utils
from hashfed.node import logstore
from hashfed.node.db import transaction
from hashfed.protocol.evidence import Evidence
from hashfed.sync.errors import NotFollowed
from hashfed.sync.store import BankAddition, LogState, Staged


def _now() -> int:
    return int(time.time())


class SqliteSyncStore:
    """SyncStore over the node database; one instance per connection."""

    def __init__(
        self, db: sqlite_utils.Database, retention: int = 0, clock: Callable[[], int] = _now
    ) -> None:
        self._db = db
        self._conn = db.conn
        self._retention = retention
        self._clock = clock

    def _log(self, origin: str) -> logstore.LogRow:
        log = logstore.get_log(self._conn, origin)
        if log is None or log.own:
            raise NotFollowed(f"this node does not follow {origin}")
        return log

    def state(self, origin: str) -> LogState | None:
        log = logstore.get_log(self._conn, origin)
        if log is None or log.own:
            return None
        halted = self._conn.execute("SELECT halted FROM logs WHERE id = ?", (log.id,)).fetchone()
        return LogState(origin, log.vkey, log.size, log.root, log.checkpoint, bool(halted[0]))

    def read_tile(self, origin: str, level: int, index: int, width: int) -> bytes:
        return logstore.read_tile(self._conn, self._log(origin).id, level, index, width)

    def read_bundle(self, origin: str, index: int) -> tuple[int, bytes] | None:
        return logstore.read_bundle(self._conn, self._log(origin).id, index)

    def stage(self, origin: str, bundle: Staged) -> None:
        # Staged bundles are unverified and fetched again if lost, so their commits
        # need not wait for an fsync each: in WAL mode synchronous=NORMAL keeps the
        # database consistent, and the apply's FULL commit makes them durable too.
        (previous,) = self._conn.execute("PRAGMA synchronous").fetchone()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self._db) as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO staged (log_id, idx, count, entries, content)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        self._log(origin).id,
                        bundle.index,
                        bundle.count,
                        bundle.entries,
                        bundle.content,
                    ),
                )
        finally:
            self._conn.execute(f"PRAGMA synchronous={int(previous)}")

    def staged_counts(self, origin: str) -> dict[int, int]:
        rows = self._conn.execute(
            "SELECT idx, count FROM staged WHERE log_id = ?", (self._log(origin).id,)
        )
        return {int(i): int(c) for i, c in rows}

    def read_staged(self, origin: str, index: int) -> Staged | None:
        row = self._conn.execute(
            "SELECT count, entries, content FROM staged WHERE log_id = ? AND idx = ?",
            (self._log(origin).id, index),
        ).fetchone()
        return None if row is None else Staged(index, int(row[0]), bytes(row[1]), bytes(row[2]))

    def clear_staged(self, origin: str) -> None:
        with transaction(self._db) as conn:
            conn.execute("DELETE FROM staged WHERE log_id = ?", (self._log(origin).id,))

    @contextmanager
    def apply(self, origin: str) -> Iterator[_ApplyTx]:
        log = self._log(origin)
        with transaction(self._db) as conn:
            yield _ApplyTx(conn, log.id, self._retention, self._clock())

    def refresh_checkpoint(self, origin: str, note: str) -> None:
        with transaction(self._db) as conn:
            log = self._log(origin)
            logstore.record_checkpoint(conn, log.id, log.size, log.root, note)

    def record_evidence(self, origin: str, evidence: Evidence, detail: str) -> None:
        with transaction(self._db) as conn:
            log_id = self._log(origin).id
            conn.execute(
                "INSERT INTO evidence (log_id, found, detail, text) VALUES (?, ?, ?, ?)",
                (log_id, self._clock(), detail, evidence.format()),
            )
            conn.execute("UPDATE logs SET halted = 1 WHERE id = ?", (log_id,))

    def record_sync(self, origin: str, peer: str, error: str | None) -> None:
        now = self._clock()
        with transaction(self._db) as conn:
            log_id = self._log(origin).id
            conn.execute(
                "INSERT INTO sync_state (log_id, last_attempt, last_peer, last_error, failures,"
                " last_success) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (log_id) DO UPDATE SET last_attempt = excluded.last_attempt,"
                " last_peer = excluded.last_peer, last_error = excluded.last_error,"
                " failures = CASE WHEN excluded.last_error IS NULL THEN 0"
                " ELSE sync_state.failures + 1 END,"
                " last_success = COALESCE(excluded.last_success, sync_state.last_success)",
                (
                    log_id,
                    now,
                    peer,
                    error,
                    0 if error is None else 1,
                    now if error is None else None,
                ),
            )


class _ApplyTx:
    """One ApplyTx: every method writes inside the open transaction."""

    def __init__(self, conn: sqlite3.Connection, log_id: int, retention: int, now: int) -> None:
        self._conn, self._log_id = conn, log_id
        self._retention, self._now = retention, now

    def addition_status(self, index: int) -> str | None:
        row = self._conn.execute(
            "SELECT status FROM bank WHERE log_id = ? AND idx = ?", (self._log_id, index)
        ).fetchone()
        return None if row is None else str(row[0])

    def write_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None:
        logstore.write_tiles(self._conn, self._log_id, tiles)

    def write_bundle(self, index: int, count: int, data: bytes) -> None:
        logstore.write_bundles(self._conn, self._log_id, {index: (count, data)})

    def add_hashes(self, rows: list[BankAddition]) -> None:
        if rows:
            self._conn.executemany(
                "INSERT INTO bank (log_id, idx, kind, hash, quality, labels, added, salt, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        self._log_id,
                        r.index,
                        r.kind,
                        r.hash,
                        r.quality,
                        r.labels,
                        r.added,
                        r.salt,
                        r.status,
                    )
                    for r in rows
                ],
            )

    def retract(self, rows: list[tuple[int, int, str, int]]) -> None:
        if not rows:
            return
        erase = "hash = NULL, salt = NULL," if self._retention == 0 else ""
        self._conn.executemany(
            f"UPDATE bank SET status = 'retracted', {erase} retracted_by = ?,"
            " retract_reason = ?, retracted_at = ? WHERE log_id = ? AND idx = ?",
            [(by, reason, when, self._log_id, index) for index, by, reason, when in rows],
        )
        # Content erased at the source is explained once the retraction arrives.
        self._conn.executemany(
            "DELETE FROM flags WHERE log_id = ? AND idx = ? AND reason LIKE 'content unavailable%'",
            [(self._log_id, index) for index, *_ in rows],
        )

    def add_feedback(self, rows: list[tuple[int, str, int, str, str, int]]) -> None:
        if rows:
            self._conn.executemany(
                "INSERT INTO feedback (log_id, idx, target_origin, target_idx, verdict, tags, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(self._log_id, *row) for row in rows],
            )

    def flag(self, rows: list[tuple[int, str]]) -> None:
        if rows:
            self._conn.executemany(
                "INSERT OR REPLACE INTO flags (log_id, idx, reason) VALUES (?, ?, ?)",
                [(self._log_id, index, reason) for index, reason in rows],
            )

    def set_checkpoint(self, size: int, root: bytes, note: str) -> None:
        logstore.record_checkpoint(self._conn, self._log_id, size, root, note)
        if self._retention:
            # Retracted hashes kept for the retention period are erased once it ends.
            self._conn.execute(
                "UPDATE bank SET hash = NULL, salt = NULL WHERE log_id = ? AND"
                " status = 'retracted' AND hash IS NOT NULL AND retracted_at < ?",
                (self._log_id, self._now - self._retention),
            )

    def clear_staged(self) -> None:
        self._conn.execute("DELETE FROM staged WHERE log_id = ?", (self._log_id,))
