"""Tests for hashfed.protocol.policy (C2SP tlog-policy)."""

from __future__ import annotations

import base64
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hashfed.protocol.checkpoint import Checkpoint, sign_checkpoint
from hashfed.protocol.errors import MalformedPolicy, OriginMismatch
from hashfed.protocol.policy import (
    MAX_GROUPS,
    MAX_LOGS,
    MAX_WITNESSES,
    Policy,
    PolicyGroup,
    format_policy,
    parse_policy,
)
from hashfed.signing.cosignature import CosignatureSigner
from hashfed.signing.errors import InvalidSignature
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Ed25519Signer,
    compute_key_hash,
    decode_vkey,
    encode_base64,
    generate_key,
    parse_signer,
)
from hashfed.signing.note import add_signatures

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
COSIG: dict[str, Any] = json.loads((VECTORS / "note" / "cosignature-vectors.json").read_text())

ORIGIN = "example.com/log/policytest"
LOG_SIGNER: Ed25519Signer = parse_signer(generate_key(ORIGIN)[0])
WITNESS_NAMES = ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
SEEDS = {n: os.urandom(32) for n in WITNESS_NAMES}


def _cosigner(name: str, timestamp: int) -> CosignatureSigner:
    return CosignatureSigner(
        f"{name.lower()}.witness.example", SEEDS[name], clock=lambda: timestamp
    )


VKEYS = {n: _cosigner(n, 0).vkey() for n in WITNESS_NAMES}

