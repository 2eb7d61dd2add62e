"""Witnessing: add-checkpoint requests handled per second, and the latency it adds.

* add-checkpoint/s: a witness node (``create_app`` with a Witness, as ``hashfed
  serve`` builds it) runs in its own process; this process is the load. It
  witnesses LOGS logs that share one 1,000,000-leaf tree (50,000 with --quick),
  held in memory here. Each log advances through STEPS checkpoints from half
  the tree to all of it, so every request carries a real consistency proof over
  a 1M-entry log; the LOGS chains run concurrently (each chain is sequential:
  its next old size is the size just cosigned). Every answer must be 200.
  Beside it, as the reference: plain tile GETs on the same server.
* publication -> cosigned checkpoint: a publisher node with two witnesses (two
  server processes) in its tlog-policy; per publish of a 100-record batch, the
  time ``push_checkpoint`` takes to collect both verified cosignatures and store
  them with the checkpoint. Median and p99 over N publishes.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.table import Row

LOGS = 8
BATCH = 100


def _levels(count: int) -> list[list[bytes]]:
    """The complete-subtree hashes of a tree of count random leaves, level by level."""
    from hashfed.protocol.merkle import leaf_hash, node_hash

    rng = random.Random(3)
    level = [leaf_hash(rng.randbytes(40)) for _ in range(count)]
    levels = [level]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        levels.append(level)
    return levels


def _bodies(home: Path, count: int, steps: int) -> list[list[bytes]]:
    """Creates the witness node in home, witnessing LOGS new logs; returns each log's
    chain of add-checkpoint bodies (old size 0 first, then from each cosigned size)."""
    from hashfed.node.home import init_node
    from hashfed.node.services.ownlog import NewHash
    from hashfed.node.store.db import transaction
    from hashfed.protocol.checkpoint import Checkpoint, sign_checkpoint
    from hashfed.protocol.merkle import consistency_proof, root_from_subtrees
    from hashfed.protocol.records import Kind
    from hashfed.protocol.witness import AddCheckpoint
    from hashfed.signing.keys import generate_key, parse_signer

    levels = _levels(count)

    def subtree(level: int, index: int) -> bytes:
        return levels[level][index]

    sizes = [count // 2 + (count - count // 2) * i // steps for i in range(steps + 1)]
    rng = random.Random(5)
    sizes = [sizes[0]] + [s - rng.randrange(0, 50) for s in sizes[1:-1]] + [sizes[-1]]
    roots = {s: root_from_subtrees(s, subtree) for s in sizes}
    proofs = {(a, b): tuple(consistency_proof(a, b, subtree)) for a, b in pairwise(sizes)}
    chains = []
    node = init_node(home, "witness.bench/hashfed")
    # The reference GETs read the node's own (public) log: a few hundred entries.
    node.own_log().publish(
        [NewHash(Kind.PDQ, random.Random(i).randbytes(32), 100, ("ncii",)) for i in range(300)]
    )
    with node, transaction(node.db) as conn:
        for n in range(LOGS):
            skey, vkey = generate_key(f"log{n}.bench/hashfed")
            signer = parse_signer(skey)
            conn.execute(
                "INSERT INTO witnessed (origin, vkey, size, root, note, updated)"
                " VALUES (?, ?, 0, x'', '', 0)",
                (signer.name, vkey),
            )
            chain = [
                AddCheckpoint(
                    0,
                    (),
                    sign_checkpoint(Checkpoint(signer.name, sizes[0], roots[sizes[0]]), signer),
                )
            ]
            for a, b in pairwise(sizes):
                note = sign_checkpoint(Checkpoint(signer.name, b, roots[b]), signer)
                chain.append(AddCheckpoint(a, proofs[(a, b)], note))
            chains.append([c.format().encode() for c in chain])
    return chains


def serve(home: Path) -> None:
    """Runs the node's app with its witness (the child process); prints the port."""
    from aiohttp import web
    from hashfed.node.config import ServerConfig
    from hashfed.node.home import open_node
    from hashfed.node.http.app import NodeServices, create_app
    from hashfed.node.http.witness import Witness
    from hashfed.node.store.db import open_database

    async def main() -> None:
        node = open_node(home)
        witness = Witness(
            open_database(node.config.database), node.witness_signer(), lambda: int(time.time())
        )
        config = ServerConfig(public_logs=(node.config.origin,))
        app = create_app(NodeServices(node.db.conn, node.config.origin, config, witness=witness))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _start(home: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_witness", "serve", str(home)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline().strip())
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _load(url: str, chains: list[list[bytes]], tile_url: str, gets: int) -> dict[str, float]:
    import aiohttp

    endpoint = url + "/witness/add-checkpoint"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=LOGS)) as session:

        async def chain(bodies: list[bytes]) -> None:
            for data in bodies:
                async with session.post(endpoint, data=data) as response:
                    answer = await response.read()
                    if response.status != 200:
                        raise SystemExit(f"add-checkpoint: {response.status} {answer[:200]!r}")

        async def get_tiles(n: int) -> None:
            for _ in range(n):
                async with session.get(tile_url) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"tile GET: {response.status}")

        t0 = time.perf_counter()
        await asyncio.gather(*(chain(c) for c in chains))
        witness_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.gather(*(get_tiles(gets // LOGS) for _ in range(LOGS)))
        get_seconds = time.perf_counter() - t0
    return {"witness_seconds": witness_seconds, "get_seconds": get_seconds}


def _throughput(quick: bool) -> list[Row]:
    from hashfed.protocol.tiles import log_prefix, tile_path

    count = 50_000 if quick else 1_000_000
    steps = 50 if quick else 250
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-witness-") as tmp:
        home = Path(tmp) / "witness"
        t0 = time.perf_counter()
        chains = _bodies(home, count, steps)
        setup = time.perf_counter() - t0
        proc, url = _start(home)
        try:
            tile_url = f"{url}/{log_prefix('witness.bench/hashfed').strip('/')}/{tile_path(0, 0)}"
            requests = sum(len(c) for c in chains)
            result = asyncio.run(_load(url, chains, tile_url, requests))
        finally:
            _stop(proc)
    proof_len = len(chains[0][-1].split(b"\n\n")[0].split(b"\n")) - 1
    name = f"witness ({count:,}-entry log)"
    per_request = result["witness_seconds"] / requests
    per_get = result["get_seconds"] / requests
    return [
        Row(
            name,
            f"add-checkpoint/s ({LOGS} logs x {steps + 1}, proofs ~{proof_len} hashes)",
            requests / result["witness_seconds"],
            "req/s",
            peer=requests / result["get_seconds"],
            peer_name="tile GET, same server",
            note=f"{per_request * 1e3:.2f} ms per add-checkpoint vs {per_get * 1e3:.2f} ms per "
            f"tile GET; {LOGS} concurrent chains, witness in its own process; "
            f"setup (tree, proofs, signing) {setup:.1f} s",
        )
    ]


async def _publish_latency(tmp: Path, publishes: int) -> list[float]:
    from hashfed.node.home import init_node
    from hashfed.node.services.ownlog import NewHash
    from hashfed.node.services.witnesspush import push_checkpoint
    from hashfed.protocol.policy import parse_policy
    from hashfed.protocol.records import Kind

    witnesses = []
    for name in ("a", "b"):
        node = init_node(tmp / name, f"{name}.bench/hashfed")
        witnesses.append(node)
    publisher = init_node(tmp / "p", "p.bench/hashfed", "publisher")
    for w in witnesses:
        w.db.conn.execute(
            "INSERT INTO witnessed (origin, vkey, size, root, note, updated)"
            " VALUES (?, ?, 0, x'', '', 0)",
            (publisher.config.origin, publisher.signer.vkey()),
        )
    vkeys = [w.witness_signer().vkey() for w in witnesses]
    for w in witnesses:
        w.close()
    procs = [_start(tmp / name) for name in ("a", "b")]
    try:
        policy = parse_policy(
            f"witness A {vkeys[0]} {procs[0][1]}/witness\n"
            f"witness B {vkeys[1]} {procs[1][1]}/witness\n"
            "group both all A B\nquorum both\n"
        )
        log = publisher.own_log()
        rng = random.Random(9)
        latencies = []
        for _ in range(publishes + 2):
            log.publish(
                [NewHash(Kind.PDQ, rng.randbytes(32), 100, ("ncii",)) for _ in range(BATCH)]
            )
            t0 = time.perf_counter()
            report = await push_checkpoint(publisher.db, publisher.config.origin, policy)
            latencies.append(time.perf_counter() - t0)
            if report.errors:
                raise SystemExit(f"push: {report.errors}")
    finally:
        for proc, _ in procs:
            _stop(proc)
        publisher.close()
    return latencies[2:]  # the first pushes open connections and warm up


def _latency(quick: bool) -> list[Row]:
    publishes = 20 if quick else 200
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-witness-") as tmp:
        latencies = asyncio.run(_publish_latency(Path(tmp), publishes))
    ms = sorted(x * 1e3 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    name = "witness (2 witnesses, loopback)"
    note = (
        f"{publishes} publishes of {BATCH} records; push = proof from each witness's "
        "size, 2 POSTs in parallel, verify both cosignatures, store them"
    )
    return [
        Row(
            name,
            "publish -> cosigned checkpoint, median",
            statistics.median(ms),
            "ms",
            higher_is_better=False,
            note=note,
        ),
        Row(name, "publish -> cosigned checkpoint, p99", p99, "ms", higher_is_better=False),
    ]


def run(quick: bool) -> list[Row]:
    return _throughput(quick) + _latency(quick)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(Path(sys.argv[2]))
    else:
        from bench.table import render

        rows: list[Any] = run(quick="--quick" in sys.argv)
        print(render(rows))
