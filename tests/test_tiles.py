"""Tests for hashfed.protocol.tiles: paths, bundles, tiles, TreeBuilder and TileHashReader."""

from __future__ import annotations

import base64
import doctest
import json
import random
from pathlib import Path

import pytest
from hashfed.protocol import merkle, tiles
from hashfed.protocol.errors import MalformedBundle, MalformedTile, ProofFailed
from hashfed.protocol.merkle import EMPTY_ROOT, leaf_hash, root_of
from hashfed.protocol.tiles import (
    TileHashReader,
    TileRef,
    TreeBuilder,
    decode_bundle,
    decode_tile,
    encode_bundle,
    entries_path,
    parse_tile_path,
    partial_tile_size,
    tile_path,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
TESSERA = SHARED / "tlog-tiles"


def test_doctests() -> None:
    assert doctest.testmod(tiles).failed == 0


# --- paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 1234067, 8, "tile/0/x001/x234/067.p/8"),
        (0, 1234067, 0, "tile/0/x001/x234/067"),
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        (0, 0, 0, "tile/0/000"),
        (1, 999, 255, "tile/1/999.p/255"),
        (2, 1000, 1, "tile/2/x001/000.p/1"),
        (63, 0, 0, "tile/63/000"),
        (2, 1_000_000, 0, "tile/2/x001/x000/000"),
    ],
)
def test_tile_path(level: int, index: int, width: int, path: str) -> None:
    assert tile_path(level, index, width) == path
    ref = parse_tile_path(path)
    assert ref == TileRef(level, index, width or 256)
    assert ref.path == path
    assert not ref.is_entries
    assert ref.is_partial == (width not in (0, 256))


def test_entries_path() -> None:
    assert entries_path(1234067, 8) == "tile/entries/x001/x234/067.p/8"
    assert entries_path(0) == "tile/entries/000"
    ref = parse_tile_path("tile/entries/x001/x234/067.p/8")
    assert ref == TileRef(None, 1234067, 8)
    assert ref.is_entries and ref.is_partial


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1234067",  # not grouped
        "tile/0/001/234/067",  # missing x prefixes
        "tile/0/x001/x234/x067",  # x on the last group
        "tile/0/x000/001",  # leading zero group
        "tile/0/x01/234",  # two-digit group
        "tile/0/0001",  # four digits
        "tile/00/000",  # level with leading zero
        "tile/64/000",  # level above 63
        "tile/-1/000",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/08",
        "tile/0/000.p/",
        "tile/0/000.p/1000",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/000\n",
        "tile/0/٠٠٠",  # non-ASCII digits
        "tile/entries/000.p/0",
        "tile/entry/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # index 2**64 (entry overflow)
        "tile/1/x072/x057/x594/x037/x927/936",  # start index 256*256*index >= 2**64
        "tile/0/" + "x999/" * 50 + "999",
        "",
    ],
)
def test_parse_tile_path_rejects(path: str) -> None:
    with pytest.raises(MalformedTile):
        parse_tile_path(path)


def test_parse_tile_path_limits() -> None:
    # The last level-0 tile of a 2**64-1 entry log is still addressable.
    last = (2**64 - 1) >> 8
    assert parse_tile_path(tile_path(0, last)).index == last
    assert parse_tile_path(entries_path(last, 255)).index == last


def test_path_arguments_checked() -> None:
    with pytest.raises(ValueError):
        tile_path(64, 0)
    with pytest.raises(ValueError):
        tile_path(0, -1)
    with pytest.raises(ValueError):
        tile_path(0, 0, 257)
    with pytest.raises(ValueError):
        entries_path(0, -1)
    with pytest.raises(ValueError):
        entries_path(1 << 56)
    with pytest.raises(ValueError):
        tile_path(5, 1_000_000)


def test_partial_tile_size() -> None:
    # The spec's 70,000-entry example: 273 full level-0 tiles, a partial one of 112,
    # one full level-1 tile, a partial one of 17, and a level-2 tile of width 1.
    assert partial_tile_size(0, 272, 70_000) == 0
    assert partial_tile_size(0, 273, 70_000) == 112
    assert partial_tile_size(1, 0, 70_000) == 0
    assert partial_tile_size(1, 1, 70_000) == 17
    assert partial_tile_size(2, 0, 70_000) == 1
    assert partial_tile_size(0, 0, 256) == 0
    assert partial_tile_size(1, 0, 256) == 1
    for level, index, size in [(0, 274, 70_000), (1, 2, 70_000), (3, 0, 70_000), (0, 1, 256)]:
        with pytest.raises(ValueError):
            partial_tile_size(level, index, size)
    with pytest.raises(ValueError):
        partial_tile_size(0, 0, 0)


