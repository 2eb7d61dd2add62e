"""Tests for hashfed.signing.keys: vkey/skey parsing, key hashes, key files."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
from hashfed.signing.cosignature import CosignatureVerifier
from hashfed.signing.errors import InsecureKeyFile, MalformedKey, SigningError
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Ed25519Signer,
    Ed25519Verifier,
    Signer,
    Verifier,
    check_key_name,
    compute_key_hash,
    decode_base64,
    generate_key,
    parse_signer,
    parse_verifier,
    read_key_file,
    write_key_file,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
NOTE_VECTORS: dict[str, Any] = json.loads((VECTORS / "note" / "vectors.json").read_text())

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def _keys_with_skey() -> list[tuple[str, str, str]]:
    out = [(name, k["vkey"], k["skey"]) for name, k in NOTE_VECTORS["keys"].items() if "skey" in k]
    tessera = NOTE_VECTORS["tessera_testdata_log"]
    out.append(("tessera", tessera["vkey"], tessera["skey"]))
    return out


@pytest.mark.parametrize(("label", "vkey", "skey"), _keys_with_skey(), ids=lambda x: str(x)[:20])
def test_vector_skey_matches_vkey(label: str, vkey: str, skey: str) -> None:
    signer = parse_signer(skey)
    assert signer.vkey() == vkey
    verifier = parse_verifier(vkey)
    assert isinstance(verifier, Ed25519Verifier)
    assert verifier.name == signer.name == vkey.split("+")[0]
    assert verifier.key_hash == signer.key_hash == int(vkey.split("+")[1], 16)
    assert verifier.vkey() == vkey
    msg = b"hello\n"
    sig = signer.sign(msg)
    assert len(sig) == 64
    assert verifier.verify(msg, sig)
    assert not verifier.verify(msg + b"x", sig)
    assert not verifier.verify(msg, sig[:-1])


@pytest.mark.parametrize("name", sorted(NOTE_VECTORS["keys"]))
def test_vector_vkeys_parse(name: str) -> None:
    vkey = NOTE_VECTORS["keys"][name]["vkey"]
    v = parse_verifier(vkey)
    assert v.name == name
    assert isinstance(v, Ed25519Verifier)
    assert v.vkey() == vkey


def test_key_hash_formula() -> None:
    raw = base64.b64decode(PETER_VKEY.split("+")[2])
    assert raw[0] == ALG_ED25519
    assert compute_key_hash("PeterNeumann", ALG_ED25519, raw[1:]) == 0xC74F20A3
    # The type byte is part of the hash: the same key as a cosigner has another hash.
    assert compute_key_hash("PeterNeumann", ALG_COSIGNATURE_V1, raw[1:]) != 0xC74F20A3


@pytest.mark.parametrize("vkey", NOTE_VECTORS["bad_vkeys"])
def test_bad_vkey_vectors_refused(vkey: str) -> None:
    with pytest.raises(MalformedKey):
        parse_verifier(vkey)


def _vkey(name: str, alg: int, key: bytes, key_hash: int | None = None) -> str:
    if key_hash is None:
        key_hash = compute_key_hash(name, alg, key)
    return f"{name}+{key_hash:08x}+{base64.b64encode(bytes([alg]) + key).decode()}"


PETER_PUB = base64.b64decode(PETER_VKEY.split("+")[2])[1:]

MORE_BAD_VKEYS = {
    "uppercase-hash": "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "short-hash": "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "trailing-newline": PETER_VKEY + "\n",
    "leading-space": " " + PETER_VKEY,
    "empty-name": _vkey("", ALG_ED25519, PETER_PUB),
    "space-in-name": _vkey("Peter Neumann", ALG_ED25519, PETER_PUB),
    "33-byte-key": _vkey("PeterNeumann", ALG_ED25519, PETER_PUB + b"\0"),
    "31-byte-key": _vkey("PeterNeumann", ALG_ED25519, PETER_PUB[:31]),
    "type-0x02": _vkey("PeterNeumann", 0x02, PETER_PUB),
    "empty-key": "PeterNeumann+e3b0c442+",
    "urlsafe-base64": PETER_VKEY.replace("qq/", "qq_"),
    "extra-padding": PETER_VKEY + "=",
    "empty": "",
}


@pytest.mark.parametrize("vkey", MORE_BAD_VKEYS.values(), ids=MORE_BAD_VKEYS.keys())
def test_more_bad_vkeys_refused(vkey: str) -> None:
    with pytest.raises(MalformedKey):
        parse_verifier(vkey)


def test_malformed_key_message_names_key() -> None:
    with pytest.raises(MalformedKey, match=r"PeterNeumann.*does not match"):
        parse_verifier("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_non_canonical_base64_refused() -> None:
    # "QR==" decodes to the same byte as "QQ==" but has non-zero padding bits.
    assert decode_base64("QQ==") == b"A"
    for bad in ["QR==", "QQ", "QQ=", "Q===", "QQ==QQ==", "QQ== ", "Q Q=="]:
        with pytest.raises(ValueError):
            decode_base64(bad)


@pytest.mark.parametrize(
    "name", ["", "a+b", "a b", "a\tb", "a\u00a0b", "a\u2003b", "a\nb", "a\x00b", "\ud800"]
)
def test_bad_key_names(name: str) -> None:
    with pytest.raises(MalformedKey):
        check_key_name(name)
    with pytest.raises(MalformedKey):
        generate_key(name)


@pytest.mark.parametrize("name", ["example.com/log", "PeterNeumann", "ñame/ü", "a"])
def test_good_key_names(name: str) -> None:
    check_key_name(name)


def test_generate_key_round_trip() -> None:
    skey, vkey = generate_key("example.com/test")
    assert skey.startswith("PRIVATE+KEY+example.com/test+")
    name, hash_hex, key64 = vkey.split("+", 2)
    assert name == "example.com/test"
    assert len(hash_hex) == 8
    assert base64.b64decode(key64)[0] == ALG_ED25519
    assert skey.split("+")[3] == hash_hex
    signer = parse_signer(skey)
    verifier = parse_verifier(vkey)
    assert signer.vkey() == vkey
    assert verifier.verify(b"m\n", signer.sign(b"m\n"))
    # Two calls give different keys.
    assert generate_key("example.com/test") != (skey, vkey)


def test_generate_cosigner_key() -> None:
    skey, vkey = generate_key("witness.example/w", ALG_COSIGNATURE_V1)
    v = parse_verifier(vkey)
    assert isinstance(v, CosignatureVerifier)
    assert v.vkey() == vkey
    with pytest.raises(MalformedKey, match="0x04"):
        parse_signer(skey)
    with pytest.raises(MalformedKey):
        generate_key("x", 0x02)


def _skey(name: str, alg: int, seed: bytes, key_hash: int) -> str:
    return f"PRIVATE+KEY+{name}+{key_hash:08x}+{base64.b64encode(bytes([alg]) + seed).decode()}"


PETER_SKEY = NOTE_VECTORS["keys"]["PeterNeumann"]["skey"]
PETER_SEED = base64.b64decode(PETER_SKEY.split("+")[4])[1:]

BAD_SKEYS = {
    "vkey-not-skey": PETER_VKEY,
    "lowercase-prefix": PETER_SKEY.replace("PRIVATE+KEY", "private+key"),
    "wrong-hash": _skey("PeterNeumann", ALG_ED25519, PETER_SEED, 0xC74F20A4),
    "wrong-name": _skey("PeterNeumanm", ALG_ED25519, PETER_SEED, 0xC74F20A3),
    "short-seed": _skey("PeterNeumann", ALG_ED25519, PETER_SEED[:31], 0xC74F20A3),
    "long-seed": _skey("PeterNeumann", ALG_ED25519, PETER_SEED + b"\0", 0xC74F20A3),
    "truncated": PETER_SKEY[:-4],
    "missing-key": "PRIVATE+KEY+PeterNeumann+c74f20a3",
    "empty": "",
}


@pytest.mark.parametrize("skey", BAD_SKEYS.values(), ids=BAD_SKEYS.keys())
def test_bad_skeys_refused(skey: str) -> None:
    with pytest.raises(MalformedKey) as info:
        parse_signer(skey)
    # The secret never appears in the message.
    assert base64.b64encode(PETER_SEED).decode()[:16] not in str(info.value)


def test_secret_not_in_repr() -> None:
    skey, _ = generate_key("example.com/secret")
    secret64 = skey.split("+", 4)[4]  # the base64 itself may contain "+"
    seed = base64.b64decode(secret64)[1:]
    signer = parse_signer(skey)
    for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}"):
        assert secret64 not in text
        assert seed.hex() not in text
        assert "example.com/secret" in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_protocols_are_satisfied() -> None:
    signer = parse_signer(PETER_SKEY)
    assert isinstance(signer, Signer)
    assert isinstance(signer, Ed25519Signer)
    assert isinstance(signer.verifier(), Verifier)
    assert not isinstance(signer.verifier(), Signer)


# Key files.


def test_write_key_file_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    old = os.umask(0)  # even with a permissive umask the file is owner-only
    try:
        write_key_file(path, PETER_SKEY)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == PETER_SKEY + "\n"
    assert read_key_file(path) == PETER_SKEY
    assert parse_signer(read_key_file(path)).name == "PeterNeumann"


def test_write_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    path.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_key_file(path, PETER_SKEY)
    assert path.read_text() == "keep me\n"


def test_write_key_file_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "log.key"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_key_file(link, PETER_SKEY)
    assert not target.exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666, 0o610])
def test_read_key_file_refuses_shared_modes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "log.key"
    write_key_file(path, PETER_SKEY)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFile) as info:
        read_key_file(path)
    message = str(info.value)
    assert f"{mode:04o}" in message
    assert f"chmod 600 {path}" in message
    assert isinstance(info.value, SigningError)
    path.chmod(0o600)
    assert read_key_file(path) == PETER_SKEY


def test_read_key_file_accepts_0400(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    write_key_file(path, PETER_SKEY)
    path.chmod(0o400)
    assert read_key_file(path) == PETER_SKEY
