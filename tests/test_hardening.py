"""Fixes from the security and protocol reviews, each held by a test."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.config import SyncConfig
from hashfed.node.policyfile import quorum_check
from hashfed.node.store import logstore, peers
from hashfed.node.store.db import transaction
from hashfed.node.store.syncstore import SqliteSyncStore
from hashfed.protocol.policy import parse_policy
from hashfed.protocol.tiles import content_path, entries_path, log_prefix
from hashfed.signing.keys import ALG_COSIGNATURE_V1, generate_key
from hashfed.sync.auth import SessionClient
from hashfed.sync.errors import Halted, SyncError
from synchelpers import (
    NOW,
    active_hashes,
    allow,
    log_id,
    make_node,
    pdq_hashes,
    publish,
    serve,
    sync,
    trust,
    use,
)
from witnesshelpers import Clock, policy_text, push, serve_witness, witness_log


async def test_anonymous_callers_cannot_tell_which_logs_a_node_holds(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    held = log_prefix(p.config.origin)
    unknown = "log/" + hashlib.sha256(b"nobody.example/log").hexdigest()
    async with serve(p) as url, aiohttp.ClientSession() as session:
        for prefix in (held, unknown):
            async with session.get(f"{url}/{prefix}/checkpoint") as response:
                assert response.status == 401
    p.close()


async def test_bundles_vary_on_encoding_and_content_is_never_stored(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 3)
    allow(p, a)
    prefix = log_prefix(p.config.origin)
    async with serve(p) as url, aiohttp.ClientSession(auto_decompress=False) as session:
        auth = await SessionClient(a.peer_signer, p.config.origin).authorization(session, url)
        headers = {"Authorization": auth, "Accept-Encoding": "gzip;q=0, identity"}
        async with session.get(f"{url}/{prefix}/{entries_path(0, 3)}", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Vary"] == "Accept-Encoding"
            assert "Content-Encoding" not in r.headers  # q=0 refuses gzip
        headers["Accept-Encoding"] = "gzip"
        async with session.get(f"{url}/{prefix}/{entries_path(0, 3)}", headers=headers) as r:
            assert r.headers["Content-Encoding"] == "gzip"
        async with session.get(f"{url}/{prefix}/{content_path(0, 3)}", headers=headers) as r:
            assert r.status == 200
            assert "no-store" in r.headers["Cache-Control"]
    p.close()
    a.close()


async def test_apply_refuses_a_log_that_moved_or_was_halted_meanwhile(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 5)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        assert (await sync(a)).ok
    store = SqliteSyncStore(a.db)
    state = store.state(p.config.origin)
    assert state is not None and state.size == 5
    # A sync that read an older state (size 0) must not apply over the newer one.
    with (
        pytest.raises(SyncError, match="changed while syncing"),
        store.apply(p.config.origin, 0, bytes(32)),
    ):
        pass
    with transaction(a.db) as conn:
        conn.execute("UPDATE logs SET halted = 1 WHERE origin = ?", (p.config.origin,))
    with pytest.raises(Halted), store.apply(p.config.origin, state.size, state.root):
        pass
    p.close()
    a.close()


async def test_retention_expires_even_when_the_log_does_not_grow(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a", sync=SyncConfig(retention=100))
    publish(p, 4)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        assert (await sync(a)).ok  # a receives the hash
        p.own_log().retract([1])
        assert (await sync(a)).ok  # and then its retraction
    row = a.db.conn.execute(
        "SELECT hash, retracted_at FROM bank WHERE log_id = ? AND idx = 1",
        (log_id(a, p.config.origin),),
    ).fetchone()
    assert row[0] is not None  # kept for the retention period
    SqliteSyncStore(a.db, retention=100, clock=lambda: row[1] + 50).prune()
    assert a.db.conn.execute("SELECT count(*) FROM bank WHERE hash IS NULL").fetchone()[0] == 0
    SqliteSyncStore(a.db, retention=100, clock=lambda: row[1] + 101).prune()
    erased = a.db.conn.execute(
        "SELECT hash, salt FROM bank WHERE log_id = ? AND idx = 1",
        (log_id(a, p.config.origin),),
    ).fetchone()
    assert erased == (None, None)
    p.close()
    a.close()


async def test_push_keeps_cosignatures_of_witnesses_that_did_not_answer(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    w1, w2 = make_node(tmp_path, "w1"), make_node(tmp_path, "w2")
    publish(p, 3)
    for w in (w1, w2):
        witness_log(w, p)
    async with serve_witness(w1, Clock(NOW)) as s1:
        async with serve_witness(w2, Clock(NOW)) as s2:
            text = policy_text([("a", s1), ("b", s2)], "all")
            assert sorted((await push(p, text)).cosigned) == ["a", "b"]
        # w2 is gone; w1 cosigns the same tree again, later.
        s1.clock.now = NOW + 60
        report = await push(p, text)
        assert report.cosigned == ["a"] and "b" in report.errors
    note = logstore.get_log(p.db.conn, p.config.origin).checkpoint  # type: ignore[union-attr]
    assert note is not None
    check = quorum_check(parse_policy(text), p.config.origin, lambda: NOW + 100)
    assert check is not None
    met, attested = check(note)
    assert met and attested == NOW  # b's earlier cosignature still counts
    lines = note.split("\n\n", 1)[1].splitlines()
    names = [line.split(" ")[1] for line in lines]
    assert names.count(s1.vkey.split("+")[0]) == 1  # a's old line was replaced
    assert names.count(s2.vkey.split("+")[0]) == 1 and names[0] == p.config.origin
    for node in (p, w1, w2):
        node.close()


def test_quorum_none_policy_is_neither_gating_nor_stale() -> None:
    wa = generate_key("a.test/w", ALG_COSIGNATURE_V1)[1]
    policy = parse_policy(f"witness a {wa}\nquorum none\n")
    assert quorum_check(policy, "p.test/log", lambda: NOW) is None


async def test_verify_accepts_a_mirror_with_skipped_and_content_missing_rows(
    tmp_path: Path,
) -> None:
    from hashfed.node.services.verify import VerifyReport, verify_bank, verify_log

    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a", min_pdq_quality=90)
    p.own_log().publish(pdq_hashes(3, seed=5, quality=80))  # below a's threshold: skipped
    publish(p, 3, seed=6)
    p.own_log().retract([4])  # erased before a ever syncs: content unavailable
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        assert (await sync(a)).ok
    log = logstore.get_log(a.db.conn, p.config.origin)
    assert log is not None
    report = VerifyReport(origin=log.origin)
    verify_log(a.db.conn, log, report)
    verify_bank(a.db.conn, log, report)
    assert report.ok, report.problems
    statuses = [r[0] for r in a.db.conn.execute("SELECT status FROM bank ORDER BY idx")]
    assert statuses == ["skipped"] * 3 + ["active", "retracted", "active"]
    # A skipped row whose flag is gone is no longer accounted for.
    with transaction(a.db) as conn:
        conn.execute("DELETE FROM flags WHERE idx = 0")
    report = VerifyReport(origin=log.origin)
    verify_log(a.db.conn, log, report)
    verify_bank(a.db.conn, log, report)
    assert any(p.where == "bank row 0" for p in report.problems)
    p.close()
    a.close()


async def test_content_a_relay_blanked_is_fetched_again_from_an_honest_peer(
    tmp_path: Path,
) -> None:
    """A relay that serves empty content items cannot keep a hash out of the bank:
    the next sync from an honest peer fills it in (specs/protocol.md §8.4 rule 5)."""
    from hashfed.node.match.bank import BankIndex
    from synchelpers import Relay, flags

    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 5)
    allow(p, b)
    trust(b, p)

    async def blank(request: aiohttp.web.Request, status: int, body: bytes) -> bytes:
        if "/content/" not in request.path or status != 200:
            return body
        return b"\x00\x00" * 5  # five empty items

    async with serve(p) as p_url:
        relay = Relay(p_url)
        relay.tamper = blank
        async with relay.running() as relay_url:
            use(b, p, relay_url, name="relay")
            assert (await sync(b, "relay")).ok
        assert len(flags(b, p.config.origin)) == 5  # all five arrived without content
        index = BankIndex.load(b.db.conn)
        assert len(index) == 0
        with transaction(b.db) as conn:
            peers.remove_peer(conn, "relay")
        use(b, p, p_url, name="honest")
        outcome = await sync(b, "honest")
        assert outcome.ok and outcome.result is not None
        assert sorted(outcome.result.refilled_indices) == [0, 1, 2, 3, 4]
    assert flags(b, p.config.origin) == {}
    assert len(active_hashes(b, p.config.origin)) == 5
    index.update_from_sync(b.db.conn, outcome.result)
    assert len(index) == 5  # and the match index has them at once
    p.close()
    b.close()