# --- bundles and tiles ---------------------------------------------------------------


def test_bundle_round_trip() -> None:
    entries = [b"", b"a", b"\x00" * 300, b"x" * 65535]
    data = encode_bundle(entries)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert decode_bundle(data, len(entries)) == entries
    full = [bytes([i]) for i in range(256)]
    assert decode_bundle(encode_bundle(full), 0) == full
    assert decode_bundle(encode_bundle(full), 256) == full


def test_bundle_rejects() -> None:
    data = encode_bundle([b"one", b"two", b"three"])
    with pytest.raises(MalformedBundle, match="truncated"):
        decode_bundle(data[:-1], 3)
    with pytest.raises(MalformedBundle, match="holds 2 entries and 1 stray"):
        decode_bundle(data[:11], 3)
    with pytest.raises(MalformedBundle, match="holds 3 entries, want 4"):
        decode_bundle(data, 4)
    with pytest.raises(MalformedBundle, match="after its 2 entries"):
        decode_bundle(data, 2)
    with pytest.raises(MalformedBundle):
        decode_bundle(data + b"\x00", 3)
    with pytest.raises(MalformedBundle):
        decode_bundle(b"", 1)
    # A flipped bit in a length prefix breaks the framing.
    flipped = bytes([data[0], data[1] ^ 0x04]) + data[2:]
    with pytest.raises(MalformedBundle):
        decode_bundle(flipped, 3)
    with pytest.raises(MalformedBundle, match="at most 65535"):
        encode_bundle([b"x" * 65536])
    with pytest.raises(MalformedBundle):
        encode_bundle([])
    with pytest.raises(MalformedBundle):
        encode_bundle([b""] * 257)
    with pytest.raises(ValueError):
        decode_bundle(data, 257)


def test_decode_tile() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(3)]
    data = b"".join(hashes)
    assert decode_tile(data, 3) == hashes
    for bad in (data[:-1], data + b"\x00", data + hashes[0], b""):
        with pytest.raises(MalformedTile):
            decode_tile(bad, 3)
    full = b"\x00" * 8192
    assert len(decode_tile(full, 0)) == len(decode_tile(full, 256)) == 256
    with pytest.raises(MalformedTile):
        decode_tile(full + b"\x00" * 32, 256)


# --- the tessera 15-entry log ----------------------------------------------------------


def _tessera_entries() -> list[bytes]:
    data = json.loads((SHARED / "note" / "vectors.json").read_text())
    return [e.encode("ascii") for e in data["tessera_testdata_log"]["entries"]]


def _checkpoint_root(n: int) -> bytes:
    lines = (TESSERA / f"checkpoint.{n}").read_text().split("\n")
    assert lines[1] == str(n)
    return base64.b64decode(lines[2], validate=True)


