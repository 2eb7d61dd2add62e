"""RFC 6962 Merkle tree hashing, inclusion proofs and consistency proofs.

Hashing (RFC 6962 §2.1, SHA-256, every hash 32 bytes)::

    MTH({})         = SHA-256("")                                  (EMPTY_ROOT)
    leaf hash       = SHA-256(0x00 || entry)                       (leaf_hash)
    interior node   = SHA-256(0x01 || left || right)               (node_hash)
    MTH(D[0:n])     = node_hash(MTH(D[0:k]), MTH(D[k:n]))  for n > 1, where k
                      is the largest power of two strictly below n.

A *complete subtree* is addressed by ``(level, index)``: it covers the
``2**level`` leaves ``[index * 2**level, (index + 1) * 2**level)``.  Level 0
holds the leaf hashes.  Any tree of size ``n`` is the left-to-right sequence of
the complete subtrees given by the binary digits of ``n`` (largest first),
folded from the right with :func:`node_hash`.

Proofs (RFC 6962 §2.1.1 and §2.1.2) are lists of 32-byte hashes, ordered from
the leaf (or the old tree) upwards to the root's children.  They are built by
:func:`inclusion_proof` and :func:`consistency_proof` from a
:data:`SubtreeHash` reader, a callable returning the hash of one complete
subtree; :class:`hashfed.protocol.tiles.TileHashReader` implements it over
tlog-tiles.  They are checked by :func:`check_inclusion` and
:func:`check_consistency`, which return ``None`` or raise
:class:`~hashfed.protocol.errors.ProofFailed` with the reason.

Old size 0: like the Go reference (golang.org/x/mod/sumdb/tlog and
transparency-dev/merkle), :func:`check_consistency` rejects ``size1 == 0``;
an empty tree is trivially a prefix of every tree, so there is nothing to
prove.  The layers above (sync, witnessing) treat an old size of 0 as
consistent with any new tree, with an empty proof, and never call this
function for it.

Example, a three-leaf tree::

    >>> a, b, c = (leaf_hash(e) for e in (b"a", b"b", b"c"))
    >>> root = root_of([a, b, c])
    >>> root == node_hash(node_hash(a, b), c)
    True
    >>> check_inclusion(c, 2, 3, [node_hash(a, b)], root)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from hashfed.protocol.errors import ProofFailed

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "SubtreeHash",
    "check_consistency",
    "check_inclusion",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "node_hash",
    "root_from_subtrees",
    "root_of",
    "subtree_root",
]

HASH_SIZE = 32
"""Size in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the root hash of the empty tree, SHA-256 of the empty string."""

SubtreeHash = Callable[[int, int], bytes]
"""A reader ``(level, index) -> hash`` of the complete subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``.  It must return exactly
:data:`HASH_SIZE` bytes, or raise if the subtree is unknown."""

# Precomputed SHA-256 states with the RFC 6962 domain-separation prefix already
# absorbed; ``.copy()`` of these is measurably faster than hashing ``prefix + data``.
_LEAF_PREFIX = hashlib.sha256(b"\x00")
_NODE_PREFIX = hashlib.sha256(b"\x01")

_MAX_SIZE = 1 << 64


def leaf_hash(entry: bytes) -> bytes:
    """leaf_hash returns the RFC 6962 §2.1 leaf hash SHA-256(0x00 || entry)."""
    h = _LEAF_PREFIX.copy()
    h.update(entry)
    return h.digest()


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    """leaf_hashes returns :func:`leaf_hash` of every entry, in order (fast path)."""
    copy = _LEAF_PREFIX.copy
    out: list[bytes] = []
    append = out.append
    for entry in entries:
        h = copy()
        h.update(entry)
        append(h.digest())
    return out


def node_hash(left: bytes, right: bytes) -> bytes:
    """node_hash returns the RFC 6962 §2.1 interior hash SHA-256(0x01 || left || right)."""
    h = _NODE_PREFIX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _hash_pairs(hashes: Sequence[bytes]) -> list[bytes]:
    """_hash_pairs returns node_hash of each adjacent pair; len(hashes) must be even."""
    copy = _NODE_PREFIX.copy
    out: list[bytes] = []
    append = out.append
    it = iter(hashes)
    for left, right in zip(it, it, strict=True):
        h = copy()
        h.update(left)
        h.update(right)
        append(h.digest())
    return out


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """subtree_root returns the root of a complete subtree given its 2**k bottom hashes.

    ``len(hashes)`` must be a power of two (1, 2, 4, …); a single hash is its own root.
    """
    n = len(hashes)
    if n == 0 or n & (n - 1):
        raise ValueError(f"subtree_root needs a power-of-two number of hashes, got {n}")
    level: Sequence[bytes] = hashes
    while len(level) > 1:
        level = _hash_pairs(level)
    return level[0]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """root_of returns MTH (RFC 6962 §2.1) of a tree given all its leaf hashes.

    Pairing bottom-up and promoting a lone rightmost node unchanged yields the
    same left-balanced tree as the RFC's recursive split.  Returns
    :data:`EMPTY_ROOT` for no leaves.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = _hash_pairs(level[: len(level) & ~1])
        if odd is not None:
            level.append(odd)
    return level[0]


