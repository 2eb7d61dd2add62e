"""Validation rules every node runs on records, as the author and as a receiver.

The author's node runs them before it appends and refuses what fails. A
receiving node runs the same checks on entries that are validly signed and
included; an entry that fails is kept, flagged and skipped, and never stops the
entries behind it (specs/protocol.md, "Verify, keep, flag").
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from hashfed.protocol.errors import InvalidRecord
from hashfed.protocol.kinds import MD5, PDQ, HashKind, Kind, kinds
from hashfed.protocol.records import (
    Feedback,
    HashContent,
    Retraction,
    content_commitment,
)

DEFAULT_MIN_PDQ_QUALITY = PDQ.default_quality_floor or 0

# The MD5 of the empty file: a video that hashes to it is no video at all.
EMPTY_FILE_MD5 = next(iter(MD5.degenerate))


@dataclass(frozen=True)
class Policy:
    """The thresholds a node applies; min_pdq_quality is configurable per node."""

    min_pdq_quality: int = DEFAULT_MIN_PDQ_QUALITY

    def quality_floor(self, kind: HashKind) -> int:
        """quality_floor returns the lowest quality this node accepts for kind: the
        configured PDQ floor for PDQ, the registry's default for other kinds."""
        if kind is PDQ or kind.name == Kind.PDQ:
            return self.min_pdq_quality
        return kind.default_quality_floor or 0


def check_hash(kind: str, digest: bytes, quality: int | None, policy: Policy) -> None:
    """Raises InvalidRecord unless (kind, digest, quality) may be a bank entry."""
    spec = kinds().get(kind)
    if spec is None:
        raise InvalidRecord(f"unknown hash kind {kind!r}: use one of {kinds().names_text()}")
    want = spec.size
    if len(digest) != want:
        raise InvalidRecord(f"{kind} hash is {len(digest)} bytes, want {want}")
    if digest == b"\0" * want or digest == b"\xff" * want:
        raise InvalidRecord(f"{kind} hash {digest.hex()} is all zeros or all ones")
    if not spec.has_quality:
        if quality is not None:
            raise InvalidRecord(f"an {kind} hash carries no quality")
    elif quality is None or not 0 <= quality <= 100:
        raise InvalidRecord(f"a {kind} hash needs a quality from 0 to 100")
    elif quality < (floor := policy.quality_floor(spec)):
        raise InvalidRecord(f"{kind} quality {quality} is below this node's threshold {floor}")
    if spec.degenerate and (reason := spec.degenerate.get(digest)) is not None:
        raise InvalidRecord(f"{kind} hash is {reason}")


def check_content(content: HashContent, policy: Policy) -> None:
    """Raises InvalidRecord unless the content of an addition may enter a bank."""
    check_hash(content.kind, content.hash, content.quality, policy)


def check_commitment(content_bytes: bytes, commit: bytes) -> None:
    """Raises InvalidRecord unless content_bytes is what the addition committed to."""
    if not hmac.compare_digest(content_commitment(content_bytes), commit):
        raise InvalidRecord("content does not match the addition's commitment")


class AdditionStatus(Protocol):
    """What a retraction check needs to know about the log it belongs to."""

    def addition_status(self, index: int) -> str | None:
        """Returns "active" or "retracted" for an addition, None for any other index."""


def check_retraction(record: Retraction, own_index: int, log: AdditionStatus) -> None:
    """Raises InvalidRecord unless record retracts only active, earlier additions.

    own_index is the retraction's own position in the log: a retraction can only
    name entries that precede it.
    """
    for index in record.indices:
        if index >= own_index:
            raise InvalidRecord(
                f"retraction at {own_index} names entry {index}, which does not precede it"
            )
        status = log.addition_status(index)
        if status is None:
            raise InvalidRecord(f"retraction names entry {index}, which is not a hash addition")
        if status != "active":
            raise InvalidRecord(f"retraction names entry {index}, which is already retracted")


def check_feedback(record: Feedback, own_origin: str) -> None:
    """Raises InvalidRecord unless record is feedback on another log."""
    if record.origin == own_origin:
        raise InvalidRecord("feedback must be about an entry of another log, not this one")
