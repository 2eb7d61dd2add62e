"""Start and stop: ``hashfed serve`` over a large bank, and the cost of starting the CLI.

* start to ``/healthz`` 200 and start to ``/readyz`` 200, a node holding N published
  PDQ hashes (1M; 50k with --quick): *cold* (the node's files dropped from the
  operating system's page cache first; one start) and *warm* (the median of several
  starts after it). The reference is a bare aiohttp app,
  started the same way by the same interpreter: what any Python web service costs.
* the longest answer to ``/readyz`` while the cold node loads its index, beside the
  longest of 200 answers of an idle one: how long the event loop is ever held.
* SIGTERM to exit, during the index's load and when idle, beside the bare app's.
* SIGTERM to exit while a partner node catches up with the N hashes from the
  publisher's ``hashfed serve`` (signalled once a few bundles are applied; its staged
  bundles are dropped between runs, so each run is a first catch-up).
* ``hashfed --version`` and ``hashfed sync --help``: wall time (median) and peak RSS,
  beside ``python -c pass`` on the same interpreter.

``python -m bench.bench_serve setup HOME N`` creates the node (in its own process), and
``python -m bench.bench_serve partner HOME PARTNER URL`` the partner that syncs from it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.table import Row

ROOT = Path(__file__).resolve().parent.parent
HASHFED = Path(sys.executable).with_name("hashfed")
BOUND = 900.0
"""Seconds a start may take before the benchmark gives up (a cold start on a busy machine)."""

BARE_APP = """
import sys
from aiohttp import web

async def ok(request):
    return web.json_response({"status": "ok"})

app = web.Application()
app.router.add_get("/healthz", ok)
app.router.add_get("/readyz", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

PEAK_RSS = """
import atexit, sys
def report():
    with open("/proc/self/status") as f:
        hwm = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    sys.stderr.write(f"\\nVMHWM {hwm}\\n")
atexit.register(report)
sys.argv = ["hashfed", *sys.argv[1:]]
if len(sys.argv) > 1:
    from hashfed.node.entry import main
    try:
        main()
    except SystemExit:
        pass
"""


def phase_setup(home: Path, count: int) -> None:
    from hashfed.node.home import init_node

    from bench.bench_sync import _publish

    init_node(home, "bench.example/serve", "publisher").close()
    _publish(home, count, seed=5)


def phase_partner(home: Path, partner: Path, url: str) -> None:
    from hashfed.node.home import init_node, open_node
    from hashfed.node.store import peers
    from hashfed.node.store.db import transaction

    with open_node(home) as pub, init_node(partner, "partner.example/serve") as part:
        with transaction(pub.db) as conn:
            peers.add_peer(conn, "partner", "http://127.0.0.1:9", part.peer_signer.vkey())
        with transaction(part.db) as conn:
            peers.add_peer(conn, "publisher", url, pub.peer_signer.vkey())
            peers.add_trust(conn, pub.signer.vkey(), "publisher")


CATCH_UP_BUNDLES = 4
"""Bundles a partner stages (and applies) before it is sent SIGTERM mid-catch-up."""


def _staged(partner: Path) -> int:
    staging = partner / "hashfed.staging.db"
    if not staging.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{staging}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM staged").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def _catch_up_stops(work: Path, home: Path, runs: int) -> list[float]:
    """Returns the seconds from SIGTERM to exit of a partner's 'hashfed serve' caught in
    the middle of its first sync of the bank of the node in home."""
    port = _free_port()
    command = [str(HASHFED), "--dir", str(home), "serve", "--port", str(port), "--no-sync"]
    publisher = _start(command, port, work / "publisher.log", {}, False)
    partner = work / "partner"
    try:
        subprocess.run(
            [sys.executable, "-m", "bench.bench_serve", "partner", str(home), str(partner),
             f"http://127.0.0.1:{port}"],
            check=True, cwd=ROOT,
        )  # fmt: skip
        stops = []
        for i in range(runs):
            for suffix in ("", "-wal", "-shm"):  # a first catch-up each time
                (partner / f"hashfed.staging.db{suffix}").unlink(missing_ok=True)
            port = _free_port()
            command = [str(HASHFED), "--dir", str(partner), "serve", "--port", str(port)]
            start = _start(command, port, work / f"partner{i}.log", {}, False)
            t0 = time.perf_counter()
            while _staged(partner) < CATCH_UP_BUNDLES:
                if start.proc.poll() is not None or time.perf_counter() - t0 > BOUND:
                    raise _fail(start.proc, start.log, "the partner did not start its catch-up")
                time.sleep(0.01)
            stops.append(_stop(start))
        return stops
    finally:
        _stop(publisher)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return None


@dataclass
class Start:
    """One start: seconds to /healthz 200 and to /readyz 200, the longest /readyz answer
    while not ready, and the process (still running)."""

    healthz: float
    readyz: float | None
    worst_answer: float
    proc: subprocess.Popen[bytes]
    log: Path


def _fail(proc: subprocess.Popen[bytes], log: Path, what: str) -> SystemExit:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return SystemExit(f"{what}; the server's log:\n{log.read_text(errors='replace')[-3000:]}")


def _start(command: list[str], port: int, log: Path, env: dict[str, str], ready: bool) -> Start:
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT
        )
    healthz = readyz = None
    worst = 0.0
    while time.perf_counter() - t0 < BOUND:
        if proc.poll() is not None:
            raise _fail(proc, log, f"{command[0]} exited with {proc.returncode}")
        asked = time.perf_counter()
        status = _get(f"{base}/healthz" if healthz is None else f"{base}/readyz")
        answered = time.perf_counter()
        if healthz is None:
            if status == 200:
                healthz = answered - t0
                if not ready:
                    break
        elif status == 200:
            readyz = answered - t0
            break
        elif status is not None:
            worst = max(worst, answered - asked)
        time.sleep(0.01)
    else:
        raise _fail(proc, log, f"not {'ready' if healthz else 'up'} within {BOUND:.0f} s")
    return Start(healthz, readyz, worst, proc, log)


