"""C2SP tlog-proof v1: an offline-verifiable proof that an entry is in a log.

A proof is UTF-8 text, lines ending in ``\\n``::

    c2sp.org/tlog-proof@v1            header, exactly this line
    extra <base64>                    optional opaque, unauthenticated extra data
    index <n>                         0-based entry index, decimal, no leading zeros
    <base64 hash>                     zero or more RFC 6962 inclusion proof hashes
    ...                               (32 bytes each, leaf's sibling first)
                                      one empty line
    <checkpoint>                      the signed checkpoint note, verbatim,
                                      including its signature lines

Base64 is standard with padding (RFC 4648 §4) and must be canonical.
:func:`parse_tlog_proof` does not open the checkpoint; :func:`check_tlog_proof`
checks its signature, then the inclusion of an entry against its size and root.
hashfed's own proofs (``hashfed log proof``) carry the entry's bytes as the
extra data, so that a proof checks without anything else; the extra data is not
authenticated by itself, only by the inclusion check.  Files conventionally
use the extension ``.tlog-proof``.

Example (proof for entry 2 of a 3-entry log)::

    >>> proof = format_tlog_proof(2, [bytes(32)], "example.com/log\\n3\\nAA...=\\n\\n— sig\\n")
    >>> print(proof, end="")
    c2sp.org/tlog-proof@v1
    index 2
    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
    <BLANKLINE>
    example.com/log
    3
    AA...=
    <BLANKLINE>
    — sig
    >>> parse_tlog_proof(proof).index
    2
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint
from hashfed.protocol.errors import MalformedTlogProof, ProofFailed
from hashfed.protocol.merkle import HASH_SIZE, check_inclusion, leaf_hash
from hashfed.signing.note import Verifiers

__all__ = [
    "HEADER",
    "MAX_PROOF_HASHES",
    "TlogProof",
    "check_tlog_proof",
    "format_tlog_proof",
    "parse_tlog_proof",
]

HEADER = "c2sp.org/tlog-proof@v1"
"""The first line of every v1 proof."""

MAX_PROOF_HASHES = 64
"""Most hashes an inclusion proof in a tree of fewer than 2**64 leaves can have."""

_INDEX_RE = re.compile(r"index (0|[1-9][0-9]{0,19})")
_MAX_INDEX = 1 << 64


@dataclass(frozen=True, slots=True)
class TlogProof:
    """TlogProof is a parsed tlog-proof: entry ``index``, inclusion ``proof``
    hashes, the verbatim ``checkpoint_note`` text and optional ``extra`` data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedTlogProof(f"{what} {text!r} is not valid base64: {e}") from None
    if _b64(data) != text:
        raise MalformedTlogProof(f"{what} {text!r} is not canonical base64")
    return data


def format_tlog_proof(
    index: int,
    proof_hashes: Sequence[bytes],
    checkpoint_note: str,
    extra: bytes | None = None,
) -> str:
    """format_tlog_proof returns the tlog-proof v1 text for entry ``index`` with
    inclusion proof ``proof_hashes`` in the tree of ``checkpoint_note`` (a signed
    checkpoint, ending in a newline).  ``extra`` is omitted when None and must
    not be empty otherwise."""
    if not 0 <= index < _MAX_INDEX:
        raise ValueError(f"entry index {index} is outside 0..2**64-1")
    if len(proof_hashes) > MAX_PROOF_HASHES:
        raise ValueError(f"inclusion proof has {len(proof_hashes)} hashes, at most 64")
    for i, h in enumerate(proof_hashes):
        if len(h) != HASH_SIZE:
            raise ValueError(f"proof hash {i} is {len(h)} bytes, want {HASH_SIZE}")
    _check_note(checkpoint_note, ValueError)
    lines = [HEADER]
    if extra is not None:
        if not extra:
            raise ValueError("extra data is empty; pass None to omit the extra line")
        lines.append(f"extra {_b64(extra)}")
    lines.append(f"index {index}")
    lines.extend(_b64(h) for h in proof_hashes)
    return "\n".join(lines) + "\n\n" + checkpoint_note


def _check_note(note: str, exc: type[ValueError]) -> None:
    if not note or not note.endswith("\n"):
        raise exc("checkpoint note must be non-empty and end with a newline")
    if note.startswith("\n"):
        raise exc("checkpoint note must not start with an empty line")


def parse_tlog_proof(text: str) -> TlogProof:
    """parse_tlog_proof parses tlog-proof v1 text.

    Strict: the header line must match exactly, the index must be canonical
    decimal below 2**64, hashes canonical base64 of 32 bytes, and an empty line
    must separate them from the checkpoint.  Raises MalformedTlogProof otherwise.
    ``format_tlog_proof(...)`` of the result reproduces ``text`` exactly.
    """
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedTlogProof(
            "no empty line separating the proof from the checkpoint (is it truncated?)"
        )
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise MalformedTlogProof(f"first line is {lines[0][:60]!r}, want {HEADER!r}")
    pos = 1
    extra: bytes | None = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        extra = _unb64(lines[pos][len("extra ") :], "extra data")
        if not extra:
            raise MalformedTlogProof("extra line is present but empty")
        pos += 1
    if pos >= len(lines):
        raise MalformedTlogProof("missing 'index <n>' line")
    m = _INDEX_RE.fullmatch(lines[pos])
    if m is None:
        raise MalformedTlogProof(
            f"line {pos + 1} is {lines[pos][:60]!r}, want 'index <n>' with a decimal "
            "index without leading zeros"
        )
    index = int(m.group(1))
    if index >= _MAX_INDEX:
        raise MalformedTlogProof(f"index {index} is above 2**64-1")
    hash_lines = lines[pos + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise MalformedTlogProof(
            f"inclusion proof has {len(hash_lines)} hashes, at most {MAX_PROOF_HASHES}"
        )
    proof: list[bytes] = []
    for i, line in enumerate(hash_lines):
        h = _unb64(line, f"proof hash {i}")
        if len(h) != HASH_SIZE:
            raise MalformedTlogProof(f"proof hash {i} is {len(h)} bytes, want {HASH_SIZE}")
        proof.append(h)
    _check_note(note, MalformedTlogProof)
    return TlogProof(index, tuple(proof), note, extra)


def check_tlog_proof(
    proof: TlogProof, verifiers: Verifiers, origin: str, entry: bytes | None = None
) -> Checkpoint:
    """check_tlog_proof verifies proof offline and returns its checkpoint.

    It opens the checkpoint (a verified signature by the key named origin,
    raising the errors of :func:`~hashfed.protocol.checkpoint.open_checkpoint`),
    then checks that entry is at the proof's index in that tree (ProofFailed
    otherwise). entry defaults to the proof's extra data; if both are given they
    must be equal, and if neither is, ProofFailed says an entry is needed.
    """
    cp, _ = open_checkpoint(proof.checkpoint_note, verifiers, origin)
    if entry is None:
        entry = proof.extra
    elif proof.extra is not None and proof.extra != entry:
        raise ProofFailed(
            f"the entry given is not the entry the proof carries for index {proof.index}"
        )
    if entry is None:
        raise ProofFailed("the proof carries no entry: give the entry's bytes to check it")
    if proof.index >= cp.size:
        raise ProofFailed(f"index {proof.index} is not below the checkpoint's size {cp.size}")
    check_inclusion(leaf_hash(entry), proof.index, cp.size, list(proof.proof), cp.root)
    return cp