def test_tessera_log_rebuilt_entry_by_entry() -> None:
    entries = _tessera_entries()
    assert len(entries) == 15
    builder = TreeBuilder()
    assert builder.root() == EMPTY_ROOT == _checkpoint_root(0)
    for n in range(1, 16):
        builder.append([leaf_hash(entries[n - 1])])
        assert builder.size == n
        changed = builder.changed_tiles()
        assert list(changed) == [(0, 0)]
        want_tile = (TESSERA / "tile" / "0" / "000.p" / str(n)).read_bytes()
        assert changed[(0, 0)] == want_tile
        assert tile_path(0, 0, len(want_tile) // 32) == f"tile/0/000.p/{n}"
        want_bundle = (TESSERA / "tile" / "entries" / "000.p" / str(n)).read_bytes()
        assert encode_bundle(entries[:n]) == want_bundle
        assert decode_bundle(want_bundle, n) == entries[:n]
        assert builder.root() == _checkpoint_root(n)
        assert root_of(decode_tile(want_tile, n)) == _checkpoint_root(n)
    assert builder.changed_tiles() == {}


def test_tessera_proofs_from_tiles() -> None:
    size = 15
    tile = (TESSERA / "tile" / "0" / "000.p" / "15").read_bytes()

    def read_tile(level: int, index: int, width: int) -> bytes:
        assert (level, index, width) == (0, 0, 15)
        return tile

    reader = TileHashReader(size, read_tile)
    root = _checkpoint_root(size)
    hashes = decode_tile(tile, 15)
    for i in range(size):
        merkle.check_inclusion(hashes[i], i, size, merkle.inclusion_proof(i, size, reader), root)
    for old in range(1, size):
        proof = merkle.consistency_proof(old, size, reader)
        merkle.check_consistency(old, size, proof, _checkpoint_root(old), root)
    # Resuming from the published tile continues to the same roots.
    b = TreeBuilder.resume(7, lambda lv, ix, w: tile, root=_checkpoint_root(7))
    b.append([leaf_hash(e) for e in _tessera_entries()[7:]])
    assert b.root() == root
    assert b.changed_tiles()[(0, 0)] == tile


# --- large trees -----------------------------------------------------------------------

BIG = 70_000
BIG_LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(BIG)]


@pytest.fixture(scope="module")
def one_by_one() -> tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]]:
    """A 70,000-leaf tree built one leaf at a time, all its tiles, and roots by size."""
    b = TreeBuilder()
    stored: dict[tuple[int, int], bytes] = {}
    roots = [b.root()]
    for h in BIG_LEAVES:
        b.append([h])
        if b.size % 997 == 0 or b.size < 600:
            roots.append(b.root())
        stored.update(b.changed_tiles())
    return b, stored, roots


def test_big_tree_shape(
    one_by_one: tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]],
) -> None:
    b, stored, roots = one_by_one
    assert b.root() == root_of(BIG_LEAVES)
    for n in range(1, 600):
        assert roots[n] == root_of(BIG_LEAVES[:n])
    # 273 full + 1 partial level-0 tiles, 1 full + 1 partial at level 1, 1 at level 2.
    widths = {key: len(data) // 32 for key, data in stored.items()}
    assert widths[(0, 272)] == 256 and widths[(0, 273)] == 112
    assert widths[(1, 0)] == 256 and widths[(1, 1)] == 17 and widths[(2, 0)] == 1
    assert len(widths) == 274 + 2 + 1
    assert stored[(0, 5)] == b"".join(BIG_LEAVES[5 * 256 : 6 * 256])
    assert stored[(1, 1)][:32] == root_of(BIG_LEAVES[256 * 256 : 256 * 257])
    assert stored[(2, 0)] == root_of(BIG_LEAVES[: 256 * 256])
    assert b.subtree_hash(0, BIG - 1) == BIG_LEAVES[-1]
    assert b.subtree_hash(16, 0) == stored[(2, 0)]
    assert b.subtree_hash(4, (BIG - 16) // 16) == root_of(
        BIG_LEAVES[BIG - 16 - BIG % 16 : BIG - BIG % 16]
    )
    with pytest.raises(KeyError):
        b.subtree_hash(0, 0)
    with pytest.raises(KeyError):
        b.subtree_hash(8, 300)


def test_big_tree_random_batches(
    one_by_one: tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]],
) -> None:
    ref, ref_tiles, _ = one_by_one
    rng = random.Random(6962)
    b = TreeBuilder()
    stored: dict[tuple[int, int], bytes] = {}
    pos = 0
    while pos < BIG:
        n = rng.choice([0, 1, 2, 3, 255, 256, 257, 700, 5000, 66000])
        b.append(BIG_LEAVES[pos : pos + n])
        pos = b.size
        changed = b.changed_tiles()
        for (level, index), data in changed.items():
            # Every changed tile is either full or the level's partial edge tile.
            assert len(data) // 32 == (partial_tile_size(level, index, b.size) or 256)
        stored.update(changed)
        if pos < 3000:
            assert b.root() == root_of(BIG_LEAVES[:pos])
    assert b.size == BIG
    assert b.root() == ref.root()
    assert stored == ref_tiles


