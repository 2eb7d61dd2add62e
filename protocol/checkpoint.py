"""Transparency log checkpoints (C2SP tlog-checkpoint v1).

A checkpoint is a signed note (see :mod:`hashfed.signing.note`) whose text is
the log's tree head, one item a line, each line ending in a newline::

    <origin>                 the log's identity, non-empty, e.g. example.com/log
    <tree size>              ASCII decimal, no leading zeros ("0" for an empty tree)
    <root hash>              standard base64 (with padding) of the 32-byte RFC 6962 root
    [<extension line>...]    optional, opaque, each non-empty

Worked example: checkpoint.3 of the tessera test log (three entries)::

    example.com/log/testdata
    3
    Wqx3HImawpLnS/Gv4ubjAvi1WIOy0b8Ze0amvqbavKk=

    — example.com/log/testdata M9e0lvAQRtH832pk2RTbeSeZMkp4FZSdJYFBUjO5SKxuRbywPUF3cx+HUrb50kjd3rUWW/fj53Wj1dwcwh9bGQnqVAg=

The log signs with a key named after its origin; witnesses append cosignature
lines (:mod:`hashfed.signing.cosignature`).  :func:`open_checkpoint` accepts a
checkpoint only if it carries a verified signature by a key whose name is the
expected origin, so a checkpoint of one log can never pass as another's.

Parsing is strict and canonical: :func:`parse_checkpoint_body` accepts exactly
the texts that :meth:`Checkpoint.body` produces.
"""  # noqa: E501

from __future__ import annotations

import re
from dataclasses import dataclass

from hashfed.signing.errors import UnverifiedNote
from hashfed.signing.keys import Signer, decode_base64, encode_base64
from hashfed.signing.note import Note, Verifiers, open_note, sign_note

from .errors import MalformedCheckpoint, OriginMismatch

HASH_SIZE = 32
"""Length in bytes of a root hash (SHA-256)."""

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size accepted (as in golang.org/x/mod/sumdb/tlog, an int64)."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _check_line(value: str, what: str) -> None:
    if not value:
        raise MalformedCheckpoint(f"checkpoint {what} is empty")
    for ch in value:
        if ch < " ":
            raise MalformedCheckpoint(
                f"checkpoint {what} contains control character U+{ord(ch):04X}"
            )


@dataclass(frozen=True)
class Checkpoint:
    """Checkpoint is a log's signed tree head: origin, tree size and root hash.

    Construction checks every field, so every Checkpoint has a valid body.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpoint(f"checkpoint tree size {self.size} is outside 0..2^63-1")
        if len(self.root) != HASH_SIZE:
            raise MalformedCheckpoint(
                f"checkpoint root hash is {len(self.root)} bytes, want {HASH_SIZE}"
            )
        for i, ext in enumerate(self.extensions):
            _check_line(ext, f"extension line {i + 1}")

    def body(self) -> str:
        """Body returns the checkpoint note text: origin, size, root and extensions, one a line."""
        lines = [self.origin, str(self.size), encode_base64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse_checkpoint_body returns the checkpoint in a note text.

    It raises MalformedCheckpoint, naming the line, unless text is exactly
    what :meth:`Checkpoint.body` would produce: at least three non-empty lines
    each ending in a newline, a canonical decimal size, and a 32-byte root in
    canonical standard base64.
    """
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(
            f"checkpoint text has {len(lines)} lines, want at least 3 (origin, size, root hash)"
        )
    for i, line in enumerate(lines):
        if not line:
            raise MalformedCheckpoint(f"checkpoint line {i + 1} is empty")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise MalformedCheckpoint(
            f"checkpoint line 2: tree size {size_text!r} is not a decimal without leading zeros"
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedCheckpoint(f"checkpoint line 2: tree size {size_text} exceeds 2^63-1")
    try:
        root = decode_base64(root_text)
    except ValueError:
        raise MalformedCheckpoint(
            f"checkpoint line 3: root hash {root_text!r} is not canonical standard base64"
        ) from None
    if len(root) != HASH_SIZE:
        raise MalformedCheckpoint(
            f"checkpoint line 3: root hash is {len(root)} bytes, want {HASH_SIZE}"
        )
    cp = Checkpoint(origin, size, root, tuple(extensions))
    if cp.body() != text:
        raise AssertionError("bad math: checkpoint body does not round-trip")
    return cp


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    """Sign_checkpoint returns cp as a signed note signed by signer.

    The signer's key name must equal the checkpoint origin (OriginMismatch
    otherwise), since :func:`open_checkpoint` requires exactly that.
    """
    if signer.name != cp.origin:
        raise OriginMismatch(
            f"signing key is named {signer.name!r} but the checkpoint origin is "
            f"{cp.origin!r}; a log must sign with a key named after its origin"
        )
    return sign_note(cp.body(), signer)


def open_checkpoint(
    note: str | bytes, verifiers: Verifiers, origin: str
) -> tuple[Checkpoint, Note]:
    """Open_checkpoint verifies a signed checkpoint of the log origin and returns it.

    It raises the signing errors of :func:`~hashfed.signing.note.open_note`,
    MalformedCheckpoint if the text is not a checkpoint, OriginMismatch if the
    checkpoint is of another log, and UnverifiedNote if no verified signature
    is by a key named origin (a cosignature alone is not enough).
    """
    n = open_note(note, verifiers)
    cp = parse_checkpoint_body(n.text)
    if cp.origin != origin:
        raise OriginMismatch(f"checkpoint is for origin {cp.origin!r}, expected origin {origin!r}")
    if not any(sig.name == origin for sig in n.sigs):
        signed_by = ", ".join(f"{s.name}+{s.key_hash:08x}" for s in n.sigs)
        raise UnverifiedNote(
            n,
            f"checkpoint of {origin!r} has no verified signature by a key named {origin!r} "
            f"(verified: {signed_by}); configure the log's vkey",
        )
    return cp, n
