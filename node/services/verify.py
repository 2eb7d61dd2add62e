"""``hashfed log verify``: re-derive a stored log and its bank from the entries alone.

Two passes over the stored entry bundles, each naming every discrepancy it finds:

1. The log. Checks the latest checkpoint's signature with the log's key,
   re-hashes every entry, rebuilds every hash tile and compares it with the
   stored tile, and compares the root with the checkpoint's root. A flipped
   byte in an entry or a tile, a missing bundle or a forged checkpoint is named.
2. The bank. Decodes every entry and checks the bank against it: each hash
   addition has a bank row whose content matches the entry's commitment (or has
   been erased after a retraction), each retraction is reflected in the status
   of the rows it names, each feedback record has its row, and there are no
   rows the log does not account for.

Memory stays bounded: one bundle and the right edge of the tree at a time.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from hashfed.node.store import bank as bankstore
from hashfed.node.store import logstore
from hashfed.protocol.checkpoint import open_checkpoint
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.merkle import HASH_SIZE, leaf_hashes
from hashfed.protocol.records import (
    Addition,
    Feedback,
    Retraction,
    decode_record,
)
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TILE_WIDTH, TreeBuilder, decode_bundle
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList

_FULL_TILE = TILE_WIDTH * HASH_SIZE
_MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Problem:
    """One discrepancy: where it is, and what is wrong there."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class VerifyReport:
    """What ``verify_log`` and ``verify_bank`` found."""

    origin: str
    size: int = 0
    entries: int = 0
    tiles: int = 0
    bank_rows: int = 0
    log_seconds: float = 0.0
    bank_seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(where, message))


def verify_log(conn: sqlite3.Connection, log: logstore.LogRow, report: VerifyReport) -> None:
    """Checks the checkpoint signature, every entry, every tile and the root."""
    start = time.perf_counter()
    size, root = log.size, log.root
    report.size = size
    if log.checkpoint is None:
        report.add("checkpoint", "the log has no signed checkpoint")
    else:
        try:
            verifiers = VerifierList(parse_verifier(log.vkey))
            checkpoint, _ = open_checkpoint(log.checkpoint, verifiers, log.origin)
            if (checkpoint.size, checkpoint.root) != (size, root):
                report.add("checkpoint", "the signed checkpoint disagrees with the log's size/root")
            size, root = checkpoint.size, checkpoint.root
        except (ProtocolError, SigningError) as exc:
            report.add("checkpoint", f"does not verify with the log's key: {exc}")
    builder = TreeBuilder()
    pending: dict[tuple[int, int], bytes] = {}
    stopped = False  # a bundle problem was named and the walk stopped there
    for index, count, data in logstore.iter_bundles(conn, log.id):
        expected = report.entries // ENTRY_BUNDLE_WIDTH
        if index * ENTRY_BUNDLE_WIDTH >= size:
            if log.own:  # a mirror may hold verified entries ahead of its checkpoint
                report.add(f"bundle {index}", "is stored beyond the checkpoint's size")
            break
        if index != expected:
            report.add(f"bundle {expected}", "is missing")
            stopped = True
            break
        want = min(ENTRY_BUNDLE_WIDTH, size - index * ENTRY_BUNDLE_WIDTH)
        try:
            entries = decode_bundle(data, count)[:want]
        except ProtocolError as exc:
            report.add(f"bundle {index}", str(exc))
            stopped = True
            break
        if len(entries) < want:
            report.add(f"bundle {index}", f"holds {len(entries)} entries, want {want}")
            stopped = True
            break
        builder.append(leaf_hashes(entries))
        report.entries += len(entries)
        pending.update(builder.changed_tiles())
        full = [key for key, tile in pending.items() if len(tile) == _FULL_TILE]
        for key in full:
            _compare_tile(conn, log.id, key, pending.pop(key), report)
    if report.entries < size and not stopped:
        report.add(f"bundle {report.entries // ENTRY_BUNDLE_WIDTH}", "is missing")
    for key, tile in pending.items():
        _compare_tile(conn, log.id, key, tile, report)
    if report.entries == size and builder.root() != root:
        report.add("root", "the entries do not hash to the checkpoint's root")
    report.log_seconds = time.perf_counter() - start


def _compare_tile(
    conn: sqlite3.Connection,
    log_id: int,
    key: tuple[int, int],
    derived: bytes,
    report: VerifyReport,
) -> None:
    level, index = key
    width = len(derived) // HASH_SIZE
    report.tiles += 1
    try:
        stored = logstore.read_tile(conn, log_id, level, index, width)
    except LookupError:
        report.add(f"tile {level}/{index}", f"is missing (want {width} hashes)")
        return
    if stored == derived:
        return
    first = next(
        i for i in range(width) if stored[i * 32 : i * 32 + 32] != derived[i * 32 : i * 32 + 32]
    )
    where = f"entry {index * TILE_WIDTH + first}" if level == 0 else f"hash {first}"
    report.add(f"tile {level}/{index}", f"differs from the tile derived from the entries ({where})")


