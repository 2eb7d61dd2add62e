"""Static serving: the exported tree through Debian's nginx beside ``hashfed serve``.

* export: ``export_logs`` of a log of N entries into an empty folder (the whole
  tree), then after 1,000 new entries (incremental).
* tile serving: ``wrk`` (Debian, two threads, 64 connections) GETs random hash
  tiles and entry bundles from nginx (two workers, ``docs/nginx/``, every request
  authorised by ``auth_request`` to hashfed, answers cached for up to 10 s) and
  from ``hashfed serve`` (one process), on the same log. Authenticated (a
  private log, one session token) and public (the same log listed in
  ``[server] public_logs``).
* catch-up: a fresh partner syncs the N entries from nginx, another from
  ``hashfed serve`` (verifying everything either way).

Every figure is the median of several runs; the side runs alternate. Each
measured side runs in its own process: ``python -m bench.bench_static PHASE ...``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_sync import PUBLISHER, ROOT, _free_port, _publish, _start, _stop
from bench.table import Row

WRK = ROOT / "build" / "wrk" / "usr" / "bin" / "wrk"
WRK_LIBS = ROOT / "build" / "wrk" / "usr" / "lib" / "x86_64-linux-gnu"
INCREMENT = 1_000

_WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("HASHFED_PATHS")) do paths[#paths + 1] = line end
local auth = os.getenv("HASHFED_AUTH")
local headers = {}
if auth ~= nil and auth ~= "" then headers["Authorization"] = auth end
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""


def phase_setup(pub: Path, partners: list[Path], count: int) -> dict[str, float]:
    """Creates the publisher (count records) and partner nodes that may read it."""
    from hashfed.node.home import init_node
    from hashfed.node.store import peers
    from hashfed.node.store.db import transaction

    with init_node(pub, PUBLISHER, "publisher") as publisher:
        vkey, peer_vkey = publisher.signer.vkey(), publisher.peer_signer.vkey()
        for i, home in enumerate(partners):
            with init_node(home, f"partner{i}.example/node", "partner") as part:
                with transaction(publisher.db) as conn:
                    peers.add_peer(conn, f"p{i}", "-", part.peer_signer.vkey())
                with transaction(part.db) as conn:
                    peers.add_trust(conn, vkey, "publisher")
        (pub / "peer.vkey").write_text(peer_vkey)
    return {"seconds": _publish(pub, count, seed=1)}


def phase_export(pub: Path, tree: Path, more: int) -> dict[str, float]:
    """Exports the publisher's log into tree (after publishing more records first)."""
    from hashfed.node.home import open_node
    from hashfed.node.services.export import export_logs

    if more:
        _publish(pub, more, seed=int(time.time()))
    with open_node(pub) as node:
        t0 = time.perf_counter()
        report = export_logs(node.db.conn, tree)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "files": report.files, "size": report.logs[0].size}


def phase_sync(part: Path, url: str) -> dict[str, float]:
    """Syncs a fresh partner from url; the time covers the whole sync."""
    import asyncio

    from hashfed.node.home import open_node
    from hashfed.node.services.syncer import sync_node
    from hashfed.node.store import peers
    from hashfed.node.store.db import transaction

    vkey = (part.parent / "publisher" / "peer.vkey").read_text()
    with open_node(part) as node:
        with transaction(node.db) as conn:
            for peer in peers.list_peers(conn):
                peers.remove_peer(conn, peer.name)
            peers.add_peer(conn, "publisher", url, vkey)
        t0 = time.perf_counter()
        (outcome,) = asyncio.run(sync_node(node, peer_name="publisher"))
        seconds = time.perf_counter() - t0
    if outcome.result is None:
        raise SystemExit(f"sync from {url} failed: {outcome.errors}")
    return {"seconds": seconds, "size": outcome.result.new_size}


def phase_token(part: Path, url: str) -> dict[str, str]:
    """Returns an Authorization header value for partner part at url."""
    import asyncio

    import aiohttp
    from hashfed.node.home import open_node
    from hashfed.sync.auth import SessionClient

    with open_node(part) as node:
        signer = node.peer_signer

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            return await SessionClient(signer, PUBLISHER).authorization(session, url)

    return {"header": asyncio.run(main())}


