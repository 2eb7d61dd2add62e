"""Exceptions raised by hashfed.protocol.

Every class is a :class:`ProtocolError`, itself a :class:`ValueError`, so callers
that only care about "bad input from outside" can catch one type.  Broken
internal invariants raise :class:`AssertionError` instead, never these classes.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input from outside (a peer, a file, a request) is not valid."""


class ProofFailed(ProtocolError):
    """A Merkle inclusion or consistency proof does not verify."""


class MalformedTile(ProtocolError):
    """A tlog-tiles hash tile or tile path is not in the canonical format."""


class MalformedBundle(ProtocolError):
    """A tlog-tiles entry bundle is truncated, has trailing bytes or the wrong count."""


class MalformedTlogProof(ProtocolError):
    """A c2sp.org/tlog-proof@v1 text is not in the canonical format."""


class MalformedRecord(ProtocolError):
    """A log entry or content blob that is not exactly one canonical msgpack record."""


class UnknownRecord(ProtocolError):
    """A well-formed record of a type or version this node does not understand.

    Receiving nodes keep such entries, flag them and skip them; they never halt a log.
    """


class InvalidRecord(ProtocolError):
    """A record that decodes but breaks a validation rule (a bad hash, a bad retraction)."""


class MalformedCheckpoint(ProtocolError):
    """A c2sp.org/tlog-checkpoint note text is not in the canonical format."""


class OriginMismatch(ProtocolError):
    """A checkpoint names a different log origin than the one the caller expected."""


class MalformedSessionRequest(ProtocolError):
    """A peer-authentication session request is not in the hashfed-session/v1 format."""


class MalformedPolicy(ProtocolError):
    """A c2sp.org/tlog-policy file breaks the format; the message names the line."""
