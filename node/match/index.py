"""Match indexes over a bank: PDQ within a Hamming distance, MD5 exact.

Both indexes hold *entries*: an integer id chosen by the caller (the node maps it to
``(origin, log index)``) and the raw hash bytes, 32 for PDQ and 16 for MD5. Ids are
unique among live entries; the same hash may be held under any number of ids.

:class:`PdqIndex` answers "every live entry within Hamming distance ``t`` of this
hash", for any ``0 <= t <=`` :data:`MAX_THRESHOLD` (31), exactly (100% recall).
:class:`Md5Index` answers "every live entry with exactly this hash". Matches come
back as :class:`Match` ``(id, distance)`` tuples, by distance and then id.

Layout (PDQ)
------------
The index is two segments, like a two-level LSM tree:

* the *base*: rows sorted by id, a multi-index-hashing (MIH) table over them, and a
  tombstone byte per row. The 256 bits are cut into 16 chunks of 16 bits (the
  little-endian ``uint16`` words of the hash bytes). For each chunk ``c`` the rows
  are counting-sorted by their chunk value into ``rows[c]`` and ``offsets[c, v]``
  says where value ``v`` starts (CSR). Built in O(n) from arrays by
  :meth:`PdqIndex.build` (about 0.1 s per million hashes).
* the *delta*: rows appended by :meth:`PdqIndex.add` since the last build, scanned
  by brute force. When it outgrows ``max(32768, base / 32)`` rows, or a quarter of
  the base is tombstoned, both segments are merged into a new base (compaction).

Search (pigeonhole): if two hashes differ in at most 31 bits, some one of the 16
chunks differs in at most 1 bit (16 chunks each differing in 2 or more bits would
make 32). So a query probes, in each chunk table, its own chunk value and its 16
one-bit neighbours (17 x 16 buckets, about n / 241 candidates at uniform density),
and verifies each live candidate with four 64-bit popcounts. With ``t <= 15`` some
chunk is equal, and only the 16 exact buckets are probed. A candidate that lies
within reach in several chunks is reported only from the first of them, so no
result set is needed. Building the table and searching it are C loops in
:mod:`hashfed.node.match._mih` (node/match/_mih.c), compiled when hashfed is
installed; they release the GIL for all their work.

Memory per PDQ entry: 32 (hash) + 8 (id) + 1 (tombstone) + 16 x 4 (chunk tables)
= 105 bytes, plus 4 MiB of chunk offsets: about 110 MB for a million hashes.

Updates
-------
:meth:`~PdqIndex.add` and :meth:`~PdqIndex.remove` validate all their input before
touching the index, so a failed update (:class:`ValueError`) changes nothing. A
removed id stops matching as soon as ``remove`` returns (its row is tombstoned in
place). Adding an id that is live raises ValueError; an id may be re-added after it
was removed.

Threads and the event loop
--------------------------
Every method is synchronous. ``hashfed serve`` runs neither searches nor updates on
its event loop: searches run in worker threads (``asyncio.to_thread``), updates in
the index updater's daemon thread (node/match/load.py). Searches take no lock and work
on a snapshot of the segments, and the C loops release the GIL, so searches run
concurrently with each other and with one update at a time; updates serialise on
an internal lock. A search that overlaps a ``remove`` may or may not see that
removal; every search that starts after ``remove`` returned does not match the
removed ids.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from hashfed.hasher.pdq import PDQ_MATCH_THRESHOLD
from hashfed.node.match import _mih
from hashfed.protocol.kinds import MD5, PDQ

PDQ_BYTES = PDQ.size
"""Size of a PDQ hash in bytes (256 bits)."""

MD5_BYTES = MD5.size
"""Size of an MD5 hash in bytes."""

MAX_THRESHOLD = 31
"""The largest PDQ threshold the index answers exactly (16 chunks, one bit flip each)."""

CHUNKS = 16
CHUNK_VALUES = 1 << 16

DELTA_MIN = 32_768
"""The delta segment is merged into the base when it exceeds this many rows..."""

DELTA_FRACTION = 32
"""...or 1/DELTA_FRACTION of the base, whichever is larger."""

DEAD_FRACTION = 4
"""The base is compacted when more than 1/DEAD_FRACTION of its rows are tombstoned."""

_INT64_MAX = np.iinfo(np.int64).max

U8Array = npt.NDArray[np.uint8]
U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


class Match(NamedTuple):
    """One index hit: the caller's entry id and its distance from the query (0 for MD5)."""

    id: int
    distance: int