def test_big_tree_resume(
    one_by_one: tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]],
) -> None:
    ref, _, _ = one_by_one
    rng = random.Random(9162)
    b = TreeBuilder()
    stored: dict[tuple[int, int], bytes] = {}
    reads: list[tuple[int, int, int]] = []

    def read_tile(level: int, index: int, width: int) -> bytes:
        reads.append((level, index, width))
        return stored[(level, index)]  # may be a full tile: the builder takes the prefix

    while b.size < BIG:
        b.append(BIG_LEAVES[b.size : b.size + rng.randrange(1, 9000)])
        stored.update(b.changed_tiles())
        size, root = b.size, b.root()
        reads.clear()
        b = TreeBuilder.resume(size, read_tile, root=root)
        assert all(w == partial_tile_size(lv, ix, size) for lv, ix, w in reads)
        assert b.size == size and b.root() == root
    assert b.root() == ref.root()
    # Resume at a size whose partial tile was overwritten by a full one later.
    old = TreeBuilder.resume(1000, read_tile, root=root_of(BIG_LEAVES[:1000]))
    old.append(BIG_LEAVES[1000:BIG])
    assert old.root() == ref.root()


def test_resume_rejects_bad_tiles(
    one_by_one: tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]],
) -> None:
    ref, stored, _ = one_by_one
    root = ref.root()

    def reader(tamper: tuple[int, int], fn: object) -> tiles.TileReader:
        def read(level: int, index: int, width: int) -> bytes:
            data = stored[(level, index)]
            return fn(data) if (level, index) == tamper else data  # type: ignore[operator]

        return read

    TreeBuilder.resume(BIG, reader((9, 9), None), root=root)
    with pytest.raises(MalformedTile):
        TreeBuilder.resume(BIG, reader((0, 273), lambda d: d[:-1]), root=root)
    with pytest.raises(MalformedTile):
        TreeBuilder.resume(BIG, reader((1, 1), lambda d: d + b"\x00" * 8192), root=root)
    with pytest.raises(MalformedTile):
        TreeBuilder.resume(BIG, reader((2, 0), lambda d: d + b"\x00"), root=root)
    with pytest.raises(ProofFailed, match="give root"):
        TreeBuilder.resume(BIG, reader((0, 273), lambda d: bytes([d[0] ^ 1]) + d[1:]), root=root)
    with pytest.raises(ProofFailed):
        TreeBuilder.resume(BIG, reader((2, 0), lambda d: d[:-1] + bytes([d[-1] ^ 128])), root=root)


def test_tile_hash_reader_proofs(
    one_by_one: tuple[TreeBuilder, dict[tuple[int, int], bytes], list[bytes]],
) -> None:
    _, stored, _ = one_by_one
    rng = random.Random(1)

    for size in [1, 255, 256, 257, 997 * 66, 256 * 256, 256 * 256 + 1, BIG]:
        # Tiles as a server would serve them at this size: full tiles, and partial
        # tiles cut from the latest stored version.
        def read_tile(level: int, index: int, width: int, size: int = size) -> bytes:
            assert width == (partial_tile_size(level, index, size) or 256)
            return stored[(level, index)][: width * 32]

        reader = TileHashReader(size, read_tile)
        root = root_of(BIG_LEAVES[:size])
        assert merkle.root_from_subtrees(size, reader) == root
        for index in {0, size - 1, rng.randrange(size), rng.randrange(size)}:
            proof = merkle.inclusion_proof(index, size, reader)
            merkle.check_inclusion(BIG_LEAVES[index], index, size, proof, root)
        for old in {1, size, rng.randrange(1, size + 1), max(1, size - 300)}:
            proof = merkle.consistency_proof(old, size, reader)
            merkle.check_consistency(old, size, proof, root_of(BIG_LEAVES[:old]), root)
    with pytest.raises(ValueError, match="not complete"):
        TileHashReader(300, lambda lv, ix, w: b"")(8, 1)


def test_tile_hash_reader_rejects_short_tiles() -> None:
    reader = TileHashReader(300, lambda lv, ix, w: b"\x00" * 32 * 43)
    with pytest.raises(MalformedTile):
        reader(0, 299)


def test_append_rejects_bad_hashes() -> None:
    b = TreeBuilder()
    with pytest.raises(ValueError, match="leaf hash 1 is 31 bytes"):
        b.append([b"\x00" * 32, b"\x00" * 31])
    assert b.size == 0
    b.append([])
    assert b.root() == EMPTY_ROOT and b.changed_tiles() == {}
