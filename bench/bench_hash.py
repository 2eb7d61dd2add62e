"""Benchmark ``hashfed hash``: photos beside python-threatexchange, and video MD5.

Photos: the shared PDQ vector images plus generated 12-megapixel JPEGs, file to
hash, hashed by us with 1 and 2 worker processes and by python-threatexchange
1.2.17's ``pdq_from_file`` in 1 and 2 processes, alternating, several rounds in the
same run; each figure is the median of the rounds. Hashes must be identical on
every file outside ``modes/`` (where we convert colour modes correctly and the
peer does not). The peer runs in its own virtualenv (``.venv-bench``, or
``$HASHFED_PEER_PYTHON``), because it is installed only for benchmarks.

Video: MD5 of a generated 1 GB file (128 MB with ``--quick``), with resident
memory before and after.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hashfed.hasher import Result, hash_path, hash_paths, iter_files, md5_file
from PIL import Image

from bench.table import Row

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / ".." / "shared" / "vectors" / "pdq"
PEER_PYTHON = Path(os.environ.get("HASHFED_PEER_PYTHON", ROOT / ".venv-bench" / "bin" / "python"))
PEER_NAME = "threatexchange 1.2.17 pdq_from_file"

PEER_SCRIPT = """
import json, sys, time
from pathlib import Path
try:
    from threatexchange.extensions.pdq.pdq_hasher import pdq_from_file
except ImportError:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file
paths = json.load(sys.stdin)
out = {}
start, cpu = time.perf_counter(), time.process_time()
for p in paths:
    out[p] = pdq_from_file(Path(p))[0]
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "hashes": out}))
"""


def _make_photos(directory: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(2024)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
        path = directory / f"photo-{i:02d}.jpg"
        img.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def _vector_photos() -> list[Path]:
    if not (VECTORS / "expected.csv").is_file():
        return []
    with open(VECTORS / "expected.csv", newline="") as f:
        rels = [row["path"] for row in csv.DictReader(f)]
    return [VECTORS / r for r in rels]


def _ours(
    paths: list[Path], workers: int, exif: bool = False
) -> tuple[float, float, dict[str, str]]:
    """Hash ``paths``: (wall seconds, this process's CPU seconds, hashes)."""
    start, cpu = time.perf_counter(), time.process_time()
    hashes = {}
    for r in hash_paths(paths, workers=workers, exif=exif):
        if not isinstance(r, Result):
            raise AssertionError(f"failed to hash {r.path}: {r.error}")
        if r.variant == "stored":
            hashes[r.path] = r.hash
    return time.perf_counter() - start, time.process_time() - cpu, hashes


def _peer(paths: list[Path], processes: int = 1) -> tuple[float, float, dict[str, str]] | None:
    """Run the peer over ``paths`` split across ``processes``: (wall s, CPU s, hashes)."""
    if not PEER_PYTHON.exists():
        return None
    shares = [paths[i::processes] for i in range(processes)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [str(PEER_PYTHON), "-c", PEER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in shares
    ]
    outputs = [
        proc.communicate(json.dumps([str(p) for p in share]))
        for proc, share in zip(procs, shares, strict=True)
    ]
    seconds = time.perf_counter() - start
    hashes: dict[str, str] = {}
    cpu = 0.0
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            print(f"peer failed: {stderr.strip()[-500:]}", file=sys.stderr)
            return None
        out = json.loads(stdout)
        hashes.update(out["hashes"])
        cpu += float(out["cpu"])
    return seconds, cpu, hashes


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _compare(paths: list[Path], rounds: int) -> dict[str, float]:
    """Median seconds of us and the peer on ``paths``, alternating; hashes must agree."""
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):  # alternate, so that load on a shared machine hits both
        measured = {}
        for processes in (1, 2):
            peer = _peer(paths, processes)
            wall, cpu, ours = _ours(paths, workers=processes)
            measured[f"ours{processes}"] = wall
            if processes == 1:
                measured["ours_cpu"] = cpu
            if peer is not None:
                measured[f"peer{processes}"] = peer[0]
                if processes == 1:
                    measured["peer_cpu"] = peer[1]
                differ = [p for p in ours if "/modes/" not in p and ours[p] != peer[2].get(p)]
                assert not differ, f"hashes differ from the peer on {differ}"
        for key, value in measured.items():
            runs.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in runs.items()}


