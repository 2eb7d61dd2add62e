"""The case desk under a flood: match latency idle and during a flood of PIN checks.

A publisher's ``hashfed serve`` (case desk, match API) runs in its own process;
this process is the load. NETWORKS clients, each from its own loopback /24
(127.0.N.1), send ``GET /v1/cases/<random number>`` with a PIN as fast as the
desk answers them (the per-address buckets are raised so that every request
costs a scrypt check). The figure is the median latency of ``POST /v1/match``
(100 hashes, the local API token) during the flood, beside the same median with
the desk idle, from the same run; and the time the person's right PIN takes to
withdraw a case during the flood.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.table import Row

NETWORKS = 48
PIN = "correct-horse-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    hashfed = [sys.executable, "-m", "hashfed.node"]
    with open(home / "serve.log", "wb") as log:
        return subprocess.Popen(
            [*hashfed, "--dir", str(home), "serve", "--port", str(port), "--no-sync"],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )


async def _ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        while proc.poll() is None:  # ready: bound and the match index loaded
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    error = log.read_text(errors="replace")[-500:]
    raise RuntimeError(f"hashfed serve exited before it was ready: {error}")


async def _matches(url: str, token: str, count: int) -> list[float]:
    import aiohttp

    body = {"hashes": [{"kind": "md5", "hash": secrets.token_hex(16)} for _ in range(100)]}
    auth = {"Authorization": f"Bearer {token}"}
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            begun = time.perf_counter()
            async with session.post(url + "/v1/match", json=body, headers=auth) as resp:
                assert resp.status == 200, resp.status
                await resp.read()
            times.append(time.perf_counter() - begun)
    return times


async def _measure(url: str, token: str, count: int) -> tuple[float, float, float, int]:
    import aiohttp
    from hashfed.node.services.casecrypto import format_case_number

    idle = statistics.median(await _matches(url, token, count))
    async with aiohttp.ClientSession() as session:
        body = {"hashes": [{"kind": "md5", "hash": secrets.token_hex(16)}], "pin": PIN}
        async with session.post(url + "/v1/cases", json=body) as resp:
            assert resp.status == 201, await resp.text()
            number = (await resp.json())["case"]
    stop, checks = asyncio.Event(), [0]

    async def attacker(network: int) -> None:
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.{network}.1", 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            while not stop.is_set():
                guess = format_case_number(secrets.token_bytes(16))
                headers = {"X-Case-PIN": "guess-" + secrets.token_hex(4)}
                async with session.get(f"{url}/v1/cases/{guess}", headers=headers) as r:
                    await r.read()
                    checks[0] += 1

    flood = [asyncio.create_task(attacker(n)) for n in range(1, NETWORKS + 1)]
    while checks[0] < NETWORKS:
        await asyncio.sleep(0.05)
    flooded = statistics.median(await _matches(url, token, count))
    connector = aiohttp.TCPConnector(local_addr=("127.0.250.1", 0))
    async with aiohttp.ClientSession(connector=connector) as person:
        begun = time.perf_counter()
        async with person.post(
            f"{url}/v1/cases/{number}/withdraw", headers={"X-Case-PIN": PIN}
        ) as resp:
            assert resp.status == 200, await resp.text()
        withdraw = time.perf_counter() - begun
    stop.set()
    await asyncio.gather(*flood, return_exceptions=True)
    return idle, flooded, withdraw, checks[0]


def run(quick: bool = False) -> list[Row]:
    from hashfed.node.config import write_config
    from hashfed.node.home import init_node

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "publisher"
        node = init_node(home, "bench.example/bank", "publisher")
        node.config = replace(
            node.config, cases=replace(node.config.cases, guess_burst=10_000, guess_per_hour=1e6)
        )
        write_config(node.config)
        token = node.api_token()
        node.close()
        port = _free_port()
        proc = _start(home, port)
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_ready(url, proc, home / "serve.log"))
            idle, flooded, withdraw, checks = asyncio.run(_measure(url, token, 10 if quick else 30))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    name = "case desk flood"
    return [
        Row(
            name,
            f"match latency during a PIN flood ({NETWORKS} networks), median",
            flooded * 1000,
            "ms",
            peer=idle * 1000,
            peer_name="idle desk",
            higher_is_better=False,
            note=f"{checks} PIN checks",
        ),
        Row(name, "right PIN withdraws during the flood", withdraw, "s", higher_is_better=False),
    ]
