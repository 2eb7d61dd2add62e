"""``make run``: a small hashfed network on this machine, end to end, checking itself.

Three nodes on loopback, each with its own directory, SQLite database and HTTP
port, under ``demo-work/`` (removed and recreated each run):

* **publisher** (``stopncii.demo/bank``) publishes hash records and retracts one;
* **partner A** syncs the publisher's log straight from the publisher;
* **partner B** syncs the publisher's log from partner A, a relay;
* both partners **witness** the publisher's log (C2SP tlog-witness) and require
  both cosignatures before they apply a checkpoint (C2SP tlog-policy);
* a **person opens a case** through the publisher's case API with the hash of
  a photo, partner B matches the photo, the person withdraws the case with the
  case number and PIN, and the match stops working on both partners;
* a **tampering relay** in front of A flips a byte in every entry bundle, and
  B refuses what it serves, saying why;
* finally the publisher **forks** its log (a copy of its node signs a different
  history), and the witnesses catch it with evidence anyone can check offline.

Every step prints the hashfed command it runs and what it answered. The demo
stops by itself, stops its servers, and exits non-zero if any step does not do
what it should.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
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
from dataclasses import dataclass
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


def run(
    node: str,
    *args: str,
    stdin: str | None = None,
    expect_fail: bool = False,
    quiet: bool = False,
) -> str:
    """Runs one hashfed command on a node, prints it and its output, returns stdout."""
    command = [*_hashfed(), "--dir", str(WORK / node), *args]
    print(f"$ hashfed --dir {WORK / node} {shlex.join(args)}", flush=True)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).rstrip()
    if quiet and done.returncode == 0:
        output = ""
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if (done.returncode != 0) != expect_fail:
        raise DemoFailed(f"demo failed: 'hashfed {shlex.join(args)}' exited {done.returncode}")
    return done.stdout


def key(node: str, which: str) -> str:
    rows = json.loads(run(node, "keys", "show", "--json", quiet=True))
    return next(str(row["vkey"]) for row in rows if row["key"] == which)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


READY_BOUND = 600.0
"""Seconds a server may take to load its index on a busy machine before the demo gives up."""

STOP_BOUND = 60.0
"""Seconds a server may take to stop after SIGTERM (it takes one or two)."""


@dataclass
class Server:
    """A running 'hashfed serve' and the file its output goes to."""

    node: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def failed(self, what: str) -> DemoFailed:
        output = self.log.read_text(errors="replace").rstrip() or "(no output)"
        return DemoFailed(f"demo failed: {what}; its log:\n  " + output.replace("\n", "\n  "))


def start_server(node: str, port: int) -> Server:
    """Starts 'hashfed serve' for a node (no background sync: the demo drives it)."""
    command = [*_hashfed(), "--dir", str(WORK / node), "serve", "--port", str(port), "--no-sync"]
    print(f"$ hashfed --dir {WORK / node} serve --port {port} --no-sync &", flush=True)
    log = WORK / f"{node}.serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return Server(node, f"http://127.0.0.1:{port}", proc, log)


def wait_ready(server: Server) -> None:
    """Waits until the server answers /readyz 200: bound, database open, index loaded."""
    deadline = time.monotonic() + READY_BOUND
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise server.failed(f"the {server.node} server exited with {server.proc.returncode}")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:  # not bound yet, or 503 while its index loads
            pass
        time.sleep(0.1)
    raise server.failed(f"the {server.node} server was not ready within {READY_BOUND:.0f} s")


def stop_server(server: Server) -> DemoFailed | None:
    """Stops the server with SIGTERM; returns what went wrong, if anything."""
    if server.proc.poll() is not None:
        return server.failed(f"the {server.node} server had exited with {server.proc.returncode}")
    server.proc.terminate()
    try:
        code = server.proc.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        return server.failed(f"the {server.node} server did not stop within {STOP_BOUND:.0f} s")
    return None if code == 0 else server.failed(f"the {server.node} server exited with {code}")


@contextmanager
def serving(ports: dict[str, int]) -> Iterator[list[Server]]:
    """Runs 'hashfed serve' for each node, all starting at once; yields once every one is
    ready, and stops them all at the end."""
    servers = [start_server(node, port) for node, port in ports.items()]
    failure: BaseException | None = None
    try:
        for server in servers:
            wait_ready(server)
        yield servers
    except BaseException as exc:
        failure = exc
        raise
    finally:
        problems = [p for p in map(stop_server, servers) if p is not None]
        if problems and failure is None:
            raise problems[0]


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


def witness_policy(urls: dict[str, str], log_key: str, witness_keys: dict[str, str]) -> str:
    """The tlog-policy every node uses: the publisher's log, both partners as
    witnesses, and a quorum of both."""
    return (
        f"log {log_key}\n"
        f"witness a {witness_keys[PARTNER_A]} {urls[PARTNER_A]}/witness\n"
        f"witness b {witness_keys[PARTNER_B]} {urls[PARTNER_B]}/witness\n"
        "group both all a b\n"
        "quorum both\n"
    )


def make_photo(path: Path) -> None:
    """A photo the person holds (random texture, PDQ quality 100), never uploaded."""
    from PIL import Image

    rng = random.Random(6)
    image = Image.new("RGB", (256, 256))
    image.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(256 * 256)]
    )
    image.resize((512, 512)).save(path)


def run_person(*args: str, pin: str | None = None) -> str:
    """Runs a person's 'hashfed case' command (no node directory; the PIN from the env)."""
    env = {**os.environ, **({"HASHFED_CASE_PIN": pin} if pin else {})}
    shown = ("HASHFED_CASE_PIN=… " if pin else "") + "hashfed " + shlex.join(args)
    print(f"$ {shown}", flush=True)
    done = subprocess.run(
        [*_hashfed(), *args], env=env, capture_output=True, text=True, check=False
    )
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if done.returncode != 0:
        raise DemoFailed(f"demo failed: 'hashfed {shlex.join(args)}' exited {done.returncode}")
    return done.stdout