def _stop(start: Start) -> float:
    """Sends SIGTERM; returns the seconds until the process exited."""
    t0 = time.perf_counter()
    start.proc.send_signal(signal.SIGTERM)
    try:
        code = start.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        raise _fail(start.proc, start.log, "no exit within 120 s of SIGTERM") from None
    seconds = time.perf_counter() - t0
    if code != 0:
        raise _fail(start.proc, start.log, f"exit {code} after SIGTERM")
    return seconds


def _evict(home: Path) -> None:
    """Drops the node's files (its database) from the operating system's page cache, so
    that the next start reads them from disk: a cold start."""
    for path in home.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _longest_answer(url: str, times: int = 200) -> float:
    """Returns the longest of times answers to GET url, polled as _start polls."""
    spent = []
    for _ in range(times):
        t0 = time.perf_counter()
        _get(url)
        spent.append(time.perf_counter() - t0)
        time.sleep(0.01)
    return max(spent)


def _cli(args: list[str], runs: int) -> tuple[float, float]:
    """Returns the median wall seconds of running args, and its peak RSS in MB."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t0)
    hashfed_args = args[1:] if args[0] == str(HASHFED) else []
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *hashfed_args],
        capture_output=True,
        text=True,
        check=True,
    )
    hwm = int(done.stderr.rsplit("VMHWM ", 1)[1].split()[0])
    return statistics.median(walls), hwm / 1024


def _cli_rows(quick: bool) -> list[Row]:
    runs = 5 if quick else 15
    base_wall, base_rss = _cli([sys.executable, "-c", "pass"], runs)
    rows = []
    for name, args, rss_target in (
        ("hashfed --version", ["--version"], None),
        ("hashfed sync --help", ["sync", "--help"], 80.0),
    ):
        wall, rss = _cli([str(HASHFED), *args], runs)
        rows.append(
            Row("serve", f"{name}: wall", wall * 1000, "ms", base_wall * 1000, "python -c pass",
                target=4.0 if args == ["--version"] else None, higher_is_better=False,
                target_is_ratio=True)
        )  # fmt: skip
        rows.append(
            Row("serve", f"{name}: peak RSS", rss, "MB", base_rss, "python -c pass",
                target=rss_target, higher_is_better=False)
        )  # fmt: skip
    return rows


def run(quick: bool) -> list[Row]:
    count = 50_000 if quick else 1_000_000
    repeats = 2 if quick else 3
    rows = _cli_rows(quick)
    with tempfile.TemporaryDirectory(prefix="hashfed-bench-serve-") as tmp:
        work = Path(tmp)
        home = work / "node"
        subprocess.run(
            [sys.executable, "-m", "bench.bench_serve", "setup", str(home), str(count)],
            check=True,
            cwd=ROOT,
        )

        def serve(port: int) -> list[str]:
            return [str(HASHFED), "--dir", str(home), "serve", "--port", str(port), "--no-sync"]

        bare_starts, bare_stops = [], []
        for i in range(repeats):
            port = _free_port()
            bare = _start(
                [sys.executable, "-c", BARE_APP, str(port)], port, work / f"bare{i}.log", {}, True
            )
            bare_starts.append(bare.healthz)
            bare_stops.append(_stop(bare))
        bare_start = statistics.median(bare_starts)
        bare_stop = statistics.median(bare_stops)

        _evict(home)
        port = _free_port()
        cold = _start(serve(port), port, work / "cold.log", {}, True)
        _stop(cold)

        warm: list[Start] = []
        stops = []
        idle_answer = 0.0
        for i in range(repeats):
            port = _free_port()
            start = _start(serve(port), port, work / f"warm{i}.log", {}, True)
            if i == repeats - 1:
                idle_answer = _longest_answer(f"http://127.0.0.1:{port}/readyz")
            stops.append(_stop(start))
            warm.append(start)

        _evict(home)  # so that the index is still loading when SIGTERM comes
        port = _free_port()
        warming = _start(serve(port), port, work / "warming.log", {}, False)
        stop_warming = _stop(warming)
        catch_up_stops = _catch_up_stops(work, home, max(repeats, 3))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    n = f"{count // 1000}k" if count < 1_000_000 else f"{count // 1_000_000}M"
    aio = "bare aiohttp app"
    rows += [
        Row("serve", f"start to /healthz, warm, {n} bank", med([s.healthz for s in warm]), "s",
            bare_start, aio, higher_is_better=False, target=1.0),
        Row("serve", f"start to /readyz, warm, {n} bank",
            med([s.readyz or 0.0 for s in warm]), "s", bare_start, aio, higher_is_better=False),
        Row("serve", f"start to /healthz, cold, {n} bank", cold.healthz, "s", bare_start, aio,
            higher_is_better=False, target=3.0),
        Row("serve", f"start to /readyz, cold, {n} bank", cold.readyz or 0.0, "s", bare_start,
            aio, higher_is_better=False),
        Row("serve", "longest /readyz answer while the cold node loads its index",
            cold.worst_answer * 1000, "ms", idle_answer * 1000, "longest idle",
            higher_is_better=False,
            note="the event loop is never held longer than this while the index loads"),
        Row("serve", "longest /readyz answer while a warm node loads its index",
            max(s.worst_answer for s in warm) * 1000, "ms", idle_answer * 1000, "longest idle",
            higher_is_better=False),
        Row("serve", "SIGTERM to exit, during warm-up", stop_warming, "s", bare_stop, aio,
            higher_is_better=False, target=2.0),
        Row("serve", "SIGTERM to exit, idle", med(stops), "s", bare_stop, aio,
            higher_is_better=False, target=2.0),
        Row("serve", f"SIGTERM to exit, during a {n} catch-up sync", med(catch_up_stops), "s",
            bare_stop, aio, higher_is_better=False, target=2.0),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        phase_setup(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "partner":
        phase_partner(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
