"""The signed log: publish 1,000,000 hash records, then verify them.

* publish: records/s through OwnLog.publish in batches of 10,000, a checkpoint
  signed after each batch; beside it, the ceiling: a raw ``sqlite3.executemany``
  of the same (kind, hash, quality) rows into one unindexed table.
* verify: ``log verify`` of the whole log (every leaf hash, tile, the root and the
  signature) in entries/s, and the bank re-derivation beside it.
* each phase runs in its own process, which reports its peak RSS.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.table import Row, peak_rss_mb

BATCH = 10_000


def _random_batch(rng: random.Random, n: int) -> list[tuple[bytes, int]]:
    return [(rng.randbytes(32), rng.randint(50, 100)) for _ in range(n)]


def phase_publish(home: Path, count: int) -> dict[str, float]:
    from hashfed.node.home import init_node
    from hashfed.node.services.ownlog import NewHash
    from hashfed.protocol.records import Kind

    rng = random.Random(1)
    spent = 0.0
    with init_node(home, "bench.example/log", "publisher") as node:
        log = node.own_log()
        for start in range(0, count, BATCH):
            raw = _random_batch(rng, min(BATCH, count - start))
            batch = [NewHash(Kind.PDQ, h, q, ("ncii",)) for h, q in raw]
            t0 = time.perf_counter()
            log.publish(batch)
            spent += time.perf_counter() - t0
    return {"seconds": spent, "rss_mb": peak_rss_mb()}


def phase_raw(path: Path, count: int) -> dict[str, float]:
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE bank (kind TEXT, hash BLOB, quality INTEGER)")
    spent = 0.0
    for start in range(0, count, BATCH):
        rows = [("pdq", h, q) for h, q in _random_batch(rng, min(BATCH, count - start))]
        t0 = time.perf_counter()
        with conn:
            conn.executemany("INSERT INTO bank VALUES (?, ?, ?)", rows)
        spent += time.perf_counter() - t0
    conn.close()
    return {"seconds": spent, "rss_mb": peak_rss_mb()}


def phase_verify(home: Path) -> dict[str, float]:
    from hashfed.node.home import open_node
    from hashfed.node.services.verify import VerifyReport, verify_bank, verify_log
    from hashfed.node.store import logstore

    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, node.config.origin)
        assert log is not None
        report = VerifyReport(origin=log.origin)
        verify_log(node.db.conn, log, report)
        rss_log = peak_rss_mb()
        verify_bank(node.db.conn, log, report)
    if not report.ok:
        raise SystemExit(f"verify found problems: {report.problems[:3]}")
    return {
        "entries": report.entries,
        "log_seconds": report.log_seconds,
        "bank_seconds": report.bank_seconds,
        "rss_mb": rss_log,
        "rss_bank_mb": peak_rss_mb(),
    }


def _child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_log", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run(quick: bool) -> list[Row]:
    count = 50_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-") as tmp:
        home = Path(tmp) / "node"
        publish = _child("publish", str(home), str(count))
        raw = _child("raw", str(Path(tmp) / "raw.db"), str(count))
        verify = _child("verify", str(home))
    name = f"log ({count:,} records)"
    return [
        Row(
            name,
            "publish records/s",
            count / publish["seconds"],
            "rec/s",
            peer=count / raw["seconds"],
            peer_name="raw sqlite executemany",
            target=0.15,
            target_is_ratio=True,
            note="absolute target: >= 100,000 rec/s, checkpoint signed every 10,000",
        ),
        Row(
            name,
            "publish records/s (absolute)",
            count / publish["seconds"],
            "rec/s",
            target=100_000,
        ),
        Row(name, "publish peak RSS", publish["rss_mb"], "MB", target=300, higher_is_better=False),
        Row(
            name,
            "verify entries/s (tiles, root, signature)",
            verify["entries"] / verify["log_seconds"],
            "ent/s",
            target=300_000,
        ),
        Row(
            name,
            "bank re-derivation entries/s",
            verify["entries"] / verify["bank_seconds"],
            "ent/s",
        ),
        Row(
            name, "verify peak RSS", verify["rss_bank_mb"], "MB", target=300, higher_is_better=False
        ),
    ]


if __name__ == "__main__":
    phase, *rest = sys.argv[1:]
    if phase == "publish":
        result = phase_publish(Path(rest[0]), int(rest[1]))
    elif phase == "raw":
        result = phase_raw(Path(rest[0]), int(rest[1]))
    else:
        result = phase_verify(Path(rest[0]))
    json.dump(result, sys.stdout)
    os._exit(0)
