"""Following a log without a store: every bundle proven in a signed checkpoint, then handed over.

``sync_origin`` (hashfed.sync.engine) applies a log to a node's database, whose
verified tiles let it resume and blame. A client that keeps no tiles (a
python-threatexchange exchange, which stores only what it yields and an opaque
checkpoint) needs the same guarantees with a few hundred bytes of state. That
state is a ``CompactRange``: the roots of the complete subtrees that make up
the verified tree (one per set bit of its size, RFC 6962 §2.1), from which the
root is folded and to which new leaves are appended.

``follow`` walks one origin from one peer:

1. the peer's latest checkpoint is verified with the origin's key (a relay
   cannot forge one). A smaller tree than ours raises ``Behind``; one of the
   same size must have our root, or the origin equivocated;
2. the entry bundles (and content bundles) beyond our size are fetched, a few
   ahead of use. Each bundle's new leaves extend the compact range, and the
   extended tree must be a prefix of the signed one: a consistency proof from
   the extended size to the checkpoint's, built from the peer's hash tiles,
   must verify (the last bundle must give the checkpoint's root itself). Only
   then is the bundle yielded. The first bundle's proof also proves that the
   checkpoint extends the tree we held;
3. if a bundle does not verify, the peer's tiles decide, as in sync_origin:
   when they prove that the signed tree does not start with ours, the origin
   signed two inconsistent trees (``Equivocation``, with evidence when the
   state we hold is a whole signed checkpoint); otherwise the peer served bad
   entries or tiles (``PeerFault``).

Nothing here checks records: the caller decides what a verified entry means.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint
from hashfed.protocol.errors import ProofFailed, ProtocolError
from hashfed.protocol.evidence import Evidence
from hashfed.protocol.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    SubtreeHash,
    check_consistency,
    consistency_proof,
    leaf_hashes,
    node_hash,
    root_from_subtrees,
    subtree_root,
)
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TileHashReader
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import Verifier
from hashfed.signing.note import VerifierList
from hashfed.sync.errors import Equivocation, PeerFault, SyncError
from hashfed.sync.fetch import Fetcher, fetch_bundle

_BUNDLE_LEVEL = ENTRY_BUNDLE_WIDTH.bit_length() - 1  # a full bundle is a level-8 subtree


class Behind(SyncError):
    """The peer serves an older checkpoint than the tree already verified; nothing changed."""


class AwaitingQuorum(SyncError):
    """The peer's newer checkpoint lacks the witness quorum the policy requires."""


