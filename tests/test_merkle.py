"""Tests for hashfed.protocol.merkle against transparency-dev/merkle vectors and properties."""

from __future__ import annotations

import base64
import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from hashfed.protocol import merkle
from hashfed.protocol.errors import ProofFailed
from hashfed.protocol.merkle import (
    EMPTY_ROOT,
    check_consistency,
    check_inclusion,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_subtrees,
    root_of,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "merkle"

# Cases where hashfed is deliberately stricter than the reference, with the reason.
DEVIATIONS: dict[str, str] = {}  # every vector passes as the reference expects


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 20, f"missing vectors under {VECTORS / kind}"
    return [pytest.param(f, id=str(f.relative_to(VECTORS))) for f in files]


def _b64list(items: list[str] | None) -> list[bytes]:
    return [base64.b64decode(x) for x in items or []]


def _want_err(path: Path, case: dict[str, Any]) -> bool:
    return bool(case["wantErr"]) or str(path.relative_to(VECTORS)) in DEVIATIONS


@pytest.mark.parametrize("path", _cases("inclusion"))
def test_inclusion_vectors(path: Path) -> None:
    c = json.loads(path.read_text())
    args = (
        base64.b64decode(c["leafHash"]),
        c["leafIdx"],
        c["treeSize"],
        _b64list(c["proof"]),
        base64.b64decode(c["root"]),
    )
    if _want_err(path, c):
        with pytest.raises(ProofFailed):
            check_inclusion(*args)
    else:
        check_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"))
def test_consistency_vectors(path: Path) -> None:
    c = json.loads(path.read_text())
    args = (
        c["size1"],
        c["size2"],
        _b64list(c["proof"]),
        base64.b64decode(c["root1"]),
        base64.b64decode(c["root2"]),
    )
    if _want_err(path, c):
        with pytest.raises(ProofFailed):
            check_consistency(*args)
    else:
        check_consistency(*args)


def test_equal_sizes_compare_roots_as_given_and_hash_nothing() -> None:
    r = leaf_hash(b"x")
    check_consistency(1, 1, [], r, r)
    check_consistency(1, 1, [], b"0" * 16, b"0" * 16)  # as the reference does
    with pytest.raises(ProofFailed, match="different roots"):
        check_consistency(1, 1, [], b"0" * 16, b"1" * 16)
    # Whenever a proof is hashed, every hash must be 32 bytes.
    with pytest.raises(ProofFailed, match="16 bytes"):
        check_consistency(1, 2, [r], b"0" * 16, r)


def test_hash_formulas() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 leaf hash of the empty entry.
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.leaf_hashes([b"", b"a"]) == [leaf_hash(b""), leaf_hash(b"a")]
    a, b, c = leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")
    assert root_of([]) == EMPTY_ROOT
    assert root_of([a]) == a
    assert root_of([a, b, c]) == node_hash(node_hash(a, b), c)
    assert node_hash(a, b) != node_hash(b, a)


def test_doctests() -> None:
    assert doctest.testmod(merkle).failed == 0


def _rfc_root(leaves: list[bytes]) -> bytes:
    # Direct transcription of the RFC's recursive definition, as an oracle.
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_rfc_root(leaves[:k]), _rfc_root(leaves[k:]))


LEAVES = [leaf_hash(i.to_bytes(2, "big")) for i in range(70)]


def _subtree(leaves: list[bytes]) -> merkle.SubtreeHash:
    def read(level: int, index: int) -> bytes:
        part = leaves[index << level : (index + 1) << level]
        assert len(part) == 1 << level, f"proof builder asked for incomplete ({level}, {index})"
        return _rfc_root(part)

    return read


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


@pytest.mark.parametrize("size", range(1, 71))
def test_inclusion_properties(size: int) -> None:
    leaves = LEAVES[:size]
    sub = _subtree(leaves)
    root = root_of(leaves)
    assert root == _rfc_root(leaves) == root_from_subtrees(size, sub)
    for index in range(size):
        proof = inclusion_proof(index, size, sub)
        check_inclusion(leaves[index], index, size, proof, root)
        with pytest.raises(ProofFailed):
            check_inclusion(_flip(leaves[index]), index, size, proof, root)
        with pytest.raises(ProofFailed):
            check_inclusion(leaves[index], index, size, proof, _flip(root, 7))
        for i in range(len(proof)):
            bad = [*proof[:i], _flip(proof[i], 3), *proof[i + 1 :]]
            with pytest.raises(ProofFailed):
                check_inclusion(leaves[index], index, size, bad, root)
        with pytest.raises(ProofFailed):
            check_inclusion(leaves[index], index, size, [*proof, root], root)
        if proof:
            with pytest.raises(ProofFailed):
                check_inclusion(leaves[index], index, size, proof[:-1], root)
        if size > 1:
            with pytest.raises(ProofFailed):
                check_inclusion(leaves[index], (index + 1) % size, size, proof, root)
    with pytest.raises(ProofFailed, match="not below"):
        check_inclusion(leaves[0], size, size, [], root)


@pytest.mark.parametrize("size2", range(1, 71))
def test_consistency_properties(size2: int) -> None:
    leaves = LEAVES[:size2]
    sub = _subtree(leaves)
    root2 = root_of(leaves)
    for size1 in range(1, size2 + 1):
        root1 = root_of(leaves[:size1])
        proof = consistency_proof(size1, size2, sub)
        check_consistency(size1, size2, proof, root1, root2)
        with pytest.raises(ProofFailed):
            check_consistency(size1, size2, proof, _flip(root1), root2)
        with pytest.raises(ProofFailed):
            check_consistency(size1, size2, proof, root1, _flip(root2, 5))
        for i in range(len(proof)):
            bad = [*proof[:i], _flip(proof[i], 1), *proof[i + 1 :]]
            with pytest.raises(ProofFailed):
                check_consistency(size1, size2, bad, root1, root2)
        with pytest.raises(ProofFailed):
            check_consistency(size1, size2, [*proof, root1], root1, root2)
        if proof:
            with pytest.raises(ProofFailed):
                check_consistency(size1, size2, proof[1:], root1, root2)
        if size1 < size2:
            with pytest.raises(ProofFailed):
                check_consistency(size1 + 1, size2, proof, root1, root2)
    with pytest.raises(ProofFailed, match="empty tree"):
        check_consistency(0, size2, [], EMPTY_ROOT, root2)
    with pytest.raises(ProofFailed, match="larger"):
        check_consistency(size2 + 1, size2, [], root2, root2)


def test_builders_reject_bad_arguments() -> None:
    sub = _subtree(LEAVES)
    with pytest.raises(ValueError):
        inclusion_proof(5, 5, sub)
    with pytest.raises(ValueError):
        consistency_proof(0, 5, sub)
    with pytest.raises(ValueError):
        consistency_proof(6, 5, sub)
    assert consistency_proof(5, 5, sub) == []
    assert root_from_subtrees(0, sub) == EMPTY_ROOT


def test_wrong_hash_lengths_rejected() -> None:
    a, b = LEAVES[0], LEAVES[1]
    root = node_hash(a, b)
    check_inclusion(a, 0, 2, [b], root)
    with pytest.raises(ProofFailed, match="proof hash 0"):
        check_inclusion(a, 0, 2, [b + b"\x00"], root)
    with pytest.raises(ProofFailed, match="leaf hash"):
        check_inclusion(a[:31], 0, 2, [b], root)
    with pytest.raises(ProofFailed, match="root hash"):
        check_inclusion(a, 0, 2, [b], root[:31])
