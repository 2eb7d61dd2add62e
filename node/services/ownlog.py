"""The node's own log: append records in atomic batches, each ending in a signed checkpoint.

Every batch is one SQLite transaction that writes the new entry bundles, the
changed hash tiles, the bank rows and the new signed checkpoint together: a
crash at any moment leaves either the previous signed checkpoint with the bank
that agrees with it, or the new one with its bank.

A log must never fork. A publisher that restored an old backup and appended
would sign a checkpoint inconsistent with one partners already hold, and every
partner would halt on it. So after each commit the node writes the checkpoint it
signed to ``signed-head`` beside the database, and before it signs again it
checks that the database holds that checkpoint (same size, same root) or a
later one. If it does not, it refuses and says how to recover.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hashfed.node.errors import DatabaseError, ForkRefused, NodeError
from hashfed.node.store import bank as bankstore
from hashfed.node.store import logstore
from hashfed.node.store.db import transaction, truncate_wal
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from hashfed.protocol.errors import InvalidRecord
from hashfed.protocol.merkle import leaf_hashes
from hashfed.protocol.records import (
    MAX_RETRACTION_INDICES,
    SALT_SIZE,
    ContentEncoder,
    Feedback,
    Reason,
    Retraction,
    Verdict,
    check_labels,
    check_origin,
    content_commitment,
    decode_record,
    encode_addition,
    encode_record,
)
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TreeBuilder, decode_bundle, encode_bundle
from hashfed.protocol.validation import Policy, check_feedback, check_hash, check_retraction
from hashfed.signing.keys import Ed25519Signer
from hashfed.signing.note import VerifierList

if TYPE_CHECKING:
    import sqlite_utils

Clock = Callable[[], int]

Then = Callable[[sqlite3.Connection, "AppendResult"], None]
"""Runs inside an append's transaction after the checkpoint is recorded (the case desk's
bookkeeping); an exception rolls the whole append back."""


def system_clock() -> int:
    """Returns whole seconds since the Unix epoch, UTC."""
    return int(time.time())


@dataclass(frozen=True)
class NewHash:
    """A hash to publish: what a CSV or JSON line of ``hashfed publish`` holds."""

    kind: str
    """A registered kind's name (hashfed.protocol.kinds)."""
    hash: bytes
    quality: int | None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppendResult:
    """Where a batch landed and the checkpoint signed after it."""

    first_index: int
    count: int
    checkpoint: Checkpoint
    note: str


@dataclass
class _Batch:
    """The entries of one append and the bank changes that go with them."""

    entries: list[bytes] = field(default_factory=list)
    bank_rows: list[tuple[object, ...]] = field(default_factory=list)
    retracted: list[tuple[int, str, int, int]] = field(default_factory=list)
    feedback_rows: list[tuple[object, ...]] = field(default_factory=list)


class _BankView:
    """AdditionStatus over the bank, plus what this batch already retracted."""

    def __init__(self, conn: sqlite3.Connection, log_id: int) -> None:
        self._conn, self._log_id = conn, log_id
        self.retracting: set[int] = set()

    def addition_status(self, index: int) -> str | None:
        if index in self.retracting:
            return "retracted"
        return bankstore.entry_status(self._conn, self._log_id, index)