@dataclass(frozen=True)
class CompactRange:
    """CompactRange is a verified tree of size leaves, kept as the roots of its
    complete subtrees, largest (leftmost) first: one per set bit of size.

    >>> from hashfed.protocol.merkle import leaf_hash, root_of
    >>> leaves = [leaf_hash(bytes([i])) for i in range(5)]
    >>> tree = CompactRange().extend(leaves[:3]).extend(leaves[3:])
    >>> tree.size, len(tree.hashes), tree.root() == root_of(leaves)
    (5, 2, True)
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a compact range of size {self.size} holds {self.size.bit_count()} hashes, "
                f"not {len(self.hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise ValueError(f"compact range hashes must be {HASH_SIZE} bytes")

    def root(self) -> bytes:
        """root returns the RFC 6962 root of the tree (EMPTY_ROOT when empty)."""
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            result = node_hash(h, result)
        return result

    def extend(self, leaves: Sequence[bytes]) -> CompactRange:
        """extend returns the tree with leaves (leaf hashes) appended."""
        stack, size = list(self.hashes), self.size
        pos = 0
        while pos < len(leaves):
            if size % ENTRY_BUNDLE_WIDTH == 0 and len(leaves) - pos >= ENTRY_BUNDLE_WIDTH:
                # A whole aligned bundle: one subtree root instead of 256 pushes.
                bundle = subtree_root(leaves[pos : pos + ENTRY_BUNDLE_WIDTH])
                size = _push(stack, size, bundle, _BUNDLE_LEVEL)
                pos += ENTRY_BUNDLE_WIDTH
            else:
                size = _push(stack, size, leaves[pos], 0)
                pos += 1
        return CompactRange(size, tuple(stack))


def _push(stack: list[bytes], size: int, h: bytes, level: int) -> int:
    """Appends h, the root of a complete subtree of 2**level leaves starting at
    size (a multiple of 2**level), merging equal-sized neighbours; returns the new size."""
    grown = size + (1 << level)
    while size >> level & 1:
        h = node_hash(stack.pop(), h)
        level += 1
    stack.append(h)
    return grown


@dataclass(frozen=True)
class VerifiedBundle:
    """The new entries of one entry bundle, proven to be in a signed checkpoint."""

    start: int  # log index of entries[0]
    entries: list[bytes]
    contents: list[bytes]  # the content item of each entry (empty when none)
    tree: CompactRange  # the verified tree with these entries
    checkpoint: Checkpoint  # the signed checkpoint that tree is a prefix of
    note: str  # that checkpoint's signed note


def open_peer_checkpoint(raw: bytes, origin: str, verifier: Verifier, peer: str) -> Checkpoint:
    """Returns the checkpoint of origin a peer served, or raises PeerFault unless it verifies."""
    try:
        checkpoint, _ = open_checkpoint(raw.decode("utf-8"), VerifierList(verifier), origin)
    except (UnicodeDecodeError, ProtocolError, SigningError) as exc:
        raise PeerFault(
            f"{peer}: the checkpoint it serves for {origin} does not verify: {exc}"
        ) from None
    return checkpoint


async def follow(
    fetcher: Fetcher,
    origin: str,
    verifier: Verifier,
    tree: CompactRange,
    note: str = "",
    window: int = 8,
    quorum: Callable[[str], bool] | None = None,
) -> AsyncGenerator[VerifiedBundle, None]:
    """Yields the entries of origin beyond tree, one verified bundle at a time.

    note is the signed checkpoint tree was verified against (empty for the empty
    tree); it becomes evidence if the origin is found to have forked. quorum,
    if given, says whether a signed note carries the witness cosignatures a
    policy requires (C2SP tlog-policy); a newer checkpoint without them raises
    AwaitingQuorum. Raises Behind, Equivocation or PeerFault (see the module
    docstring); a bundle is only yielded once proven, so what was yielded
    before an error stays valid.
    """
    raw = await fetcher.checkpoint(origin)
    checkpoint = open_peer_checkpoint(raw, origin, verifier, fetcher.name)
    note_text = raw.decode("utf-8")  # it verified, so it is UTF-8
    if checkpoint.size < tree.size:
        raise Behind(f"{fetcher.name} serves an older checkpoint ({checkpoint.size} < {tree.size})")
    if checkpoint.size == tree.size:
        if checkpoint.root != tree.root():
            _equivocation(origin, tree, note, checkpoint, note_text, checkpoint.root, ())
        return
    if quorum is not None and not quorum(note_text):
        raise AwaitingQuorum(
            f"{fetcher.name}: the checkpoint of size {checkpoint.size} lacks the witness quorum"
        )
    proofs = _PeerTree(fetcher, origin, checkpoint)
    wanted = _bundles(tree.size, checkpoint.size)
    tasks: dict[int, asyncio.Task[tuple[list[bytes], list[bytes], bytes, bytes]]] = {}
    try:
        for position, (index, _) in enumerate(wanted):
            for ahead, ahead_width in wanted[position : position + window]:
                if ahead not in tasks:
                    tasks[ahead] = asyncio.create_task(
                        fetch_bundle(fetcher, origin, ahead, ahead_width)
                    )
            entries, contents, _, _ = await tasks.pop(index)
            skip = tree.size - index * ENTRY_BUNDLE_WIDTH
            new = entries[skip:]
            extended = tree.extend(leaf_hashes(new))
            if not await proofs.is_prefix(extended):
                await _blame(proofs, origin, tree, note, note_text)
            tree = extended
            yield VerifiedBundle(
                index * ENTRY_BUNDLE_WIDTH + skip, new, contents[skip:], tree, checkpoint, note_text
            )
    finally:
        for task in tasks.values():
            task.cancel()


def _bundles(old: int, new: int) -> list[tuple[int, int]]:
    """Returns (bundle index, entries in it at size new) for the bundles holding old..new-1."""
    first, last = old // ENTRY_BUNDLE_WIDTH, (new - 1) // ENTRY_BUNDLE_WIDTH
    return [
        (i, min(ENTRY_BUNDLE_WIDTH, new - i * ENTRY_BUNDLE_WIDTH)) for i in range(first, last + 1)
    ]


class _MissingTile(Exception):
    def __init__(self, key: tuple[int, int, int]) -> None:
        self.key = key


class _PeerTree:
    """The peer's hash tiles of the checkpoint's tree, fetched as proofs need them.

    Tiles are not trusted: every hash read here goes into a proof that is checked
    against the signed root. Subtree hashes are memoised, since the proofs of
    consecutive bundles share most of them.
    """

    def __init__(self, fetcher: Fetcher, origin: str, checkpoint: Checkpoint) -> None:
        self.fetcher, self.origin, self.checkpoint = fetcher, origin, checkpoint
        self._tiles: dict[tuple[int, int, int], bytes] = {}
        self._reader = TileHashReader(checkpoint.size, self._read_tile)
        self._subtrees: dict[tuple[int, int], bytes] = {}

    def _read_tile(self, level: int, index: int, width: int) -> bytes:
        key = (level, index, width)
        if key not in self._tiles:
            raise _MissingTile(key)
        return self._tiles[key]

    def _subtree(self, level: int, index: int) -> bytes:
        key = (level, index)
        h = self._subtrees.get(key)
        if h is None:
            h = self._subtrees[key] = self._reader(level, index)
        return h

    async def compute(self, build: Callable[[SubtreeHash], list[bytes]]) -> list[bytes]:
        """Runs build with a subtree reader, fetching the tiles it needs; PeerFault if malformed."""
        while True:
            try:
                return build(self._subtree)
            except _MissingTile as missing:
                self._tiles[missing.key] = await self.fetcher.tile(self.origin, *missing.key)
            except ProtocolError as exc:
                raise PeerFault(f"{self.fetcher.name}: its tiles are malformed: {exc}") from None

    async def is_prefix(self, tree: CompactRange) -> bool:
        """Reports whether tree is a prefix of the checkpoint's tree (its root at the end)."""
        size, cp = tree.size, self.checkpoint
        if size == cp.size:
            return tree.root() == cp.root
        proof = await self.compute(lambda read: consistency_proof(size, cp.size, read))
        try:
            check_consistency(size, cp.size, proof, tree.root(), cp.root)
        except ProofFailed:
            return False
        return True


