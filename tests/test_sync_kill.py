"""A sync killed (SIGKILL at random points, SIGTERM to serve, a cancelled round) resumes
and ends like a clean sync.

The publisher's server runs in the test process; each sync runs in a child
process. The child reports every staged bundle on stdout through the progress
callback; at the chosen bundle it stops (blocking on stdin) or keeps going, and
the test kills it with SIGKILL there. Killing right after the last bundle is
reported lands anywhere in the apply transaction.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiohttp import web
from hashfed.node.home import Node
from hashfed.node.services.syncer import SYNC_THREAD, sync_in_thread
from hashfed.node.store import logstore
from servehelpers import START_BOUND, start_serve
from synchelpers import (
    Relay,
    allow,
    bank,
    bundles,
    checkpoint,
    env_without_proxies,
    flags,
    is_bundle,
    make_node,
    origin_of,
    publish,
    serve,
    staged_count,
    sync,
    tiles,
    trust,
    use,
)

P = origin_of("p")

CHILD = r"""
import asyncio, sys
from pathlib import Path
from hashfed.node.home import open_node
from hashfed.node.services.syncer import sync_node

home, stop_at, block = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "block"

def factory(origin, peer):
    seen = [0]
    def report(done, total):
        seen[0] += 1
        print("bundle", seen[0], done, total, flush=True)
        if seen[0] == stop_at and block:
            sys.stdin.readline()  # wait here until killed
    return report

with open_node(home) as node:
    outcomes = asyncio.run(sync_node(node, progress=factory))
print("done", all(o.ok for o in outcomes), flush=True)
"""


async def run_child(
    home: Path, stop_at: int, block: bool, delay: float = 0
) -> tuple[int, list[str]]:
    """Runs a sync child; kills it with SIGKILL delay seconds after its stop_at-th bundle.

    Returns (return code, lines it printed).
    """
    # subprocess.Popen, read from a thread: the event loop keeps serving meanwhile.
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(stop_at), "block" if block else "run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env_without_proxies(),
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)).strip()
            if not line:
                break
            lines.append(line)
            if line.split()[:2] == ["bundle", str(stop_at)]:
                if delay:
                    # The point of this kill is a random moment in the apply transaction.
                    await asyncio.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and lines[-1:] != ["done True"]:
            proc.kill()
        code = await asyncio.to_thread(proc.wait, 60)
        proc.stdin.close()  # type: ignore[union-attr]
        proc.stdout.close()
    return code, lines


def state(node: Node) -> tuple[int, int, int]:
    log = logstore.get_log(node.db.conn, P)
    assert log is not None
    return log.size, len(bank(node, P)), staged_count(node)


async def test_sync_killed_at_random_points_resumes(tmp_path: Path) -> None:
    rng = random.Random(20240614)
    p = make_node(tmp_path, "p", "publisher")
    b, clean = make_node(tmp_path, "b"), make_node(tmp_path, "clean")
    publish(p, 1000)
    for node in (b, clean):
        allow(p, node)
        trust(node, p)
    async with serve(p) as p_url:
        relay = Relay(p_url)  # counts what the children fetch
        async with relay.running() as relay_url:
            use(b, p, relay_url)
            use(clean, p, p_url)

            # A first kill while B holds nothing, then a complete sync of 1000.
            code, _ = await run_child(b.config.home, stop_at=2, block=True)
            assert code == -signal.SIGKILL
            assert state(b) == (0, 0, 2)
            code, lines = await run_child(b.config.home, stop_at=0, block=False)
            assert code == 0 and lines[-1] == "done True"
            assert state(b) == (1000, 1000, 0)

            # 2000 more: the sync from 1000 to 3000 (bundles 3..11) is killed repeatedly.
            publish(p, 2000, seed=2)
            total = 9
            stops = [rng.randint(1, total - 1) for _ in range(3)]
            for n, stop_at in enumerate(stops):
                code, _ = await run_child(b.config.home, stop_at, block=True)
                assert code == -signal.SIGKILL
                size, rows, staged = state(b)
                assert (size, rows) == (1000, 1000), "nothing is applied before the end"
                assert staged >= (stop_at if n == 0 else 1)
            # Killed a random moment after the last bundle is verified: before, in or after apply.
            delay = rng.uniform(0, 0.2)
            code, _ = await run_child(b.config.home, stop_at=total, block=False, delay=delay)
            size, rows, staged = state(b)
            assert (size, rows) in ((1000, 1000), (3000, 3000)), "bank and size move together"

            relay.paths.clear()
            code, lines = await run_child(b.config.home, stop_at=0, block=False)
            assert code == 0 and lines[-1] == "done True"
            refetched = [p for p in relay.paths if "/tile/entries/" in p]
            # Staged bundles are not fetched again.
            assert len(refetched) == (0 if size == 3000 else total - staged)

            outcome = await sync(clean)
            assert outcome.ok and outcome.result.new_size == 3000

    assert state(b) == (3000, 3000, 0)
    assert bank(b, P) == bank(clean, P) == bank(p, P)
    assert tiles(b, P) == tiles(clean, P) == tiles(p, P)
    assert bundles(b, P) == bundles(clean, P) == bundles(p, P)
    assert checkpoint(b, P) == checkpoint(clean, P) == checkpoint(p, P)
    assert flags(b, P) == flags(clean, P) == {}


async def test_a_cancelled_background_round_rolls_back_in_its_own_thread(tmp_path: Path) -> None:
    """sync_loop's rounds run in a thread: cancelling one does not wait for it, and the
    thread's apply transaction rolls back at its next await; the staged bundles stay."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 2000)  # 8 bundles
    allow(p, a)
    trust(a, p)
    release, fourth = asyncio.Event(), asyncio.Event()
    asked: list[str] = []

    async def stall_from_the_fourth_bundle(request: web.Request, status: int, body: bytes) -> bytes:
        if is_bundle(request):
            asked.append(request.path)
            if len(asked) >= 4:
                fourth.set()
                await release.wait()
        return body

    async with serve(p) as p_url:
        relay = Relay(p_url)
        relay.tamper = stall_from_the_fourth_bundle
        async with relay.running() as relay_url:
            use(a, p, relay_url)
            round_ = asyncio.create_task(sync_in_thread(a))
            await fourth.wait()  # the round's thread waits on the relay: it is alive now
            workers = [t for t in threading.enumerate() if t.name == SYNC_THREAD]
            round_.cancel()
            with pytest.raises(asyncio.CancelledError):
                await round_
            for worker in workers:
                await asyncio.to_thread(worker.join, 120)
            release.set()
            assert workers and not any(t.is_alive() for t in workers)
            size, rows, staged = state(a)
            assert (size, rows) == (0, 0) and staged >= 1

            outcome = await sync(a)
            assert outcome.ok and outcome.result.new_size == 2000
    assert bank(a, P) == bank(p, P)


