"""C2SP tlog-tiles: tile and entry-bundle paths, their contents, and a tiled tree builder.

All tlog-tiles path arithmetic in hashfed lives here; node routes, sync
fetchers and storage call these functions and never format paths themselves.

Paths (relative to the log prefix)::

    tile/<L>/<N>[.p/<W>]        hash tile at level L, index N
    tile/entries/<N>[.p/<W>]    entry bundle N

``<L>`` is 0..63 in decimal without leading zeros.  ``<N>`` is written in
zero-padded three-digit groups, every group but the last prefixed with ``x``
(1234067 is ``x001/x234/067``).  ``.p/<W>`` marks a partial tile or bundle of
``W`` = 1..255 items; a full one holds 256 and has no suffix.  In this module a
``width`` argument of 0 or 256 means full, 1..255 means partial:

    >>> tile_path(0, 1234067, 8)
    'tile/0/x001/x234/067.p/8'
    >>> entries_path(1000)
    'tile/entries/x001/000'
    >>> parse_tile_path("tile/2/x001/x234/067")
    TileRef(level=2, index=1234067, width=256)

Hash tiles: the tile at level ``L``, index ``N`` is the concatenation of the
32-byte RFC 6962 subtree hashes at tree level ``8 * L`` with indexes
``N * 256 .. N * 256 + W - 1``: leaf hashes at level 0, and at level ``L > 0``
the roots of the full tiles of level ``L - 1``.  A partial tile of a tree of
size ``s`` holds ``(s >> (8 * L)) % 256`` hashes; empty tiles do not exist.

Entry bundles: the entries with indexes ``N * 256 .. N * 256 + W - 1``, each a
big-endian uint16 length followed by that many bytes (so entries are at most
65535 bytes).  ``encode_bundle([b"one", b"two"]) == b"\\x00\\x03one\\x00\\x03two"``.

:class:`TreeBuilder` keeps the right edge of a tiled tree (the partial tile of
each level, at most 8 KiB per level) to append leaves, emit the changed tiles
and compute the root.  :class:`TileHashReader` reads complete-subtree hashes
out of stored tiles for :func:`hashfed.protocol.merkle.inclusion_proof` and
:func:`~hashfed.protocol.merkle.consistency_proof`.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hashfed.protocol.errors import MalformedBundle, MalformedTile, ProofFailed
from hashfed.protocol.merkle import EMPTY_ROOT, HASH_SIZE, node_hash, subtree_root

__all__ = [
    "ENTRY_BUNDLE_WIDTH",
    "MAX_ENTRY_SIZE",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileHashReader",
    "TileReader",
    "TileRef",
    "TreeBuilder",
    "content_path",
    "decode_bundle",
    "decode_tile",
    "encode_bundle",
    "entries_path",
    "log_prefix",
    "parse_content_path",
    "parse_tile_path",
    "partial_tile_size",
    "split_bundle",
    "tile_path",
]

TILE_HEIGHT = 8
"""Tree levels covered by one tile: a tile is a subtree of height 8."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (256, i.e. 8192 bytes)."""

ENTRY_BUNDLE_WIDTH = TILE_WIDTH
"""Entries in a full entry bundle (256)."""

MAX_TILE_LEVEL = 63
"""Highest tile level a path may name."""

MAX_ENTRY_SIZE = 0xFFFF
"""Largest entry an entry bundle can carry (uint16 length prefix)."""

TileReader = Callable[[int, int, int], bytes]
"""``read_tile(level, index, width) -> bytes``: the stored hash tile ``(level, index)``
holding at least ``width`` (1..256) hashes.  It may return a wider tile (for example
the full tile when a partial one was asked for); only the first ``width`` hashes are
used.  A missing tile must raise (e.g. ``KeyError`` or ``FileNotFoundError``)."""

_MAX_INDEX = 1 << 64
_FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
_MAX_PATH_LEN = 128  # far longer than any path with an index below 2**64

