"""Exceptions raised by hashfed.signing.

Every class is a :class:`SigningError`, itself a :class:`ValueError`, so a caller
that only cares about "this key or note is not acceptable" can catch one type.
Messages name what was wrong (which key name, which line) and, where the fix is
up to the operator, say what to do.

Only :class:`UnverifiedNote` carries data: the parsed note, so a caller can
inspect the signatures that were present but came from keys it does not know.
A broken internal invariant raises :class:`AssertionError`, never these classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .note import Note


class SigningError(ValueError):
    """A key, note or key file is not acceptable."""


class MalformedKey(SigningError):
    """A signer or verifier key string is not in signed-note key form."""


class AmbiguousKey(SigningError):
    """Two different verifiers share one key name and key hash."""


class MalformedNote(SigningError):
    """A signed note, or a text to be signed, breaks the C2SP signed-note format."""


class UnknownKey(SigningError):
    """No verifier is configured for a (key name, key hash) pair."""

    def __init__(self, name: str, key_hash: int) -> None:
        super().__init__(f"unknown key {name}+{key_hash:08x}")
        self.name = name
        self.key_hash = key_hash


class InvalidSignature(SigningError):
    """A signature by a known key does not verify: the whole note is rejected."""

    def __init__(self, name: str, key_hash: int) -> None:
        super().__init__(f"invalid signature for key {name}+{key_hash:08x}")
        self.name = name
        self.key_hash = key_hash


class UnverifiedNote(SigningError):
    """A note has no signature that verifies with a known key.

    ``note`` is the parsed note, with every signature listed as unverified.
    """

    def __init__(self, note: Note, message: str = "") -> None:
        if not message:
            names = ", ".join(sorted({s.name for s in note.unverified_sigs})) or "none"
            message = (
                f"note has no verifiable signatures (signatures present from unknown keys: {names})"
            )
        super().__init__(message)
        self.note = note


class InsecureKeyFile(SigningError):
    """A secret key file can be read or written by users other than its owner."""
