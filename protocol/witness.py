"""C2SP tlog-witness: the body of an ``add-checkpoint`` request, and its checks.

A log asks a witness to cosign a checkpoint by POSTing to
``<submission prefix>/add-checkpoint``:

    old <size the witness last cosigned, decimal, no leading zeros>
    <base64 consistency proof hash>        zero to 63 lines
    <empty line>
    <the checkpoint, a signed note>

for example::

    old 4
    PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=

    example.com/log
    7
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

    — example.com/log Az3grlgt...

The witness answers 200 with its cosignature lines, 409 (``text/x.tlog.size``:
its size and a newline) when the old size is not the one it holds, or when the
sizes are equal but the roots are not, 404 for an unknown origin, 403 when no
signature verifies, 400 for a malformed body or an old size above the new one,
and 422 when the consistency proof does not verify. An old size of 0 takes an
empty proof, which needs no checking.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.merkle import HASH_SIZE

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"


class MalformedWitnessRequest(ProtocolError):
    """An add-checkpoint body that is not in the tlog-witness format."""


@dataclass(frozen=True)
class AddCheckpoint:
    """One add-checkpoint request: the witness's old size, the proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def format(self) -> str:
        """Returns the request body."""
        lines = [f"old {self.old_size}"] + [base64.b64encode(h).decode() for h in self.proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parses an add-checkpoint body strictly, raising MalformedWitnessRequest."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedWitnessRequest("request body is not UTF-8") from None
    head, sep, checkpoint = text.partition("\n\n")
    if not sep or not checkpoint:
        raise MalformedWitnessRequest("request needs an old size line, an empty line and a note")
    lines = head.split("\n")
    first = lines[0]
    digits = first[4:]
    if (
        not first.startswith("old ")
        or not digits.isdigit()
        or not digits.isascii()
        or (len(digits) > 1 and digits[0] == "0")
    ):
        raise MalformedWitnessRequest("the first line must be 'old <decimal size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedWitnessRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for number, line in enumerate(lines[1:], 2):
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedWitnessRequest(f"line {number} is not base64") from None
        if len(digest) != HASH_SIZE or base64.b64encode(digest).decode() != line:
            raise MalformedWitnessRequest(f"line {number} is not a canonical 32-byte hash")
        proof.append(digest)
    return AddCheckpoint(int(digits), tuple(proof), checkpoint)