EXAMPLE = f"""\
# The example of the spec, two levels of groups.
log {LOG_SIGNER.vkey()}

witness X1 {VKEYS["X1"]}
witness X2 {VKEYS["X2"]}
witness X3 {VKEYS["X3"]}
group X-witnesses 2 X1 X2 X3

witness Y1 {VKEYS["Y1"]}
witness Y2 {VKEYS["Y2"]}
witness Y3 {VKEYS["Y3"]}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""

CP = Checkpoint(ORIGIN, 42, bytes(range(32)))
SIGNED = sign_checkpoint(CP, LOG_SIGNER)


def _cosign(note: str, stamps: dict[str, int]) -> str:
    if not stamps:
        return note
    return add_signatures(note, *(_cosigner(n, t) for n, t in stamps.items()))


def _wvkey(name: str = "w.example") -> str:
    return generate_key(name, ALG_COSIGNATURE_V1)[1]


def _lvkey(name: str = "log.example") -> str:
    return generate_key(name, ALG_ED25519)[1]


# --- parsing -----------------------------------------------------------------


def test_parse_example() -> None:
    p = parse_policy(EXAMPLE)
    assert [log.origin for log in p.logs] == [ORIGIN]
    assert p.logs[0].url is None
    assert [w.name for w in p.witnesses] == WITNESS_NAMES
    assert p.groups == (
        PolicyGroup("X-witnesses", 2, ("X1", "X2", "X3")),
        PolicyGroup("Y-witnesses", 1, ("Y1", "Y2", "Y3")),
        PolicyGroup("X-and-Y", 2, ("X-witnesses", "Y-witnesses")),
    )
    assert p.quorum == "X-and-Y"
    assert p.witnesses[0].verifier.vkey() == VKEYS["X1"]
    assert parse_policy(EXAMPLE.encode()) == p


def test_round_trip() -> None:
    p = parse_policy(EXAMPLE)
    text = format_policy(p)
    assert parse_policy(text) == p
    assert format_policy(parse_policy(text)) == text
    assert "#" not in text and "\n\n" not in text
    assert "group X-witnesses 2 X1 X2 X3\n" in text
    assert "group Y-witnesses any Y1 Y2 Y3\n" in text
    assert text.endswith("group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n")


def test_whitespace_comments_urls() -> None:
    w = _wvkey()
    text = (
        f"\t # comment\n   \n\t\n  log \t{_lvkey()}\thttps://log.example/  \n"
        f"witness  w\t{w} https://w.example/submit\n"
        "group  g\t\tany w \t\nquorum g"  # no final newline: tolerated
    )
    p = parse_policy(text)
    assert p.logs[0].url == "https://log.example/"
    assert p.witnesses[0].url == "https://w.example/submit"
    assert p.groups[0].members == ("w",)
    assert parse_policy(format_policy(p)) == p


def test_quorum_none_without_witnesses() -> None:
    p = parse_policy("quorum none\n")
    assert p == Policy((), (), (), "none")
    assert format_policy(p) == "quorum none\n"
    assert p.satisfied_by(set())
    assert p.applies_to("anything")


def test_quorum_single_witness() -> None:
    p = parse_policy(f"witness w {_wvkey()}\nquorum w\n")
    assert p.satisfied_by({"w"})
    assert not p.satisfied_by(set())
    assert not p.satisfied_by({"other"})


def test_names_are_opaque_octets() -> None:
    w1, w2 = _wvkey("a.example"), _wvkey("b.example")
    kelvin = "\u212a"
    raw = f"witness K {w1}\nwitness {kelvin} {w2}\ngroup g all K {kelvin}\nquorum g\n".encode()
    p = parse_policy(raw)
    assert [w.name for w in p.witnesses] == ["K", kelvin]
    assert not p.satisfied_by({"K"})
    assert p.satisfied_by({"K", kelvin})
    # Non-UTF-8 octets in names, URLs and comments survive a round trip.
    odd = b"# \xff\xfe\nwitness w\xe9 " + w1.encode() + b" https://\xc3\x28/\nquorum w\xe9\n"
    q = parse_policy(odd)
    assert format_policy(q).encode("utf-8", errors="surrogateescape") == odd.split(b"\n", 1)[1]
    assert parse_policy(format_policy(q)) == q


def test_keyword_like_names() -> None:
    p = parse_policy(f"witness all {_wvkey()}\ngroup any any all\nquorum any\n")
    assert p.groups[0] == PolicyGroup("any", 1, ("all",))
    assert p.satisfied_by({"all"})


# --- quorum evaluation -------------------------------------------------------


def _expected(cosigned: set[str]) -> bool:
    x = len(cosigned & {"X1", "X2", "X3"}) >= 2
    y = len(cosigned & {"Y1", "Y2", "Y3"}) >= 1
    return x and y


def test_satisfied_by_every_subset() -> None:
    p = parse_policy(EXAMPLE)
    count = 0
    for r in range(len(WITNESS_NAMES) + 1):
        for subset in itertools.combinations(WITNESS_NAMES, r):
            s = set(subset)
            assert p.satisfied_by(s) is _expected(s), s
            count += 1
    assert count == 64
    # Group names and unknown names in the input do not count as cosigners.
    assert not p.satisfied_by({"X-witnesses", "Y-witnesses", "X-and-Y"})
    assert not p.satisfied_by({"X1", "X2", "Z9"})


def test_thresholds() -> None:
    keys = {n: _wvkey(f"{n}.example") for n in "abcd"}
    head = "".join(f"witness {n} {v}\n" for n, v in keys.items())
    for spec, k in [("1", 1), ("2", 2), ("3", 3), ("4", 4), ("any", 1), ("all", 4)]:
        p = parse_policy(head + f"group g {spec} a b c d\nquorum g\n")
        assert p.groups[0].threshold == k
        for r in range(5):
            for subset in itertools.combinations("abcd", r):
                assert p.satisfied_by(set(subset)) is (r >= k)
        assert parse_policy(format_policy(p)) == p


# --- syntax errors -----------------------------------------------------------


def _err(text: str | bytes, line: int | None, *words: str) -> None:
    with pytest.raises(MalformedPolicy) as ei:
        parse_policy(text)
    msg = str(ei.value)
    if line is not None:
        assert f"line {line}:" in msg, msg
    for w in words:
        assert w in msg, msg


W1, W2 = _wvkey("one.example"), _wvkey("two.example")
L1 = _lvkey("log.example")
BASE = f"witness a {W1}\nwitness b {W2}\n"


def test_unknown_keyword() -> None:
    _err(BASE + "witnesses c x\nquorum a\n", 3, "unknown keyword", "witnesses")
    _err("Quorum none\n", 1, "unknown keyword")


def test_duplicate_witness_key() -> None:
    _err(BASE + f"witness c {W1}\nquorum a\n", 3, "same public key", "line 1")
    # Same public key under another key name (so another key hash) is a duplicate too.
    _, _, alg, pub = decode_vkey(W1)
    other = f"renamed.example+{compute_key_hash('renamed.example', alg, pub):08x}+" + (
        encode_base64(bytes([alg]) + pub)
    )
    _err(BASE + f"witness c {other}\nquorum a\n", 3, "same public key")


def test_duplicate_log_key() -> None:
    _err(f"log {L1}\nlog {L1} https://x/\nquorum none\n", 2, "duplicates", "line 1")
    _, _, alg, pub = decode_vkey(L1)
    other = f"log2.example+{compute_key_hash('log2.example', alg, pub):08x}+" + (
        encode_base64(bytes([alg]) + pub)
    )
    _err(f"log {L1}\n\nlog {other}\nquorum none\n", 3, "duplicates")
    # Two keys for one origin (key rotation) are fine.
    p = parse_policy(f"log {L1}\nlog {_lvkey('log.example')}\nquorum none\n")
    assert len(p.logs) == 2


def test_group_thresholds_bad() -> None:
    _err(BASE + "group g 0 a b\nquorum g\n", 3, "threshold 0", "1..2")
    _err(BASE + "group g 3 a b\nquorum g\n", 3, "threshold 3", "1..2")
    _err(BASE + "group g 99999999999999999999 a b\nquorum g\n", 3, "outside")
    _err(BASE + "group g 01 a b\nquorum g\n", 3, "leading zeros")
    _err(BASE + "group g -1 a b\nquorum g\n", 3, "not 'all', 'any'")
    _err(BASE + "group g ALL a b\nquorum g\n", 3, "not 'all', 'any'")
    _err(BASE + "group g \uff11 a b\nquorum g\n", 3, "not 'all', 'any'")  # fullwidth 1
    _err(BASE + "group g all\nquorum g\n", 3, "at least one member")


def test_group_members_bad() -> None:
    _err(BASE + "group g any a c\nquorum g\n", 3, "'c'", "earlier line")
    _err(BASE + "group g any a b a\nquorum g\n", 3, "'a'", "twice")
    _err(BASE + "group g any a none\nquorum g\n", 3, "'none'")
    _err(BASE + "group g any g\nquorum g\n", 3, "earlier line")  # self reference


def test_forward_reference() -> None:
    _err(f"witness a {W1}\ngroup g any a b\nwitness b {W2}\nquorum g\n", 2, "'b'", "earlier")
    _err(f"quorum a\nwitness a {W1}\n", 1, "quorum 'a'", "earlier")
    _err(BASE + "group h any g\ngroup g any a\nquorum h\n", 3, "'g'")


def test_duplicate_names() -> None:
    _err(BASE + f"witness a {_wvkey()}\nquorum a\n", 3, "already defined")
    _err(BASE + "group a any b\nquorum a\n", 3, "already defined")
    _err(f"witness none {W1}\nquorum none\n", 1, "already defined")
    _err(BASE + "group none any a\nquorum none\n", 3, "already defined")


def test_quorum_lines() -> None:
    _err(BASE + "quorum a\nquorum b\n", 4, "second quorum")
    _err(BASE, None, "no quorum line")
    _err("", None, "no quorum line")
    _err("# only a comment\n", None, "no quorum line")
    _err(BASE + "quorum a b\n", 3, "quorum <name>")
    _err(BASE + "quorum\n", 3, "quorum <name>")


def test_bad_vkeys() -> None:
    _err(f"witness a {W1[:-2]}xx\nquorum a\n", 1, "witness 'a'")
    _err("witness a not-a-key\nquorum a\n", 1, "witness 'a'")
    _err("log example.com+00000000+AQ==\nquorum none\n", 1, "log")
    _err(f"log {L1[:-1]}\nquorum none\n", 1, "log")
    # Extra or missing fields.
    _err(f"log {L1} https://a/ extra\nquorum none\n", 1, "log <vkey>")
    _err("log\nquorum none\n", 1, "log <vkey>")
    _err(f"witness a {W1} https://a/ extra\nquorum a\n", 1, "witness <name>")
    _err(f"witness {W1}\nquorum none\n", 1, "witness <name>")


def test_wrong_key_types() -> None:
    _err(f"log {W1}\nquorum none\n", 1, "0x04", "want 0x01")
    _err(f"witness a {L1}\nquorum a\n", 1, "0x01", "want 0x04")
    _, _, _, pub = decode_vkey(W1)
    weird = f"k.example+{compute_key_hash('k.example', 0x02, pub):08x}+" + encode_base64(
        b"\x02" + pub
    )
    _err(f"witness a {weird}\nquorum a\n", 1, "0x02")


@pytest.mark.parametrize("octet", [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
def test_control_characters(octet: int) -> None:
    raw = b"# fine\nquorum none" + bytes([octet]) + b"\n"
    _err(raw, 2, f"0x{octet:02x}")
    _err(raw.decode("latin-1"), 2, f"0x{octet:02x}")


def test_crlf_rejected() -> None:
    _err("quorum none\r\n", 1, "0x0d")


def test_allowed_octets() -> None:
    all_ok = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
    p = parse_policy(b"#" + all_ok + b"\nquorum none\n")
    assert p.quorum == "none"


def test_lone_surrogate_str() -> None:
    _err("quorum none\n# \ud800\n", 2, "surrogate")


def test_limits() -> None:
    logs = "".join(f"log {_lvkey(f'l{i}.example')}\n" for i in range(MAX_LOGS))
    witnesses = "".join(f"witness w{i} {_wvkey(f'w{i}.example')}\n" for i in range(MAX_WITNESSES))
    groups = "".join(f"group g{i} any w0\n" for i in range(MAX_GROUPS))
    p = parse_policy(logs + witnesses + groups + "quorum g0\n")
    assert (len(p.logs), len(p.witnesses), len(p.groups)) == (MAX_LOGS, MAX_WITNESSES, MAX_GROUPS)
    n = MAX_LOGS + MAX_WITNESSES + MAX_GROUPS + 1
    _err(logs + f"log {_lvkey()}\nquorum none\n", MAX_LOGS + 1, f"more than {MAX_LOGS} logs")
    _err(witnesses + f"witness x {_wvkey()}\nquorum none\n", MAX_WITNESSES + 1, "witnesses")
    _err(logs + witnesses + groups + "group x any w1\nquorum none\n", n, "groups")


def test_format_rejects_invalid_hand_built_policy() -> None:
    p = parse_policy(EXAMPLE)
    bad = Policy(p.logs, p.witnesses, p.groups, "nobody")
    with pytest.raises(MalformedPolicy):
        format_policy(bad)


# --- applies_to / log_for ----------------------------------------------------


def test_log_for_and_applies_to() -> None:
    p = parse_policy(EXAMPLE)
    log = p.log_for(ORIGIN)
    assert log is not None and log.vkey == LOG_SIGNER.vkey()
    assert p.log_for("other.example/log") is None
    assert p.applies_to(ORIGIN)
    assert not p.applies_to("other.example/log")
    assert parse_policy("quorum none\n").log_for(ORIGIN) is None


# --- check_checkpoint --------------------------------------------------------


def test_check_checkpoint_met_and_attested() -> None:
    p = parse_policy(EXAMPLE)
    stamps = {"X1": 1000, "X2": 1200, "X3": 1100, "Y1": 900, "Y2": 1300}
    r = p.check_checkpoint(_cosign(SIGNED, stamps), ORIGIN)
    assert r.met
    assert r.cosigners == stamps
    # X needs two of {1000, 1200, 1100} -> 1100; Y needs one of {900, 1300} -> 1300.
    assert r.attested == 1100


@pytest.mark.parametrize(
    ("stamps", "met", "attested"),
    [
        ({}, False, None),
        ({"X1": 10, "X2": 20}, False, None),
        ({"X1": 10, "Y1": 20, "Y2": 30}, False, None),
        ({"X1": 10, "X2": 20, "Y3": 5}, True, 5),
        ({"X1": 10, "X2": 20, "Y3": 50}, True, 10),
        ({"X1": 10, "X2": 20, "X3": 30, "Y3": 50}, True, 20),
        ({"X1": 7, "X2": 7, "X3": 7, "Y1": 7, "Y2": 7, "Y3": 7}, True, 7),
    ],
)
def test_check_checkpoint_subsets(stamps: dict[str, int], met: bool, attested: int | None) -> None:
    r = parse_policy(EXAMPLE).check_checkpoint(_cosign(SIGNED, stamps), ORIGIN)
    assert (r.met, r.attested, r.cosigners) == (met, attested, stamps)


def test_attested_is_largest_cut_by_brute_force() -> None:
    p = parse_policy(EXAMPLE)
    stamps = {"X1": 50, "X2": 10, "X3": 40, "Y1": 20, "Y2": 60, "Y3": 30}
    note = _cosign(SIGNED, stamps)
    for r in range(len(stamps) + 1):
        for subset in itertools.combinations(stamps, r):
            s = {n: stamps[n] for n in subset}
            res = p.check_checkpoint(_cosign(SIGNED, s), ORIGIN)
            cuts = [t for t in range(70) if p.satisfied_by({n for n in s if s[n] >= t})]
            assert res.met is _expected(set(s))
            assert res.attested == (max(cuts) if res.met else None)
    assert p.check_checkpoint(note, ORIGIN).attested == 40


def test_bad_cosignature_does_not_count() -> None:
    p = parse_policy(EXAMPLE)
    note = _cosign(SIGNED, {"X1": 100, "X2": 100, "Y1": 100})
    # Forge Y1's line: keep its key hash and timestamp, flip a signature bit.
    head, y1_line = note.rstrip("\n").rsplit("\n", 1)
    prefix, b64 = y1_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    forged = f"{head}\n{prefix} {encode_base64(bytes(raw))}\n"
    r = p.check_checkpoint(forged, ORIGIN)
    assert not r.met and r.attested is None
    assert r.cosigners == {"X1": 100, "X2": 100}
    # A cosignature of another checkpoint, pasted in, does not count either.
    other = _cosign(sign_checkpoint(Checkpoint(ORIGIN, 43, bytes(32)), LOG_SIGNER), {"Y2": 5})
    pasted = forged + other.rstrip("\n").rsplit("\n", 1)[1] + "\n"
    assert not p.check_checkpoint(pasted, ORIGIN).met
    # A valid Y2 cosignature added afterwards still counts.
    fixed = add_signatures(forged, _cosigner("Y2", 150))
    r = p.check_checkpoint(fixed, ORIGIN)
    assert r.met and r.attested == 100 and "Y1" not in r.cosigners


def test_unlisted_signers_ignored_and_log_key_tolerated() -> None:
    p = parse_policy(EXAMPLE)
    other_log = parse_signer(generate_key(ORIGIN)[0])  # same origin, key not in the policy
    note = _cosign(sign_checkpoint(CP, other_log), {"X1": 5, "X2": 6, "Y1": 7})
    stranger = CosignatureSigner("stranger.example", os.urandom(32), clock=lambda: 99)
    r = p.check_checkpoint(add_signatures(note, stranger), ORIGIN)
    assert r.met and r.attested == 5 and set(r.cosigners) == {"X1", "X2", "Y1"}


def test_bad_log_signature_by_listed_key_raises() -> None:
    p = parse_policy(EXAMPLE)
    text, sig_line = SIGNED.rstrip("\n").rsplit("\n", 1)
    prefix, b64 = sig_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 0x80
    bad = f"{text}\n{prefix} {encode_base64(bytes(raw))}\n"
    with pytest.raises(InvalidSignature):
        p.check_checkpoint(_cosign(bad, {"X1": 1, "X2": 1, "Y1": 1}), ORIGIN)


def test_origin_checks() -> None:
    p = parse_policy(EXAMPLE)
    with pytest.raises(OriginMismatch):
        p.check_checkpoint(SIGNED, "other.example/log")
    # A policy without logs applies to any origin, but the checkpoint must match it.
    q = parse_policy(f"witness X1 {VKEYS['X1']}\nquorum X1\n")
    assert q.check_checkpoint(_cosign(SIGNED, {"X1": 3}), ORIGIN).attested == 3
    with pytest.raises(OriginMismatch):
        q.check_checkpoint(SIGNED, "other.example/log")


def test_now_disregards_future_cosignatures() -> None:
    p = parse_policy(EXAMPLE)
    note = _cosign(SIGNED, {"X1": 100, "X2": 200, "Y1": 150})
    assert p.check_checkpoint(note, ORIGIN, now=200).attested == 100
    r = p.check_checkpoint(note, ORIGIN, now=199)
    assert not r.met and r.cosigners == {"X1": 100, "Y1": 150}


def test_check_checkpoint_quorum_none() -> None:
    p = parse_policy(f"log {LOG_SIGNER.vkey()}\nwitness X1 {VKEYS['X1']}\nquorum none\n")
    r = p.check_checkpoint(SIGNED, ORIGIN)
    assert (r.met, r.cosigners, r.attested) == (True, {}, None)
    r = p.check_checkpoint(_cosign(SIGNED, {"X1": 9}), ORIGIN)
    assert (r.met, r.cosigners, r.attested) == (True, {"X1": 9}, None)


# --- the shared cosignature vectors ------------------------------------------


def _vector_policy() -> Policy:
    w = {c["witness"]: c["vkey"] for c in COSIG["cases"]}
    return parse_policy(
        f"log {COSIG['log_vkey']}\n"
        f"witness w1 {w['witness.example/w1']}\n"
        f"witness w2 {w['witness.example/w2']}\n"
        "group g all w1 w2\nquorum g\n"
    )


def _by_checkpoint() -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in COSIG["cases"]:
        out.setdefault(c["checkpoint"], {})[c["witness"].rsplit("/", 1)[1]] = c
    return out


def test_vectors_both_witnesses() -> None:
    p = _vector_policy()
    origin = p.logs[0].origin
    both = [cases for cases in _by_checkpoint().values() if {"w1", "w2"} <= set(cases)]
    assert len(both) >= 3
    for cases in both:
        w1, w2 = cases["w1"], cases["w2"]
        note = w1["cosigned_checkpoint"] + w2["cosignature_line"]
        r = p.check_checkpoint(note, origin)
        assert r.met
        assert r.cosigners == {"w1": w1["timestamp"], "w2": w2["timestamp"]}
        assert r.attested == min(w1["timestamp"], w2["timestamp"])
        # Either witness alone does not meet "all".
        assert not p.check_checkpoint(w1["cosigned_checkpoint"], origin).met
        assert not p.check_checkpoint(w2["cosigned_checkpoint"], origin).met
        # With "any", the freshest cosignature decides.
        q = parse_policy(format_policy(p).replace("group g all", "group g any"))
        assert q.check_checkpoint(note, origin).attested == max(w1["timestamp"], w2["timestamp"])


def test_vectors_cosignature_of_other_checkpoint() -> None:
    p = _vector_policy()
    groups = list(_by_checkpoint().values())
    a, b = groups[0], groups[1]
    mixed = a["w1"]["cosigned_checkpoint"] + b["w2"]["cosignature_line"]
    r = p.check_checkpoint(mixed, p.logs[0].origin)
    assert not r.met and r.cosigners == {"w1": a["w1"]["timestamp"]}