def _check_size(size: int, what: str) -> None:
    if size < 0 or size >= _MAX_SIZE:
        raise ValueError(f"{what} {size} is outside 0..2**64-1")


def _range_hash(start: int, end: int, subtree: SubtreeHash) -> bytes:
    """_range_hash returns MTH(D[start:end]) where start is aligned to a power of
    two at least end - start (true for every range RFC 6962's recursion visits)."""
    parts: list[bytes] = []
    pos = start
    while pos < end:
        level = (end - pos).bit_length() - 1
        parts.append(_read(subtree, level, pos >> level))
        pos += 1 << level
    result = parts[-1]
    for h in reversed(parts[:-1]):
        result = node_hash(h, result)
    return result


def _read(subtree: SubtreeHash, level: int, index: int) -> bytes:
    h = subtree(level, index)
    if len(h) != HASH_SIZE:
        raise AssertionError(
            f"subtree reader returned {len(h)} bytes for ({level}, {index}), want {HASH_SIZE}"
        )
    return h


def root_from_subtrees(size: int, subtree: SubtreeHash) -> bytes:
    """root_from_subtrees returns MTH of the tree of ``size`` leaves, reading one
    complete subtree per set bit of ``size``; :data:`EMPTY_ROOT` for size 0."""
    _check_size(size, "tree size")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, subtree)


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """inclusion_proof returns the RFC 6962 §2.1.1 audit path PATH(index, D[0:size]),
    leaf's sibling first, built from complete-subtree hashes."""
    _check_size(size, "tree size")
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")
    proof: list[bytes] = []
    # Walk down from the root, remembering (start, end) of the sibling at each step.
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        mid = lo + k
        if index < mid:
            proof.append(_range_hash(mid, hi, subtree))
            hi = mid
        else:
            proof.append(_range_hash(lo, mid, subtree))
            lo = mid
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, subtree: SubtreeHash) -> list[bytes]:
    """consistency_proof returns the RFC 6962 §2.1.2 proof PROOF(size1, D[0:size2]).

    Requires ``0 < size1 <= size2``; for ``size1 == size2`` the proof is empty.
    """
    _check_size(size2, "tree size")
    if not 0 < size1 <= size2:
        raise ValueError(f"consistency proof needs 0 < size1 <= size2, got {size1}, {size2}")
    proof: list[bytes] = []
    # SUBPROOF(m, D[lo:hi], b) unrolled: m counts leaves of the old tree inside [lo, hi).
    lo, hi, m, whole = 0, size2, size1, True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m <= k:
            proof.append(_range_hash(lo + k, hi, subtree))
            hi = lo + k
        else:
            proof.append(_range_hash(lo, lo + k, subtree))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(_range_hash(lo, hi, subtree))
    proof.reverse()
    return proof