def _child(*args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_static", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _paths_file(folder: Path, size: int) -> Path:
    from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, entries_path, log_prefix, tile_path

    prefix = "/" + log_prefix(PUBLISHER)
    full = size // ENTRY_BUNDLE_WIDTH
    paths = [f"{prefix}/{tile_path(0, i)}" for i in range(full)]
    paths += [f"{prefix}/{entries_path(i)}" for i in range(full)]
    path = folder / "paths.txt"
    path.write_text("\n".join(paths) + "\n")
    return path


def _wrk(url: str, paths: Path, script: Path, auth: str, seconds: int) -> float:
    """Runs wrk against url with random paths; returns requests/s (all must be 200)."""
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(WRK_LIBS),
        "HASHFED_PATHS": str(paths),
        "HASHFED_AUTH": auth,
    }
    out = subprocess.run(
        [str(WRK), "-t2", "-c64", f"-d{seconds}s", "-s", str(script), url],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    if "Non-2xx or 3xx responses" in out:
        raise SystemExit(f"wrk saw errors from {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise SystemExit(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def _serve(pub: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    hashfed = Path(sys.executable).with_name("hashfed")
    command = [str(hashfed), "--dir", str(pub), "serve", "--port", str(port), "--no-sync"]
    return _start(command, f"http://127.0.0.1:{port}/healthz", log)


def _make_public(pub: Path) -> None:
    from dataclasses import replace

    from hashfed.node.config import load_config, write_config

    config = load_config(pub)
    write_config(replace(config, server=replace(config.server, public_logs=(PUBLISHER,))))


def run(quick: bool) -> list[Row]:
    sys.path.insert(0, str(ROOT / "tests"))
    from nginxhelpers import run_nginx, shared_dir

    count = 50_000 if quick else 1_000_000
    runs = 3
    wrk_seconds = 3 if quick else 8
    with shared_dir() as base, tempfile.TemporaryDirectory(prefix="hashfed-bench-static-") as tmp:
        work = Path(tmp)
        pub = work / "publisher"
        partners = [work / f"partner{i}" for i in range(2 * runs + 1)]
        _child("setup", str(pub), str(count), *map(str, partners))
        tree = base / "tree"
        full, incremental = [], []
        for _ in range(runs):
            shutil.rmtree(tree, ignore_errors=True)
            full.append(_child("export", str(pub), str(tree), "0")["seconds"])
        for _ in range(runs):
            incremental.append(_child("export", str(pub), str(tree), str(INCREMENT))["seconds"])
        size = count + runs * INCREMENT
        script = work / "paths.lua"
        script.write_text(_WRK_SCRIPT)
        paths = _paths_file(work, size)
        rates: dict[str, list[float]] = {}
        catchup: dict[str, list[float]] = {"nginx": [], "serve": []}
        port = _free_port()
        serve_url = f"http://127.0.0.1:{port}"
        server = _serve(pub, port, work / "serve.log")
        try:
            with run_nginx(base, tree, serve_url, workers=2) as nginx_url:
                header = _child("token", str(partners[-1]), nginx_url)["header"]
                for _ in range(runs):
                    for name, url in (("nginx", nginx_url), ("serve", serve_url)):
                        rate = _wrk(url, paths, script, header, wrk_seconds)
                        rates.setdefault(f"{name} private", []).append(rate)
                for i in range(runs):
                    for j, (name, url) in enumerate((("nginx", nginx_url), ("serve", serve_url))):
                        result = _child("sync", str(partners[2 * i + j]), url)
                        if result["size"] != size:
                            raise SystemExit(f"sync from {name} ended at {result['size']}")
                        catchup[name].append(result["seconds"])
                _stop(server)
                _make_public(pub)
                server = _serve(pub, port, work / "serve-public.log")
                for _ in range(runs):
                    for name, url in (("nginx", nginx_url), ("serve", serve_url)):
                        rate = _wrk(url, paths, script, "", wrk_seconds)
                        rates.setdefault(f"{name} public", []).append(rate)
        finally:
            _stop(server)
    med = statistics.median
    name = f"static ({count:,} entries)"
    note = f"median of {runs}; wrk -t2 -c64, nginx 2 workers, serve 1 process, same 2 cores"
    rows = [
        Row(name, "export of the whole log", med(full), "s", higher_is_better=False),
        Row(
            name,
            f"incremental export after {INCREMENT:,} entries",
            med(incremental),
            "s",
            higher_is_better=False,
        ),
    ]
    for scope in ("private", "public"):
        rows.append(
            Row(
                name,
                f"tile/bundle GETs/s, {'authenticated' if scope == 'private' else 'public'}",
                med(rates[f"nginx {scope}"]),
                "req/s",
                peer=med(rates[f"serve {scope}"]),
                peer_name="hashfed serve",
                target=5.0,
                target_is_ratio=True,
                note=note,
            )
        )
    rows.append(
        Row(
            name,
            "partner catch-up from nginx",
            size / med(catchup["nginx"]),
            "rec/s",
            peer=size / med(catchup["serve"]),
            peer_name="from hashfed serve",
            target=1.0,
            target_is_ratio=True,
            note=f"median of {runs}, fresh partner each run",
        )
    )
    return rows


if __name__ == "__main__":
    phase, *rest = sys.argv[1:]
    result: dict  # type: ignore[type-arg]
    if phase == "setup":
        result = phase_setup(Path(rest[0]), [Path(p) for p in rest[2:]], int(rest[1]))
    elif phase == "export":
        result = phase_export(Path(rest[0]), Path(rest[1]), int(rest[2]))
    elif phase == "sync":
        result = phase_sync(Path(rest[0]), rest[1])
    elif phase == "token":
        result = phase_token(Path(rest[0]), rest[1])
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    json.dump(result, sys.stdout)
    sys.stdout.flush()
    os._exit(0)