def verify_bank(conn: sqlite3.Connection, log: logstore.LogRow, report: VerifyReport) -> None:
    """Checks that the bank and feedback rows are exactly what the log's entries say.

    Run it after verify_log with the same report: it checks the entries that
    verify_log could read (report.entries), and if that is not the whole log it
    skips the checks that need all of it (rows beyond, retraction statuses).
    """
    start = time.perf_counter()
    rows = bankstore.bank_rows(conn, log.id)
    feedback = bankstore.feedback_rows(conn, log.id)
    flagged = logstore.flagged_indices(conn, log.id)
    row = next(rows, None)
    fb_row = next(feedback, None)
    retracted: dict[int, tuple[int, int, str]] = {}
    erased: set[int] = set()
    for bundle_index, count, data in logstore.iter_bundles(conn, log.id):
        try:
            entries = decode_bundle(data, count)
        except ProtocolError:
            return  # verify_log has already named the bundle
        for offset, entry in enumerate(entries):
            idx = bundle_index * ENTRY_BUNDLE_WIDTH + offset
            if idx >= report.entries:
                break
            while row is not None and row[0] < idx:
                report.add(f"bank row {row[0]}", "is not a hash addition in the log")
                row = next(rows, None)
            while fb_row is not None and fb_row[0] < idx:
                report.add(f"feedback row {fb_row[0]}", "is not a feedback record in the log")
                fb_row = next(feedback, None)
            try:
                record = decode_record(entry)
            except ProtocolError as exc:
                if idx not in flagged:
                    report.add(f"entry {idx}", f"cannot be decoded and is not flagged: {exc}")
                continue
            if isinstance(record, Addition):
                if row is None or row[0] != idx:
                    report.add(f"entry {idx}", "is a hash addition with no bank row")
                    continue
                report.bank_rows += 1
                _check_addition_row(idx, record, row, report, erased)
                row = next(rows, None)
            elif isinstance(record, Retraction):
                for target in record.indices:
                    retracted[target] = (idx, record.time, record.reason.value)
            elif isinstance(record, Feedback):
                if fb_row is None or fb_row[0] != idx:
                    report.add(f"entry {idx}", "is a feedback record with no feedback row")
                    continue
                want = (
                    record.origin,
                    record.index,
                    record.verdict.value,
                    ",".join(record.tags),
                    record.time,
                )
                if tuple(fb_row[1:]) != want:
                    report.add(f"feedback row {idx}", "differs from the feedback record in the log")
                fb_row = next(feedback, None)
    if report.entries < report.size:
        report.bank_seconds = time.perf_counter() - start
        return  # verify_log named the entries it could not read; the rest is unknown
    while row is not None:
        report.add(f"bank row {row[0]}", "is not a hash addition in the log")
        row = next(rows, None)
    while fb_row is not None:
        report.add(f"feedback row {fb_row[0]}", "is not a feedback record in the log")
        fb_row = next(feedback, None)
    _check_statuses(conn, log.id, retracted, erased, flagged, report)
    report.bank_seconds = time.perf_counter() - start


def _check_addition_row(
    idx: int, record: Addition, row: tuple[Any, ...], report: VerifyReport, erased: set[int]
) -> None:
    _, kind, digest, quality, labels, added, salt, _status = row
    if digest is None or salt is None:
        erased.add(idx)  # content erased: allowed only after a retraction (checked later)
        return
    try:
        content = logstore.bank_content(kind, digest, quality, labels, added, salt)
        matches = content.commitment() == record.commit
    except (ValueError, TypeError):
        matches = False
    if not matches:
        report.add(f"bank row {idx}", "does not match the commitment in the log's entry")


def _check_statuses(
    conn: sqlite3.Connection,
    log_id: int,
    retracted: dict[int, tuple[int, int, str]],
    erased: set[int],
    flagged: set[int],
    report: VerifyReport,
) -> None:
    """Checks each row's status against the log's retractions. On a mirror, a row
    kept but not applied ('skipped') or received without content ('content
    unavailable') is flagged; those flags account for it."""
    stored = bankstore.retraction_states(conn, log_id)
    for idx, (by, when, reason) in sorted(retracted.items()):
        status, stored_by, stored_when, stored_reason = stored.pop(
            idx, ("active", None, None, None)
        )
        if status != "retracted" or stored_by != by:
            report.add(f"bank row {idx}", f"should be retracted by entry {by}, but is {status}")
        elif (stored_when, stored_reason) != (when, reason):
            report.add(
                f"bank row {idx}",
                f"differs from retraction entry {by} in its retraction time or reason",
            )
    for idx, (status, *_) in sorted(stored.items()):
        if status == "skipped" and idx in flagged:
            continue
        report.add(f"bank row {idx}", f"is {status}, but no retraction in the log names it")
    for idx in sorted(erased - set(retracted) - flagged):
        report.add(f"bank row {idx}", "has its content erased, but it was never retracted")