async def _blame(
    proofs: _PeerTree, origin: str, tree: CompactRange, note: str, new_note: str
) -> None:
    """Decides, from the peer's tiles, whether the origin forked or the peer lied; raises."""
    peer, cp = proofs.fetcher.name, proofs.checkpoint
    if tree.size == 0:
        raise PeerFault(f"{peer}: the entries it serves do not hash to the signed root")
    old = tree.size
    prefix, *proof = await proofs.compute(
        lambda read: [root_from_subtrees(old, read), *consistency_proof(old, cp.size, read)]
    )
    try:
        check_consistency(old, cp.size, proof, prefix, cp.root)
    except ProofFailed:
        raise PeerFault(
            f"{peer}: its entries and tiles do not match the signed checkpoint"
        ) from None
    if prefix == tree.root():
        raise PeerFault(f"{peer}: the entries it serves are not the ones in the signed tree")
    _equivocation(origin, tree, note, cp, new_note, prefix, tuple(proof))


def _equivocation(
    origin: str,
    tree: CompactRange,
    note: str,
    cp: Checkpoint,
    new_note: str,
    prefix: bytes,
    proof: tuple[bytes, ...],
) -> None:
    """Raises Equivocation: cp's tree does not start with tree (verified against note)."""
    detail = f"checkpoint of size {cp.size} does not extend the verified tree of size {tree.size}"
    # The evidence format pairs two signed checkpoints: it exists when the tree we
    # hold is the whole tree of note (a fetch that stopped mid-way holds a prefix).
    evidence = None
    if note and _note_size(note) == tree.size:
        evidence = Evidence(note, new_note, prefix, proof)
    raise Equivocation(f"{origin} signed two inconsistent checkpoints: {detail}", evidence)


def _note_size(note: str) -> int | None:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
