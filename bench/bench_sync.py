"""Sync: a partner catches up with a publisher's log over loopback HTTP, verifying everything.

* catch-up: a publisher node publishes N records (OwnLog.publish in batches of
  10,000; that time is the publish rate of the same run) and serves them with a
  real ``hashfed serve`` subprocess; a partner node, in its own process, syncs
  the whole log (checkpoint signature, every entry against the root, every
  record and content commitment, all applied to its bank) and reports its
  timing and peak RSS. Both run on the same cores.
* incremental: 1,000 more records on top of the N, synced again.
* tile serving: authenticated GETs of hash tiles and entry bundles from a load
  generator in a second process (aiohttp, one session token, high concurrency).
* peer baseline: a local server shaped like the StopNCII FetchHashes API
  (bench/stopncii_shaped.py, JSON pages of 800) serves the same records, and
  python-threatexchange's own ``StopNCIIAPI.fetch_hashes_iter`` (run in
  .venv-bench) fetches them all. It verifies nothing; we verify everything.

Every measured side runs in its own process; ``python -m bench.bench_sync PHASE ...``
runs one phase and prints JSON. Module-level imports are stdlib only, so the
baseline phase runs in .venv-bench's python, which has no hashfed.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.table import Row, peak_rss_mb

BATCH = 10_000
INCREMENT = 1_000
PUBLISHER = "bench.example/log"
PARTNER = "partner.example/node"
ROOT = Path(__file__).resolve().parent.parent
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


def _publish(home: Path, count: int, seed: int) -> float:
    """Publishes count random PDQ records in batches of BATCH; returns the seconds spent."""
    from hashfed.node.home import open_node
    from hashfed.node.services.ownlog import NewHash
    from hashfed.protocol.records import Kind

    rng = random.Random(seed)
    spent = 0.0
    with open_node(home) as node:
        log = node.own_log()
        for start in range(0, count, BATCH):
            n = min(BATCH, count - start)
            batch = [
                NewHash(Kind.PDQ, rng.randbytes(32), rng.randint(50, 100), ("ncii",))
                for _ in range(n)
            ]
            t0 = time.perf_counter()
            log.publish(batch)
            spent += time.perf_counter() - t0
    return spent


def phase_setup(pub_home: Path, part_home: Path, url: str, count: int) -> dict[str, float]:
    """Creates both nodes, makes them peers, trusts the publisher, publishes count records."""
    from hashfed.node.home import init_node
    from hashfed.node.store import peers
    from hashfed.node.store.db import transaction

    with (
        init_node(pub_home, PUBLISHER, "publisher") as pub,
        init_node(part_home, PARTNER, "partner") as part,
    ):
        with transaction(pub.db) as conn:
            peers.add_peer(conn, "partner", "http://127.0.0.1:9", part.peer_signer.vkey())
        with transaction(part.db) as conn:
            peers.add_peer(conn, "publisher", url, pub.peer_signer.vkey())
            peers.add_trust(conn, pub.signer.vkey(), "publisher")
    seconds = _publish(pub_home, count, seed=1)
    return {"seconds": seconds, "rss_mb": peak_rss_mb()}


def phase_more(pub_home: Path, count: int) -> dict[str, float]:
    return {"seconds": _publish(pub_home, count, seed=2), "rss_mb": peak_rss_mb()}


def phase_sync(part_home: Path) -> dict[str, float]:
    """Syncs the partner from the publisher; the time covers the whole sync_node call."""
    import asyncio

    from hashfed.node.home import open_node
    from hashfed.node.services.syncer import sync_node

    with open_node(part_home) as node:
        t0 = time.perf_counter()
        outcomes = asyncio.run(sync_node(node, peer_name="publisher"))
        seconds = time.perf_counter() - t0
    (outcome,) = outcomes
    if outcome.result is None:
        raise SystemExit(f"sync failed: {outcome.errors}")
    result = outcome.result
    if result.flagged:
        raise SystemExit(f"sync flagged {result.flagged} entries")
    return {
        "seconds": seconds,
        "old_size": result.old_size,
        "new_size": result.new_size,
        "applied": result.applied,
        "rss_mb": peak_rss_mb(),
    }


def phase_load(part_home: Path, url: str, size: int, requests: int, concurrency: int) -> dict:
    """GETs requests tiles and entry bundles of a log of size entries, concurrency at a time."""
    import asyncio

    import aiohttp
    from hashfed.node.home import open_node
    from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, entries_path, log_prefix, tile_path
    from hashfed.sync.auth import SessionClient

    with open_node(part_home) as node:
        signer = node.peer_signer
    prefix = f"{url}/{log_prefix(PUBLISHER)}"
    full = size // ENTRY_BUNDLE_WIDTH
    paths = [f"{prefix}/{tile_path(0, i)}" for i in range(full)]
    paths += [f"{prefix}/{entries_path(i)}" for i in range(full)]
    paths += [f"{prefix}/{tile_path(1, i)}" for i in range(full // 256)]
    rng = random.Random(3)
    todo = [rng.choice(paths) for _ in range(requests)]

    async def main() -> tuple[float, int, int]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            header = await SessionClient(signer, PUBLISHER).authorization(session, url)
            headers = {"Authorization": header}
            ok = nbytes = 0
            queue = iter(todo)

            async def worker() -> None:
                nonlocal ok, nbytes
                for target in queue:
                    async with session.get(target, headers=headers) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            ok += 1
                            nbytes += len(body)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0, ok, nbytes

    seconds, ok, nbytes = asyncio.run(main())
    if ok != requests:
        raise SystemExit(f"only {ok} of {requests} tile requests succeeded")
    return {"seconds": seconds, "requests": ok, "bytes": nbytes, "rss_mb": peak_rss_mb()}


def phase_stopncii(base_url: str) -> dict[str, float]:
    """Fetches every record with python-threatexchange's StopNCII client (in .venv-bench)."""
    from threatexchange.exchanges.clients.stopncii.api import StopNCIIAPI

    api = StopNCIIAPI("subscription", "fetch", base_url_override=base_url)
    t0 = time.perf_counter()
    records = sum(len(page.hashRecords) for page in api.fetch_hashes_iter())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "records": records, "rss_mb": peak_rss_mb()}


