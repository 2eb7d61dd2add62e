"""Sync between real nodes on loopback: partner, relay, three hops, retractions, roles."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
import msgpack
from hashfed.node.config import SyncConfig
from hashfed.node.home import open_node
from hashfed.node.services.ownlog import _Batch
from hashfed.node.store import logstore
from hashfed.node.store.syncstore import SqliteSyncStore
from hashfed.protocol.records import Reason, Verdict
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TILE_WIDTH, split_bundle
from hashfed.signing.keys import parse_verifier
from hashfed.sync.auth import SessionClient
from hashfed.sync.engine import ApplyPolicy, sync_origin
from hashfed.sync.fetch import HttpFetcher
from synchelpers import (
    NOW,
    active_hashes,
    allow,
    bank,
    bank_state,
    bundles,
    checkpoint,
    clock,
    flags,
    make_node,
    origin_of,
    pdq_hashes,
    publish,
    serve,
    staged_count,
    sync,
    tiles,
    trust,
    use,
)

P = origin_of("p")


async def served_files(url: str, reader, server_vkey_name: str, size: int) -> dict[str, bytes]:
    """Fetches every tile, entry bundle and content bundle of P at size from url."""
    out: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as session:
        fetcher = HttpFetcher(
            session, "x", url, SessionClient(reader.peer_signer, server_vkey_name)
        )
        out["checkpoint"] = await fetcher.checkpoint(P)
        for index in range((size + ENTRY_BUNDLE_WIDTH - 1) // ENTRY_BUNDLE_WIDTH):
            width = min(ENTRY_BUNDLE_WIDTH, size - index * ENTRY_BUNDLE_WIDTH)
            out[f"entries/{index}"] = await fetcher.bundle(P, index, width)
            out[f"content/{index}"] = await fetcher.content(P, index, width)
        level, count = 0, size
        while count > 0:
            for index in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
                width = min(TILE_WIDTH, count - index * TILE_WIDTH)
                out[f"tile/{level}/{index}"] = await fetcher.tile(P, level, index, width)
            level, count = level + 1, count // TILE_WIDTH
    return out


def same_log(a, b, origin: str = P) -> None:
    """Asserts a and b hold the same log of origin: tiles, bundles, checkpoint."""
    assert tiles(a, origin) == tiles(b, origin)
    assert bundles(a, origin) == bundles(b, origin)
    assert checkpoint(a, origin) == checkpoint(b, origin)
    assert checkpoint(a, origin) is not None


def size_of(node, origin: str = P) -> int:
    log = logstore.get_log(node.db.conn, origin)
    assert log is not None
    return log.size


async def test_partner_syncs_publisher_then_incrementally(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 600)
    allow(p, a)
    trust(a, p)
    async with serve(p) as p_url, serve(a) as a_url:
        use(a, p, p_url)
        outcome = await sync(a)
        assert outcome.ok and outcome.errors == []
        assert outcome.result.status == "advanced"
        assert (outcome.result.old_size, outcome.result.new_size) == (0, 600)
        assert outcome.result.applied == 600 and outcome.result.flagged == 0
        assert bank(a, P) == bank(p, P)
        assert [h for _, h in active_hashes(a, P)] == [h.hash for h in pdq_hashes(600, 1)]
        same_log(a, p)
        assert staged_count(a) == 0

        # Nothing new: up to date, nothing changes.
        again = await sync(a)
        assert again.result.status == "up-to-date" and again.result.applied == 0

        # Incremental: 100 more entries land inside the partial bundle 2 and cross into 3.
        publish(p, 200, seed=2)
        outcome = await sync(a)
        assert (outcome.result.old_size, outcome.result.new_size) == (600, 800)
        assert outcome.result.applied == 200
        assert bank(a, P) == bank(p, P)
        same_log(a, p)

        # A serves P's log onward byte for byte: same tiles, bundles, content, checkpoint.
        reader = make_node(tmp_path, "r")
        allow(p, reader)
        allow(a, reader)
        from_p = await served_files(p_url, reader, P, 800)
        from_a = await served_files(a_url, reader, a.config.origin, 800)
        assert from_a == from_p
        assert len([k for k in from_a if k.startswith("entries/")]) == 4


async def test_relay_and_three_hops(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b, c = (make_node(tmp_path, n) for n in "abc")
    publish(p, 300)
    allow(p, a)
    allow(a, b)
    allow(b, c)
    for node in (a, b, c):
        trust(node, p)
    async with serve(p) as p_url, serve(a) as a_url, serve(b) as b_url:
        use(a, p, p_url)
        use(b, a, a_url)
        use(c, b, b_url)
        for node in (a, b, c):
            outcome = await sync(node)
            assert outcome.ok, outcome.errors
            assert outcome.result.new_size == 300
        for node in (a, b, c):
            assert bank(node, P) == bank(p, P)
            same_log(node, p)

        # More entries and a retraction travel the whole chain.
        publish(p, 500, seed=2)
        p.own_log(clock()).retract([5, 299, 700], Reason.ERROR)
        for node in (a, b, c):
            outcome = await sync(node)
            assert outcome.ok, outcome.errors
            assert outcome.result.retracted == 3
        for node in (a, b, c):
            assert bank_state(node, P) == bank_state(p, P)
            same_log(node, p)
            rows = {r[0]: r for r in bank(node, P)}
            # 700 was erased before anyone synced it: its content never left P.
            assert rows[700][1:7] == (None, None, None, "", None, None)
            assert rows[700][7] == "retracted"
            assert rows[299][2] is None and rows[299][1] == "pdq"
            assert rows[700][9] == "error"


async def test_retraction_reaches_b_through_a(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    publish(p, 400)
    allow(p, a)
    allow(a, b)
    trust(a, p)
    trust(b, p)
    async with serve(p) as p_url, serve(a) as a_url:
        use(a, p, p_url)
        use(b, a, a_url)
        assert (await sync(a)).ok and (await sync(b)).ok
        target = 42
        assert (target, pdq_hashes(400, 1)[target].hash) in active_hashes(b, P)

        retraction = p.own_log(clock()).retract([target], Reason.WITHDRAWN)
        assert (await sync(a)).ok
        outcome = await sync(b)
        assert outcome.ok and outcome.result.retracted == 1
        row = next(r for r in bank(b, P) if r[0] == target)
        assert row[2] is None and row[6] is None  # hash and salt erased
        assert row[7] == "retracted" and row[10] == retraction.first_index
        assert target not in [i for i, _ in active_hashes(b, P)]
        assert bank(b, P) == bank(a, P) == bank(p, P)


async def test_late_partner_never_receives_retracted_content(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    publish(p, 300)
    allow(p, a)
    allow(a, b)
    trust(a, p)
    trust(b, p)
    async with serve(p) as p_url, serve(a) as a_url:
        use(a, p, p_url)
        use(b, a, a_url)
        assert (await sync(a)).ok
        p.own_log(clock()).retract([7, 260])
        assert (await sync(a)).ok
        # B syncs for the first time, after the retraction, from A.
        async with aiohttp.ClientSession() as session:
            fetcher = HttpFetcher(
                session, "a", a_url, SessionClient(b.peer_signer, a.config.origin)
            )
            content0 = await fetcher.content(P, 0, 256)
            content1 = await fetcher.content(P, 1, 45)
        assert split_bundle(content0, "c")[7] == b""
        assert split_bundle(content1, "c")[260 - 256] == b""
        assert split_bundle(content0, "c")[8] != b""
        outcome = await sync(b)
        assert outcome.ok and outcome.result.new_size == 301
        rows = {r[0]: r for r in bank(b, P)}
        for target in (7, 260):
            assert rows[target][2] is None and rows[target][6] is None
            assert rows[target][7] == "retracted"
        # The "content unavailable" flags are explained by the retraction and dropped.
        assert flags(b, P) == {}
        assert bank_state(b, P) == bank_state(p, P)
        assert rows[7][1:6] == (None, None, None, "", None)
        hashes = {h for _, h in active_hashes(b, P)}
        assert pdq_hashes(300, 1)[7].hash not in hashes


async def test_partner_role_flags_additions_applies_feedback(tmp_path: Path) -> None:
    # Q is a partner log: it publishes hashes (not applied by A) and feedback (applied).
    q, a = make_node(tmp_path, "q", "partner"), make_node(tmp_path, "a")
    publish(q, 3)
    q.own_log(clock()).feedback("other.test/bank", 12, Verdict.BLOCKED, ("x",))
    allow(q, a)
    trust(a, q, role="partner")
    async with serve(q) as q_url:
        use(a, q, q_url)
        outcome = await sync(a)
    assert outcome.ok and outcome.result.flagged == 3 and outcome.result.applied == 1
    origin = q.config.origin
    assert bank(a, origin) == []
    assert set(flags(a, origin)) == {0, 1, 2}
    assert all("from a partner are not applied" in r for r in flags(a, origin).values())
    feedback = a.db.conn.execute(
        "SELECT idx, target_origin, target_idx, verdict, tags FROM feedback"
    ).fetchall()
    assert feedback == [(3, "other.test/bank", 12, "blocked", "x")]
    same_log(a, q, origin)


async def test_failed_record_check_is_flagged_and_later_entries_apply(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a", min_pdq_quality=80)
    publish(p, 10, seed=1, quality=100)
    publish(p, 5, seed=2, quality=60)  # valid for P (threshold 50), below A's 80
    # An entry of a record type A does not know, written raw into P's log.
    unknown = msgpack.packb({"type": "vote", "v": 1, "x": 1})
    own = p.own_log(clock())
    own._append(_Batch(entries=[unknown]))
    publish(p, 10, seed=3)
    allow(p, a)
    trust(a, p)
    async with serve(p) as p_url:
        use(a, p, p_url)
        outcome = await sync(a)
    assert outcome.ok, outcome.errors
    assert outcome.result.new_size == 26 and outcome.result.flagged == 6
    reasons = flags(a, P)
    assert set(reasons) == {10, 11, 12, 13, 14, 15}
    assert "below this node's threshold 80" in reasons[10]
    assert "unknown record" in reasons[15]
    statuses = {r[0]: r[7] for r in bank(a, P)}
    assert all(statuses[i] == "skipped" for i in range(10, 15))
    active = [i for i, _ in active_hashes(a, P)]
    assert active == [*range(10), *range(16, 26)]
    same_log(a, p)  # flagged entries are still kept and served onward


async def test_sync_origin_with_http_fetcher(tmp_path: Path) -> None:
    """sync_origin directly over HttpFetcher, with a progress callback."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 520)
    allow(p, a)
    trust(a, p)
    seen: list[tuple[int, int]] = []
    async with serve(p) as p_url, aiohttp.ClientSession() as session:
        fetcher = HttpFetcher(session, "p", p_url, SessionClient(a.peer_signer, P))
        result = await sync_origin(
            SqliteSyncStore(a.db),
            fetcher,
            P,
            parse_verifier(p.signer.vkey()),
            ApplyPolicy("publisher"),
            progress=lambda done, total: seen.append((done, total)),
        )
    assert result.status == "advanced" and result.applied == 520
    assert seen == [(256, 520), (512, 520), (520, 520)]
    assert bank(a, P) == bank(p, P)