def matches(node: str, photo: Path) -> int:
    rows = json.loads(run(node, "match", str(photo), "--json"))
    hits = (
        [m for row in rows for m in (row.get("matches") or [])]
        if rows and isinstance(rows[0], dict) and "matches" in rows[0]
        else rows
    )
    return len(hits)


def case_steps(publisher_url: str) -> None:
    """A person opens a case through the API, partners get it, the person withdraws it."""
    photo = WORK / "case-photo.png"
    make_photo(photo)
    banner("A person hashes a photo on their own device and opens a case: only the hash is sent")
    opened = json.loads(
        run_person("case", "open", str(photo), "--publisher", publisher_url, "--json")
    )
    number, pin = opened["case"], opened["pin"]
    banner("The publisher's periodic batch publishes pending case hashes (run now)")
    run(PUBLISHER, "cases", "publish")
    run(PARTNER_A, "sync", "--silent")
    run(PARTNER_B, "sync", "--silent")
    banner("An upload of that photo on partner B's platform matches the bank")
    if matches(PARTNER_B, photo) == 0:
        raise DemoFailed("demo failed: partner B does not match the case's photo")
    banner("The person checks the case, then withdraws it with the case number and PIN")
    run_person("case", "status", number, "--publisher", publisher_url, pin=pin)
    run_person("case", "withdraw", number, "--publisher", publisher_url, "--yes", pin=pin)
    run(PUBLISHER, "witness", "push")  # 'serve' does this within seconds of a change
    run(PARTNER_A, "sync", "--silent")
    run(PARTNER_B, "sync", "--silent")
    for node in (PARTNER_A, PARTNER_B):
        if matches(node, photo) != 0:
            raise DemoFailed(f"demo failed: {node} still matches the withdrawn photo")
    print("  the withdrawal reached both partners: the photo no longer matches anywhere")


def fork_steps(log_key: str) -> None:
    """The publisher forks its log; both witnesses refuse and keep evidence."""
    banner("The publisher forks: an old copy of its node signs a different history")
    size = json.loads(run(PUBLISHER, "log", "checkpoint", "--json"))["size"]
    fork = "publisher-fork"
    have = json.loads(run(fork, "log", "checkpoint", "--json"))["size"]
    lines = "".join(f"md5,{random.Random(n).randbytes(16).hex()},\n" for n in range(size - have))
    run(fork, "publish", "-", stdin="kind,hash,quality\n" + lines)
    run(fork, "witness", "push", expect_fail=True)
    for node in (PARTNER_A, PARTNER_B):
        listed = json.loads(run(node, "evidence", "list", "--json"))
        if not listed:
            raise DemoFailed(f"demo failed: witness {node} kept no evidence of the fork")
    target = WORK / "fork.evidence"
    run(PARTNER_A, "evidence", "export", listed[0]["id"], str(target))
    banner("Anyone can check the evidence offline, with only the publisher's key")
    run_person("evidence", "verify", str(target), "--vkey", log_key)
    run(PARTNER_A, "status", expect_fail=True)


