"""Witnessing between real nodes on loopback: races, a forked publisher, quorum, staleness.

Every node is a real node directory; every witness is the node's real app with a
Witness on a clock the test moves by hand (no sleeps). Commands that open their
own event loop (``hashfed witness push``) run in a worker thread while the
servers run in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.cli.sync import _status_rows
from hashfed.node.config import write_config
from hashfed.node.home import Node, open_node
from hashfed.node.services.witnesspush import witness_loop
from hashfed.node.store import logstore
from hashfed.protocol.evidence import check_evidence, parse_evidence
from hashfed.protocol.records import Reason
from hashfed.signing.note import VerifierList
from synchelpers import (
    NOW,
    Relay,
    active_hashes,
    allow,
    clock,
    env_without_proxies,
    make_node,
    publish,
    serve,
    sync,
    trust,
    use,
)
from witnesshelpers import (
    Clock,
    body,
    own_note,
    policy_text,
    post,
    proof_of,
    push,
    serve_witness,
    set_policy,
    witness_log,
    witness_of,
)


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-d", str(home), *args])


def size_of(node: Node, origin: str) -> int:
    log = logstore.get_log(node.db.conn, origin)
    assert log is not None
    return log.size


# -- concurrent add-checkpoint calls: exactly one wins -------------------------------------


def _race_setup(tmp_path: Path) -> tuple[Node, Node, str]:
    p = make_node(tmp_path, "p", "publisher")
    w = make_node(tmp_path, "w")
    witness_log(w, p)
    publish(p, 5)
    first = own_note(p)
    witness_of(w, Clock()).add_checkpoint(body(0, first))
    publish(p, 3, seed=2)
    return p, w, first


async def test_concurrent_add_checkpoint_one_server(tmp_path: Path) -> None:
    p, w, _ = _race_setup(tmp_path)
    data = body(5, own_note(p), proof_of(p, 5))
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        answers = await asyncio.gather(*(post(s, served.endpoint, data) for _ in range(20)))
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200] + [409] * 19
    assert {a[1] for a in answers if a[0] == 409} == {"8\n"}


async def test_concurrent_add_checkpoint_two_apps_on_one_database(tmp_path: Path) -> None:
    """Two witness apps in this process, each with its own connection to one file."""
    p, w, _ = _race_setup(tmp_path)
    data = body(5, own_note(p), proof_of(p, 5))
    async with (
        serve_witness(w, Clock()) as one,
        serve_witness(w, Clock()) as two,
        aiohttp.ClientSession() as s,
    ):
        answers = await asyncio.gather(
            *(post(s, (one, two)[i % 2].endpoint, data) for i in range(20))
        )
    assert sorted(a[0] for a in answers) == [200] + [409] * 19


_SERVER = """
import asyncio, sys, time
from pathlib import Path
from aiohttp import web
from hashfed.node.store.db import open_database
from hashfed.node.home import open_node
from hashfed.node.http.witness import Witness, setup_witness

async def main():
    node = open_node(Path(sys.argv[1]))
    witness = Witness(open_database(node.config.database), node.witness_signer(), lambda: 1)
    app = web.Application()
    setup_witness(app, witness)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_concurrent_add_checkpoint_two_server_processes(tmp_path: Path) -> None:
    """Check-and-persist is atomic in the database: two processes race on one file."""
    p, w, _ = _race_setup(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(w.config.home)],
            stdout=subprocess.PIPE,
            env=env_without_proxies(),
        )
        for _ in range(2)
    ]
    try:
        ports = [int((await asyncio.to_thread(proc.stdout.readline)).strip()) for proc in procs]
        urls = [f"http://127.0.0.1:{port}/witness/add-checkpoint" for port in ports]
        async with aiohttp.ClientSession() as s:
            for round_ in range(5):  # five races, the log growing between them
                old = (
                    size_of(p, p.config.origin) - 3 if round_ == 0 else size_of(p, p.config.origin)
                )
                if round_:
                    publish(p, 3, seed=10 + round_)
                data = body(old, own_note(p), proof_of(p, old))
                answers = await asyncio.gather(*(post(s, urls[i % 2], data) for i in range(16)))
                assert sorted(a[0] for a in answers) == [200] + [409] * 15, (round_, answers)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    row = w.db.conn.execute("SELECT size FROM witnessed").fetchone()
    assert row[0] == size_of(p, p.config.origin)