def _child(*args: str, python: str = sys.executable) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [python, "-m", "bench.bench_sync", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


START_BOUND = 900.0
"""Seconds a server may take to get ready (its index loads first) on a busy machine."""


def _start(command: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    """Starts a server and waits until url answers, not 503 (``hashfed serve``: /readyz,
    so that no index load competes with what is measured)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return proc
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 503:  # answering, if not to this request (503: not ready yet)
                return proc
        except OSError:  # not bound yet
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SystemExit(f"server not ready in {START_BOUND:.0f} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(quick: bool) -> list[Row]:
    count = 50_000 if quick else 1_000_000
    requests = 5_000 if quick else 30_000
    hashfed = Path(sys.executable).with_name("hashfed")
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-sync-") as tmp:
        pub, part = Path(tmp) / "publisher", Path(tmp) / "partner"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        publish = _child("setup", str(pub), str(part), url, str(count))
        server = _start(
            [str(hashfed), "--dir", str(pub), "serve", "--port", str(port), "--no-sync"],
            f"{url}/readyz",
            Path(tmp) / "serve.log",
        )
        try:
            catchup = _child("sync", str(part))
            _child("more", str(pub), str(INCREMENT))
            incremental = _child("sync", str(part))
            load = _child("load", str(part), url, str(count), str(requests), "64")
        finally:
            _stop(server)
        if catchup["new_size"] != count or incremental["new_size"] != count + INCREMENT:
            raise SystemExit(f"sync ended at the wrong size: {catchup} {incremental}")
        baseline = None
        if BENCH_PYTHON.exists():
            bport = _free_port()
            burl = f"http://127.0.0.1:{bport}/v1"
            shaped = _start(
                [
                    sys.executable,
                    "-m",
                    "bench.stopncii_shaped",
                    str(pub / "hashfed.db"),
                    str(bport),
                ],
                f"{burl}/FetchHashes?pageSize=1",
                Path(tmp) / "stopncii.log",
            )
            try:
                baseline = _child("stopncii", burl, python=str(BENCH_PYTHON))
            finally:
                _stop(shaped)
            if baseline["records"] != count + INCREMENT:
                raise SystemExit(f"the StopNCII client fetched {baseline['records']} records")
    name = f"sync ({count:,} records)"
    ours = count / catchup["seconds"]
    published = count / publish["seconds"]
    rows = [
        Row(name, "catch-up records/s (verified, applied)", ours, "rec/s", target=60_000),
        Row(
            name,
            "catch-up vs publish rate",
            ours,
            "rec/s",
            peer=published,
            peer_name="OwnLog.publish, same run",
            target=0.5,
            target_is_ratio=True,
        ),
        Row(
            name,
            "catch-up peak RSS (syncing side)",
            catchup["rss_mb"],
            "MB",
            target=300,
            higher_is_better=False,
        ),
        Row(
            name,
            f"incremental sync of {INCREMENT:,} records",
            incremental["seconds"],
            "s",
            target=1.0,
            higher_is_better=False,
        ),
        Row(
            name,
            "authenticated tile/bundle GETs/s",
            load["requests"] / load["seconds"],
            "req/s",
            target=3_000,
            note=f"{requests:,} GETs, 64 concurrent, from a second process",
        ),
    ]
    if baseline is not None:
        theirs = baseline["records"] / baseline["seconds"]
        rows.append(
            Row(
                name,
                "catch-up vs StopNCII-shaped fetch",
                ours,
                "rec/s",
                peer=theirs,
                peer_name="threatexchange StopNCIIAPI",
                note="pages of 800 JSON records; the StopNCII client verifies nothing",
            )
        )
    return rows


if __name__ == "__main__":
    phase, *rest = sys.argv[1:]
    if phase == "setup":
        result = phase_setup(Path(rest[0]), Path(rest[1]), rest[2], int(rest[3]))
    elif phase == "more":
        result = phase_more(Path(rest[0]), int(rest[1]))
    elif phase == "sync":
        result = phase_sync(Path(rest[0]))
    elif phase == "load":
        result = phase_load(Path(rest[0]), rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
    elif phase == "stopncii":
        result = phase_stopncii(rest[0])
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    os._exit(0)