def bank_of(node: str, origin: str) -> list[dict[str, Any]]:
    from hashfed.node.store.bank import origin_bank
    from hashfed.node.store.db import plain_connection

    with plain_connection(WORK / node / "hashfed.db") as conn:
        rows = origin_bank(conn, origin)
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
    ports = {name: free_port() for name in (PUBLISHER, PARTNER_A, PARTNER_B, "relay")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    banner("Three nodes: the StopNCII publisher and two partner platforms")
    run(PUBLISHER, "init", "--origin", ORIGINS[PUBLISHER], "--role", "publisher")
    run(PARTNER_A, "init", "--origin", ORIGINS[PARTNER_A])
    run(PARTNER_B, "init", "--origin", ORIGINS[PARTNER_B])

    banner("Keys: each node has a log key, a peer key and a witness key")
    log_key = key(PUBLISHER, "log")
    peer_keys = {name: key(name, "peer") for name in (PUBLISHER, PARTNER_A, PARTNER_B)}
    witness_keys = {name: key(name, "witness") for name in (PARTNER_A, PARTNER_B)}
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

    banner("Both partners witness the publisher's log; every node requires both cosignatures")
    policy_file = WORK / "policy"
    policy_file.write_text(witness_policy(urls, log_key, witness_keys))
    print("  " + policy_file.read_text().rstrip().replace("\n", "\n  "))
    for node in (PARTNER_A, PARTNER_B):
        run(node, "witness", "add", log_key)
    for node in (PUBLISHER, PARTNER_A, PARTNER_B):
        run(node, "policy", "set", str(policy_file))

    with serving({node: ports[node] for node in (PARTNER_A, PARTNER_B, PUBLISHER)}):
        banner("The publisher publishes four hashes; both witnesses cosign the checkpoint")
        run(PUBLISHER, "publish", "-", stdin=SAMPLE_CSV)
        run(PUBLISHER, "log", "checkpoint")
        shutil.copytree(WORK / PUBLISHER, WORK / "publisher-fork")  # for the last act

        banner("Partner A syncs from the publisher: signature, quorum, consistency, inclusion")
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

        case_steps(urls[PUBLISHER])

        banner("A tampering relay flips a bit in every entry bundle it forwards to B")
        run(PUBLISHER, "publish", "-", stdin=MORE_CSV)
        run(PARTNER_A, "sync", "--silent")
        before = len(bank_of(PARTNER_B, ORIGINS[PUBLISHER]))
        run(PARTNER_B, "peers", "remove", "partner-a")
        run(PARTNER_B, "peers", "add", "shady-relay", urls["relay"], peer_keys[PARTNER_A])
        with tampering_relay(urls[PARTNER_A], ports["relay"]):
            run(PARTNER_B, "sync", "--peer", "shady-relay", "--silent", expect_fail=True)
        print("  B refused the relay's entries: they do not hash to the root the publisher signed,")
        print("  and nothing was applied")
        if len(bank_of(PARTNER_B, ORIGINS[PUBLISHER])) != before:
            raise DemoFailed("demo failed: the tampered entries reached B's bank")
        banner("B goes back to syncing from A directly")
        run(PARTNER_B, "peers", "remove", "shady-relay")
        run(PARTNER_B, "peers", "add", "partner-a", urls[PARTNER_A], peer_keys[PARTNER_A])
        run(PARTNER_B, "sync", "--peer", "partner-a", "--silent")
        show_bank(PARTNER_B)
        run(PARTNER_B, "status")
        run(PARTNER_B, "log", "verify", "--origin", ORIGINS[PUBLISHER])

        fork_steps(log_key)

    banner("Done")
    print(f"The nodes are in {WORK}/; the servers have stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