def test_copied_node_directory_opens(tmp_path: Path) -> None:
    """The fork tests copy a node directory; the copy must be a working node."""
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    shutil.copytree(tmp_path / "p", tmp_path / "p2")
    with open_node(tmp_path / "p2") as copy:
        copy.own_log(clock()).publish(pdq_hashes(2, 9))
        assert size_of(copy) == 5
    assert size_of(p) == 3


async def test_retention_keeps_a_retracted_hash_for_its_period(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    b = make_node(tmp_path, "b", sync=SyncConfig(retention=3600))
    publish(p, 10)
    allow(p, b)
    trust(b, p)
    async with serve(p) as p_url:
        use(b, p, p_url)
        assert (await sync(b)).ok
        p.own_log().retract([3])  # now: within B's retention period
        p.own_log(clock(NOW)).retract([4])  # retracted long ago: past it
        outcome = await sync(b)
    assert outcome.ok and outcome.result.retracted == 2
    rows = {r[0]: r for r in bank(b, P)}
    assert rows[3][7] == "retracted" and rows[3][2] == pdq_hashes(10, 1)[3].hash
    assert rows[4][7] == "retracted" and rows[4][2] is None
    assert [i for i, _ in active_hashes(b, P)] == [0, 1, 2, 5, 6, 7, 8, 9]
