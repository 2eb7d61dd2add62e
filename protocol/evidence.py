"""Equivocation evidence: two checkpoints of one log that cannot both be honest.

A log signs checkpoint A (size a, root ra) and checkpoint B (size b >= a, root rb).
They are consistent when the first a leaves of B's tree hash to ra. Evidence that
they are not is:

    the two signed notes, verbatim;
    prefix: the root of the first a leaves of B's tree;
    proof:  an RFC 6962 consistency proof from (a, prefix) to (b, rb).

Anyone holding the log's verifier key can check it offline: both notes verify,
the proof verifies (so B's tree really starts with ``prefix``; SHA-256 is
collision resistant), and ``prefix != ra``. When a == b the proof is empty and
``prefix`` is rb. The text form, like C2SP tlog-proof, is

    hashfed.org/equivocation@v1
    prefix <base64 hash>
    <base64 proof hash, one per line>
    <empty line>
    <checkpoint A, a signed note>
    <empty line>
    <checkpoint B, a signed note>

where each note ends with its newline and the empty line after note A separates
it from note B.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint
from hashfed.protocol.errors import ProofFailed, ProtocolError
from hashfed.protocol.merkle import HASH_SIZE, check_consistency
from hashfed.signing.note import Verifiers

HEADER = "hashfed.org/equivocation@v1"


class MalformedEvidence(ProtocolError):
    """Evidence text that is not in the format above."""


class NotEvidence(ProtocolError):
    """Evidence that does not show two inconsistent checkpoints."""


@dataclass(frozen=True)
class Evidence:
    """Two signed checkpoints of one origin, and the proof that they disagree."""

    note_a: str
    note_b: str
    prefix: bytes
    proof: tuple[bytes, ...]

    def format(self) -> str:
        """Returns the evidence in its text form."""
        lines = [HEADER, "prefix " + base64.b64encode(self.prefix).decode()]
        lines += [base64.b64encode(h).decode() for h in self.proof]
        return "\n".join(lines) + "\n\n" + self.note_a + "\n" + self.note_b


def parse_evidence(text: str) -> Evidence:
    """Parses the text form of evidence, refusing anything malformed."""
    head, sep, notes = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != HEADER or len(lines) < 2 or not lines[1].startswith("prefix "):
        raise MalformedEvidence(f"evidence must start with {HEADER!r} and a prefix line")
    try:
        prefix = base64.b64decode(lines[1][7:], validate=True)
        proof = tuple(base64.b64decode(line, validate=True) for line in lines[2:])
    except (binascii.Error, ValueError):
        raise MalformedEvidence("evidence holds a hash that is not base64") from None
    if len(prefix) != HASH_SIZE or any(len(h) != HASH_SIZE for h in proof):
        raise MalformedEvidence("evidence hashes must be 32 bytes")
    # Note A ends where a line starting a new note body follows its signatures:
    # the notes are separated by one empty line after A's last signature line.
    a_text, sep, rest = notes.partition("\n\n")
    a_sigs, sep2, note_b_tail = rest.partition("\n\n")
    if not sep or not sep2:
        raise MalformedEvidence("evidence must hold two signed notes")
    return Evidence(a_text + "\n\n" + a_sigs + "\n", note_b_tail, prefix, proof)


def check_evidence(
    evidence: Evidence, verifiers: Verifiers, origin: str
) -> tuple[Checkpoint, Checkpoint]:
    """Verifies evidence; returns the two checkpoints, or raises NotEvidence saying why."""
    a, _ = open_checkpoint(evidence.note_a, verifiers, origin)
    b, _ = open_checkpoint(evidence.note_b, verifiers, origin)
    if a.size > b.size:
        raise NotEvidence("checkpoint A must not be larger than checkpoint B")
    if a.size == 0:
        raise NotEvidence("every checkpoint is consistent with the empty tree")
    if a.size == b.size:
        if a.root == b.root:
            raise NotEvidence("the two checkpoints have the same size and root")
        return a, b
    try:
        check_consistency(a.size, b.size, list(evidence.proof), evidence.prefix, b.root)
    except ProofFailed as exc:
        raise NotEvidence(f"the consistency proof does not verify: {exc}") from None
    if evidence.prefix == a.root:
        raise NotEvidence("the checkpoints are consistent")
    return a, b