def _photo_rows(quick: bool) -> list[Row]:
    rounds = 1 if quick else 5
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-") as tmp:
        generated = _make_photos(Path(tmp), 2 if quick else 8)
        vectors = _vector_photos()
        big = _compare(generated, rounds)
        small = _compare(vectors, rounds)
        exif_s, _, _ = _ours(vectors, workers=1, exif=True)
    rows = []
    for label, n, med in (
        ("12 MP JPEGs", len(generated), big),
        ("vector photos", len(vectors), small),
    ):
        note = (
            f"{n} files, median of {rounds} rounds alternating with the peer; hashes identical "
            "to the peer's (outside modes/, where we convert colour modes correctly)"
        )
        if "peer1" not in med:
            note = f"peer not installed at {PEER_PYTHON}"

        def rate(key: str, n: int = n, med: dict[str, float] = med) -> float | None:
            return n / med[key] if key in med else None

        rows += [
            Row(
                "hash",
                f"{label}, 1 process per core (CPU time)",
                n / med["ours_cpu"],
                "images/s",
                rate("peer_cpu"),
                PEER_NAME,
                target=2.0,
                target_is_ratio=True,
                note=note,
            ),
            Row(
                "hash",
                f"{label}, 1 process (wall)",
                n / med["ours1"],
                "images/s",
                rate("peer1"),
                PEER_NAME,
                target=2.0,
                target_is_ratio=True,
            ),
            Row(
                "hash",
                f"{label}, 2 processes (wall)",
                n / med["ours2"],
                "images/s",
                rate("peer2"),
                PEER_NAME + " ×2",
                target=2.0,
                target_is_ratio=True,
            ),
        ]
    rows.append(
        Row(
            "hash",
            "vector photos, 1 process, + EXIF variants",
            len(vectors) / exif_s,
            "images/s",
            note="default CLI: also hashes the EXIF-rotated view (extra output "
            "the peer does not produce); the rows above hash stored pixels only, as the peer does",
        )
    )
    return rows  # fmt: skip


CORPUS = ROOT / ".corpus"


def _corpus_rows(quick: bool) -> list[Row]:
    """Per-file times over the third-party corpus (`make corpus`), one process."""
    files = [p for p in iter_files([CORPUS / "pillow", CORPUS / "pydicom"]) if isinstance(p, Path)]
    if not files:
        return [Row("hash", "corpus files", 0, "files", note="run 'make corpus' first")]
    if quick:
        files = files[::10]
    times: list[tuple[float, str]] = []
    hashed = 0
    for path in files:
        start = time.perf_counter()
        outcomes = hash_path(path, exif=False)
        times.append((time.perf_counter() - start, path.name))
        hashed += isinstance(outcomes[0], Result)
    seconds = sorted(t for t, _ in times)
    slowest = sorted(times, reverse=True)[:3]
    note = (
        f"{len(files)} files of Pillow 12.0.0's Tests/images and pydicom 3.0.1's test files, "
        f"{hashed} hashed, {len(files) - hashed} refused; slowest: "
        + ", ".join(f"{name} {t * 1000:.0f} ms" for t, name in slowest)
    )
    return [
        Row("hash", "corpus, per file (median)", statistics.median(seconds) * 1000, "ms",
            higher_is_better=False, note=note),
        Row("hash", "corpus, per file (99th percentile)",
            seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))] * 1000, "ms",
            higher_is_better=False),
        Row("hash", "corpus, whole run", len(files) / sum(seconds), "files/s"),
    ]  # fmt: skip


def _video_rows(quick: bool) -> list[Row]:
    size = (128 if quick else 1024) << 20
    block = np.random.default_rng(5).bytes(1 << 20)
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-") as tmp:
        path = Path(tmp) / "video.mp4"
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
        before = _rss_mb()
        start = time.perf_counter()
        md5_file(path)
        seconds = time.perf_counter() - start
        after = _rss_mb()
    return [
        Row("hash", f"video MD5 ({size >> 20} MiB file)", size / 1e6 / seconds, "MB/s",
            target=500),
        Row("hash", "video MD5 RSS growth", after - before, "MB", target=16,
            higher_is_better=False, note=f"RSS {before:.0f} MB before, {after:.0f} MB after"),
    ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    """run returns the photo and video rows; ``quick`` uses fewer, smaller inputs."""
    return _photo_rows(quick) + _corpus_rows(quick) + _video_rows(quick)