async def test_serve_stops_on_sigterm_in_the_middle_of_a_large_catch_up(tmp_path: Path) -> None:
    """'hashfed serve' catching up 20,000 entries exits 0 on SIGTERM, the database sound
    and as before (or, on a slow machine, fully synced), and the next sync completes."""
    entries = 20_000
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, entries)
    allow(p, a)
    trust(a, p)
    async with serve(p) as p_url:
        use(a, p, p_url)
        served = start_serve(a.config.home, "--port", "0", "--interval", "3600")
        try:
            deadline = asyncio.get_running_loop().time() + START_BOUND
            while staged_count(a) < 4:  # its catch-up is under way, a bundle at a time
                if served.proc.poll() is not None:
                    served.fail(f"hashfed serve exited with {served.proc.returncode}")
                if asyncio.get_running_loop().time() > deadline:
                    served.fail("no catch-up started")
                await asyncio.sleep(0.02)
            served.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(served.proc.wait, START_BOUND)
        finally:
            if served.proc.poll() is None:
                served.proc.kill()
                served.proc.wait()
        assert code == 0, served.output()
        assert "Traceback" not in served.output()
        (result,) = a.db.conn.execute("PRAGMA integrity_check").fetchone()
        assert result == "ok"
        size, rows, _ = state(a)
        assert (size, rows) in ((0, 0), (entries, entries)), "bank and size move together"

        outcome = await sync(a)
        assert outcome.ok and outcome.result.new_size == entries
    assert state(a) == (entries, entries, 0)
    assert bank(a, P) == bank(p, P)
    assert tiles(a, P) == tiles(p, P)
    assert checkpoint(a, P) == checkpoint(p, P)