_TILE_RE = re.compile(
    r"tile/(?:(entries)|(0|[1-9][0-9]?))/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?"
)


def _check_width(width: int) -> int:
    """_check_width returns the item count for a ``width`` argument (0 → 256)."""
    if width == 0:
        return TILE_WIDTH
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is outside 0..256 (0 and 256 mean full)")
    return width


def _encode_index(index: int) -> str:
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _path(kind: str, level: int, index: int, width: int) -> str:
    w = _check_width(width)
    if index < 0 or index << (TILE_HEIGHT * (level + 1)) >= _MAX_INDEX:
        raise ValueError(f"tile index {index} at level {level} is outside 0..2**64-1")
    suffix = "" if w == TILE_WIDTH else f".p/{w}"
    return f"tile/{kind}/{_encode_index(index)}{suffix}"


def tile_path(level: int, index: int, width: int = 0) -> str:
    """tile_path returns the path of hash tile ``index`` at ``level``.

    ``width`` is 0 or 256 for a full tile, 1..255 for a partial tile.

    >>> tile_path(0, 1234067)
    'tile/0/x001/x234/067'
    >>> tile_path(1, 0, 3)
    'tile/1/000.p/3'
    """
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise ValueError(f"tile level {level} is outside 0..{MAX_TILE_LEVEL}")
    return _path(str(level), level, index, width)


def entries_path(index: int, width: int = 0) -> str:
    """entries_path returns the path of entry bundle ``index``.

    ``width`` is 0 or 256 for a full bundle, 1..255 for a partial bundle.

    >>> entries_path(1234067, 8)
    'tile/entries/x001/x234/067.p/8'
    """
    return _path("entries", 0, index, width)


def content_path(index: int, width: int = 0) -> str:
    """content_path returns the path of content bundle ``index``: hashfed's erasable
    content of the entries of entry bundle ``index`` (specs/protocol.md), numbered
    and sized like entry bundles, outside the tlog-tiles ``tile/`` namespace.

    >>> content_path(1234067, 8)
    'content/x001/x234/067.p/8'
    """
    return _path("entries", 0, index, width).replace("tile/entries/", "content/", 1)


def parse_content_path(path: str) -> TileRef:
    """parse_content_path parses a content_path, strictly (MalformedTile otherwise)."""
    if not path.startswith("content/"):
        raise MalformedTile(f"{path!r} is not a content bundle path")
    return parse_tile_path("tile/entries/" + path[len("content/") :])


