"""Tests for hashfed.signing.cosignature (C2SP tlog-cosignature v1) against the vectors."""

from __future__ import annotations

import base64
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hashfed.signing.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_timestamp,
    cosigned_message,
    parse_cosignature_signer,
)
from hashfed.signing.errors import InvalidSignature, MalformedKey, MalformedNote, UnverifiedNote
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    Ed25519Signer,
    Signer,
    Verifier,
    generate_key,
    parse_verifier,
)
from hashfed.signing.note import VerifierList, add_signatures, open_note, signature_line

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
COSIG: dict[str, Any] = json.loads((VECTORS / "note" / "cosignature-vectors.json").read_text())
CASES: list[dict[str, Any]] = COSIG["cases"]
LOG_V = parse_verifier(COSIG["log_vkey"])


def _case_id(case: dict[str, Any]) -> str:
    size = case["checkpoint"].split("\n")[1]
    return f"{case['witness'].rsplit('/', 1)[1]}-size{size}-t{case['timestamp']}"


def _body(checkpoint: str) -> str:
    return checkpoint[: checkpoint.rindex("\n\n") + 1]


def _signer(case: dict[str, Any]) -> CosignatureSigner:
    ts = case["timestamp"]
    return CosignatureSigner(case["witness"], bytes.fromhex(case["seed_hex"]), clock=lambda: ts)


def test_vectors_present() -> None:
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_vkey_from_seed(case: dict[str, Any]) -> None:
    signer = _signer(case)
    assert signer.vkey() == case["vkey"]
    v = parse_verifier(case["vkey"])
    assert isinstance(v, CosignatureVerifier)
    assert (v.name, v.key_hash) == (signer.name, signer.key_hash)
    assert v.vkey() == case["vkey"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cosignature_line_byte_for_byte(case: dict[str, Any]) -> None:
    signer = _signer(case)
    assert signature_line(_body(case["checkpoint"]), signer) == case["cosignature_line"]
    assert add_signatures(case["checkpoint"], signer) == case["cosigned_checkpoint"]
    assert case["cosigned_checkpoint"] == case["checkpoint"] + case["cosignature_line"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_cosigned_checkpoint_verifies(case: dict[str, Any]) -> None:
    witness = parse_verifier(case["vkey"])
    assert isinstance(witness, CosignatureVerifier)
    n = open_note(case["cosigned_checkpoint"], VerifierList(LOG_V, witness))
    assert n.text == _body(case["checkpoint"])
    assert [s.name for s in n.sigs] == [LOG_V.name, case["witness"]]
    assert n.unverified_sigs == []
    assert witness.timestamp_of(n.sigs[1]) == case["timestamp"]
    with pytest.raises(MalformedNote, match="not by cosigner"):
        witness.timestamp_of(n.sigs[0])
    # Either key alone verifies its own line and leaves the other unverified.
    n = open_note(case["cosigned_checkpoint"], VerifierList(witness))
    assert [s.name for s in n.sigs] == [case["witness"]]
    assert [s.name for s in n.unverified_sigs] == [LOG_V.name]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_tampered_timestamp_refused(case: dict[str, Any]) -> None:
    line = case["cosignature_line"]
    prefix, b64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[11] ^= 1  # low byte of the timestamp
    assert cosignature_timestamp(bytes(raw[4:])) == case["timestamp"] ^ 1
    tampered = case["checkpoint"] + f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    witness = parse_verifier(case["vkey"])
    with pytest.raises(InvalidSignature, match=case["witness"]):
        open_note(tampered, VerifierList(LOG_V, witness))


def test_message_layout() -> None:
    body = b"example.com/log\n1\n" + base64.b64encode(bytes(32)) + b"\n"
    assert cosigned_message(body, 1679315147) == b"cosignature/v1\ntime 1679315147\n" + body
    assert cosigned_message(body, 0).startswith(b"cosignature/v1\ntime 0\n")
    with pytest.raises(ValueError):
        cosigned_message(body, -1)
    with pytest.raises(ValueError):
        cosigned_message(body, 1 << 63)


def test_signature_layout_and_clock() -> None:
    times = iter([5, 6])
    signer = CosignatureSigner("w.example/x", bytes(32), clock=lambda: next(times))
    sig1 = signer.sign(b"a\n")
    sig2 = signer.sign(b"a\n")
    assert len(sig1) == len(sig2) == 72
    assert struct.unpack(">Q", sig1[:8])[0] == 5
    assert struct.unpack(">Q", sig2[:8])[0] == 6
    v = signer.verifier()
    assert v.verify(b"a\n", sig1)
    assert v.verify(b"a\n", sig2)
    assert not v.verify(b"b\n", sig1)
    assert not v.verify(b"a\n", sig1[:-1])
    assert not v.verify(b"a\n", sig2[:8] + sig1[8:])  # timestamp swapped


def test_timestamp_above_2_63_refused() -> None:
    raw = struct.pack(">Q", 1 << 63) + bytes(64)
    with pytest.raises(MalformedNote, match="2\\^63"):
        cosignature_timestamp(raw)
    v = CosignatureSigner("w.example/x", bytes(32)).verifier()
    assert not v.verify(b"a\n", raw)
    with pytest.raises(MalformedNote):
        cosignature_timestamp(raw[:-1])


def test_plain_ed25519_signature_is_not_a_cosignature() -> None:
    # The same Ed25519 key used as a type 0x01 signer has another key hash,
    # and its signature over the bare body does not verify as a cosignature.
    seed = bytes.fromhex(CASES[0]["seed_hex"])
    key = Ed25519PrivateKey.from_private_bytes(seed)
    plain = Ed25519Signer(CASES[0]["witness"], key)
    cosigner = CosignatureSigner(CASES[0]["witness"], key)
    assert plain.key_hash != cosigner.key_hash
    body = _body(CASES[0]["checkpoint"]).encode()
    assert not cosigner.verifier().verify(body, bytes(8) + plain.sign(body))
    signed = add_signatures(CASES[0]["checkpoint"], plain)
    with pytest.raises(UnverifiedNote):
        open_note(signed, VerifierList(cosigner.verifier()))


def test_generated_cosigner_key_round_trip() -> None:
    skey, vkey = generate_key("witness.example/new", ALG_COSIGNATURE_V1)
    signer = parse_cosignature_signer(skey, clock=lambda: 1234)
    assert signer.vkey() == vkey
    cp = CASES[0]["checkpoint"]
    n = open_note(add_signatures(cp, signer), VerifierList(LOG_V, parse_verifier(vkey)))
    witness = parse_verifier(vkey)
    assert isinstance(witness, CosignatureVerifier)
    assert witness.timestamp_of(n.sigs[1]) == 1234
    plain_skey, _ = generate_key("witness.example/new")
    with pytest.raises(MalformedKey, match="0x04"):
        parse_cosignature_signer(plain_skey)


def test_bad_seed_refused() -> None:
    with pytest.raises(MalformedKey):
        CosignatureSigner("w.example/x", bytes(31))
    with pytest.raises(MalformedKey):
        CosignatureSigner("w example", bytes(32))


def test_secret_not_in_repr() -> None:
    seed = bytes(range(32))
    signer = CosignatureSigner("witness.example/w1", seed)
    for text in (repr(signer), str(signer)):
        assert seed.hex() not in text
        assert base64.b64encode(seed).decode() not in text
        assert base64.b64encode(b"\x04" + seed).decode() not in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_protocols_are_satisfied() -> None:
    signer = _signer(CASES[0])
    assert isinstance(signer, Signer)
    assert isinstance(signer.verifier(), Verifier)