class OwnLog:
    """Appends to this node's own log. One instance per process and database."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        signer: Ed25519Signer,
        head_file: Path,
        policy: Policy | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._db = db
        self._signer = signer
        self._head_file = head_file
        self.policy = policy or Policy()
        self._clock = clock
        self.origin = signer.name
        # The right edge of the tree and the last partial bundle, kept between
        # batches so that appending does not re-read them; dropped on any failure.
        self._builder: TreeBuilder | None = None
        self._tail: list[bytes] = []

    # -- public API ---------------------------------------------------------------

    def publish(
        self,
        hashes: Iterable[NewHash],
        *,
        salts: Sequence[bytes] | None = None,
        then: Then | None = None,
    ) -> AppendResult:
        """Validates and appends hash additions, refusing the whole batch on any bad one."""
        hashes = list(hashes)
        if not hashes:
            raise InvalidRecord("nothing to publish: the batch is empty")
        now = self._clock()
        for n, item in enumerate(hashes):
            try:
                check_hash(item.kind, item.hash, item.quality, self.policy)
                check_labels(item.labels)
            except ValueError as exc:
                raise InvalidRecord(f"record {n + 1}: {exc}") from None
        if salts is None:
            pool = os.urandom(SALT_SIZE * len(hashes))
            salts = [pool[i : i + SALT_SIZE] for i in range(0, len(pool), SALT_SIZE)]
        encoders: dict[tuple[str, tuple[str, ...]], ContentEncoder] = {}
        contents = []
        for item, salt in zip(hashes, salts, strict=True):
            encoder = encoders.get((item.kind, item.labels))
            if encoder is None:
                encoder = encoders[(item.kind, item.labels)] = ContentEncoder(
                    item.kind, item.labels, now
                )
            contents.append(encoder.encode(item.hash, item.quality, salt))
        batch = _Batch()
        batch.entries = [encode_addition(content_commitment(c)) for c in contents]
        batch.bank_rows = [
            (str(item.kind), item.hash, item.quality, ",".join(item.labels), now, salt)
            for item, salt in zip(hashes, salts, strict=True)
        ]
        return self._append(batch, then=then)

    def retract(
        self,
        indices: Iterable[int],
        reason: Reason = Reason.WITHDRAWN,
        *,
        then: Then | None = None,
    ) -> AppendResult:
        """Appends retractions of earlier additions and erases their content."""
        wanted = sorted(set(indices))
        if not wanted:
            raise InvalidRecord("nothing to retract: no indices given")
        now = self._clock()
        records = [
            Retraction(now, reason, tuple(wanted[i : i + MAX_RETRACTION_INDICES]))
            for i in range(0, len(wanted), MAX_RETRACTION_INDICES)
        ]
        result = self._append(_Batch(), retractions=records, then=then)
        # Move the erased content out of the WAL file into the (secure-deleted) database.
        truncate_wal(self._db.conn)
        return result

    def feedback(
        self, origin: str, index: int, verdict: Verdict, tags: Sequence[str] = ()
    ) -> AppendResult:
        """Appends a feedback record about entry index of another log."""
        return self.feedback_many([(origin, index)], verdict, tags)

    def feedback_many(
        self,
        targets: Sequence[tuple[str, int]],
        verdict: Verdict,
        tags: Sequence[str] = (),
        then: Then | None = None,
    ) -> AppendResult:
        """Appends one feedback record per (origin, index) target, all in one batch:
        every record is checked before anything is written; then, if given, runs inside
        the append's transaction (raising there writes nothing)."""
        if not targets:
            raise InvalidRecord("no feedback to publish: no entries given")
        now = self._clock()
        batch = _Batch()
        for origin, index in targets:
            check_origin(origin)
            record = Feedback(now, origin, index, verdict, tuple(tags))
            check_feedback(record, self.origin)
            entry = encode_record(record)
            decode_record(entry)  # the same shape checks a receiver runs (tags, index range)
            batch.entries.append(entry)
            batch.feedback_rows.append((origin, index, verdict.value, ",".join(tags), now))
        return self._append(batch, then=then)

    # -- the append path ------------------------------------------------------------

    def _append(
        self, batch: _Batch, retractions: Sequence[Retraction] = (), then: Then | None = None
    ) -> AppendResult:
        with head_lock(self._head_file):
            try:
                with transaction(self._db) as conn:
                    result = self._append_in(conn, batch, retractions)
                    if then is not None:
                        then(conn, result)
            except BaseException:
                self._builder = None
                self._tail = []
                raise
            # After the commit: a crash here leaves signed-head one batch behind the
            # database, which _check_head accepts; it never runs ahead of it.
            write_signed_head(self._head_file, result.note)
        return result

    def _append_in(
        self, conn: sqlite3.Connection, batch: _Batch, retractions: Sequence[Retraction]
    ) -> AppendResult:
        log = self._own_log(conn)
        self._check_head(conn, log)
        builder = self._load_builder(conn, log)
        first = log.size
        beyond = [i for record in retractions for i in record.indices if i >= first]
        if beyond:
            noun = "entry" if first == 1 else "entries"
            raise InvalidRecord(f"entry {beyond[0]} does not exist: the log has {first} {noun}")
        if retractions:
            view = _BankView(conn, log.id)
            for record in retractions:
                check_retraction(record, first + len(batch.entries), view)
                own_index = first + len(batch.entries)
                batch.entries.append(encode_record(record))
                view.retracting.update(record.indices)
                batch.retracted += [
                    (record.time, record.reason.value, own_index, i) for i in record.indices
                ]
        builder.append(leaf_hashes(batch.entries))
        size = builder.size
        logstore.write_tiles(conn, log.id, builder.changed_tiles())
        logstore.write_bundles(conn, log.id, self._new_bundles(first, batch.entries))
        self._write_bank(conn, log.id, first, batch)
        checkpoint = Checkpoint(self.origin, size, builder.root())
        note = sign_checkpoint(checkpoint, self._signer)
        logstore.record_checkpoint(conn, log.id, size, checkpoint.root, note)
        return AppendResult(first, len(batch.entries), checkpoint, note)

    def _own_log(self, conn: sqlite3.Connection) -> logstore.LogRow:
        log = logstore.get_log(conn, self.origin)
        if log is None or not log.own:
            raise NodeError(f"this database holds no own log for {self.origin}; run 'hashfed init'")
        return log

    def _load_builder(self, conn: sqlite3.Connection, log: logstore.LogRow) -> TreeBuilder:
        if self._builder is not None and self._builder.size == log.size:
            return self._builder
        builder = TreeBuilder.resume(
            log.size,
            lambda level, index, width: logstore.read_tile(conn, log.id, level, index, width),
        )
        if builder.root() != log.root:
            raise DatabaseError(
                f"the stored tiles of {self.origin} do not give the root of its last signed "
                "checkpoint; run 'hashfed log verify' to find the damage"
            )
        tail = log.size % ENTRY_BUNDLE_WIDTH
        self._tail = []
        if tail:
            stored = logstore.read_bundle(conn, log.id, log.size // ENTRY_BUNDLE_WIDTH)
            if stored is None or stored[0] < tail:
                raise DatabaseError(f"the last entry bundle of {self.origin} is missing")
            self._tail = decode_bundle(stored[1], stored[0])[:tail]
        self._builder = builder
        return builder

    def _new_bundles(self, first: int, entries: list[bytes]) -> dict[int, tuple[int, bytes]]:
        bundles: dict[int, tuple[int, bytes]] = {}
        index = first // ENTRY_BUNDLE_WIDTH
        pending = self._tail + entries
        for start in range(0, len(pending), ENTRY_BUNDLE_WIDTH):
            chunk = pending[start : start + ENTRY_BUNDLE_WIDTH]
            bundles[index] = (len(chunk), encode_bundle(chunk))
            index += 1
        self._tail = (
            pending[len(pending) - (len(pending) % ENTRY_BUNDLE_WIDTH) :]
            if len(pending) % ENTRY_BUNDLE_WIDTH
            else []
        )
        return bundles

    @staticmethod
    def _write_bank(conn: sqlite3.Connection, log_id: int, first: int, batch: _Batch) -> None:
        if batch.bank_rows:
            bankstore.add_own_hashes(conn, log_id, first, batch.bank_rows)
        if batch.retracted:
            bankstore.retract_own(conn, log_id, batch.retracted)
        if batch.feedback_rows:
            bankstore.add_own_feedback(conn, log_id, first, batch.feedback_rows)

    # -- the signed head --------------------------------------------------------------

    def _check_head(self, conn: sqlite3.Connection, log: logstore.LogRow) -> None:
        check_not_pending(self._head_file)  # restored, and not yet recovered from a mirror
        if not self._head_file.exists():
            raise ForkRefused(
                f"{self._head_file} is missing, so this node cannot tell whether its database "
                "is the newest copy of its log. Restore the file from the node directory's "
                "backup; if you are certain this database is the newest copy, write its latest "
                "checkpoint there with 'hashfed log checkpoint > signed-head'"
            )
        text = self._head_file.read_text()
        head, _ = open_checkpoint(text, VerifierList(self._signer.verifier()), self.origin)
        if head.size > log.size or logstore.checkpoint_root(conn, log.id, head.size) != head.root:
            raise ForkRefused(
                f"this node already signed a checkpoint of size {head.size} (in {self._head_file}) "
                f"that the database (size {log.size}) does not contain: it looks restored from "
                "an older backup, and appending would fork the log and halt every partner. "
                "Restore the newest backup of the database, or re-sync this log from a partner "
                "that mirrors it; do not delete the signed-head file"
            )


@contextmanager
def head_lock(head_file: Path) -> Iterator[None]:
    """Holds the own log's append lock (an exclusive flock on ``signed-head.lock``) from
    an append's transaction to its signed-head write.

    Several writers may append to one own log: the case desk and the feedback desk
    inside 'hashfed serve', and 'hashfed publish' beside it. SQLite orders their
    commits, but not the signed-head writes that follow them; without this lock a
    slower writer could put an older head over a newer one, or two could share the
    temporary file."""
    fd = os.open(head_file.with_name(head_file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_signed_head(path: Path, note: str) -> None:
    """Durably replaces the signed-head file with note."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(note)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


RESTORE_PENDING = "restore-pending"
"""The marker file, in the node directory, that blocks appends until recovery ran."""


def pending_marker(home: Path) -> Path:
    """Returns the path of the restore-pending marker of the node in home."""
    return home / RESTORE_PENDING


def check_not_pending(head_file: Path) -> None:
    """Raises ForkRefused if the node beside head_file was restored and not yet recovered."""
    marker = pending_marker(head_file.parent)
    if marker.exists():
        raise ForkRefused(
            "this node was restored from a backup and may have signed more than the backup "
            "holds; run 'hashfed recover --from PEER' (a partner that mirrors this log) "
            "before appending. " + marker.read_text().strip()
        )
