"""Read replicas: 'hashfed serve --read-only' over the database the writer writes.

The replica serves logs, tiles and matches, picks up new checkpoints, bank
changes and peer removals without a restart, accepts tokens the writer issued
(same keys/session.key), never writes, and refuses a database it cannot read.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.config import ServerConfig
from hashfed.node.errors import NodeError
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.replica import open_replica_database
from hashfed.node.root import create_replica_app
from hashfed.node.services.ownlog import NewHash
from hashfed.node.services.tokens import SESSION_SECRET_FILE, load_session_secret
from hashfed.node.store import peers
from hashfed.node.store.db import open_database, transaction
from hashfed.protocol.records import Kind
from hashfed.protocol.tiles import log_prefix
from hashfed.sync.auth import SessionClient
from servehelpers import start_serve, status_of, stop, wait_for_line, wait_for_status
from synchelpers import (
    allow,
    bank_state,
    clock,
    make_node,
    origin_of,
    publish,
    run_app,
    sync,
    trust,
    use,
)

P = origin_of("p")


async def test_replica_follows_the_writer(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 300)
    allow(p, a)
    trust(a, p)
    app = create_replica_app(p.config, ServerConfig(), refresh=0.02)
    async with run_app(app) as replica, aiohttp.ClientSession() as session:
        use(a, p, replica)
        outcome = await sync(a)
        assert outcome.ok and outcome.result.new_size == 300, outcome.errors
        assert bank_state(a, P) == bank_state(p, P)

        # The writer (another connection) publishes: the replica serves it at once.
        publish(p, 100, seed=2)
        outcome = await sync(a)
        assert outcome.ok and outcome.result.new_size == 400, outcome.errors

        # Matches: new hashes reach the replica's index, retractions hide at once.
        token = p.api_token()
        fresh = NewHash(Kind.PDQ, bytes(range(100, 132)), 100, ("ncii",))  # far from the rest
        p.own_log(clock()).publish([fresh])

        async def matches(digest: bytes) -> list[int]:
            body = {"hashes": [{"kind": "pdq", "hash": digest.hex()}]}
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{replica}/v1/match", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                doc = await r.json()
            return [m["index"] for m in doc["results"][0]["matches"]]

        while not await matches(fresh.hash):  # the index refreshes every 0.02 s
            await asyncio.sleep(0.02)
        assert await matches(fresh.hash) == [400]
        p.own_log(clock()).retract([400])
        assert await matches(fresh.hash) == []

        # A peer removed by the writer is refused by the replica on its next request.
        header = await SessionClient(a.peer_signer, P).authorization(session, replica)
        path = f"{replica}/{log_prefix(P)}/checkpoint"
        async with session.get(path, headers={"Authorization": header}) as r:
            assert r.status == 200
        with transaction(p.db) as conn:
            peers.remove_peer(conn, "a")
        async with session.get(path, headers={"Authorization": header}) as r:
            assert r.status == 401

        # Nothing that writes is served.
        async with session.post(f"{replica}/witness/add-checkpoint", data=b"x") as r:
            assert r.status in (401, 404, 405)
        async with session.post(f"{replica}/v1/cases", json={}) as r:
            assert r.status in (401, 404, 405)


async def test_writer_token_works_at_the_replica(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 3)
    allow(p, a)
    secret = load_session_secret(p.config.home / SESSION_SECRET_FILE)
    writer_db = open_database(p.config.database)
    writer = create_app(NodeServices(writer_db.conn, P, ServerConfig(), session_secret=secret))
    replica = create_replica_app(p.config, ServerConfig())
    async with (
        run_app(writer) as writer_url,
        run_app(replica) as replica_url,
        aiohttp.ClientSession() as session,
    ):
        header = await SessionClient(a.peer_signer, P).authorization(session, writer_url)
        async with session.get(
            f"{replica_url}/{log_prefix(P)}/checkpoint", headers={"Authorization": header}
        ) as r:
            assert r.status == 200
    writer_db.conn.close()


def test_replica_never_writes_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    conn = open_replica_database(p.config.database)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM peers")
    conn.close()
    with pytest.raises(NodeError, match="no node database"):
        open_replica_database(tmp_path / "missing.db")
    p.db.conn.execute("PRAGMA user_version = 99")
    with pytest.raises(NodeError, match="schema 99"):
        open_replica_database(p.config.database)


def test_serve_read_only_process(tmp_path: Path) -> None:
    """The replica process starts like the writer: bound first (/healthz answers when it
    says so), ready once its index loads, admin routes served, and a prompt SIGTERM."""
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    served = start_serve(p.config.home, "--read-only", "--port", "0")
    try:
        url = wait_for_line(served, "serving ").rsplit(" ", 1)[1]
        assert status_of(f"{url}/healthz") == 200  # bound before it said so: no retry
        wait_for_status(served, f"{url}/readyz")
        admin = (p.config.home / "keys" / "admin.token").read_text().strip()
        request = urllib.request.Request(
            f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        publish(p, 2, seed=2)
    finally:
        code = stop(served)
    assert code == 0, served.output()
    assert "Traceback" not in served.output()
    # It served beside the writer and wrote nothing: the log is the writer's.
    size = p.db.conn.execute("SELECT size FROM logs WHERE origin = ?", (P,)).fetchone()[0]
    assert size == 5


def test_serve_read_only_refusals_are_one_line(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(p.config.home), "serve"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [*command, "--read-only", "--port", port], capture_output=True, text=True
        )
    assert busy.returncode != 0 and "Traceback" not in busy.stderr, busy.stderr
    lines = busy.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), busy.stderr
    assert "the port is in use" in lines[0] and "serving" not in busy.stdout
    bad = subprocess.run(
        [*command, "--read-only", "--export", str(tmp_path / "t")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "cannot --export" in bad.stderr