def test_concurrent_add_checkpoint_threads_on_separate_connections(tmp_path: Path) -> None:
    """Many Witness objects (one connection each) released at once by a barrier."""
    p, w, _ = _race_setup(tmp_path)
    witnesses = [witness_of(w, Clock()) for _ in range(6)]
    for round_ in range(5):
        if round_:
            publish(p, 2, seed=20 + round_)
        old = w.db.conn.execute("SELECT size FROM witnessed").fetchone()[0]
        data = body(old, own_note(p), proof_of(p, old))
        barrier = threading.Barrier(len(witnesses))
        results: list[int] = []

        def run(witness: Any, barrier: threading.Barrier, results: list[int], data: bytes) -> None:
            barrier.wait()
            results.append(witness.add_checkpoint(data).status)

        threads = [
            threading.Thread(target=run, args=(x, barrier, results, data)) for x in witnesses
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200] + [409] * (len(witnesses) - 1), round_


# -- a forked publisher is caught by two witnesses ----------------------------------------


async def test_forked_publisher_is_caught_by_two_witnesses(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a")
    b = make_node(tmp_path, "b")
    for w in (a, b):
        assert cli(w.config.home, "witness", "add", p.signer.vkey()).exit_code == 0
    allow(p, a)
    trust(a, p)  # a also follows p's log
    async with (
        serve(p) as p_url,
        serve_witness(a, Clock(NOW + 1)) as wa,
        serve_witness(b, Clock(NOW + 1)) as wb,
    ):
        use(a, p, p_url)
        policy = policy_text([("A", wa), ("B", wb)], "all")
        set_policy(p, policy)
        publish(p, 10)
        report = await asyncio.to_thread(cli, p.config.home, "witness", "push")
        assert report.exit_code == 0, report.output
        assert "witness A cosigned size 10" in report.output
        # The fork: a copy of p's directory, taken now, will publish other records.
        p.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copytree(p.config.home, tmp_path / "fork")
        fork = open_node(tmp_path / "fork")
        publish(p, 5, seed=2)
        assert not (await push(p, policy)).errors
        assert (await sync(a)).result.new_size == 15
        publish(fork, 7, seed=3)  # 17 entries, the last 7 not p's
        report = await asyncio.to_thread(cli, fork.config.home, "witness", "push")
        assert report.exit_code == 1, report.output
        assert "witness A did not cosign: HTTP 422" in report.output
        assert "witness B did not cosign: HTTP 422" in report.output
        # The fork's next attempt, at the same size as p's, is refused too.
        for w in (wa, wb):
            async with aiohttp.ClientSession() as s:
                forked_15 = fork.db.conn.execute(
                    "SELECT note FROM checkpoints WHERE size = 15"
                ).fetchone()
                assert forked_15 is None  # the fork went 10 -> 17 in one batch
                status, _, _ = await post(
                    s, w.endpoint, body(15, own_note(fork), proof_of(fork, 15))
                )
                assert status == 422
        # a, which follows p, is halted: it applies nothing more from p.
        outcome = await sync(a)
        assert not outcome.ok and "halted" in outcome.errors[0]
    for w in (a, b):
        assert w.db.conn.execute("SELECT size FROM witnessed").fetchone()[0] == 15
    status = cli(a.config.home, "status")
    assert status.exit_code == 2 and "EVIDENCE for p.test/hashfed" in status.output
    # Both keep evidence that anyone can check with p's key alone.
    p_vkey = p.signer.vkey()
    elsewhere = tmp_path / "nowhere"
    for w in (a, b):
        listing = cli(w.config.home, "evidence", "list", "--json")
        assert listing.exit_code == 0

        ids = [row["id"] for row in json.loads(listing.output)]
        assert "witness-1" in ids
        out = tmp_path / f"{w.config.origin.split('.')[0]}.evidence"
        assert cli(w.config.home, "evidence", "export", "witness-1", str(out)).exit_code == 0
        evidence = parse_evidence(out.read_text())
        first, second = check_evidence(evidence, VerifierList(p.signer.verifier()), p.config.origin)
        assert (first.size, second.size) == (15, 17)
        checked = CliRunner().invoke(
            main, ["-d", str(elsewhere), "evidence", "verify", str(out), "--vkey", p_vkey]
        )
        assert checked.exit_code == 0, checked.output
        assert "valid evidence" in checked.output
        assert not elsewhere.exists()  # no node database was opened or made
        # Tampered: one byte of the proof, or the other log's key.
        text = out.read_text()
        lines = text.split("\n")
        lines[2] = ("B" if lines[2][0] == "A" else "A") + lines[2][1:]
        tampered = tmp_path / "tampered.evidence"
        tampered.write_text("\n".join(lines))
        for path, vkey in ((tampered, p_vkey), (out, a.signer.vkey())):
            checked = CliRunner().invoke(
                main, ["-d", str(elsewhere), "evidence", "verify", str(path), "--vkey", vkey]
            )
            assert checked.exit_code == 1, checked.output
            assert "not valid evidence" in checked.output
    for n in (p, a, b, fork):
        n.close()


async def test_fork_at_the_same_size_is_a_409_with_evidence(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a")
    witness_log(a, p)
    async with serve_witness(a, Clock()) as wa:
        policy = policy_text([("A", wa)], "A")
        publish(p, 4)
        assert not (await push(p, policy)).errors
        p.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copytree(p.config.home, tmp_path / "fork")
        fork = open_node(tmp_path / "fork")
        publish(p, 3, seed=2)
        assert not (await push(p, policy)).errors
        publish(fork, 3, seed=3)
        report = await push(fork, policy)
        assert report.errors == {"A": "it kept answering 409"}
    [(text,)] = a.db.conn.execute("SELECT text FROM witness_evidence").fetchall()
    one, two = check_evidence(
        parse_evidence(text), VerifierList(p.signer.verifier()), p.config.origin
    )
    assert one.size == two.size == 7 and one.root != two.root
    for n in (p, a, fork):
        n.close()


# -- quorum ------------------------------------------------------------------------------


async def test_quorum_not_met_holds_back_and_met_releases(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b, c = (make_node(tmp_path, n) for n in "abc")
    for w in (a, b):
        witness_log(w, p)
    allow(p, c)
    trust(c, p)
    origin = p.config.origin
    async with (
        serve(p) as p_url,
        serve_witness(a, Clock(NOW)) as wa,
        serve_witness(b, Clock(NOW)) as wb,
    ):
        use(c, p, p_url)
        set_policy(c, policy_text([("A", wa), ("B", wb)], "all", with_urls=False, logs=[p]))
        publish(p, 5)
        report = await push(p, policy_text([("A", wa)], "A"))
        assert report.cosigned == ["A"]
        outcome = await sync(c, clock=clock(NOW + 1))
        assert outcome.ok and outcome.result.status == "awaiting-quorum"
        assert outcome.result.new_size == 0 and size_of(c, origin) == 0
        assert active_hashes(c, origin) == []
        # B cosigns too: released.
        report = await push(p, policy_text([("A", wa), ("B", wb)], "all"))
        assert sorted(report.cosigned) == ["A", "B"]
        outcome = await sync(c, clock=clock(NOW + 1))
        assert outcome.result.status == "advanced" and size_of(c, origin) == 5
        assert len(active_hashes(c, origin)) == 5
        # A newer checkpoint cosigned by A alone: applied up to 5, no further.
        publish(p, 3, seed=2)
        assert (await push(p, policy_text([("A", wa)], "A"))).cosigned == ["A"]
        outcome = await sync(c, clock=clock(NOW + 1))
        assert outcome.result.status == "awaiting-quorum" and size_of(c, origin) == 5
        # Cosignatures dated in the partner's future do not count.
        wa.clock.now = wb.clock.now = NOW + 100
        assert len((await push(p, policy_text([("A", wa), ("B", wb)], "all"))).cosigned) == 2
        outcome = await sync(c, clock=clock(NOW + 1))
        assert outcome.result.status == "awaiting-quorum"
        outcome = await sync(c, clock=clock(NOW + 100))
        assert outcome.result.status == "advanced" and size_of(c, origin) == 8
    for n in (p, a, b, c):
        n.close()


# -- freshness: a frozen relay is flagged stale -------------------------------------------


async def test_frozen_relay_is_flagged_stale_and_a_rewitnessed_checkpoint_refreshes(
    tmp_path: Path,
) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    c = make_node(tmp_path, "c")
    for w in (a, b):
        witness_log(w, p)
    allow(p, c)
    trust(c, p)
    origin = p.config.origin
    max_age = c.config.sync.max_age
    t0 = NOW
    async with (
        serve(p) as p_url,
        serve_witness(a, Clock(t0)) as wa,
        serve_witness(b, Clock(t0)) as wb,
    ):
        relay = Relay(p_url)
        async with relay.running() as relay_url:
            use(c, p, relay_url, name="relay")
            set_policy(c, policy_text([("A", wa), ("B", wb)], "all", with_urls=False, logs=[p]))
            publisher_policy = policy_text([("A", wa), ("B", wb)], "all")
            set_policy(p, publisher_policy)
            publish(p, 5)
            assert len((await push(p, publisher_policy)).cosigned) == 2
            assert (await sync(c, clock=clock(t0))).result.status == "advanced"
            row = _row(c, origin, t0 + 60)
            assert (row["witnessed"], row["attested"], row["age_seconds"], row["stale"]) == (
                True,
                t0,
                60,
                False,
            )

            # The relay freezes: it keeps serving this checkpoint.
            frozen = own_note(p)

            async def freeze(request: web.Request, status: int, data: bytes) -> bytes:
                return frozen.encode() if request.path.endswith("/checkpoint") else data

            relay.tamper = freeze
            # Meanwhile the publisher retracts two hashes and is witnessed an hour later.
            t1 = t0 + 3600
            wa.clock.now = wb.clock.now = t1
            p.own_log(clock(t1)).retract([0, 1], Reason.WITHDRAWN)
            assert len((await push(p, publisher_policy)).cosigned) == 2
            outcome = await sync(c, clock=clock(t1))
            assert outcome.result.status == "up-to-date" and size_of(c, origin) == 5
            assert len(active_hashes(c, origin)) == 5  # the retraction is withheld
            # The partner cannot know that, but it can see the checkpoint get old.
            row = _row(c, origin, t0 + int(max_age) + 1)
            assert row["stale"] and row["age_seconds"] == int(max_age) + 1
            assert not _row(c, origin, t0 + int(max_age))["stale"]
            # Own log: not covered by a policy that lists only p's log.
            assert all(not r["stale"] for r in _status_rows(c, now=t0) if r["origin"] != origin)

            # The relay thaws: the newer, cosigned checkpoint is applied.
            relay.tamper = None
            outcome = await sync(c, clock=clock(t1))
            assert outcome.result.status == "advanced" and outcome.result.retracted == 2
            row = _row(c, origin, t0 + int(max_age) + 1)
            assert row["attested"] == t1 and not row["stale"]

            # Idle log: the publisher's re-witness loop cosigns the same tree again, on
            # its cadence (witness_interval) although nothing is new.
            t2 = t1 + int(max_age)
            wa.clock.now = wb.clock.now = t2 - 100  # the loop's first push
            interval = p.config.sync.witness_interval
            slept: list[float] = []

            class Stop(Exception):
                pass

            async def sleep(seconds: float) -> None:
                slept.append(seconds)
                wa.clock.now = wb.clock.now = t2  # any later push is dated t2
                if sum(slept) > interval:
                    raise Stop

            with pytest.raises(Stop):
                await witness_loop(p.db, p.config, sleep)
            for w in (a, b):  # pushed again after witness_interval of sleeping
                assert w.db.conn.execute("SELECT updated FROM witnessed").fetchone()[0] == t2
            assert _row(c, origin, t2 + 10)["stale"]  # not yet synced
            outcome = await sync(c, clock=clock(t2))
            assert outcome.result.status == "refreshed", outcome.result
            assert outcome.result.new_size == size_of(c, origin)
            row = _row(c, origin, t2 + 10)
            assert (row["attested"], row["stale"]) == (t2, False)
            # A second sync with nothing newer leaves it as it is.
            assert (await sync(c, clock=clock(t2))).result.status == "up-to-date"
    for n in (p, a, b, c):
        n.close()


def _row(node: Node, origin: str, now: int) -> dict[str, Any]:
    [row] = [r for r in _status_rows(node, now=now) if r["origin"] == origin]
    return row


async def test_status_check_exits_2_when_stale_and_0_when_fresh(tmp_path: Path) -> None:
    """The CLI reads the wall clock: cosignatures two hours old against max_age = 1 hour."""
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a")
    c = make_node(tmp_path, "c")
    witness_log(a, p)
    allow(p, c)
    trust(c, p)
    c.config = replace(c.config, sync=replace(c.config.sync, max_age=3600))
    write_config(c.config)
    now = int(time.time())
    async with serve(p) as p_url, serve_witness(a, Clock(now - 7200)) as wa:
        use(c, p, p_url)
        set_policy(c, policy_text([("A", wa)], "A", with_urls=False, logs=[p]))
        policy = policy_text([("A", wa)], "A")
        publish(p, 3)
        assert (await push(p, policy)).cosigned == ["A"]
        assert (await sync(c)).result.status == "advanced"
        result = cli(c.config.home, "status", "--check")
        assert result.exit_code == 2, result.output
        assert "HASHFED CRITICAL: p.test/hashfed: no witness quorum within 3600 s" in (
            result.output
        )
        assert cli(c.config.home, "status").exit_code == 2  # --check or not
        wa.clock.now = now
        assert (await push(p, policy)).cosigned == ["A"]
        assert (await sync(c)).result.status == "refreshed"
        result = cli(c.config.home, "status", "--check")
        assert result.exit_code == 0, result.output
    for n in (p, a, c):
        n.close()


# -- the publisher's CLI pushes after publish ---------------------------------------------


async def test_publish_pushes_to_the_witnesses_and_serves_their_cosignatures(
    tmp_path: Path,
) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    for w in (a, b):
        witness_log(w, p)
    async with serve_witness(a, Clock()) as wa, serve_witness(b, Clock()) as wb:
        set_policy(p, policy_text([("A", wa), ("B", wb)], "all"))
        hashes = tmp_path / "hashes.csv"
        rows = "".join(f"pdq,{(i + 17):02x}{'5a' * 31},100,ncii\n" for i in range(4))
        hashes.write_text("kind,hash,quality,labels\n" + rows)
        result = await asyncio.to_thread(cli, p.config.home, "publish", str(hashes))
        assert result.exit_code == 0, result.output
        note = own_note(p)
        names = [line.split(" ")[1] for line in note.split("\n\n")[1].splitlines()]
        assert names == [
            p.config.origin,
            a.config.origin + "/witness",
            b.config.origin + "/witness",
        ]
        # Published again later: each witness is sent a proof from the size it holds.
        hashes.write_text(f"kind,hash,quality,labels\npdq,{'a5' * 32},100,ncii\n")
        result = await asyncio.to_thread(cli, p.config.home, "publish", str(hashes))
        assert result.exit_code == 0, result.output
    for w in (a, b):
        assert w.db.conn.execute("SELECT size FROM witnessed").fetchone()[0] == 5
    for n in (p, a, b):
        n.close()