def log_prefix(origin: str) -> str:
    """log_prefix returns the URL path prefix under which a node serves a log:
    ``log/`` and the lowercase hex SHA-256 of the origin, as C2SP tlog-mirror
    derives a mirrored log's prefix, so any origin is a safe path segment.

    >>> log_prefix("example.com/log")[:12]
    'log/4d3203c8'
    """
    return "log/" + hashlib.sha256(origin.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TileRef:
    """TileRef names one tile or entry bundle, as parsed by :func:`parse_tile_path`.

    ``level`` is the hash-tile level, or None for an entry bundle; ``width`` is the
    number of hashes or entries it holds (256 for a full one, 1..255 for a partial one).
    """

    level: int | None
    index: int
    width: int

    @property
    def is_entries(self) -> bool:
        """is_entries reports whether this names an entry bundle."""
        return self.level is None

    @property
    def is_partial(self) -> bool:
        """is_partial reports whether this names a partial tile or bundle."""
        return self.width != TILE_WIDTH

    @property
    def path(self) -> str:
        """path returns the canonical path of this tile or bundle."""
        if self.level is None:
            return entries_path(self.index, self.width)
        return tile_path(self.level, self.index, self.width)


def parse_tile_path(path: str) -> TileRef:
    """parse_tile_path parses a canonical tile or entry-bundle path.

    It accepts exactly what :func:`tile_path` and :func:`entries_path` produce and
    raises MalformedTile for anything else (leading zeros, missing ``x`` prefixes,
    level above 63, widths outside 1..255, index overflowing 64 bits, …).

    >>> parse_tile_path("tile/0/x001/x234/067.p/8")
    TileRef(level=0, index=1234067, width=8)
    >>> parse_tile_path("tile/entries/000")
    TileRef(level=None, index=0, width=256)
    """
    m = _TILE_RE.fullmatch(path) if len(path) <= _MAX_PATH_LEN else None
    if m is None:
        raise MalformedTile(
            f"{path!r} is not a tile path: want tile/<level>/<index>[.p/<width>] or "
            "tile/entries/<index>[.p/<width>] with an index like x001/x234/067"
        )
    entries, level_s, index_s, width_s = m.groups()
    level = None if entries else int(level_s)
    if level is not None and level > MAX_TILE_LEVEL:
        raise MalformedTile(f"{path!r}: tile level {level} is above {MAX_TILE_LEVEL}")
    width = int(width_s) if width_s else TILE_WIDTH
    if width_s and width >= TILE_WIDTH:
        raise MalformedTile(f"{path!r}: partial width {width} is outside 1..255")
    index = int(index_s.replace("x", "").replace("/", ""))
    if index << (TILE_HEIGHT * ((level or 0) + 1)) >= _MAX_INDEX:
        raise MalformedTile(f"{path!r}: tile index {index} starts beyond entry 2**64")
    ref = TileRef(level, index, width)
    if ref.path != path:
        raise MalformedTile(f"{path!r} is not canonical, want {ref.path!r}")
    return ref


def partial_tile_size(level: int, index: int, log_size: int) -> int:
    """partial_tile_size returns the width of tile ``(level, index)`` in a log of
    ``log_size`` entries: 0 if the tile is full, else its partial width 1..255.

    Entry bundles have the widths of level 0.  Raises ValueError if the tile does
    not exist at that size (it lies beyond the log, or would be empty).

    >>> partial_tile_size(0, 273, 70_000), partial_tile_size(1, 1, 70_000)
    (112, 17)
    >>> partial_tile_size(0, 0, 70_000)
    0
    """
    if level < 0 or index < 0 or log_size < 0:
        raise ValueError(f"negative tile level, index or log size: {level}, {index}, {log_size}")
    count = log_size >> (TILE_HEIGHT * level)
    full = count >> TILE_HEIGHT
    if index < full:
        return 0
    width = count & (TILE_WIDTH - 1)
    if index == full and width:
        return width
    raise ValueError(f"tile {level}/{index} does not exist in a log of size {log_size}")


def decode_tile(data: bytes, width: int) -> list[bytes]:
    """decode_tile splits a hash tile of ``width`` hashes (0 or 256 = full) into
    its 32-byte hashes; raises MalformedTile unless ``len(data) == 32 * width``."""
    w = _check_width(width)
    if len(data) != w * HASH_SIZE:
        raise MalformedTile(
            f"hash tile is {len(data)} bytes, want {w * HASH_SIZE} ({w} hashes of {HASH_SIZE})"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """encode_bundle returns the entry bundle holding ``entries`` (1..256 of them,
    each at most 65535 bytes), each as a big-endian uint16 length then its bytes."""
    if not 1 <= len(entries) <= ENTRY_BUNDLE_WIDTH:
        raise MalformedBundle(f"a bundle holds 1..{ENTRY_BUNDLE_WIDTH} entries, got {len(entries)}")
    parts: list[bytes] = []
    for i, e in enumerate(entries):
        if len(e) > MAX_ENTRY_SIZE:
            raise MalformedBundle(
                f"entry {i} is {len(e)} bytes; bundle entries are at most {MAX_ENTRY_SIZE}"
            )
        parts.append(len(e).to_bytes(2, "big"))
        parts.append(e)
    return b"".join(parts)


def decode_bundle(data: bytes, count: int) -> list[bytes]:
    """decode_bundle parses an entry bundle that must hold exactly ``count``
    entries (0 or 256 = full); raises MalformedBundle on truncation, trailing
    bytes, or a different number of entries."""
    want = _check_width(count)
    out: list[bytes] = []
    append = out.append
    pos, end = 0, len(data)
    for i in range(want):
        if pos + 2 > end:
            got = "" if pos == end else f" and {end - pos} stray bytes"
            raise MalformedBundle(f"bundle holds {i} entries{got}, want {want}")
        start = pos + 2
        pos = start + (data[pos] << 8 | data[pos + 1])
        if pos > end:
            raise MalformedBundle(
                f"bundle entry {i} is truncated: length prefix says {pos - start} bytes, "
                f"{end - start} left"
            )
        append(data[start:pos])
    if pos != end:
        raise MalformedBundle(
            f"bundle has {end - pos} bytes after its {want} entries (more entries than expected?)"
        )
    return out


def split_bundle(data: bytes, what: str) -> list[bytes]:
    """split_bundle returns the items of a bundle of any count (an entry or content
    bundle, or a longer one served for a partial); what names it in errors.
    Raises MalformedBundle if an item is truncated."""
    end = len(data)
    if end >= 2:
        # Fast path: every item has the first one's length (a batch of additions,
        # or of contents with the same labels), checked for all prefixes at once.
        length = (data[0] << 8) | data[1]
        step = length + 2
        count, rest = divmod(end, step)
        if (
            rest == 0
            and data[0::step] == bytes((data[0],)) * count
            and data[1::step] == bytes((data[1],)) * count
        ):
            return [data[pos : pos + length] for pos in range(2, end - length + 1, step)]
    items, pos = [], 0
    while pos < end:
        if pos + 2 > end:
            raise MalformedBundle(f"{what} ends inside an item length")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + length > end:
            raise MalformedBundle(f"{what} ends inside an item")
        items.append(data[pos : pos + length])
        pos += length
    return items


class TreeBuilder:
    """TreeBuilder is the growing right edge of a tiled RFC 6962 tree.

    It keeps, per tile level ``L``, the hashes of the rightmost partial tile
    (tree level ``8 * L``), so memory stays below 8 KiB per level whatever the
    tree size.  When a level-``L`` tile reaches 256 hashes, its subtree root is
    appended to level ``L + 1`` and the tile starts over empty.

    Typical use by a publisher::

        builder = TreeBuilder.resume(size, read_tile)   # or TreeBuilder()
        builder.append(merkle.leaf_hashes(entries))
        for (level, index), data in builder.changed_tiles().items():
            store(tile_path(level, index, len(data) // 32), data)
        root = builder.root()
    """

    __slots__ = ("_dirty", "_edge", "_size")

    def __init__(self) -> None:
        """__init__ returns a builder for the empty tree."""
        self._size = 0
        self._edge: list[list[bytes]] = [[]]
        # (level, index) -> bytes of a tile that filled up, or None for a tile that
        # is still the partial edge tile of its level (read out at changed_tiles()).
        self._dirty: dict[tuple[int, int], bytes | None] = {}

    @classmethod
    def resume(cls, size: int, read_tile: TileReader, root: bytes | None = None) -> TreeBuilder:
        """resume returns a builder for an existing tree of ``size`` leaves, reading
        the rightmost partial tile of each level through ``read_tile``.

        If ``root`` is given, the loaded edge must produce it, else ProofFailed is
        raised (so tiles from storage or a peer are checked before being trusted).
        Raises MalformedTile if ``read_tile`` returns fewer hashes than needed.
        """
        if not 0 <= size < _MAX_INDEX:
            raise ValueError(f"tree size {size} is outside 0..2**64-1")
        b = cls()
        b._size = size
        level = 0
        edge: list[list[bytes]] = []
        while True:
            count = size >> (TILE_HEIGHT * level)
            width = count & (TILE_WIDTH - 1)
            hashes: list[bytes] = []
            if width:
                index = count >> TILE_HEIGHT
                data = read_tile(level, index, width)
                need = width * HASH_SIZE
                if len(data) < need or len(data) > _FULL_TILE_BYTES or len(data) % HASH_SIZE:
                    raise MalformedTile(
                        f"tile {tile_path(level, index, width)} is {len(data)} bytes, "
                        f"want {need} (or a longer tile of whole hashes, at most "
                        f"{_FULL_TILE_BYTES})"
                    )
                hashes = decode_tile(data[:need], width)
            edge.append(hashes)
            if count < TILE_WIDTH:
                break
            level += 1
        b._edge = edge
        if root is not None and b.root() != root:
            raise ProofFailed(
                f"tiles for tree size {size} give root {b.root().hex()}, want {root.hex()}"
            )
        return b

    @property
    def size(self) -> int:
        """size returns the number of leaves in the tree."""
        return self._size

    def append(self, leaf_hashes: Sequence[bytes]) -> None:
        """append adds leaf hashes (32 bytes each, already leaf-hashed) to the tree."""
        n = len(leaf_hashes)
        if n == 0:
            return
        if set(map(len, leaf_hashes)) != {HASH_SIZE}:
            bad = next(i for i, h in enumerate(leaf_hashes) if len(h) != HASH_SIZE)
            raise ValueError(f"leaf hash {bad} is {len(leaf_hashes[bad])} bytes, want {HASH_SIZE}")
        if self._size + n >= _MAX_INDEX:
            raise ValueError("tree size would exceed 2**64-1")
        edge0 = self._edge[0]
        dirty = self._dirty
        pos = 0
        while pos < n:
            index = self._size >> TILE_HEIGHT
            take = min(TILE_WIDTH - len(edge0), n - pos)
            edge0.extend(leaf_hashes[pos : pos + take])
            pos += take
            self._size += take
            if len(edge0) == TILE_WIDTH:
                dirty[(0, index)] = b"".join(edge0)
                root = subtree_root(edge0)
                edge0.clear()
                self._push(1, root)
            else:
                dirty[(0, index)] = None

    def _push(self, level: int, h: bytes) -> None:
        """_push appends a full level-(level-1) tile's root to tile level ``level``."""
        while True:
            if level == len(self._edge):
                self._edge.append([])
            tile = self._edge[level]
            tile.append(h)
            index = ((self._size >> (TILE_HEIGHT * level)) - 1) >> TILE_HEIGHT
            if len(tile) < TILE_WIDTH:
                self._dirty[(level, index)] = None
                return
            self._dirty[(level, index)] = b"".join(tile)
            h = subtree_root(tile)
            tile.clear()
            level += 1

    def changed_tiles(self) -> dict[tuple[int, int], bytes]:
        """changed_tiles returns every tile ``(level, index) -> bytes`` written since
        the previous call (full tiles and the current partial edge tiles, width
        ``len(bytes) // 32``), in the order they changed, and forgets them."""
        out: dict[tuple[int, int], bytes] = {}
        for key, data in self._dirty.items():
            out[key] = b"".join(self._edge[key[0]]) if data is None else data
        self._dirty = {}
        return out

    def edge_tile(self, level: int) -> tuple[int, bytes]:
        """edge_tile returns ``(index, bytes)`` of the current partial tile at ``level``
        (bytes is empty if that level has no partial tile at this size)."""
        index = self._size >> (TILE_HEIGHT * (level + 1))
        if level >= len(self._edge):
            return index, b""
        return index, b"".join(self._edge[level])

    def root(self) -> bytes:
        """root returns the RFC 6962 root hash of the whole tree (EMPTY_ROOT if empty)."""
        if self._size == 0:
            return EMPTY_ROOT
        parts: list[bytes] = []
        for tile in reversed(self._edge):
            pos = 0
            for k in range(TILE_HEIGHT - 1, -1, -1):
                if len(tile) >> k & 1:
                    parts.append(subtree_root(tile[pos : pos + (1 << k)]))
                    pos += 1 << k
        result = parts[-1]
        for h in reversed(parts[:-1]):
            result = node_hash(h, result)
        return result

    def subtree_hash(self, level: int, index: int) -> bytes:
        """subtree_hash returns the hash of the complete subtree ``(level, index)``
        if it lies within the in-memory right edge; raises KeyError otherwise.

        It is a :data:`hashfed.protocol.merkle.SubtreeHash` for proofs whose
        subtrees all fall in the edge (e.g. the root's decomposition)."""
        tile_level, k = divmod(level, TILE_HEIGHT)
        if tile_level >= len(self._edge) or index < 0:
            raise KeyError(f"subtree ({level}, {index}) is not in the right edge")
        tile = self._edge[tile_level]
        first = (self._size >> (TILE_HEIGHT * (tile_level + 1))) << TILE_HEIGHT
        start = (index << k) - first
        if start < 0 or start + (1 << k) > len(tile):
            raise KeyError(
                f"subtree ({level}, {index}) is not in the right edge of a tree of size "
                f"{self._size}"
            )
        return subtree_root(tile[start : start + (1 << k)])


class TileHashReader:
    """TileHashReader reads complete-subtree hashes of a tree of ``size`` leaves
    from its hash tiles; an instance is a :data:`hashfed.protocol.merkle.SubtreeHash`.

    Subtree ``(level, index)`` with ``level = 8 * L + k`` is the root of the
    ``2**k`` hashes at positions ``index * 2**k ..`` of tile level ``L``; they are
    read with ``read_tile(L, tile_index, width)`` where width is 256 for full
    tiles and the partial width for the rightmost tile.  Decoded tiles are kept
    in a small cache.  Tiles are not authenticated here: check the proofs built
    from them (or the root) against a verified checkpoint.

    >>> from hashfed.protocol import merkle
    >>> b = TreeBuilder(); b.append([merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(300)])
    >>> tiles = b.changed_tiles()
    >>> reader = TileHashReader(300, lambda lvl, idx, w: tiles[(lvl, idx)])
    >>> merkle.root_from_subtrees(300, reader) == b.root()
    True
    """

    _CACHE_LIMIT = 64

    def __init__(self, size: int, read_tile: TileReader) -> None:
        """__init__ returns a reader for the tree of ``size`` leaves."""
        if not 0 <= size < _MAX_INDEX:
            raise ValueError(f"tree size {size} is outside 0..2**64-1")
        self.size = size
        self._read_tile = read_tile
        self._cache: dict[tuple[int, int], list[bytes]] = {}

    def __call__(self, level: int, index: int) -> bytes:
        """__call__ returns the hash of complete subtree ``(level, index)``."""
        if level < 0 or index < 0 or (index + 1) << level > self.size:
            raise ValueError(
                f"subtree ({level}, {index}) is not complete in a tree of size {self.size}"
            )
        tile_level, k = divmod(level, TILE_HEIGHT)
        start = index << k
        hashes = self._tile(tile_level, start >> TILE_HEIGHT)
        offset = start & (TILE_WIDTH - 1)
        return subtree_root(hashes[offset : offset + (1 << k)])

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        width = partial_tile_size(level, index, self.size) or TILE_WIDTH
        data = self._read_tile(level, index, width)
        need = width * HASH_SIZE
        if len(data) < need or len(data) > _FULL_TILE_BYTES or len(data) % HASH_SIZE:
            raise MalformedTile(
                f"tile {tile_path(level, index, width)} is {len(data)} bytes, want {need}"
            )
        hashes = decode_tile(data[:need], width)
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = hashes
        return hashes