@dataclass(frozen=True)
class IndexStats:
    """Sizes of an index: live entries, rows per segment, tombstones and bytes held."""

    live: int
    base_rows: int
    delta_rows: int
    dead_rows: int
    nbytes: int


# --------------------------------------------------------------------------- input checks


def _check_ids(ids: npt.ArrayLike) -> I64Array:
    """Return ``ids`` as a 1-D int64 array, or raise ValueError."""
    a = np.asarray(ids)
    if a.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {a.shape}")
    if a.size == 0:
        return np.empty(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "u" and int(a.max()) > _INT64_MAX:
        raise ValueError("ids must fit in a signed 64-bit integer")
    return a.astype(np.int64, copy=False)


def _check_hashes(hashes: U8Array | Sequence[bytes], width: int, what: str) -> U8Array:
    """Return ``hashes`` as a C-contiguous (n, width) uint8 array, or raise ValueError.

    Accepts such an array or a sequence of ``width``-byte ``bytes``.
    """
    if isinstance(hashes, np.ndarray):
        if hashes.dtype != np.uint8:
            raise ValueError(f"{what} hashes must have dtype uint8, got {hashes.dtype}")
        if hashes.ndim != 2 or hashes.shape[1] != width:
            raise ValueError(f"{what} hashes must have shape (n, {width}), got {hashes.shape}")
        return np.ascontiguousarray(hashes)
    items = list(hashes)
    for i, h in enumerate(items):
        if not isinstance(h, bytes | bytearray | memoryview) or len(h) != width:
            raise ValueError(f"{what} hash #{i} is not {width} bytes")
    if not items:
        return np.empty((0, width), dtype=np.uint8)
    return np.frombuffer(b"".join(items), dtype=np.uint8).reshape(-1, width).copy()


def _check_pair(
    ids: npt.ArrayLike, hashes: U8Array | Sequence[bytes], width: int, what: str
) -> tuple[I64Array, U8Array]:
    a = _check_ids(ids)
    h = _check_hashes(hashes, width, what)
    if len(a) != len(h):
        raise ValueError(f"{len(a)} ids but {len(h)} hashes")
    if len(a) > 1:
        s = np.sort(a)
        dup = s[1:] == s[:-1]
        if dup.any():
            raise ValueError(f"id {int(s[1:][dup][0])} appears twice")
    return a, h


def _check_threshold(t: int | np.integer[Any]) -> int:
    if isinstance(t, bool) or not isinstance(t, int | np.integer):
        raise ValueError(f"threshold must be an integer, got {t!r}")
    if not 0 <= t <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be between 0 and {MAX_THRESHOLD}, got {t}")
    return int(t)


# --------------------------------------------------------------------------- segments


@dataclass(eq=False)
class _Base:
    """Rows built in one go. ``sorted_ids``/``id_order`` find a row by id; ``search`` holds
    the kind's lookup structure."""

    hashes: U8Array  # (n, width), row order
    ids: I64Array
    alive: U8Array
    sorted_ids: I64Array
    id_order: I64Array | None  # None: rows are already in id order
    dead: int
    search: dict[str, Any]

    def rows_of(self, ids: I64Array) -> I64Array:
        """Return the live rows holding ``ids`` (ids not here or dead are skipped)."""
        n = len(self.sorted_ids)
        if n == 0 or len(ids) == 0:
            return np.empty(0, dtype=np.int64)
        pos = np.searchsorted(self.sorted_ids, ids)
        pos[pos == n] = 0
        pos = pos[self.sorted_ids[pos] == ids]
        rows: I64Array = pos if self.id_order is None else self.id_order[pos]
        live: I64Array = rows[self.alive[rows] != 0]
        return live


@dataclass(eq=False)
class _Delta:
    """Rows appended since the last build; ``count`` is published after the rows are written."""

    hashes: U8Array  # (capacity, width)
    ids: I64Array
    alive: U8Array
    count: int
    by_id: dict[int, int]  # live rows only

    @classmethod
    def empty(cls, width: int, capacity: int = 1024) -> _Delta:
        return cls(
            np.zeros((capacity, width), dtype=np.uint8),
            np.zeros(capacity, dtype=np.int64),
            np.zeros(capacity, dtype=np.uint8),
            0,
            {},
        )


@dataclass(frozen=True, eq=False)
class _State:
    base: _Base
    delta: _Delta


class KindIndex:
    """KindIndex is what the index of every hash kind shares: ids, tombstones, the
    delta and compaction. Subclasses set ``width`` (bytes per hash) and ``what``."""

    width: int
    what: str

    def __init__(self, *, auto_compact: bool = True) -> None:
        self._lock = threading.Lock()
        self._auto_compact = auto_compact
        self._state = _State(
            self._make_base(*_check_pair([], [], self.width, self.what)), _Delta.empty(self.width)
        )

    # kind hooks
    def _make_search(self, hashes: U8Array) -> dict[str, Any]:
        """Build the kind's lookup structure over rows already in ``_row_order``."""
        raise NotImplementedError

    def _make_base(self, ids: I64Array, hashes: U8Array) -> _Base:
        order = self._row_order(ids, hashes)
        if order is not None:
            ids = ids[order]
            hashes = hashes[order]
        else:
            hashes = hashes.copy()
        id_order: I64Array | None = None
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            id_order = np.argsort(ids, kind="stable").astype(np.int64)
        ids = ids.copy()
        return _Base(
            hashes=hashes,
            ids=ids,
            alive=np.ones(len(ids), dtype=np.uint8),
            sorted_ids=ids if id_order is None else ids[id_order],
            id_order=id_order,
            dead=0,
            search=self._make_search(hashes),
        )

    def _row_order(self, ids: I64Array, hashes: U8Array) -> I64Array | None:
        raise NotImplementedError

    # public API
    def build(self, ids: npt.ArrayLike, hashes: U8Array | Sequence[bytes]) -> None:
        """build replaces the whole index with these entries (ids unique)."""
        a, h = _check_pair(ids, hashes, self.width, self.what)
        base = self._make_base(a, h)
        with self._lock:
            self._state = _State(base, _Delta.empty(self.width))

    def add(self, ids: npt.ArrayLike, hashes: U8Array | Sequence[bytes]) -> None:
        """add appends entries. Raises ValueError, changing nothing, on malformed input or
        an id that is live in the index or repeated in the batch."""
        a, h = _check_pair(ids, hashes, self.width, self.what)
        if len(a) == 0:
            return
        with self._lock:
            state = self._state
            live_base = state.base.rows_of(a)
            if len(live_base):
                raise ValueError(f"id {int(state.base.ids[live_base[0]])} is already in the index")
            by_id = state.delta.by_id
            for i in a.tolist():
                if i in by_id:
                    raise ValueError(f"id {i} is already in the index")
            delta = state.delta
            start, end = delta.count, delta.count + len(a)
            if end > len(delta.ids):
                cap = max(2 * len(delta.ids), end)
                grown = _Delta.empty(self.width, cap)
                grown.hashes[:start] = delta.hashes[:start]
                grown.ids[:start] = delta.ids[:start]
                grown.alive[:start] = delta.alive[:start]
                grown.count = start
                grown.by_id = delta.by_id
                delta = grown
            delta.hashes[start:end] = h
            delta.ids[start:end] = a
            delta.alive[start:end] = 1
            by_id.update(zip(a.tolist(), range(start, end), strict=True))
            delta.count = end
            if delta is not state.delta:
                self._state = _State(state.base, delta)
            if self._auto_compact and self._needs_compaction():
                self._compact_locked()

    def remove(self, ids: npt.ArrayLike) -> int:
        """remove stops ``ids`` matching at once and returns how many were live.
        Unknown or already removed ids are ignored. Raises ValueError, changing
        nothing, on malformed ids."""
        a = np.unique(_check_ids(ids))
        if len(a) == 0:
            return 0
        with self._lock:
            state = self._state
            rows = state.base.rows_of(a)
            state.base.alive[rows] = 0
            state.base.dead += len(rows)
            removed = len(rows)
            by_id = state.delta.by_id
            for i in a.tolist():
                r = by_id.pop(i, None)
                if r is not None:
                    state.delta.alive[r] = 0
                    removed += 1
            if self._auto_compact and self._needs_compaction():
                self._compact_locked()
            return removed

    def compact(self) -> None:
        """compact merges the delta into a new base and drops tombstoned rows."""
        with self._lock:
            self._compact_locked()

    def __len__(self) -> int:
        state = self._state
        return len(state.base.ids) - state.base.dead + len(state.delta.by_id)

    def __contains__(self, id_: object) -> bool:
        if isinstance(id_, bool) or not isinstance(id_, int | np.integer):
            return False
        state = self._state
        return (
            int(id_) in state.delta.by_id
            or len(state.base.rows_of(np.array([id_], dtype=np.int64))) > 0
        )

    def stats(self) -> IndexStats:
        """stats returns the index's sizes."""
        state = self._state
        base, delta = state.base, state.delta
        arrays: list[npt.NDArray[Any]] = [
            base.hashes, base.ids, base.alive, delta.hashes, delta.ids, delta.alive,
        ]  # fmt: skip
        if base.id_order is not None:
            arrays += [base.id_order, base.sorted_ids]
        arrays += [v for v in base.search.values() if isinstance(v, np.ndarray) and v.base is None]
        return IndexStats(
            live=len(self),
            base_rows=len(base.ids),
            delta_rows=delta.count,
            dead_rows=base.dead + delta.count - len(delta.by_id),
            nbytes=sum(x.nbytes for x in arrays),
        )

    # compaction
    def _needs_compaction(self) -> bool:
        state = self._state
        n = len(state.base.ids)
        return state.delta.count > max(DELTA_MIN, n // DELTA_FRACTION) or (
            state.base.dead > max(1024, n // DEAD_FRACTION)
        )

    def _compact_locked(self) -> None:
        state = self._state
        base, delta = state.base, state.delta
        keep = base.alive != 0
        dkeep = delta.alive[: delta.count] != 0
        ids = np.concatenate([base.ids[keep], delta.ids[: delta.count][dkeep]])
        hashes = np.concatenate([base.hashes[keep], delta.hashes[: delta.count][dkeep]])
        self._state = _State(self._make_base(ids, hashes), _Delta.empty(self.width))


class PdqIndex(KindIndex):
    """Exact PDQ index: every live entry within a Hamming distance of a query.

    >>> import numpy as np
    >>> index = PdqIndex()
    >>> bank = np.zeros((2, 32), dtype=np.uint8)
    >>> bank[1, :4] = 0xFF  # 32 bits away from bank[0]
    >>> index.build(np.array([10, 11]), bank)
    >>> index.search(bytes(31) + b"\\x01")
    [Match(id=10, distance=1)]
    >>> index.remove([10])
    1
    >>> index.search(bytes(32))
    []
    """

    width = PDQ_BYTES
    what = "PDQ"

    def __init__(self, *, auto_compact: bool = True, threads: int | None = None) -> None:
        """``threads`` bounds the worker threads one search_batch call may use
        (default: the number of CPUs, at most 8); 1 searches in the calling thread."""
        super().__init__(auto_compact=auto_compact)
        self._threads = max(1, threads if threads is not None else min(os.cpu_count() or 1, 8))
        self._pool: ThreadPoolExecutor | None = None

    def _row_order(self, ids: I64Array, hashes: U8Array) -> I64Array | None:
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            return np.argsort(ids, kind="stable").astype(np.int64)
        return None

    def _make_search(self, hashes: U8Array) -> dict[str, Any]:
        n = len(hashes)
        if n >= 1 << 32:
            raise ValueError("a PDQ index holds fewer than 2**32 rows")
        offsets = np.empty((CHUNKS, CHUNK_VALUES + 1), dtype=np.uint32)
        rows = np.empty((CHUNKS, n), dtype=np.uint32)
        words = hashes.view(np.uint64)
        h16 = hashes.view(np.uint16)
        _mih.build(h16, offsets, rows)
        return {"words": words, "h16": h16, "offsets": offsets, "rows": rows}

    def search(self, hash32: bytes, threshold: int = PDQ_MATCH_THRESHOLD) -> list[Match]:
        """search returns the live entries within ``threshold`` bits of ``hash32``
        (32 raw bytes), nearest first. Raises ValueError on a malformed hash or a
        threshold outside 0..31."""
        if not isinstance(hash32, bytes | bytearray | memoryview) or len(hash32) != PDQ_BYTES:
            raise ValueError(f"a PDQ hash is {PDQ_BYTES} bytes")
        q = np.frombuffer(hash32, dtype=np.uint8).reshape(1, PDQ_BYTES).copy()
        return self._search(q, np.array([_check_threshold(threshold)], dtype=np.int64))[0]

    def search_batch(
        self,
        hashes: U8Array | Sequence[bytes],
        threshold: int | npt.ArrayLike = PDQ_MATCH_THRESHOLD,
    ) -> list[list[Match]]:
        """search_batch returns, for each query row of ``hashes`` ((q, 32) uint8 or q
        32-byte strings), the live entries within the threshold, nearest first.
        ``threshold`` is one integer or one per query, each 0..31."""
        q = _check_hashes(hashes, PDQ_BYTES, "query")
        if isinstance(threshold, int | np.integer) and not isinstance(threshold, bool):
            ts = np.full(len(q), _check_threshold(threshold), dtype=np.int64)
        else:
            t = np.asarray(threshold)
            if t.shape != (len(q),) or (t.size and t.dtype.kind not in "iu"):
                raise ValueError(f"thresholds must be {len(q)} integers")
            if t.size and (t.min() < 0 or t.max() > MAX_THRESHOLD):
                raise ValueError(f"thresholds must be between 0 and {MAX_THRESHOLD}")
            ts = t.astype(np.int64)
        return self._search(q, ts)

    def _search(self, q: U8Array, ts: I64Array) -> list[list[Match]]:
        state = self._state
        m = len(q)
        parts = min(self._threads, m // _MIN_PART)
        if parts <= 1:
            return _pdq_search_part(state, q, ts)
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, "hashfed-pdq-index")
        cuts = np.linspace(0, m, parts + 1).astype(int).tolist()
        futures = [
            self._pool.submit(_pdq_search_part, state, q[a:b], ts[a:b])
            for a, b in itertools.pairwise(cuts)
        ]
        return [hits for f in futures for hits in f.result()]


_MIN_PART = 128
"""A batch is split over threads in parts of at least this many queries."""


def _pdq_search_part(state: _State, q: U8Array, ts: I64Array) -> list[list[Match]]:
    base, delta = state.base, state.delta
    d_count = delta.count
    s = base.search
    m = len(q)
    cap = max(64, 4 * m)
    out_ids = np.empty(cap, dtype=np.int64)
    out_d = np.empty(cap, dtype=np.int32)
    starts = np.zeros(m + 1, dtype=np.int64)
    q = np.ascontiguousarray(q)
    qw = q.view(np.uint64)
    q16 = q.view(np.uint16)
    first = 0
    while True:
        first = _mih.search(
            qw, q16, ts,
            s["words"], s["h16"], base.alive, base.ids, s["offsets"], s["rows"],
            delta.hashes.view(np.uint64), delta.alive, delta.ids, d_count,
            out_ids, out_d, starts, first,
        )  # fmt: skip
        if first == m:
            break
        cap *= 4
        out_ids = np.resize(out_ids, cap)
        out_d = np.resize(out_d, cap)
    hits = list(map(Match, out_ids[: starts[m]].tolist(), out_d[: starts[m]].tolist()))
    bounds = starts.tolist()
    return [hits[bounds[i] : bounds[i + 1]] for i in range(m)]


class Md5Index(KindIndex):
    """Exact MD5 index: every live entry with a given 16-byte hash.

    The base is sorted by hash and searched by bisection on its first eight bytes.
    """

    width = MD5_BYTES
    what = "MD5"

    @staticmethod
    def _keys(hashes: U8Array) -> U64Array:
        return hashes.view(">u8").astype(np.uint64)

    def _row_order(self, ids: I64Array, hashes: U8Array) -> I64Array | None:
        if len(ids) < 2:
            return None
        keys = self._keys(hashes)
        return np.lexsort((ids, keys[:, 1], keys[:, 0])).astype(np.int64)

    def _make_search(self, hashes: U8Array) -> dict[str, Any]:
        keys = self._keys(hashes)
        return {"hi": np.ascontiguousarray(keys[:, 0]), "lo": np.ascontiguousarray(keys[:, 1])}

    def search(self, hash16: bytes) -> list[Match]:
        """search returns the live entries whose hash is ``hash16`` (16 raw bytes), by id."""
        if not isinstance(hash16, bytes | bytearray | memoryview) or len(hash16) != MD5_BYTES:
            raise ValueError(f"an MD5 hash is {MD5_BYTES} bytes")
        return self.search_batch([bytes(hash16)])[0]

    def search_batch(self, hashes: U8Array | Sequence[bytes]) -> list[list[Match]]:
        """search_batch returns, for each query, the live entries with exactly that hash."""
        q = _check_hashes(hashes, MD5_BYTES, "query")
        state = self._state
        base, delta = state.base, state.delta
        d_count = delta.count
        keys = self._keys(q)
        hi, lo = base.search["hi"], base.search["lo"]
        left = np.searchsorted(hi, keys[:, 0], "left").tolist()
        right = np.searchsorted(hi, keys[:, 0], "right").tolist()
        d_hashes = delta.hashes[:d_count]
        out: list[list[Match]] = []
        for i in range(len(q)):
            found: list[int] = []
            if right[i] > left[i]:
                want = keys[i, 1]
                for r in range(left[i], right[i]):
                    if lo[r] == want and base.alive[r]:
                        found.append(int(base.ids[r]))
            if d_count:
                same = np.flatnonzero((d_hashes == q[i]).all(axis=1) & (delta.alive[:d_count] != 0))
                found.extend(delta.ids[same].tolist())
            out.append([Match(i_, 0) for i_ in sorted(found)])
        return out


class ExactIndex(KindIndex):
    """Exact index for a kind of any width: every live entry with a given hash.

    The index of a kind that matches only equal hashes and has no index of its own
    (:class:`Md5Index` is the faster one for MD5). The base is sorted by hash and
    searched by bisection.
    """

    def __init__(self, width: int, what: str = "hash", *, auto_compact: bool = True) -> None:
        self.width, self.what = width, what
        super().__init__(auto_compact=auto_compact)

    def _keys(self, hashes: U8Array) -> npt.NDArray[np.bytes_]:
        # Fixed-width byte strings order (and compare) as the raw hashes do.
        return np.ascontiguousarray(hashes).view(f"S{self.width}").ravel()

    def _row_order(self, ids: I64Array, hashes: U8Array) -> I64Array | None:
        if len(ids) < 2:
            return None
        return np.lexsort((ids, self._keys(hashes))).astype(np.int64)

    def _make_search(self, hashes: U8Array) -> dict[str, Any]:
        return {"keys": self._keys(hashes)}

    def search(self, digest: bytes) -> list[Match]:
        """search returns the live entries whose hash is ``digest``, by id."""
        if not isinstance(digest, bytes | bytearray | memoryview) or len(digest) != self.width:
            raise ValueError(f"a {self.what} hash is {self.width} bytes")
        return self.search_batch([bytes(digest)])[0]

    def search_batch(self, hashes: U8Array | Sequence[bytes]) -> list[list[Match]]:
        """search_batch returns, for each query, the live entries with exactly that hash."""
        q = _check_hashes(hashes, self.width, "query")
        state = self._state
        base, delta = state.base, state.delta
        d_count = delta.count
        d_hashes = delta.hashes[:d_count]
        keys = self._keys(q)
        left = np.searchsorted(base.search["keys"], keys, "left").tolist()
        right = np.searchsorted(base.search["keys"], keys, "right").tolist()
        out: list[list[Match]] = []
        for i in range(len(q)):
            found = [int(base.ids[r]) for r in range(left[i], right[i]) if base.alive[r]]
            if d_count:
                same = (d_hashes == q[i]).all(axis=1) & (delta.alive[:d_count] != 0)
                found.extend(delta.ids[np.flatnonzero(same)].tolist())
            out.append([Match(i_, 0) for i_ in sorted(found)])
        return out


__all__ = [
    "DEAD_FRACTION",
    "DELTA_FRACTION",
    "DELTA_MIN",
    "MAX_THRESHOLD",
    "MD5_BYTES",
    "PDQ_BYTES",
    "ExactIndex",
    "IndexStats",
    "KindIndex",
    "Match",
    "Md5Index",
    "PdqIndex",
]
