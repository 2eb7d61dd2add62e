"""The match indexes of node/match/index.py (the C extension _mih) against brute force:
exact recall, updates, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hashfed.node.match.index import MAX_THRESHOLD, Match, Md5Index, PdqIndex

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "pdq"

Bank = npt.NDArray[np.uint8]


def brute(ids: npt.NDArray[np.int64], bank: Bank, q: bytes, t: int) -> list[Match]:
    """Every (id, distance) within t of q, nearest first, by a full scan."""
    if len(bank) == 0:
        return []
    x = np.bitwise_xor(bank, np.frombuffer(q, dtype=np.uint8))
    d = np.unpackbits(x, axis=1).sum(axis=1)
    hit = np.flatnonzero(d <= t)
    return sorted((Match(int(ids[i]), int(d[i])) for i in hit), key=lambda m: (m.distance, m.id))


def flip(h: npt.NDArray[np.uint8], bits: int, rng: np.random.Generator) -> bytes:
    """h with exactly ``bits`` distinct bits flipped."""
    out = h.copy()
    for b in rng.choice(256, bits, replace=False):
        out[b // 8] ^= 1 << (b % 8)
    return out.tobytes()


def planted_queries(bank: Bank, rng: np.random.Generator) -> list[bytes]:
    """Queries at every distance 0..32 from bank entries, plus random hashes."""
    qs = []
    for d in range(33):
        for _ in range(3):
            qs.append(flip(bank[rng.integers(len(bank))], d, rng))
    qs += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(20)]
    return qs


def random_bank(n: int, rng: np.random.Generator) -> Bank:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def clustered_bank(n: int, rng: np.random.Generator) -> Bank:
    """Groups of near-duplicates: each centre plus members a few to 40 bits away."""
    centres = random_bank(max(1, n // 20), rng)
    rows = [np.frombuffer(flip(centres[i % len(centres)], int(rng.integers(0, 40)), rng), np.uint8)
            for i in range(n)]  # fmt: skip
    return np.stack(rows)


def check_all(index: PdqIndex, ids: npt.NDArray[np.int64], bank: Bank, qs: list[bytes]) -> None:
    for t in (MAX_THRESHOLD, 16, 15, 1, 0):
        want = [brute(ids, bank, q, t) for q in qs]
        assert index.search_batch(qs, t) == want
        for q, w in zip(qs[::7], want[::7], strict=True):
            assert index.search(q, t) == w


@pytest.mark.parametrize("make", [random_bank, clustered_bank])
def test_recall_matches_brute_force(make: object) -> None:
    rng = np.random.default_rng(5)
    bank = make(20_000, rng)  # type: ignore[operator]
    ids = rng.permutation(10 * len(bank))[: len(bank)].astype(np.int64)
    index = PdqIndex()
    index.build(ids, bank)
    qs = planted_queries(bank, rng)
    check_all(index, ids, bank, qs)
    # every planted distance 0..31 is found; the same distance from the bank is what it is
    hits = index.search_batch(qs[: 33 * 3])
    for d in range(32):
        assert any(m.distance <= d for m in hits[3 * d])


def test_distance_32_is_not_a_match() -> None:
    index = PdqIndex()
    h = np.zeros((1, 32), dtype=np.uint8)
    index.build([1], h)
    q = bytearray(32)
    q[:4] = b"\xff\xff\xff\xff"
    assert index.search(bytes(q)) == []
    q[3] = 0xFE
    assert index.search(bytes(q)) == [Match(1, 31)]


def test_mih_regression_vectors() -> None:
    def read(name: str) -> list[bytes]:
        lines = (VECTORS / name).read_text().split("\n")
        return [bytes.fromhex(line.split()[0]) for line in lines if line.strip()]

    haystack, needles = read("haystack.txt"), read("needles.txt")
    bank = np.frombuffer(b"".join(haystack), dtype=np.uint8).reshape(-1, 32)
    ids = np.arange(len(bank), dtype=np.int64)
    index = PdqIndex()
    index.build(ids, bank)
    check_all(index, ids, bank, needles)
    assert sum(len(m) for m in index.search_batch(needles)) > 0


def test_duplicate_hashes_under_several_ids() -> None:
    h = np.tile(np.arange(32, dtype=np.uint8), (5, 1))
    index = PdqIndex()
    index.build([7, 3, 9, 1, 5], h)
    assert index.search(h[0].tobytes()) == [Match(i, 0) for i in (1, 3, 5, 7, 9)]
    index.remove([3])
    assert [m.id for m in index.search(h[0].tobytes())] == [1, 5, 7, 9]


def test_many_hits_overflow_output() -> None:
    rng = np.random.default_rng(1)
    bank = np.tile(random_bank(1, rng), (3000, 1))
    index = PdqIndex()
    index.build(np.arange(3000), bank)
    res = index.search_batch([bank[0].tobytes(), flip(bank[0], 31, rng)])
    assert [len(r) for r in res] == [3000, 3000]
    assert res[1][0] == Match(0, 31)


def test_remove_add_and_compaction() -> None:
    rng = np.random.default_rng(2)
    bank = random_bank(5000, rng)
    ids = np.arange(5000, dtype=np.int64)
    index = PdqIndex(auto_compact=False)
    index.build(ids, bank)
    q = flip(bank[10], 20, rng)
    assert Match(10, 20) in index.search(q)

    assert index.remove([10, 10, 123_456]) == 1
    assert Match(10, 20) not in index.search(q)
    assert 10 not in index
    assert index.remove([10]) == 0

    # add after remove, in the delta; the same id may come back
    extra = random_bank(300, rng)
    extra_ids = np.arange(10_000, 10_300, dtype=np.int64)
    index.add(extra_ids, extra)
    index.add([10], [bank[10].tobytes()])
    assert Match(10, 20) in index.search(q)
    assert 10 in index and 10_005 in index
    index.remove([10_005, 10])
    live_ids = np.concatenate([np.delete(ids, 10), np.delete(extra_ids, 5)])
    live_bank = np.concatenate([np.delete(bank, 10, axis=0), np.delete(extra, 5, axis=0)])
    qs = [*planted_queries(live_bank, rng), q, flip(extra[5], 3, rng)]
    check_all(index, live_ids, live_bank, qs)
    assert len(index) == len(live_ids)

    index.compact()
    stats = index.stats()
    assert (stats.base_rows, stats.delta_rows, stats.dead_rows) == (len(live_ids), 0, 0)
    check_all(index, live_ids, live_bank, qs)
    index.add([10], [bank[10].tobytes()])
    assert Match(10, 20) in index.search(q)


def test_auto_compaction_keeps_results() -> None:
    rng = np.random.default_rng(3)
    index = PdqIndex()
    bank = random_bank(40_000, rng)
    ids = np.arange(40_000, dtype=np.int64)
    index.build(ids[:1000], bank[:1000])
    for start in range(1000, 40_000, 3000):  # delta outgrows 32,768 rows: merged
        index.add(ids[start : start + 3000], bank[start : start + 3000])
    assert index.stats().delta_rows < 32_768
    index.remove(ids[:20_000])  # half the rows dead: compacted
    assert index.stats().dead_rows == 0
    qs = planted_queries(bank, rng)
    check_all(index, ids[20_000:], bank[20_000:], qs)


def test_bad_input_raises_and_changes_nothing() -> None:
    rng = np.random.default_rng(4)
    bank = random_bank(100, rng)
    index = PdqIndex()
    index.build(np.arange(100), bank)
    qs = [flip(bank[i], 5, rng) for i in range(0, 100, 10)]
    before = (index.search_batch(qs), len(index), index.stats())

    bad_updates = [
        lambda: index.add([200], [b"\x00" * 31]),  # wrong length
        lambda: index.add([200], np.zeros((1, 16), dtype=np.uint8)),  # wrong width
        lambda: index.add([200], np.zeros((1, 32), dtype=np.int64)),  # wrong dtype
        lambda: index.add(np.array([200.0]), np.zeros((1, 32), dtype=np.uint8)),  # float ids
        lambda: index.add([200, 201], np.zeros((1, 32), dtype=np.uint8)),  # count mismatch
        lambda: index.add([200, 200], np.zeros((2, 32), dtype=np.uint8)),  # repeated id
        lambda: index.add([300, 5], np.zeros((2, 32), dtype=np.uint8)),  # id 5 is live
        lambda: index.add(np.array([2**64 - 1], dtype=np.uint64), np.zeros((1, 32), np.uint8)),
        lambda: index.add([[1]], np.zeros((1, 32), dtype=np.uint8)),  # 2-D ids
        lambda: index.remove(np.array([1.5])),
        lambda: index.remove(["1"]),
        lambda: index.build([1, 1], np.zeros((2, 32), dtype=np.uint8)),
        lambda: index.build([1], np.zeros((1, 33), dtype=np.uint8)),
    ]
    for update in bad_updates:
        with pytest.raises(ValueError):
            update()
        assert (index.search_batch(qs), len(index), index.stats()) == before

    for bad_query in [
        lambda: index.search(b"\x00" * 31),
        lambda: index.search("00" * 32),  # type: ignore[arg-type]
        lambda: index.search(bytes(32), 32),
        lambda: index.search(bytes(32), -1),
        lambda: index.search_batch(np.zeros((2, 32), dtype=np.uint16)),
        lambda: index.search_batch(np.zeros((2, 32), dtype=np.uint8), [1, 2, 3]),
        lambda: index.search_batch(np.zeros((2, 32), dtype=np.uint8), [1, 40]),
    ]:
        with pytest.raises(ValueError):
            bad_query()


def test_threshold_per_query() -> None:
    rng = np.random.default_rng(6)
    bank = random_bank(2000, rng)
    ids = np.arange(2000, dtype=np.int64)
    index = PdqIndex()
    index.build(ids, bank)
    qs = planted_queries(bank, rng)
    ts = rng.integers(0, 32, len(qs))
    assert index.search_batch(qs, ts) == [
        brute(ids, bank, q, int(t)) for q, t in zip(qs, ts, strict=True)
    ]


def test_batch_split_over_threads_matches_single_thread() -> None:
    rng = np.random.default_rng(7)
    bank = clustered_bank(5000, rng)
    ids = np.arange(5000, dtype=np.int64)
    qs = np.stack([np.frombuffer(flip(bank[i % 5000], i % 33, rng), np.uint8) for i in range(600)])
    one, many = PdqIndex(threads=1), PdqIndex(threads=3)
    for index in (one, many):
        index.build(ids, bank)
    assert one.search_batch(qs) == many.search_batch(qs)


def test_empty_index_and_empty_batch() -> None:
    index = PdqIndex()
    assert index.search(bytes(32)) == []
    assert index.search_batch(np.zeros((0, 32), dtype=np.uint8)) == []
    index.add([], np.zeros((0, 32), dtype=np.uint8))
    index.add([4], [bytes(32)])
    assert index.search(bytes(32)) == [Match(4, 0)]
    assert len(index) == 1


def degenerate_bank(rng: np.random.Generator) -> Bank:
    """Hashes that crowd the chunk tables: all zeros, all ones, one byte repeated, every
    chunk equal, and one-bit neighbours of each, each several times over."""
    base = [bytes(32), b"\xff" * 32, b"\x0f" * 32, b"\xaa\x55" * 16, bytes(range(2)) * 16]
    rows = [np.frombuffer(h, np.uint8) for h in base for _ in range(3)]
    rows += [np.frombuffer(flip(np.frombuffer(h, np.uint8), d, rng), np.uint8)
             for h in base for d in (1, 2, 15, 16, 17, 31, 32, 33)]  # fmt: skip
    return np.stack(rows)


@pytest.mark.parametrize("n", [0, 1, 2, 57, 600])
def test_edge_banks_match_brute_force(n: int) -> None:
    """Empty and tiny banks, duplicates and degenerate hashes, split between the base and
    the delta (some removed from each), at thresholds 0, 15, 16 and 31."""
    rng = np.random.default_rng(100 + n)
    bank = np.concatenate([random_bank(n, rng), degenerate_bank(rng)])
    bank = np.concatenate([bank, bank[rng.integers(0, len(bank), len(bank) // 4)]])  # repeats
    ids = rng.permutation(4 * len(bank))[: len(bank)].astype(np.int64)
    cut = len(bank) * 2 // 3
    index = PdqIndex(auto_compact=False)
    index.build(ids[:cut], bank[:cut])
    index.add(ids[cut:], bank[cut:])
    gone = rng.choice(ids, len(ids) // 5, replace=False)
    index.remove(gone)
    keep = ~np.isin(ids, gone)
    qs = [*planted_queries(bank, rng), *(h.tobytes() for h in degenerate_bank(rng))]
    check_all(index, ids[keep], bank[keep], qs)
    index.compact()
    check_all(index, ids[keep], bank[keep], qs)


def test_mih_extension_rejects_mismatched_arrays() -> None:
    """The C loops index only within what they were given: a wrong size is a ValueError."""
    from hashfed.node.match import _mih

    h16 = np.zeros((4, 16), dtype=np.uint16)
    offsets = np.zeros((16, 65537), dtype=np.uint32)
    with pytest.raises(ValueError, match="rows"):
        _mih.build(h16, offsets, np.zeros((16, 3), dtype=np.uint32))
    with pytest.raises(ValueError, match="offsets"):
        _mih.build(h16, offsets[:, :-1].copy(), np.zeros((16, 4), dtype=np.uint32))
    with pytest.raises(ValueError, match="2-byte"):
        _mih.build(h16.astype(np.uint32), offsets, np.zeros((16, 4), dtype=np.uint32))
    rows = np.zeros((16, 4), dtype=np.uint32)
    _mih.build(h16, offsets, rows)
    words, alive, ids = h16.view(np.uint64), np.ones(4, np.uint8), np.arange(4, dtype=np.int64)
    q = np.zeros((1, 32), dtype=np.uint8)

    def search(ts: object, d_count: int = 0, starts: object = None, cap: int = 8) -> int:
        return _mih.search(
            q.view(np.uint64), q.view(np.uint16), ts, words, h16, alive, ids, offsets, rows,
            words, alive, ids, d_count, np.zeros(cap, np.int64), np.zeros(cap, np.int32),
            np.zeros(2, np.int64) if starts is None else starts, 0,
        )  # fmt: skip

    with pytest.raises(ValueError, match="thresholds"):
        search(np.array([32], dtype=np.int64))
    with pytest.raises(ValueError, match="d_count"):
        search(np.array([3], dtype=np.int64), d_count=5)
    with pytest.raises(ValueError, match="starts"):
        search(np.array([3], dtype=np.int64), starts=np.zeros(3, np.int64))
    starts = np.zeros(2, np.int64)
    assert search(np.array([0], dtype=np.int64), d_count=1, starts=starts, cap=4) == 0  # 5 hits
    assert starts.tolist() == [0, 0]
    starts = np.zeros(2, np.int64)
    assert search(np.array([0], dtype=np.int64), d_count=1, starts=starts) == 1
    assert starts.tolist() == [0, 5]


def test_md5_exact() -> None:
    rng = np.random.default_rng(8)
    bank = rng.integers(0, 256, (1000, 16), dtype=np.uint8)
    bank[500] = bank[7]  # the same hash under two ids
    ids = np.arange(1000, 2000, dtype=np.int64)
    index = Md5Index()
    index.build(ids[::-1].copy(), bank[::-1].copy())
    assert index.search(bank[7].tobytes()) == [Match(1007, 0), Match(1500, 0)]
    assert index.search(bank[8].tobytes()) == [Match(1008, 0)]
    near = bank[8].copy()
    near[15] ^= 1
    assert index.search(near.tobytes()) == []

    index.remove([1007])
    assert index.search(bank[7].tobytes()) == [Match(1500, 0)]
    index.add([1007, 5], [bank[7].tobytes(), near.tobytes()])
    assert index.search_batch([bank[7].tobytes(), near.tobytes()]) == [
        [Match(1007, 0), Match(1500, 0)],
        [Match(5, 0)],
    ]
    index.remove([5])
    index.compact()
    assert index.search(near.tobytes()) == []
    assert index.search(bank[7].tobytes()) == [Match(1007, 0), Match(1500, 0)]
    assert len(index) == 1000

    with pytest.raises(ValueError):
        index.search(bytes(32))
    with pytest.raises(ValueError):
        index.add([1], np.zeros((1, 32), dtype=np.uint8))
    with pytest.raises(ValueError):
        index.add([1001], [bytes(16)])  # 1001 is live
    assert len(index) == 1000
