"""The SQLite implementation of hashfed.sync's storage interface (sync/store.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hashfed.node.store import logstore
from hashfed.node.store.db import transaction
from hashfed.protocol.evidence import Evidence
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH
from hashfed.sync.errors import Halted, NotFollowed, SyncError
from hashfed.sync.store import BankAddition, LogState, Staged

if TYPE_CHECKING:
    import sqlite_utils

APPLY_CACHE_KIB = -128 * 1024
"""SQLite's page cache during an apply transaction (negative: KiB, as PRAGMA cache_size takes)."""


def _now() -> int:
    return int(time.time())


def staging_path(database: Path) -> Path:
    """Returns the staging database beside the node database (hashfed.db -> hashfed.staging.db)."""
    return database.with_suffix(".staging.db")


def _open_staging(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Opens (creating it) the staging database of the node database on conn.

    Staged bundles live in their own file so that staging one commits while the
    apply transaction holds the node database's write lock (sync applies bundles
    as they arrive, in one transaction that stays open for the whole sync).
    """
    main = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    target = ":memory:"
    if main:
        path = staging_path(Path(main))
        # Staged content holds hashes: as private as the node database (0600).
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        target = str(path)
    staging = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
    staging.execute("PRAGMA journal_mode=WAL")
    # Staged bundles are unverified and fetched again if lost, so their commits
    # need not wait for an fsync each; WAL with synchronous=NORMAL stays consistent.
    staging.execute("PRAGMA synchronous=NORMAL")
    # Erased hashes must not linger in free pages (specs/protocol.md, erasure).
    staging.execute("PRAGMA secure_delete=ON")
    staging.execute("PRAGMA busy_timeout=10000")
    staging.execute(
        "CREATE TABLE IF NOT EXISTS staged (log_id INTEGER NOT NULL, idx INTEGER NOT NULL,"
        " count INTEGER NOT NULL, entries BLOB NOT NULL, content BLOB NOT NULL,"
        " PRIMARY KEY (log_id, idx))"
    )
    return staging


class SqliteSyncStore:
    """SyncStore over the node database; one instance per connection."""

    def __init__(
        self, db: sqlite_utils.Database, retention: int = 0, clock: Callable[[], int] = _now
    ) -> None:
        self._db = db
        self._conn = db.conn
        self._retention = retention
        self._clock = clock
        self._staging_conn: sqlite3.Connection | None = None

    @property
    def _staging(self) -> sqlite3.Connection:
        if self._staging_conn is None:
            self._staging_conn = _open_staging(self._conn)
        return self._staging_conn

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
        # One statement in autocommit mode: its own transaction, all or nothing.
        self._staging.execute(
            "INSERT OR REPLACE INTO staged (log_id, idx, count, entries, content)"
            " VALUES (?, ?, ?, ?, ?)",
            (self._log(origin).id, bundle.index, bundle.count, bundle.entries, bundle.content),
        )

    def staged_counts(self, origin: str) -> dict[int, int]:
        log = self._log(origin)
        # Bundles the log already holds in full are left over from an apply that
        # committed just before a crash could clear them: drop them.
        self._staging.execute(
            "DELETE FROM staged WHERE log_id = ? AND idx * ? + count <= ?",
            (log.id, ENTRY_BUNDLE_WIDTH, log.size),
        )
        rows = self._staging.execute("SELECT idx, count FROM staged WHERE log_id = ?", (log.id,))
        return {int(i): int(c) for i, c in rows}

    def read_staged(self, origin: str, index: int) -> Staged | None:
        row = self._staging.execute(
            "SELECT count, entries, content FROM staged WHERE log_id = ? AND idx = ?",
            (self._log(origin).id, index),
        ).fetchone()
        return None if row is None else Staged(index, int(row[0]), bytes(row[1]), bytes(row[2]))

    def clear_staged(self, origin: str) -> None:
        staging, log_id = self._staging, self._log(origin).id
        (others,) = staging.execute(
            "SELECT count(*) FROM staged WHERE log_id != ?", (log_id,)
        ).fetchone()
        main = next(r[2] for r in staging.execute("PRAGMA database_list") if r[1] == "main")
        if others or not main:
            staging.execute("DELETE FROM staged WHERE log_id = ?", (log_id,))
            # Staged content may hold hashes retracted since: keep no copy in the WAL.
            staging.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        # Nothing else is staged: drop the whole file rather than delete (and, with
        # secure_delete, overwrite) hundreds of MB of rows after a long catch-up.
        staging.close()
        self._staging_conn = None
        for suffix in ("", "-wal", "-shm"):
            Path(main + suffix).unlink(missing_ok=True)

    @contextmanager
    def apply(self, origin: str, size: int, root: bytes) -> Iterator[_ApplyTx]:
        log = self._log(origin)
        # A catch-up writes hundreds of MB in this one transaction: a larger page
        # cache (128 MiB, bounded whatever the log size) spills fewer dirty pages to
        # the WAL mid-way: measured 10% faster than 64 MiB on a 1M catch-up.
        (cache,) = self._conn.execute("PRAGMA cache_size").fetchone()
        self._conn.execute(f"PRAGMA cache_size={min(int(cache), APPLY_CACHE_KIB)}")
        try:
            with transaction(self._db) as conn:
                # Re-read under the write lock: another sync (the CLI beside 'serve')
                # may have moved the log, or a witness halted the origin, since the
                # caller read its state. Applying then would roll the log back.
                now = conn.execute(
                    "SELECT size, root, halted FROM logs WHERE id = ?", (log.id,)
                ).fetchone()
                if now[2]:
                    raise Halted(f"{origin} was halted by evidence of equivocation meanwhile")
                if (now[0], bytes(now[1])) != (size, root):
                    raise SyncError(
                        f"{origin} changed while syncing (another sync applied it); sync again"
                    )
                tx = _ApplyTx(conn, log.id, self._retention, self._clock())
                yield tx
        finally:
            self._conn.execute(f"PRAGMA cache_size={int(cache)}")
        if tx.erased:
            # Retracted hashes were erased: move them out of the WAL file too.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if tx.cleared:
            # After the commit: staged bundles are only ever dropped once applied
            # (a crash in between leaves them, and staged_counts drops them then).
            self.clear_staged(origin)

    def refresh_checkpoint(self, origin: str, size: int, root: bytes, note: str) -> None:
        with transaction(self._db) as conn:
            log = self._log(origin)
            if (log.size, log.root) == (size, root):
                logstore.record_checkpoint(conn, log.id, size, root, note)

    def content_missing(self, origin: str, limit: int) -> list[int]:
        rows = self._conn.execute(
            "SELECT b.idx FROM bank b JOIN flags f ON f.log_id = b.log_id AND f.idx = b.idx"
            " WHERE b.log_id = ? AND b.status = 'active' AND b.hash IS NULL"
            " AND f.reason LIKE 'content unavailable%' ORDER BY b.idx LIMIT ?",
            (self._log(origin).id, limit),
        )
        return [int(r[0]) for r in rows]

    def fill_content(self, origin: str, rows: list[BankAddition]) -> None:
        with transaction(self._db) as conn:
            log_id = self._log(origin).id
            for index, kind, digest, quality, labels, added, salt, status in rows:
                filled = conn.execute(
                    "UPDATE bank SET kind = ?, hash = ?, quality = ?, labels = ?, added = ?,"
                    " salt = ?, status = ? WHERE log_id = ? AND idx = ? AND status = 'active'"
                    " AND hash IS NULL",
                    (kind, digest, quality, labels, added, salt, status, log_id, index),
                ).rowcount
                if filled and status == "active":
                    conn.execute("DELETE FROM flags WHERE log_id = ? AND idx = ?", (log_id, index))
                elif filled:
                    conn.execute(
                        "UPDATE flags SET reason = ? WHERE log_id = ? AND idx = ?",
                        ("not applied: below this node's policy", log_id, index),
                    )

    def record_evidence(self, origin: str, evidence: Evidence, detail: str) -> None:
        with transaction(self._db) as conn:
            log_id = self._log(origin).id
            conn.execute(
                "INSERT INTO evidence (log_id, found, detail, text) VALUES (?, ?, ?, ?)",
                (log_id, self._clock(), detail, evidence.format()),
            )
            conn.execute("UPDATE logs SET halted = 1 WHERE id = ?", (log_id,))
        logging.getLogger("hashfed.sync").error(
            "evidence recorded against %s: %s",
            origin,
            detail,
            extra={"event": "evidence", "origin": origin, "detail": detail},
        )
        # A halted origin is never applied again: drop what was fetched of it.
        self.clear_staged(origin)

    def prune(self) -> None:
        """Erases what the node must not keep: staged data of logs it no longer follows
        (or that are halted), and retracted hashes whose retention period has passed
        (checked every round, not only when a log grows). Truncates the WAL after."""
        erased = 0
        now = self._clock()
        with transaction(self._db) as conn:
            if self._retention:
                erased = conn.execute(
                    "UPDATE bank SET hash = NULL, salt = NULL WHERE status = 'retracted'"
                    " AND hash IS NOT NULL AND retracted_at < ?",
                    (now - self._retention,),
                ).rowcount
            stale = [
                origin
                for (origin,) in conn.execute(
                    "SELECT origin FROM logs WHERE own = 0 AND (halted = 1 OR origin NOT IN"
                    " (SELECT origin FROM trust))"
                )
            ]
        for origin in stale:
            if self.staged_counts(origin):
                self.clear_staged(origin)
        if erased:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def record_sync(
        self, origin: str, peer: str, error: str | None, offered: int | None = None
    ) -> None:
        now = self._clock()
        with transaction(self._db) as conn:
            log_id = self._log(origin).id
            conn.execute(
                "INSERT INTO sync_state (log_id, last_attempt, last_peer, last_error, failures,"
                " last_success, peer_size) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (log_id) DO UPDATE SET last_attempt = excluded.last_attempt,"
                " last_peer = excluded.last_peer, last_error = excluded.last_error,"
                " failures = CASE WHEN excluded.last_error IS NULL THEN 0"
                " ELSE sync_state.failures + 1 END,"
                " last_success = COALESCE(excluded.last_success, sync_state.last_success),"
                " peer_size = max(coalesce(sync_state.peer_size, 0),"
                " coalesce(excluded.peer_size, 0))",
                (
                    log_id,
                    now,
                    peer,
                    error,
                    0 if error is None else 1,
                    now if error is None else None,
                    offered,
                ),
            )


class _ApplyTx:
    """One ApplyTx: every method writes inside the open transaction."""

    def __init__(self, conn: sqlite3.Connection, log_id: int, retention: int, now: int) -> None:
        self._conn, self._log_id = conn, log_id
        self._retention, self._now = retention, now
        self.cleared = False  # clear_staged() was called: clear them once committed
        self.erased = False  # retracted content was erased in this transaction

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
                f" VALUES ({int(self._log_id)}, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def retract(self, rows: list[tuple[int, int, str, int]]) -> None:
        if not rows:
            return
        erase = "hash = NULL, salt = NULL," if self._retention == 0 else ""
        self.erased = self.erased or self._retention == 0
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
        self.cleared = True
        # Bundles staged in the node database by hashfed before the staging file.
        self._conn.execute("DELETE FROM staged WHERE log_id = ?", (self._log_id,))