def _check_hash(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise ProofFailed(f"{what} is {len(h)} bytes long, want {HASH_SIZE}")


def check_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """check_inclusion verifies that ``leaf`` (a leaf hash, not an entry) is at
    ``index`` in the tree of ``size`` leaves with root hash ``root`` (RFC 6962 §2.1.1).

    Returns None on success; raises ProofFailed saying what did not match.
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash {i}")
    if size <= 0 or size >= _MAX_SIZE:
        raise ProofFailed(f"tree size {size} is outside 1..2**64-1")
    if not 0 <= index < size:
        raise ProofFailed(f"leaf index {index} is not below tree size {size}")
    want = _inclusion_proof_len(index, size)
    if len(proof) != want:
        raise ProofFailed(
            f"inclusion proof for index {index} in size {size} has {len(proof)} hashes, want {want}"
        )
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AssertionError("bad math: inclusion proof length check let a bad proof through")
    if r != root:
        raise ProofFailed(
            f"inclusion proof for index {index} in size {size} gives root "
            f"{r.hex()}, want {root.hex()}"
        )


def _inclusion_proof_len(index: int, size: int) -> int:
    # Hashes below the split between index and the last leaf, plus one per set bit
    # above it (the right-edge subtrees that are not an ancestor of the leaf).
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def check_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """check_consistency verifies that the tree of ``size1`` leaves with root
    ``root1`` is a prefix of the tree of ``size2`` leaves with root ``root2``
    (RFC 6962 §2.1.2).  ``size1 == 0`` is rejected (see the module docstring).

    Returns None on success; raises ProofFailed saying what did not match.
    """
    if size1 <= 0:
        raise ProofFailed(
            f"old tree size {size1}: consistency with the empty tree needs no proof "
            "and is not checked here"
        )
    if size2 >= _MAX_SIZE:
        raise ProofFailed(f"new tree size {size2} is above 2**64-1")
    if size1 > size2:
        raise ProofFailed(f"old tree size {size1} is larger than new tree size {size2}")
    if size1 == size2:
        # No hashing happens: the proof must be empty and the roots identical. The
        # roots are compared as given (as the reference verifier does), so even
        # roots of another length are consistent with themselves.
        if proof:
            raise ProofFailed(
                f"consistency proof between equal sizes {size1} must be empty, "
                f"has {len(proof)} hashes"
            )
        if root1 != root2:
            raise ProofFailed(
                f"trees of equal size {size1} have different roots {root1.hex()} and {root2.hex()}"
            )
        return
    _check_hash(root1, "old root hash")
    _check_hash(root2, "new root hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash {i}")
    want = _consistency_proof_len(size1, size2)
    if len(proof) != want:
        raise ProofFailed(
            f"consistency proof from size {size1} to {size2} has {len(proof)} hashes, want {want}"
        )
    seeded = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fr, sr = _consistency_walk(size1, size2, seeded)
    if fr != root1:
        raise ProofFailed(
            f"consistency proof from size {size1} to {size2} gives old root "
            f"{fr.hex()}, want {root1.hex()}"
        )
    if sr != root2:
        raise ProofFailed(
            f"consistency proof from size {size1} to {size2} gives new root "
            f"{sr.hex()}, want {root2.hex()}"
        )


def _consistency_walk(size1: int, size2: int, seeded: Sequence[bytes]) -> tuple[bytes, bytes]:
    """_consistency_walk returns the (old, new) roots a length-checked proof hashes to
    (RFC 9162 §2.1.4.2); seeded starts with the old root when size1 is a power of 2."""
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = seeded[0]
    for c in seeded[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise AssertionError("bad math: consistency proof length check let a bad proof through")
    return fr, sr


def consistency_roots(size1: int, size2: int, proof: Sequence[bytes]) -> tuple[bytes, bytes] | None:
    """consistency_roots returns the (old, new) roots that a consistency proof from size1
    to size2 hashes to, or None if the proof cannot tell: size1 is 0 or a power of two
    (the proof then omits the old root), the sizes are not increasing, or the proof has
    the wrong length or hashes. Witnesses use it to turn a failed proof into evidence."""
    if not 0 < size1 < size2 < _MAX_SIZE or size1 & (size1 - 1) == 0:
        return None
    if len(proof) != _consistency_proof_len(size1, size2) or any(
        len(h) != HASH_SIZE for h in proof
    ):
        return None
    return _consistency_walk(size1, size2, list(proof))


def _consistency_proof_len(size1: int, size2: int) -> int:
    # Levels below the split between the two trees' last leaves, minus the levels
    # where the old tree's last leaf is a right child, plus one per set bit above
    # the split, plus the old tree's own subtree hash unless it is a power of two.
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    trailing = (~(size1 - 1) & size1).bit_length() - 1  # trailing 1-bits of size1 - 1
    base = 0 if size1 & (size1 - 1) == 0 else 1
    return inner - trailing + border + base
