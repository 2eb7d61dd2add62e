"""Tests for hashfed.signing.note against the Go reference vectors and bad input."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hashfed.signing.errors import (
    AmbiguousKey,
    InvalidSignature,
    MalformedNote,
    SigningError,
    UnknownKey,
    UnverifiedNote,
)
from hashfed.signing.keys import (
    Ed25519Signer,
    Verifier,
    generate_key,
    parse_signer,
    parse_verifier,
)
from hashfed.signing.note import (
    MAX_SIGNATURES,
    Note,
    Signature,
    VerifierList,
    add_signatures,
    open_note,
    sign_note,
    signature_line,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
NOTE_VECTORS: dict[str, Any] = json.loads((VECTORS / "note" / "vectors.json").read_text())
KEYS: dict[str, dict[str, str]] = NOTE_VECTORS["keys"]

PETER = parse_signer(KEYS["PeterNeumann"]["skey"])
PETER_V = parse_verifier(KEYS["PeterNeumann"]["vkey"])
ENOCH_V = parse_verifier(KEYS["EnochRoot"]["vkey"])
SIGNED = NOTE_VECTORS["sign"][0]["want"]
TEXT = NOTE_VECTORS["sign"][0]["text"]


def _verifiers(names: list[str]) -> VerifierList:
    return VerifierList(*(parse_verifier(KEYS[n]["vkey"]) for n in names))


@pytest.mark.parametrize("case", NOTE_VECTORS["sign"], ids=lambda c: c["signer"])
def test_sign_vectors(case: dict[str, Any]) -> None:
    signer = parse_signer(KEYS[case["signer"]]["skey"])
    assert sign_note(case["text"], signer) == case["want"]
    n = open_note(case["want"], VerifierList(signer.verifier()))
    assert n.text == case["text"]
    assert [s.name for s in n.sigs] == [case["signer"]]


def _open_case_id(case: dict[str, Any]) -> str:
    verifiers = "+".join(case["verifiers"]) or "none"
    return f"{verifiers}-{case.get('want_error', 'ok')}".replace(" ", "_")


@pytest.mark.parametrize("case", NOTE_VECTORS["open"], ids=_open_case_id)
def test_open_vectors(case: dict[str, Any]) -> None:
    verifiers = _verifiers(case["verifiers"])
    for msg in (case["note"], case["note"].encode("utf-8")):
        if "want_error" in case:
            want = case["want_error"]
            expected: type[SigningError]
            if want.startswith("malformed note"):
                expected = MalformedNote
            elif want == "invalid signature":
                expected = InvalidSignature
            elif want == "no verifiable signatures":
                expected = UnverifiedNote
            else:
                raise AssertionError(f"unknown want_error {want!r} in vectors")
            with pytest.raises(expected):
                open_note(msg, verifiers)
            continue
        n = open_note(msg, verifiers)
        assert n.text == case["want_text"]
        assert [s.name for s in n.sigs] == case["want_verified"]
        assert [s.name for s in n.unverified_sigs] == case["want_unverified"]


def test_unverified_note_carries_note() -> None:
    with pytest.raises(UnverifiedNote) as info:
        open_note(NOTE_VECTORS["open"][0]["note"], VerifierList())
    note = info.value.note
    assert isinstance(note, Note)
    assert note.text == TEXT
    assert note.sigs == []
    assert [s.name for s in note.unverified_sigs] == ["PeterNeumann", "EnochRoot"]
    assert note.unverified_sigs[0].key_hash == 0xC74F20A3
    assert "PeterNeumann" in str(info.value)


def test_invalid_signature_names_key() -> None:
    bad = SIGNED.replace(TEXT, TEXT.replace("problem,", "problem;"))
    with pytest.raises(InvalidSignature, match=r"PeterNeumann\+c74f20a3"):
        open_note(bad, VerifierList(PETER_V))


def test_signature_line_matches_vector() -> None:
    line = signature_line(TEXT, PETER)
    assert TEXT + "\n" + line == SIGNED
    sig = Signature("PeterNeumann", 0xC74F20A3, line.split(" ")[2].rstrip("\n"))
    assert sig.line() == line


def test_blank_lines_in_text() -> None:
    for text in ["a\n\nb\n", "a\n\n", "\n", "\n\n\n", "x\n\n\n\ny\n"]:
        signed = sign_note(text, PETER)
        n = open_note(signed, VerifierList(PETER_V))
        assert n.text == text


def test_unicode_text() -> None:
    text = (
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n"
        "\ned è subito sera.\n"
    )
    n = open_note(sign_note(text, PETER), VerifierList(PETER_V))
    assert n.text == text


BAD_TEXTS = {
    "empty": "",
    "no-final-newline": "hello",
    "tab": "hello\tworld\n",
    "carriage-return": "hello\r\n",
    "nul": "a\x00\n",
    "escape": "\x1b[31mred\n",
    "lone-surrogate": "\ud800\n",
}


@pytest.mark.parametrize("text", BAD_TEXTS.values(), ids=BAD_TEXTS.keys())
def test_sign_refuses_bad_text(text: str) -> None:
    with pytest.raises(MalformedNote):
        sign_note(text, PETER)


def test_sign_refuses_no_or_duplicate_signers() -> None:
    with pytest.raises(SigningError, match="at least one"):
        sign_note(TEXT)
    with pytest.raises(SigningError, match="already has a signature"):
        sign_note(TEXT, PETER, PETER)


SIG_LINE = SIGNED[len(TEXT) + 1 :]
SIG64 = SIG_LINE.split(" ")[2].rstrip("\n")
RAW_SIG = base64.b64decode(SIG64)

MALFORMED_NOTES: dict[str, str | bytes] = {
    "no-blank-line": TEXT + SIG_LINE,
    "no-signatures": TEXT + "\n",
    "no-final-newline": SIGNED[:-1],
    "extra-blank-line-at-end": SIGNED + "\n",
    "hyphen-not-em-dash": SIGNED.replace("— ", "- "),
    "em-dash-without-space": SIGNED.replace("— ", "—"),
    "two-spaces": SIGNED.replace("— PeterNeumann ", "— PeterNeumann  "),
    "no-space-before-sig": SIGNED.replace("— PeterNeumann ", "— PeterNeumann"),
    "no-signature-after-name": TEXT + "\n— PeterNeumann \n",
    "name-only": TEXT + "\n— PeterNeumann\n",
    "empty-name": SIGNED.replace("— PeterNeumann ", "—  "),
    "plus-in-name": SIGNED.replace("PeterNeumann", "Peter+Neumann"),
    "bad-base64-char": SIGNED.replace(SIG64, "!" + SIG64[1:]),
    "urlsafe-base64": SIGNED.replace(SIG64, SIG64.replace("/", "_")),
    "missing-padding": SIGNED.replace(SIG64, SIG64.rstrip("=")),
    "non-canonical-padding-bits": SIGNED.replace(SIG64, SIG64[:-2] + "N="),
    "sig-4-bytes": SIGNED.replace(SIG64, base64.b64encode(RAW_SIG[:4]).decode()),
    "sig-empty-base64": SIGNED.replace(SIG64, ""),
    "tab-in-text": SIGNED.replace("If you", "If\tyou"),
    "cr-in-sigs": SIGNED.replace("\n—", "\r\n—"),
    "crlf-line-ends": SIGNED.replace("\n", "\r\n"),
    "bad-utf8": SIGNED.encode("utf-8").replace(b"If", b"I\xff"),
    "truncated-em-dash": SIGNED.encode("utf-8")[: len(TEXT) + 2],
    "overlong-utf8": SIGNED.encode("utf-8").replace(b"If", b"I\xc1\x86"),
    "surrogate-in-str": SIGNED.replace("If", "I\udcff"),
    "101-signatures": TEXT + "\n" + SIG_LINE * 101,
}


@pytest.mark.parametrize("msg", MALFORMED_NOTES.values(), ids=MALFORMED_NOTES.keys())
def test_malformed_notes(msg: str | bytes) -> None:
    with pytest.raises(MalformedNote):
        open_note(msg, VerifierList(PETER_V))


def test_sig_5_bytes_is_well_formed_but_invalid() -> None:
    short = SIGNED.replace(SIG64, base64.b64encode(RAW_SIG[:5]).decode())
    with pytest.raises(InvalidSignature):
        open_note(short, VerifierList(PETER_V))


def test_blank_line_between_sigs_moves_the_split() -> None:
    # The last blank line ends the text, so the first signature line becomes text.
    with pytest.raises(InvalidSignature):
        open_note(SIGNED + "\n" + SIG_LINE, VerifierList(PETER_V))


def test_every_truncation_is_refused() -> None:
    data = SIGNED.encode("utf-8")
    for n in range(len(data)):
        with pytest.raises(SigningError):
            open_note(data[:n], VerifierList(PETER_V))


def test_every_bit_flip_is_refused() -> None:
    data = SIGNED.encode("utf-8")
    verifiers = VerifierList(PETER_V)
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            with pytest.raises(SigningError):
                open_note(bytes(flipped), verifiers)


def _signers(count: int) -> list[Ed25519Signer]:
    return [parse_signer(generate_key(f"example.com/k{i}")[0]) for i in range(count)]


def test_17_signatures_accepted() -> None:
    signers = _signers(17)
    signed = sign_note(TEXT, *signers)
    n = open_note(signed, VerifierList(*(s.verifier() for s in signers)))
    assert [s.name for s in n.sigs] == [s.name for s in signers]
    # With only one known key the other 16 are recorded unverified.
    n = open_note(signed, VerifierList(signers[3].verifier()))
    assert [s.name for s in n.sigs] == ["example.com/k3"]
    assert len(n.unverified_sigs) == 16


def test_100_accepted_101_refused() -> None:
    signers = _signers(MAX_SIGNATURES + 1)
    signed = sign_note(TEXT, *signers[:MAX_SIGNATURES])
    n = open_note(signed, VerifierList(signers[0].verifier()))
    assert len(n.sigs) + len(n.unverified_sigs) == MAX_SIGNATURES
    with pytest.raises(SigningError, match="at most 100"):
        sign_note(TEXT, *signers)
    with pytest.raises(SigningError, match="at most 100"):
        add_signatures(signed, signers[-1])
    too_many = signed + signature_line(TEXT, signers[-1])
    with pytest.raises(MalformedNote, match="101 signature lines"):
        open_note(too_many, VerifierList(signers[0].verifier()))


def test_unknown_key_same_name_other_hash_is_unverified() -> None:
    other = parse_signer(generate_key("PeterNeumann")[0])
    assert other.key_hash != PETER.key_hash
    signed = add_signatures(SIGNED, other)
    n = open_note(signed, VerifierList(PETER_V))
    assert n.sigs == [Signature("PeterNeumann", PETER.key_hash, SIG64)]
    assert [(s.name, s.key_hash) for s in n.unverified_sigs] == [("PeterNeumann", other.key_hash)]


def test_duplicate_signatures_dropped() -> None:
    signed = SIGNED + SIG_LINE + SIG_LINE
    n = open_note(signed, VerifierList(PETER_V))
    assert len(n.sigs) == 1
    enoch_line = NOTE_VECTORS["open"][0]["note"].split("\n")[-2] + "\n"
    n = open_note(SIGNED + enoch_line + enoch_line, VerifierList(PETER_V))
    assert [s.name for s in n.unverified_sigs] == ["EnochRoot"]


def test_add_signatures() -> None:
    other = parse_signer(generate_key("example.com/other")[0])
    both = add_signatures(SIGNED, other)
    assert both.startswith(SIGNED)
    assert both == sign_note(TEXT, PETER, other)
    n = open_note(both.encode(), VerifierList(PETER_V, other.verifier()))
    assert [s.name for s in n.sigs] == ["PeterNeumann", "example.com/other"]
    with pytest.raises(SigningError, match="already has a signature"):
        add_signatures(both, other)
    with pytest.raises(MalformedNote):
        add_signatures(TEXT, other)
    with pytest.raises(SigningError):
        add_signatures(SIGNED)


def test_verifier_list() -> None:
    vl = VerifierList(PETER_V, ENOCH_V, PETER_V)
    assert len(vl) == 2
    assert vl.verifier("PeterNeumann", 0xC74F20A3) is PETER_V
    with pytest.raises(UnknownKey, match=r"PeterNeumann\+c74f20a4"):
        vl.verifier("PeterNeumann", 0xC74F20A4)
    with pytest.raises(UnknownKey):
        vl.verifier("EnochRoot", 0xC74F20A3)
    with pytest.raises(AmbiguousKey):
        VerifierList(PETER_V, parse_verifier(KEYS["PeterNeumann"]["vkey"]))


class _LyingVerifiers:
    def verifier(self, name: str, key_hash: int) -> Verifier:
        return ENOCH_V


def test_verifiers_returning_wrong_key_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        open_note(SIGNED, _LyingVerifiers())
