"""A sync process killed with SIGKILL at random points resumes and ends like a clean sync.

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
from pathlib import Path

from hashfed.node.home import Node
from hashfed.node.store import logstore
from synchelpers import (
    Relay,
    allow,
    bank,
    bundles,
    checkpoint,
    env_without_proxies,
    flags,
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
