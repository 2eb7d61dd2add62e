"""Match: our PDQ index beside python-threatexchange's PDQIndex and faiss IndexBinaryFlat.

* banks of 100k and 1M PDQ hashes (quick: 100k only), uniformly random and clustered
  (groups of 10 near-duplicates, 0-24 bits from their centre);
* 1,000 queries: planted matches at every distance 0-31 from a bank entry, non-matches
  at exactly 32 from one, and random hashes; threshold 31;
* each index runs in its own process: build time from the bank arrays, single-query
  p50/p99 through the Python API, throughput on one batch of 1,000, and RSS growth
  once built (the bank arrays and imports are the baseline that is subtracted);
* recall against a numpy brute-force scan of the bank (ours must be exactly 100%).

The peers run under ``.venv-bench`` (or ``$HASHFED_PEER_PYTHON``): threatexchange 1.2.17
and faiss-cpu, which hashfed itself does not depend on.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.table import Row

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = Path(os.environ.get("HASHFED_PEER_PYTHON", ROOT / ".venv-bench" / "bin" / "python"))
THRESHOLD = 31
BATCH = 1000
SINGLE_FLAT = 200  # faiss flat scans the bank per query: time fewer single queries


# --------------------------------------------------------------------------- data


def make_bank(n: int, clustered: bool, rng: np.random.Generator) -> np.ndarray:
    if not clustered:
        return rng.integers(0, 256, (n, 32), dtype=np.uint8)
    centres = rng.integers(0, 256, (n // 10, 32), dtype=np.uint8)
    bank = np.repeat(centres, 10, axis=0)
    for start in range(0, n, 50_000):
        part = bank[start : start + 50_000]
        p = rng.integers(0, 25, len(part)) / 256
        part ^= np.packbits(rng.random((len(part), 256)) < p[:, None], axis=1)
    return bank[rng.permutation(n)]


def make_queries(bank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """27 queries at each distance 0..32 from a bank entry, the rest random."""
    qs = rng.integers(0, 256, (BATCH, 32), dtype=np.uint8)
    per = 27
    for d in range(33):
        for k in range(per):
            row = bank[rng.integers(len(bank))].copy()
            bits = rng.choice(256, d, replace=False)
            np.bitwise_xor.at(row, bits // 8, (1 << (bits % 8)).astype(np.uint8))
            qs[d * per + k] = row
    return qs


def brute_force(bank: np.ndarray, qs: np.ndarray) -> list[list[int]]:
    words = bank.view(np.uint64)
    out = []
    for q in qs.view(np.uint64):
        d = np.bitwise_count(words ^ q).sum(axis=1, dtype=np.int32)
        out.append(np.flatnonzero(d <= THRESHOLD).tolist())
    return out


# --------------------------------------------------------------------------- children


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(impl: str, workdir: Path) -> dict[str, Any]:
    """Build one index over the bank in workdir, time it, and write its batch answers."""
    bank = np.load(workdir / "bank.npy")
    qs = np.load(workdir / "queries.npy")
    ids = np.arange(len(bank), dtype=np.int64)
    single: Any
    batch: Any
    if impl == "ours":
        from hashfed.node.match.index import PdqIndex

        q_bytes = [q.tobytes() for q in qs]
        gc.collect()
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        index = PdqIndex()
        index.build(ids, bank)
        build_s = time.perf_counter() - t0

        def single(i: int) -> None:
            index.search(q_bytes[i], THRESHOLD)

        def batch() -> list[list[int]]:
            return [[m.id for m in hits] for hits in index.search_batch(qs, THRESHOLD)]

    elif impl == "pdqindex":
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        q_hex = [q.tobytes().hex() for q in qs]
        gc.collect()
        rss0 = _rss_mb()
        raw = bank.tobytes()
        entries = [(raw[k : k + 32].hex(), i) for i, k in enumerate(range(0, len(raw), 32))]
        del raw
        t0 = time.perf_counter()  # PDQIndex takes hex strings: converting is not timed
        pdq = PDQIndex.build(entries)
        build_s = time.perf_counter() - t0
        del entries

        def single(i: int) -> None:
            pdq.query(q_hex[i])

        def batch() -> list[list[int]]:
            res = pdq.index.search_with_distance_in_result(q_hex, THRESHOLD)
            return [[pdq.local_id_to_entry[m[0]][1] for m in res[h]] for h in q_hex]

    else:  # faiss IndexBinaryFlat: exhaustive
        import faiss

        gc.collect()
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        flat = faiss.IndexBinaryFlat(256)
        flat.add(bank)
        build_s = time.perf_counter() - t0

        def single(i: int) -> None:
            flat.range_search(qs[i : i + 1], THRESHOLD + 1)

        def batch() -> list[list[int]]:
            lims, _, found = flat.range_search(qs, THRESHOLD + 1)
            return [found[lims[i] : lims[i + 1]].tolist() for i in range(len(qs))]

    gc.collect()
    rss_mb = _rss_mb() - rss0
    n_single = SINGLE_FLAT if impl == "flat" else len(qs)
    order = np.random.default_rng(9).permutation(len(qs))[:n_single].tolist()
    lat = []
    for i in order:
        t = time.perf_counter()
        single(i)
        lat.append(time.perf_counter() - t)
    batch()  # one warm pass
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        answers = batch()
        best = min(best, time.perf_counter() - t)
    with open(workdir / f"answers-{impl}.json", "w") as f:
        json.dump([sorted(a) for a in answers], f)
    return {
        "build_s": build_s,
        "p50_ms": float(np.percentile(lat, 50)) * 1e3,
        "p99_ms": float(np.percentile(lat, 99)) * 1e3,
        "qps": len(qs) / best,
        "rss_mb": rss_mb,
    }


def _run_child(python: Path | str, impl: str, workdir: Path) -> dict[str, Any] | None:
    proc = subprocess.run(
        [str(python), "-m", "bench.bench_match", impl, str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"bench_match: {impl} failed: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _recall(workdir: Path, impl: str, truth: list[list[int]]) -> tuple[float, bool]:
    """Fraction of true (query, entry) pairs found, and whether nothing else was."""
    answers = json.loads((workdir / f"answers-{impl}.json").read_text())
    want = sum(len(t) for t in truth)
    found = sum(len(set(a) & set(t)) for a, t in zip(answers, truth, strict=True))
    exact = all(sorted(a) == t for a, t in zip(answers, truth, strict=True))
    return (found / want if want else 1.0), exact


# --------------------------------------------------------------------------- table


def run(quick: bool) -> list[Row]:
    sizes = [100_000] if quick else [100_000, 1_000_000]
    have_peer = PEER_PYTHON.exists()
    rows: list[Row] = []
    rng = np.random.default_rng(2024)
    for n in sizes:
        for clustered in (False, True):
            with tempfile.TemporaryDirectory(prefix="hashfed-match-") as tmp:
                workdir = Path(tmp)
                bank = make_bank(n, clustered, rng)
                qs = make_queries(bank, rng)
                np.save(workdir / "bank.npy", bank)
                np.save(workdir / "queries.npy", qs)
                truth = brute_force(bank, qs)
                del bank
                ours = _run_child(sys.executable, "ours", workdir)
                if ours is None:
                    raise SystemExit("bench_match: our index failed")
                recall, exact = _recall(workdir, "ours", truth)
                pdq = flat = None
                if have_peer:
                    pdq = _run_child(PEER_PYTHON, "pdqindex", workdir)
                    flat = _run_child(PEER_PYTHON, "flat", workdir)
                pdq_recall = _recall(workdir, "pdqindex", truth)[0] if pdq else None
                flat_recall = _recall(workdir, "flat", truth)[0] if flat else None
            rows += _rows(
                n, clustered, ours, pdq, flat, recall, exact, pdq_recall, flat_recall, truth
            )
    return rows


def _rows(
    n: int,
    clustered: bool,
    ours: dict[str, Any],
    pdq: dict[str, Any] | None,
    flat: dict[str, Any] | None,
    recall: float,
    exact: bool,
    pdq_recall: float | None,
    flat_recall: float | None,
    truth: list[list[int]],
) -> list[Row]:
    name = f"match {n // 1000}k {'clustered' if clustered else 'uniform'}"
    big = n >= 1_000_000
    peer = "PDQIndex"

    def p(d: dict[str, Any] | None, key: str) -> float | None:
        return None if d is None else float(d[key])

    hits = sum(len(t) for t in truth)
    return [
        Row(name, "build from arrays", ours["build_s"], "s", p(pdq, "build_s"), peer,
            higher_is_better=False),
        Row(name, "single query p50", ours["p50_ms"], "ms", p(pdq, "p50_ms"), peer,
            target=0.2 if big else None, higher_is_better=False),
        Row(name, "single query p99", ours["p99_ms"], "ms", p(pdq, "p99_ms"), peer,
            higher_is_better=False),
        Row(name, "batch of 1,000", ours["qps"], "q/s", p(pdq, "qps"), peer,
            target=3.0 if big and pdq else None, target_is_ratio=True),
        Row(name, "batch of 1,000 vs flat", ours["qps"], "q/s", p(flat, "qps"),
            "faiss IndexBinaryFlat"),
        Row(name, "RSS growth", ours["rss_mb"], "MB", p(pdq, "rss_mb"), peer,
            target=0.5 if big and pdq else None, higher_is_better=False, target_is_ratio=True),
        Row(name, "RSS growth vs flat", ours["rss_mb"], "MB", p(flat, "rss_mb"),
            "faiss IndexBinaryFlat", higher_is_better=False),
        # Exactly 100% means every true pair and nothing else: a false positive
        # must not pass as full recall.
        Row(name, "recall vs brute force", 100 * recall if exact else min(100 * recall, 99.99),
            "%",
            None if pdq_recall is None else 100 * pdq_recall, peer, target=100,
            note=f"{hits:,} true pairs; ours {'identical to' if exact else 'DIFFERS from'} "
            f"brute force; faiss flat recall "
            f"{'-' if flat_recall is None else f'{100 * flat_recall:.2f}%'}"),
    ]  # fmt: skip


if __name__ == "__main__":
    result = child(sys.argv[1], Path(sys.argv[2]))
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    os._exit(0)
