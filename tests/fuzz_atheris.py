"""A coverage-guided campaign (atheris, libFuzzer) over the decoders of outside bytes.

``make fuzz`` runs it after the hypothesis campaign: ``python tests/fuzz_atheris.py
-max_total_time=300``. The first byte of each input picks a decoder and the rest is
its input; the property is the one tests/test_fuzz_decoders.py states: a decoder
returns a value or raises the package's own error (``ALLOWED``), never anything else.
A crash writes the input to ``crash-*`` for libFuzzer to replay.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports():
    from hashfed.node.errors import NodeError
    from hashfed.node.http.match import BadRequest, parse_batch
    from hashfed.node.services.casecrypto import InvalidCase, parse_case_number
    from hashfed.node.services.casedesk import parse_case_hashes
    from hashfed.protocol.checkpoint import open_checkpoint, parse_checkpoint_body
    from hashfed.protocol.evidence import parse_evidence
    from hashfed.protocol.policy import parse_policy
    from hashfed.protocol.records import decode_content, decode_record
    from hashfed.protocol.session import parse_session_request
    from hashfed.protocol.tiles import decode_bundle, decode_tile, split_bundle
    from hashfed.protocol.tlog_proof import parse_tlog_proof
    from hashfed.protocol.witness import parse_add_checkpoint
    from hashfed.signing.keys import parse_signer, parse_verifier
    from hashfed.signing.note import open_note
    from test_fuzz_decoders import OURS, POLICY, VERIFIERS


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


ALLOWED = (*OURS, NodeError, BadRequest, InvalidCase)
"""The package's own errors: any other exception is a finding."""

DECODERS: list[Callable[[bytes], object]] = [
    lambda d: open_note(d, VERIFIERS),
    lambda d: open_checkpoint(_text(d), VERIFIERS, "example.com/log"),
    lambda d: parse_checkpoint_body(_text(d)),
    lambda d: parse_session_request(_text(d)),
    lambda d: parse_verifier(_text(d)),
    lambda d: parse_signer(_text(d)),
    decode_record,
    decode_content,
    lambda d: decode_bundle(d, d[0] if d else 0),
    lambda d: split_bundle(d, "bundle"),
    lambda d: decode_tile(d, d[0] if d else 0),
    lambda d: parse_tlog_proof(_text(d)),
    parse_policy,
    lambda d: parse_evidence(d.decode("latin-1")),
    parse_add_checkpoint,
    parse_batch,
    lambda d: parse_case_hashes(_json(d), POLICY),
    lambda d: parse_case_number(_text(d)),
]


def one_input(data: bytes) -> None:
    if not data:
        return
    decoder = DECODERS[data[0] % len(DECODERS)]
    with contextlib.suppress(ALLOWED):
        decoder(data[1:])


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
