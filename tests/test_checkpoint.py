"""Tests for hashfed.protocol.checkpoint against the tessera test log and bad input."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hashfed.protocol.checkpoint import (
    Checkpoint,
    open_checkpoint,
    parse_checkpoint_body,
    sign_checkpoint,
)
from hashfed.protocol.errors import MalformedCheckpoint, OriginMismatch, ProtocolError
from hashfed.signing.cosignature import CosignatureVerifier
from hashfed.signing.errors import (
    InvalidSignature,
    MalformedNote,
    SigningError,
    UnverifiedNote,
)
from hashfed.signing.keys import generate_key, parse_signer, parse_verifier
from hashfed.signing.note import VerifierList, sign_note

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
TILES = VECTORS / "tlog-tiles"
NOTE_VECTORS: dict[str, Any] = json.loads((VECTORS / "note" / "vectors.json").read_text())
COSIG: dict[str, Any] = json.loads((VECTORS / "note" / "cosignature-vectors.json").read_text())
TESSERA = NOTE_VECTORS["tessera_testdata_log"]
ORIGIN = "example.com/log/testdata"
LOG_SIGNER = parse_signer(TESSERA["skey"])
LOG_VERIFIERS = VerifierList(parse_verifier(TESSERA["vkey"]))
SIZES = list(range(16))


def _read(size: int) -> bytes:
    return (TILES / f"checkpoint.{size}").read_bytes()


def test_all_checkpoint_files_present() -> None:
    assert sorted(int(p.suffix[1:]) for p in TILES.glob("checkpoint.*")) == SIZES
    assert (TILES / "checkpoint").read_bytes() == _read(15)


@pytest.mark.parametrize("size", SIZES)
def test_tessera_checkpoint_opens(size: int) -> None:
    raw = _read(size)
    cp, note = open_checkpoint(raw, LOG_VERIFIERS, ORIGIN)
    assert cp.origin == ORIGIN
    assert cp.size == size
    assert len(cp.root) == 32
    assert cp.extensions == ()
    assert [s.name for s in note.sigs] == [ORIGIN]
    assert note.text == cp.body()
    # str input gives the same result.
    assert open_checkpoint(raw.decode(), LOG_VERIFIERS, ORIGIN)[0] == cp


@pytest.mark.parametrize("size", SIZES)
def test_tessera_checkpoint_resigns_byte_for_byte(size: int) -> None:
    raw = _read(size)
    cp, _ = open_checkpoint(raw, LOG_VERIFIERS, ORIGIN)
    assert parse_checkpoint_body(cp.body()) == cp
    assert sign_checkpoint(cp, LOG_SIGNER).encode("utf-8") == raw


def test_empty_tree_root() -> None:
    cp, _ = open_checkpoint(_read(0), LOG_VERIFIERS, ORIGIN)
    assert cp.root == hashlib.sha256(b"").digest()


def test_roots_differ() -> None:
    roots = {open_checkpoint(_read(n), LOG_VERIFIERS, ORIGIN)[0].root for n in SIZES}
    assert len(roots) == 16


def test_body_format() -> None:
    cp = Checkpoint("example.com/a", 10, bytes(range(32)), ("ext one", "ext2"))
    root64 = base64.b64encode(bytes(range(32))).decode()
    assert cp.body() == f"example.com/a\n10\n{root64}\next one\next2\n"
    assert parse_checkpoint_body(cp.body()) == cp


ROOT64 = base64.b64encode(bytes(32)).decode()
ROOT_FB64 = base64.b64encode(bytes([0xFB]) * 32).decode()
BAD_BODIES: dict[str, tuple[str, str]] = {
    # name: (text, a fragment the message must contain)
    "empty": ("", "newline"),
    "no-final-newline": (f"o\n1\n{ROOT64}", "newline"),
    "two-lines": ("o\n1\n", "at least 3"),
    "empty-origin": (f"\n1\n{ROOT64}\n", "line 1"),
    "empty-size": (f"o\n\n{ROOT64}\n", "line 2"),
    "empty-extension": (f"o\n1\n{ROOT64}\n\n", "line 4"),
    "empty-extension-middle": (f"o\n1\n{ROOT64}\na\n\nb\n", "line 5"),
    "leading-zero": (f"o\n01\n{ROOT64}\n", "line 2"),
    "double-zero": (f"o\n00\n{ROOT64}\n", "line 2"),
    "plus-sign": (f"o\n+1\n{ROOT64}\n", "line 2"),
    "minus": (f"o\n-1\n{ROOT64}\n", "line 2"),
    "space-in-size": (f"o\n 1\n{ROOT64}\n", "line 2"),
    "underscore": (f"o\n1_0\n{ROOT64}\n", "line 2"),
    "non-ascii-digit": (f"o\n\u0661\n{ROOT64}\n", "line 2"),
    "hex-size": (f"o\n0x10\n{ROOT64}\n", "line 2"),
    "size-2^63": (f"o\n{1 << 63}\n{ROOT64}\n", "line 2"),
    "size-huge": (f"o\n{'9' * 400}\n{ROOT64}\n", "line 2"),
    "root-31-bytes": (f"o\n1\n{base64.b64encode(bytes(31)).decode()}\n", "line 3"),
    "root-33-bytes": (f"o\n1\n{base64.b64encode(bytes(33)).decode()}\n", "line 3"),
    "root-no-padding": (f"o\n1\n{ROOT64.rstrip('=')}\n", "line 3"),
    "root-non-canonical": (f"o\n1\n{ROOT64[:-2]}B=\n", "line 3"),
    "root-urlsafe": (f"o\n1\n{ROOT_FB64.replace('+', '-')}\n", "line 3"),
    "root-hex": (f"o\n1\n{'00' * 32}\n", "line 3"),
    "crlf": (f"o\r\n1\r\n{ROOT64}\r\n", "line 2"),
    "control-in-origin": (f"o\x01\n1\n{ROOT64}\n", "control"),
}


@pytest.mark.parametrize(("text", "fragment"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_refused(text: str, fragment: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=fragment.replace("+", r"\+")) as info:
        parse_checkpoint_body(text)
    assert isinstance(info.value, ProtocolError)


def test_max_size_accepted() -> None:
    text = f"o\n{(1 << 63) - 1}\n{ROOT64}\n"
    assert parse_checkpoint_body(text).size == (1 << 63) - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"origin": "", "size": 0, "root": bytes(32)},
        {"origin": "a\nb", "size": 0, "root": bytes(32)},
        {"origin": "o", "size": -1, "root": bytes(32)},
        {"origin": "o", "size": 1 << 63, "root": bytes(32)},
        {"origin": "o", "size": 0, "root": bytes(31)},
        {"origin": "o", "size": 0, "root": bytes(32), "extensions": ("",)},
        {"origin": "o", "size": 0, "root": bytes(32), "extensions": ("a\nb",)},
    ],
)
def test_checkpoint_constructor_checks(kwargs: dict[str, Any]) -> None:
    with pytest.raises(MalformedCheckpoint):
        Checkpoint(**kwargs)


def test_wrong_origin_names_both() -> None:
    with pytest.raises(OriginMismatch) as info:
        open_checkpoint(_read(3), LOG_VERIFIERS, "example.com/other")
    assert ORIGIN in str(info.value)
    assert "example.com/other" in str(info.value)


def test_sign_requires_key_named_after_origin() -> None:
    cp = Checkpoint(ORIGIN, 0, bytes(32))
    other = parse_signer(generate_key("example.com/other")[0])
    with pytest.raises(OriginMismatch, match=r"example\.com/other"):
        sign_checkpoint(cp, other)


def test_signature_by_key_with_other_name_not_enough() -> None:
    # Correctly signed, but by a key not named after the origin.
    other = parse_signer(generate_key("example.com/other")[0])
    signed = sign_note(Checkpoint(ORIGIN, 0, bytes(32)).body(), other)
    with pytest.raises(UnverifiedNote, match="no verified signature by a key named"):
        open_checkpoint(signed, VerifierList(other.verifier()), ORIGIN)


def test_cosignature_alone_not_enough() -> None:
    case = COSIG["cases"][0]
    witness = parse_verifier(case["vkey"])
    assert isinstance(witness, CosignatureVerifier)
    with pytest.raises(UnverifiedNote) as info:
        open_checkpoint(case["cosigned_checkpoint"], VerifierList(witness), ORIGIN)
    assert [s.name for s in info.value.note.sigs] == [case["witness"]]
    cp, n = open_checkpoint(
        case["cosigned_checkpoint"], VerifierList(witness, *LOG_VERIFIERS), ORIGIN
    )
    assert cp.size == 1
    assert witness.timestamp_of(n.sigs[1]) == case["timestamp"]


def test_other_key_with_origin_name_is_unknown() -> None:
    impostor = parse_signer(generate_key(ORIGIN)[0])
    with pytest.raises(UnverifiedNote):
        open_checkpoint(_read(5), VerifierList(impostor.verifier()), ORIGIN)


def test_signed_note_that_is_not_a_checkpoint() -> None:
    signed = sign_note("hello\nworld\n", LOG_SIGNER)
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(signed, LOG_VERIFIERS, ORIGIN)
    signed = sign_note(f"{ORIGIN}\n01\n{ROOT64}\n", LOG_SIGNER)
    with pytest.raises(MalformedCheckpoint, match="line 2"):
        open_checkpoint(signed, LOG_VERIFIERS, ORIGIN)


def test_modified_size_refused() -> None:
    raw = _read(3).decode()
    with pytest.raises(InvalidSignature):
        open_checkpoint(raw.replace("\n3\n", "\n4\n", 1), LOG_VERIFIERS, ORIGIN)
    with pytest.raises(SigningError):
        open_checkpoint(raw.replace("\n3\n", "\n03\n", 1), LOG_VERIFIERS, ORIGIN)


def test_every_truncation_refused() -> None:
    raw = _read(7)
    for n in range(len(raw)):
        with pytest.raises((SigningError, ProtocolError)):
            open_checkpoint(raw[:n], LOG_VERIFIERS, ORIGIN)


def test_every_bit_flip_refused() -> None:
    raw = _read(7)
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            with pytest.raises((SigningError, ProtocolError)):
                open_checkpoint(bytes(flipped), LOG_VERIFIERS, ORIGIN)


def test_oversized_note_refused() -> None:
    raw = _read(7).decode()
    sig_line = raw[raw.rindex("\n\n") + 2 :]
    with pytest.raises(MalformedNote, match="at most 100"):
        open_checkpoint(raw + sig_line * 100, LOG_VERIFIERS, ORIGIN)


def test_extensions_round_trip_signed() -> None:
    signer = parse_signer(generate_key("example.com/ext")[0])
    cp = Checkpoint("example.com/ext", 42, hashlib.sha256(b"x").digest(), ("a b c", "— d"))
    signed = sign_checkpoint(cp, signer)
    got, note = open_checkpoint(signed, VerifierList(signer.verifier()), "example.com/ext")
    assert got == cp
    assert note.text == cp.body()
