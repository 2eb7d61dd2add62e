"""Property tests for every decoder of bytes that come from outside the node.

Each decoder either returns a value or raises the package's own error (a
ProtocolError, a SigningError, a NodeError, BadRequest or InvalidCase), never
another exception, for any input; and encoding then decoding gives the same
value. ``make fuzz`` runs the same properties with many more examples
(HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import string
from collections.abc import Callable
from pathlib import Path

import pytest
from hashfed.node.config import load_config
from hashfed.node.errors import NodeError
from hashfed.node.http.match import BadRequest, parse_batch
from hashfed.node.services.casecrypto import InvalidCase, parse_case_number
from hashfed.node.services.casedesk import parse_case_hashes
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_body
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.evidence import parse_evidence
from hashfed.protocol.policy import format_policy, parse_policy
from hashfed.protocol.records import Feedback as FeedbackRecord
from hashfed.protocol.records import (
    HashContent,
    Kind,
    Reason,
    Retraction,
    Verdict,
    decode_content,
    decode_record,
    encode_record,
)
from hashfed.protocol.session import parse_session_request
from hashfed.protocol.tiles import decode_bundle, decode_tile, encode_bundle, split_bundle
from hashfed.protocol.tlog_proof import format_tlog_proof, parse_tlog_proof
from hashfed.protocol.validation import Policy as HashPolicy
from hashfed.protocol.witness import parse_add_checkpoint
from hashfed.signing.cosignature import CosignatureVerifier, parse_cosignature_signer
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    decode_skey,
    decode_vkey,
    generate_key,
    parse_signer,
    parse_verifier,
)
from hashfed.signing.note import VerifierList, open_note, sign_note
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

OURS = (ProtocolError, SigningError)

SKEY, VKEY = generate_key("example.com/log")
SIGNER = parse_signer(SKEY)
VERIFIERS = VerifierList(parse_verifier(VKEY))
COSKEY, COVKEY = generate_key("witness.example/w1", ALG_COSIGNATURE_V1)
COSIGNER = parse_cosignature_signer(COSKEY, clock=lambda: 1_700_000_000)

# Inputs near the formats hit more branches than random bytes do.
NOTE_ALPHABET = st.sampled_from(
    [*list("\n\n\n+ —abcAB019/="), "— ", "example.com/log", "— example.com/log "]
)
text_like = st.one_of(
    st.text(max_size=300),
    st.lists(NOTE_ALPHABET, max_size=60).map("".join),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)
bytes_like = st.one_of(
    st.binary(max_size=600), text_like.map(lambda s: s.encode("utf-8", "replace"))
)


def _mutations(valid: str) -> st.SearchStrategy[str]:
    """Returns strings made from valid by cutting, splicing or flipping one character."""
    n = len(valid)
    return st.one_of(
        st.integers(0, n).map(lambda i: valid[:i]),
        st.tuples(st.integers(0, n), st.text(max_size=8)).map(
            lambda t: valid[: t[0]] + t[1] + valid[t[0] :]
        ),
        st.tuples(st.integers(0, max(0, n - 1)), st.characters()).map(
            lambda t: valid[: t[0]] + t[1] + valid[t[0] + 1 :]
        ),
    )


def _ours(call: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(*OURS):
        call(*args)


# --- signed notes, checkpoints, cosignatures --------------------------------------------

checkpoints = st.builds(
    Checkpoint,
    origin=st.just("example.com/log"),
    size=st.integers(0, 2**63 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(string.ascii_letters + string.digits + " .", min_size=1, max_size=20), max_size=3
    ).map(tuple),
)
VALID_NOTE = sign_note(Checkpoint("example.com/log", 5, bytes(32), ()).body(), SIGNER)


@given(checkpoints)
def test_checkpoint_round_trips(cp: Checkpoint) -> None:
    note = sign_note(cp.body(), SIGNER)
    got, _ = open_checkpoint(note, VERIFIERS, cp.origin)
    assert got == cp
    assert parse_checkpoint_body(cp.body()) == cp


@given(st.one_of(text_like, _mutations(VALID_NOTE)))
def test_note_and_checkpoint_decoders_raise_only_their_errors(text: str) -> None:
    _ours(open_note, text, VERIFIERS)
    _ours(open_note, text.encode("utf-8", "surrogateescape"), VERIFIERS)
    _ours(open_checkpoint, text, VERIFIERS, "example.com/log")
    _ours(parse_checkpoint_body, text)
    _ours(parse_session_request, text)


@given(st.binary(max_size=120))
def test_note_bytes_raise_only_signing_errors(data: bytes) -> None:
    _ours(open_note, data, VERIFIERS)


COSIGNED = sign_note(Checkpoint("example.com/log", 5, bytes(32), ()).body(), SIGNER, COSIGNER)


@given(_mutations(COSIGNED))
def test_cosignature_decoder_raises_only_its_errors(text: str) -> None:
    cov = parse_verifier(COVKEY)
    assert isinstance(cov, CosignatureVerifier)
    try:
        note = open_note(text, VerifierList(parse_verifier(VKEY), cov))
    except OURS:
        return
    for sig in note.sigs:
        if sig.name == cov.name:
            _ours(cov.timestamp_of, sig)


@given(st.one_of(text_like, _mutations(VKEY), _mutations(SKEY)))
def test_key_decoders_raise_only_signing_errors(text: str) -> None:
    _ours(decode_vkey, text)
    _ours(decode_skey, text)
    _ours(parse_verifier, text)
    _ours(parse_signer, text)
    _ours(parse_cosignature_signer, text)


# --- records and content -----------------------------------------------------------------

labels = st.lists(st.from_regex(r"[a-z0-9._:-]{1,32}", fullmatch=True), max_size=8, unique=True)
contents = st.one_of(
    st.builds(
        HashContent,
        kind=st.just(Kind.PDQ),
        hash=st.binary(min_size=32, max_size=32),
        quality=st.integers(0, 100),
        labels=labels.map(tuple),
        time=st.integers(0, 2**63 - 1),
        salt=st.binary(min_size=16, max_size=16),
    ),
    st.builds(
        HashContent,
        kind=st.just(Kind.MD5),
        hash=st.binary(min_size=16, max_size=16),
        quality=st.none(),
        labels=labels.map(tuple),
        time=st.integers(0, 2**63 - 1),
        salt=st.binary(min_size=16, max_size=16),
    ),
)
records = st.one_of(
    st.builds(
        Retraction,
        time=st.integers(0, 2**63 - 1),
        reason=st.sampled_from(list(Reason)),
        indices=st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=20, unique=True).map(
            lambda xs: tuple(sorted(xs))
        ),
    ),
    st.builds(
        FeedbackRecord,
        time=st.integers(0, 2**63 - 1),
        origin=st.just("stopncii.example/bank"),
        index=st.integers(0, 2**63 - 1),
        verdict=st.sampled_from(list(Verdict)),
        tags=st.lists(st.from_regex(r"[a-z]{1,10}", fullmatch=True), max_size=4, unique=True).map(
            tuple
        ),
    ),
)


@given(contents)
def test_content_round_trips(content: HashContent) -> None:
    assert decode_content(content.encode()) == content


@given(records)
def test_record_round_trips(record: Retraction | FeedbackRecord) -> None:
    try:
        data = encode_record(record)
    except ProtocolError:
        return  # a value the encoder refuses (e.g. an unknown feedback tag) is not wire data
    assert decode_record(data) == record


@given(st.one_of(bytes_like, contents.map(lambda c: c.encode()[:-1] + b"\x00")))
def test_record_and_content_decoders_raise_only_their_errors(data: bytes) -> None:
    _ours(decode_record, data)
    _ours(decode_content, data)


@given(contents, st.integers(0, 200), st.binary(min_size=1, max_size=3))
def test_mutated_content_raises_only_its_errors(content: HashContent, at: int, junk: bytes) -> None:
    data = content.encode()
    at %= len(data)
    _ours(decode_content, data[:at] + junk + data[at + 1 :])
    _ours(decode_record, data[:at] + junk + data[at + 1 :])


# --- bundles and tiles -------------------------------------------------------------------


@given(st.lists(st.binary(max_size=80), min_size=1, max_size=256))
def test_bundle_round_trips(items: list[bytes]) -> None:
    data = encode_bundle(items)
    assert decode_bundle(data, len(items) % 256) == items
    assert split_bundle(data, "bundle") == items


@given(bytes_like, st.integers(0, 256))
def test_bundle_and_tile_decoders_raise_only_their_errors(data: bytes, count: int) -> None:
    _ours(decode_bundle, data, count)
    _ours(split_bundle, data, "bundle")
    _ours(decode_tile, data, count)


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=256))
def test_tile_round_trips(hashes: list[bytes]) -> None:
    assert decode_tile(b"".join(hashes), len(hashes) % 256) == hashes


# --- tlog-proof, tlog-policy, evidence, witness requests ----------------------------------


@given(
    st.integers(0, 2**64 - 1),
    st.lists(st.binary(min_size=32, max_size=32), max_size=63),
    st.one_of(st.none(), st.binary(min_size=1, max_size=40)),
)
def test_tlog_proof_round_trips(index: int, proof: list[bytes], extra: bytes | None) -> None:
    text = format_tlog_proof(index, proof, VALID_NOTE, extra)
    parsed = parse_tlog_proof(text)
    assert (parsed.index, list(parsed.proof), parsed.checkpoint_note, parsed.extra) == (
        index,
        proof,
        VALID_NOTE,
        extra,
    )


VALID_PROOF = format_tlog_proof(3, [bytes(32), b"\x01" * 32], VALID_NOTE)
VALID_POLICY = (
    f"log {VKEY} https://log.example\n"
    f"witness w1 {COVKEY} https://w1.example/witness\n"
    "group g any w1\nquorum g\n"
)


@given(st.one_of(text_like, _mutations(VALID_PROOF)))
def test_tlog_proof_decoder_raises_only_its_errors(text: str) -> None:
    _ours(parse_tlog_proof, text)


@given(st.one_of(text_like, _mutations(VALID_POLICY), bytes_like))
def test_policy_decoder_raises_only_its_errors(text: str | bytes) -> None:
    _ours(parse_policy, text)


def test_policy_round_trips() -> None:
    policy = parse_policy(VALID_POLICY)
    assert parse_policy(format_policy(policy)) == policy


@given(st.one_of(text_like, bytes_like.map(lambda b: b.decode("latin-1"))))
def test_evidence_decoder_raises_only_its_errors(text: str) -> None:
    _ours(parse_evidence, text)


VALID_ADD = ("old 3\n" + base64.b64encode(bytes(32)).decode() + "\n\n" + VALID_NOTE).encode()


@given(st.one_of(bytes_like, _mutations(VALID_ADD.decode()).map(str.encode)))
def test_add_checkpoint_decoder_raises_only_its_errors(data: bytes) -> None:
    _ours(parse_add_checkpoint, data)


# --- the HTTP request bodies: match batches and cases -------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
hash_items = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["pdq", "md5", "sha1", ""]),
        "hash": st.one_of(st.text("0123456789abcdefABCDEF", max_size=70), json_values),
    }
)


@given(
    st.one_of(
        bytes_like,
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(hash_items, max_size=5).map(lambda xs: json.dumps({"hashes": xs}).encode()),
        st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 100_000).map(lambda n: b'{"hashes":' + b"[" * n),
    )
)
def test_match_body_decoder_raises_only_bad_request(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_batch(body)


POLICY = HashPolicy()


@given(
    st.one_of(
        json_values,
        st.lists(
            st.fixed_dictionaries(
                {
                    "kind": st.sampled_from(["pdq", "md5", "x"]),
                    "hash": st.text("0123456789abcdef", max_size=64),
                },
                optional={"quality": st.one_of(st.integers(-5, 120), json_values)},
            ),
            max_size=22,
        ),
    )
)
def test_case_body_decoder_raises_only_invalid_case(items: object) -> None:
    with contextlib.suppress(InvalidCase):
        parse_case_hashes(items, POLICY)


@given(st.one_of(text_like, st.from_regex(r"HF(-[0-9A-Z]{4}){6}-[0-9A-Z]{2}", fullmatch=True)))
def test_case_number_decoder_raises_only_invalid_case(text: str) -> None:
    with contextlib.suppress(InvalidCase):
        parse_case_number(text)


# --- the node's configuration file --------------------------------------------------------

CONFIG = (
    'origin = "example.com/node"\nrole = "publisher"\n[server]\nport = 8470\n'
    "[sync]\ninterval = 300\n[cases]\nlockout = 900\n[match]\nthreshold = 31\n"
)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("config")


@given(st.one_of(text_like, _mutations(CONFIG)))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_config_decoder_raises_only_node_errors(config_dir: Path, text: str) -> None:
    (config_dir / "hashfed.toml").write_text(text, errors="surrogateescape")
    with contextlib.suppress(NodeError):
        load_config(config_dir)
