"""``make run``: a small hashfed network on this machine, end to end, checking itself.

Three nodes on loopback, each with its own directory, SQLite database and HTTP
port, under ``demo-work/`` (removed and recreated each run):

* **publisher** (``stopncii.demo/bank``) publishes hash records and retracts one;
* **partner A** syncs the publisher's log straight from the publisher;
* **partner B** syncs the publisher's log from partner A, a relay;
* a **tampering relay** in front of A flips a byte in every entry bundle, and
  B refuses what it serves, saying why.

Every step prints the hashfed command it runs and what it answered. The demo
stops by itself, stops its servers, and exits non-zero if any step does not do
what it should.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

WORK = Path("demo-work")
PUBLISHER, PARTNER_A, PARTNER_B = "publisher", "partner-a", "partner-b"
ORIGINS = {
    PUBLISHER: "stopncii.demo/bank",
    PARTNER_A: "partner-a.demo/hashfed",
    PARTNER_B: "partner-b.demo/hashfed",
}

# Sample bank records: PDQ hashes of reference images in shared/vectors (as
# python-threatexchange hashes them) and the MD5 of a sample video.
SAMPLE_CSV = """kind,hash,quality,labels
pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,100,ncii
pdq,1f811b9d267fbc6693c0c7f30e041f9df49b836303e10f067fcdfc12c02d01f9,100,ncii
pdq,f8f8f0cee0f4a84f06370a2a038f63f0b36e26d596621e1d33e6b39c4e9c9b22,100,ncii;test
md5,0a21c8f85a55a9e276ffc2c53f6887c4,,ncii
"""
MORE_CSV = """kind,hash,quality
pdq,c0f0b0c8e0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b23,98
md5,5d41402abc4b2a76b9719d911017c592,
"""


class DemoFailed(SystemExit):
    """A step did not do what it should."""


def _hashfed() -> list[str]:
    script = Path(sys.executable).with_name("hashfed")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hashfed.node"]


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run(node: str, *args: str, stdin: str | None = None, expect_fail: bool = False) -> str:
    """Runs one hashfed command on a node, prints it and its output, returns stdout."""
    command = [*_hashfed(), "--dir", str(WORK / node), *args]
    print(f"$ hashfed --dir {WORK / node} {shlex.join(args)}", flush=True)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if (done.returncode != 0) != expect_fail:
        raise DemoFailed(f"demo failed: 'hashfed {shlex.join(args)}' exited {done.returncode}")
    return done.stdout


def key(node: str, which: str) -> str:
    rows = json.loads(run(node, "keys", "show", "--json"))
    return next(str(row["vkey"]) for row in rows if row["key"] == which)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    """Waits until the server answers /healthz (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise DemoFailed(f"the server for {url} exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise DemoFailed(f"the server at {url} did not start")


@contextmanager
def serving(node: str, port: int) -> Iterator[str]:
    """Runs 'hashfed serve' for a node (no background sync: the demo drives it)."""
    command = [*_hashfed(), "--dir", str(WORK / node), "serve", "--port", str(port), "--no-sync"]
    print(f"$ hashfed --dir {WORK / node} serve --port {port} --no-sync &", flush=True)
    log = open(WORK / f"{node}.serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def _flip_entry_bytes(body: bytes) -> bytes:
    """Flips one bit in the last entry of a bundle (its last byte), keeping the framing."""
    if len(body) < 3:
        return body
    return body[:-1] + bytes([body[-1] ^ 0x01])


@contextmanager
def tampering_relay(upstream: str, port: int) -> Iterator[str]:
    """A relay that forwards everything to upstream but flips a bit in entry bundles."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner: list[web.AppRunner] = []

    async def forward(request: web.Request) -> web.Response:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type")
        }
        async with (
            ClientSession(auto_decompress=True) as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                headers=headers,
                data=await request.read(),
            ) as response,
        ):
            body = await response.read()
            if "/tile/entries/" in request.path and response.status == 200:
                body = _flip_entry_bytes(body)
            return web.Response(
                body=body,
                status=response.status,
                content_type=response.content_type or "application/octet-stream",
            )

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner.append(web.AppRunner(app, access_log=None))
        await runner[0].setup()
        await web.TCPSite(runner[0], "127.0.0.1", port).start()
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def bank_of(node: str, origin: str) -> list[dict[str, Any]]:
    import sqlite3

    conn = sqlite3.connect(WORK / node / "hashfed.db")
    try:
        rows = conn.execute(
            "SELECT b.idx, b.kind, hex(b.hash), b.status FROM bank b JOIN logs l"
            " ON l.id = b.log_id WHERE l.origin = ? ORDER BY b.idx",
            (origin,),
        ).fetchall()
    finally:
        conn.close()
    return [{"index": r[0], "kind": r[1], "hash": r[2].lower(), "status": r[3]} for r in rows]


def show_bank(node: str) -> list[dict[str, Any]]:
    rows = bank_of(node, ORIGINS[PUBLISHER])
    print(f"  {node}'s bank for {ORIGINS[PUBLISHER]}:")
    for row in rows:
        digest = row["hash"] or "(erased)"
        print(f"    #{row['index']} {row['kind'] or '-':3} {row['status']:9} {digest}")
    return rows


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    ports = {name: free_port() for name in (PUBLISHER, PARTNER_A, "relay")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    banner("Three nodes: the StopNCII publisher and two partner platforms")
    run(PUBLISHER, "init", "--origin", ORIGINS[PUBLISHER], "--role", "publisher")
    run(PARTNER_A, "init", "--origin", ORIGINS[PARTNER_A])
    run(PARTNER_B, "init", "--origin", ORIGINS[PARTNER_B])

    banner("Keys: each partner trusts the publisher's log key; peers know each other's peer keys")
    log_key = key(PUBLISHER, "log")
    peer_keys = {name: key(name, "peer") for name in (PUBLISHER, PARTNER_A, PARTNER_B)}
    run(PUBLISHER, "peers", "add", "partner-a", "-", peer_keys[PARTNER_A])
    run(PARTNER_A, "peers", "add", "stopncii", urls[PUBLISHER], peer_keys[PUBLISHER])
    run(
        PARTNER_A,
        "peers",
        "add",
        "partner-b",
        "-",
        peer_keys[PARTNER_B],
        "--read",
        ORIGINS[PUBLISHER],
    )
    run(PARTNER_B, "peers", "add", "partner-a", urls[PARTNER_A], peer_keys[PARTNER_A])
    run(PARTNER_A, "trust", "add", log_key, "--role", "publisher")
    run(PARTNER_B, "trust", "add", log_key, "--role", "publisher")

    banner("The publisher publishes four hashes to its signed log")
    run(PUBLISHER, "publish", "-", stdin=SAMPLE_CSV)

    with serving(PUBLISHER, ports[PUBLISHER]), serving(PARTNER_A, ports[PARTNER_A]):
        banner("Partner A syncs from the publisher: signature, consistency, inclusion, records")
        run(PARTNER_A, "sync", "--silent")
        banner("Partner B syncs the publisher's log from partner A, a relay")
        run(PARTNER_B, "sync", "--silent")
        if [r["hash"] for r in show_bank(PARTNER_B)] != [r["hash"] for r in show_bank(PARTNER_A)]:
            raise DemoFailed("demo failed: B's bank differs from A's")

        banner("The person behind entry 1 withdraws: the publisher retracts it")
        run(PUBLISHER, "retract", "1")
        run(PARTNER_A, "sync", "--silent")
        run(PARTNER_B, "sync", "--silent")
        rows = show_bank(PARTNER_B)
        if rows[1]["status"] != "retracted" or rows[1]["hash"]:
            raise DemoFailed("demo failed: the retraction did not reach B through A")
        print("  the retraction reached B through A, and B erased the hash")

        banner("A tampering relay flips a bit in every entry bundle it forwards to B")
        run(PUBLISHER, "publish", "-", stdin=MORE_CSV)
        run(PARTNER_A, "sync", "--silent")
        run(PARTNER_B, "peers", "remove", "partner-a")
        run(PARTNER_B, "peers", "add", "shady-relay", urls["relay"], peer_keys[PARTNER_A])
        with tampering_relay(urls[PARTNER_A], ports["relay"]):
            run(PARTNER_B, "sync", "--peer", "shady-relay", "--silent", expect_fail=True)
        print("  B refused the relay's entries: they do not hash to the root the publisher signed,")
        print("  and nothing was applied")
        before = bank_of(PARTNER_B, ORIGINS[PUBLISHER])
        if len(before) != 4:
            raise DemoFailed("demo failed: the tampered entries reached B's bank")
        banner("B goes back to syncing from A directly")
        run(PARTNER_B, "peers", "remove", "shady-relay")
        run(PARTNER_B, "peers", "add", "partner-a", urls[PARTNER_A], peer_keys[PARTNER_A])
        run(PARTNER_B, "sync", "--peer", "partner-a", "--silent")
        show_bank(PARTNER_B)
        run(PARTNER_B, "status")
        run(PARTNER_B, "log", "verify", "--origin", ORIGINS[PUBLISHER])

    banner("Done")
    print(f"The three nodes are in {WORK}/; the servers have stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
