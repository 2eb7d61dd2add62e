"""Errors raised by hashfed.sync, named for the condition they report."""

from __future__ import annotations

from hashfed.protocol.evidence import Evidence


class SyncError(Exception):
    """A sync of one origin from one peer did not complete; nothing was applied."""


class NotFound(SyncError):
    """The peer does not have the resource (HTTP 404)."""


class PeerFault(SyncError):
    """The peer served something wrong or failed: a bad signature, a tampered entry,
    an oversized or truncated body, a timeout. Nothing it sent was applied."""


class Equivocation(SyncError):
    """The origin signed two inconsistent checkpoints; the origin is halted and the
    evidence kept. evidence holds it when the raiser has no store to keep it in."""

    def __init__(self, message: str, evidence: Evidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class Halted(SyncError):
    """The origin is halted by earlier evidence of equivocation."""


class NotFollowed(SyncError):
    """This node does not follow (trust) that origin."""
