"""Feedback: what this platform found when an upload matched an entry of another log.

Feedback is a record in this node's own log (specs/protocol.md, "feedback"), so the
publisher and every partner that syncs this node see it beside the entry. It is
published on one entry (``hashfed feedback ORIGIN INDEX``) or on every active entry
that carries a hash (``POST /v1/feedback`` with a kind and hash: what a matcher such as
python-threatexchange knows after a match). Every target is checked before anything is
written, and the records of one call go into the log in one batch: all or nothing.

The checks: the log must be one this node holds and not its own; the entry must be a
hash addition this node holds, still active (feedback on a withdrawn hash would tell
nobody anything); the tags must fit the record (at most 16, 1..64 printable characters,
no repeats).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hashfed.node.config import NodeConfig
from hashfed.node.errors import NodeError
from hashfed.node.services.ownlog import Clock, OwnLog, system_clock
from hashfed.node.store import bank, logstore
from hashfed.node.store.db import open_database
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.kinds import kinds
from hashfed.protocol.records import MAX_TAG_LENGTH, MAX_TAGS, Verdict
from hashfed.protocol.validation import Policy
from hashfed.signing.keys import Ed25519Signer

if TYPE_CHECKING:
    import sqlite_utils


class FeedbackRefused(NodeError):
    """Feedback cannot be published as asked; the message says why. Nothing was written."""


class InvalidFeedback(FeedbackRefused):
    """The request itself is malformed: a verdict, tag, kind, hash or origin that cannot be."""


class UnknownTarget(FeedbackRefused):
    """The log, entry or hash named is not one this node holds."""


class InactiveTarget(FeedbackRefused):
    """The entry named was retracted: its hash is withdrawn and erased."""


@dataclass(frozen=True)
class Target:
    """An entry of another log that feedback is about."""

    origin: str
    index: int


@dataclass(frozen=True)
class Published:
    """Feedback published in this node's own log: one record per target, in order,
    at own-log indices first_index, first_index + 1, ..."""

    log: str
    first_index: int
    targets: tuple[Target, ...]
    verdict: Verdict
    tags: tuple[str, ...]


def parse_verdict(text: object) -> Verdict:
    """Returns the verdict named by text, or raises InvalidFeedback listing the verdicts."""
    if isinstance(text, str) and text in {v.value for v in Verdict}:
        return Verdict(text)
    names = ", ".join(v.value for v in Verdict)
    raise InvalidFeedback(f"verdict must be one of {names}; got {text!r:.80}")


def check_tags(tags: Sequence[object]) -> tuple[str, ...]:
    """Returns tags as a tuple, or raises InvalidFeedback unless they fit a feedback
    record: at most MAX_TAGS distinct strings of 1..MAX_TAG_LENGTH printable characters."""
    if len(tags) > MAX_TAGS:
        raise InvalidFeedback(f"at most {MAX_TAGS} tags, not {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH or not tag.isprintable():
            raise InvalidFeedback(
                f"each tag must be 1..{MAX_TAG_LENGTH} printable characters; got {tag!r:.80}"
            )
    if len(set(tags)) != len(tags):
        raise InvalidFeedback("a tag is repeated")
    return tuple(str(tag) for tag in tags)


def other_log(conn: sqlite3.Connection, origin: str) -> logstore.LogRow:
    """Returns the log origin names, or raises UnknownTarget (not held) or
    InvalidFeedback (this node's own log: feedback is about the logs of others)."""
    log = logstore.get_log(conn, origin)
    if log is None:
        raise UnknownTarget(
            f"this node holds no log {origin!r:.200}; feedback is about entries it synced "
            "(see 'hashfed status')"
        )
    if log.own:
        raise InvalidFeedback("feedback is about entries of another log, not this node's own")
    return log


def entry_target(conn: sqlite3.Connection, origin: str, index: int) -> Target:
    """Returns entry index of origin's log as a target, or raises FeedbackRefused
    unless it is an active hash addition this node holds."""
    log = other_log(conn, origin)
    status = bank.entry_status(conn, log.id, index)
    if status is None:
        raise UnknownTarget(
            f"entry {index} of {origin} is not a hash addition this node holds "
            f"(it holds {log.size} {'entry' if log.size == 1 else 'entries'} of that log)"
        )
    if status != "active":
        raise InactiveTarget(
            f"entry {index} of {origin} was retracted (its hash is withdrawn and erased); "
            "feedback is about active entries"
        )
    return Target(origin, index)


def hash_targets(
    conn: sqlite3.Connection, kind: str, hash_hex: object, origin: str | None = None
) -> list[Target]:
    """Returns every active entry of kind with exactly this hash (hex) in the logs of
    others this node holds, or only in origin's; raises FeedbackRefused if there is none."""
    try:
        raw = kinds().parse_hex(kind, hash_hex)
    except ValueError as exc:
        raise InvalidFeedback(str(exc)) from None
    log_id = None if origin is None else other_log(conn, origin).id
    found = [Target(o, i) for o, i in bank.active_hash_entries(conn, kind, raw, log_id)]
    if not found:
        where = "any log this node holds" if origin is None else f"{origin}'s log"
        raise UnknownTarget(
            f"no active entry of {where} has this {kind} hash (never synced here, or withdrawn)"
        )
    return found


def publish(
    own_log: OwnLog, targets: Sequence[Target], verdict: Verdict, tags: Sequence[str] = ()
) -> Published:
    """Appends one feedback record per target to the own log, in one batch. Each target
    is checked again inside the append's transaction: a retraction synced since it was
    found refuses the whole batch (InactiveTarget) and nothing is written."""

    def still_active(conn: sqlite3.Connection, _result: object) -> None:
        for target in targets:
            entry_target(conn, target.origin, target.index)

    try:
        result = own_log.feedback_many(
            [(t.origin, t.index) for t in targets], verdict, tags, then=still_active
        )
    except ProtocolError as exc:
        raise InvalidFeedback(str(exc)) from None
    return Published(own_log.origin, result.first_index, tuple(targets), verdict, tuple(tags))


class FeedbackDesk:
    """Publishes feedback for the HTTP route: a database connection and own-log
    writer of its own, used by one request at a time (from worker threads)."""

    def __init__(self, db: sqlite_utils.Database, own_log: OwnLog) -> None:
        self._db = db
        self._own_log = own_log
        self._lock = threading.Lock()

    def on_entry(
        self, origin: str, index: int, verdict: Verdict, tags: Sequence[str] = ()
    ) -> Published:
        """Publishes feedback on entry index of origin's log."""
        with self._lock:
            target = entry_target(self._db.conn, origin, index)
            return publish(self._own_log, [target], verdict, tags)

    def on_hash(
        self,
        kind: str,
        hash_hex: object,
        verdict: Verdict,
        tags: Sequence[str] = (),
        origin: str | None = None,
    ) -> Published:
        """Publishes feedback on every active entry with this hash (only origin's, if given)."""
        with self._lock:
            targets = hash_targets(self._db.conn, kind, hash_hex, origin)
            return publish(self._own_log, targets, verdict, tags)

    def close(self) -> None:
        with self._lock:
            self._db.conn.close()


def open_feedback_desk(
    config: NodeConfig, signer: Ed25519Signer, clock: Clock = system_clock
) -> FeedbackDesk:
    """Returns a feedback desk for the node, on a database connection of its own."""
    db = open_database(config.database)
    policy = Policy(min_pdq_quality=config.min_pdq_quality)
    return FeedbackDesk(db, OwnLog(db, signer, config.signed_head, policy, clock))
