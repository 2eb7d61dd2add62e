"""POST /v1/feedback on a real node on loopback (node/http/feedback.py).

Publishers P and Q publish; partner A syncs both and serves the feedback endpoint
as 'hashfed serve' does. Feedback by hash lands on every active entry with that
hash (P's two cases and Q's), seen as records in A's own log; by entry on one.
Only the admin token may publish; every bad request answers one line of JSON and
leaves A's own log as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hashfed.node.config import ServerConfig
from hashfed.node.home import Node, ensure_admin_token
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.feedback import FEEDBACK_PATH, MAX_FEEDBACK_BODY, FeedbackAccess
from hashfed.node.services.feedback import (
    InactiveTarget,
    entry_target,
    open_feedback_desk,
    publish,
)
from hashfed.node.services.ownlog import NewHash
from hashfed.node.services.syncer import sync_node
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database, transaction
from hashfed.protocol.records import Feedback, Kind, Verdict, decode_record
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, decode_bundle
from hashfed.sync.auth import SessionClient
from synchelpers import allow, clock, flags, make_node, origin_of, run_app, serve, trust, use

P, Q, A = origin_of("p"), origin_of("q"), origin_of("a")
SHARED = bytes(range(32))  # in two of P's cases and in Q's log
OTHER = bytes(range(1, 33))
GONE = bytes(range(2, 34))  # P retracts it
MD5 = bytes(range(16))


def own_records(node: Node) -> list[Feedback]:
    """Returns the records of node's own log, read back from its stored bundles."""
    conn = node.db.conn
    log = logstore.get_log(conn, node.config.origin)
    assert log is not None
    records: list[Feedback] = []
    for bundle in range((log.size + ENTRY_BUNDLE_WIDTH - 1) // ENTRY_BUNDLE_WIDTH):
        stored = logstore.read_bundle(conn, log.id, bundle)
        assert stored is not None
        for entry in decode_bundle(stored[1], stored[0]):
            record = decode_record(entry)
            assert isinstance(record, Feedback)
            records.append(record)
    assert len(records) == log.size
    return records


@asynccontextmanager
async def serve_writer(node: Node) -> AsyncIterator[str]:
    """Serves node as 'hashfed serve' does for the writer: the node app plus feedback."""
    db = open_database(node.config.database)
    desk = open_feedback_desk(node.config, node.signer)
    access = FeedbackAccess(desk, ensure_admin_token(node.config.home))
    services = NodeServices(
        db.conn, node.config.origin, ServerConfig(), peer_signer=node.peer_signer, feedback=access
    )
    try:
        async with run_app(create_app(services)) as url:
            yield url
    finally:
        desk.close()
        db.conn.close()


@pytest.fixture
async def partner(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, str]]:
    """A (synced from P and Q, serving feedback), a peer R of A, and A's URL."""
    p, q = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "q", "publisher")
    a, r = make_node(tmp_path, "a"), make_node(tmp_path, "r")
    p_log = p.own_log(clock())
    p_log.publish([NewHash(Kind.PDQ, SHARED, 100, ("ncii",)), NewHash(Kind.MD5, MD5, None)])
    p_log.publish([NewHash(Kind.PDQ, OTHER, 100), NewHash(Kind.PDQ, GONE, 100)])
    p_log.publish([NewHash(Kind.PDQ, SHARED, 100)])  # entry 4: the same photo, another case
    p_log.retract([3])
    q.own_log(clock()).publish([NewHash(Kind.PDQ, SHARED, 100)])
    for origin in (p, q):
        allow(origin, a)
        trust(a, origin)
    allow(a, r)
    async with serve(p) as p_url, serve(q) as q_url:
        use(a, p, p_url)
        use(a, q, q_url)
        for peer, origin in (("p", P), ("q", Q)):
            outcomes = {o.origin: o for o in await sync_node(a, peer_name=peer)}
            assert outcomes[origin].result is not None, outcomes
        assert flags(a, P) == {}, flags(a, P)
        async with serve_writer(a) as url:
            yield a, r, url


async def post(url: str, body: Any, token: str | None, **kw: Any) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = kw.pop("raw", None)
    if data is None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    headers.update(kw.pop("headers", {}))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + FEEDBACK_PATH, data=data, headers=headers) as response,
    ):
        return response.status, await response.json()


def admin(node: Node) -> str:
    return ensure_admin_token(node.config.home)


async def test_feedback_by_hash_lands_on_every_active_entry(
    partner: tuple[Node, Node, str],
) -> None:
    a, _, url = partner
    body = {"kind": "pdq", "hash": SHARED.hex(), "verdict": "blocked", "tags": ["upload"]}
    status, answer = await post(url, body, admin(a))
    assert status == 201, answer
    assert answer == {
        "log": A,
        "verdict": "blocked",
        "tags": ["upload"],
        "feedback": [
            {"origin": P, "index": 0, "entry": 0},
            {"origin": P, "index": 4, "entry": 1},
            {"origin": Q, "index": 0, "entry": 2},
        ],
    }
    records = own_records(a)
    assert [(r.origin, r.index, r.verdict, r.tags) for r in records] == [
        (P, 0, Verdict.BLOCKED, ("upload",)),
        (P, 4, Verdict.BLOCKED, ("upload",)),
        (Q, 0, Verdict.BLOCKED, ("upload",)),
    ]
    # Limited to one origin; upper-case hex and no tags are fine; MD5 too.
    body = {"kind": "pdq", "hash": SHARED.hex().upper(), "origin": Q, "verdict": "false_positive"}
    status, answer = await post(url, body, admin(a))
    assert status == 201 and answer["feedback"] == [{"origin": Q, "index": 0, "entry": 3}]
    body = {"kind": "md5", "hash": MD5.hex(), "verdict": "not_blocked"}
    status, answer = await post(url, body, admin(a))
    assert status == 201 and answer["feedback"] == [{"origin": P, "index": 1, "entry": 4}]
    # By entry.
    body = {"origin": P, "index": 2, "verdict": "pending_review", "tags": ["a", "b"]}
    status, answer = await post(url, body, admin(a))
    assert status == 201 and answer["feedback"] == [{"origin": P, "index": 2, "entry": 5}]
    last = own_records(a)[-1]
    assert (last.origin, last.index, last.verdict, last.tags) == (
        P,
        2,
        Verdict.PENDING_REVIEW,
        ("a", "b"),
    )


async def test_only_the_admin_token_may_publish(partner: tuple[Node, Node, str]) -> None:
    a, r, url = partner
    body = {"origin": P, "index": 0, "verdict": "blocked"}
    for token in (None, "wrong", a.api_token()):
        status, answer = await post(url, body, token)
        assert status == 401 and isinstance(answer["error"], str), (token, answer)
    async with aiohttp.ClientSession() as session:
        peer = await SessionClient(r.peer_signer, A).authorization(session, url)
    status, answer = await post(url, body, peer.split(" ", 1)[1])
    assert status == 403 and "admin token" in answer["error"]
    assert own_records(a) == []


BAD = [
    (400, {"index": 0, "verdict": "blocked"}, "'origin' is required"),
    (400, {"origin": P, "verdict": "blocked"}, "name an entry"),
    (400, {"origin": P, "index": 0}, "'verdict' is required"),
    (400, {"origin": P, "index": 0, "verdict": "great"}, "verdict must be one of"),
    (400, {"origin": P, "index": -1, "verdict": "blocked"}, "'index' must be an integer"),
    (400, {"origin": P, "index": True, "verdict": "blocked"}, "'index' must be an integer"),
    (400, {"origin": P, "index": "0", "verdict": "blocked"}, "'index' must be an integer"),
    (400, {"origin": P, "index": 2**63, "verdict": "blocked"}, "'index' must be an integer"),
    (400, {"origin": 7, "index": 0, "verdict": "blocked"}, "'origin' must be"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": "x"}, "'tags' must be a list"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": ["x"] * 2}, "repeated"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": [""]}, "each tag"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": ["x" * 65]}, "each tag"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": [1]}, "each tag"),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "tags": ["\n"]}, "each tag"),
    (
        400,
        {"origin": P, "index": 0, "verdict": "blocked", "tags": [str(n) for n in range(17)]},
        "at most 16 tags",
    ),
    (400, {"origin": P, "index": 0, "verdict": "blocked", "extra": 1}, "unknown field 'extra'"),
    (400, {"origin": P, "index": 0, "kind": "pdq", "verdict": "blocked"}, "not both"),
    (400, {"kind": "pdq", "verdict": "blocked"}, "name an entry"),
    (400, {"kind": "pdq", "hash": "ab", "verdict": "blocked"}, "64"),
    (400, {"kind": "pdq", "hash": "zz" * 32, "verdict": "blocked"}, "not hexadecimal"),
    (400, {"kind": "sha1", "hash": "ab" * 20, "verdict": "blocked"}, "unknown kind"),
    (400, {"kind": "pdq", "hash": SHARED.hex(), "verdict": "blocked", "origin": A}, "own"),
    (400, {"origin": A, "index": 0, "verdict": "blocked"}, "not this node's own"),
    (404, {"origin": "nowhere.test/x", "index": 0, "verdict": "blocked"}, "holds no log"),
    (404, {"origin": P, "index": 99, "verdict": "blocked"}, "not a hash addition"),
    (404, {"origin": P, "index": 5, "verdict": "blocked"}, "not a hash addition"),  # retraction
    (404, {"kind": "pdq", "hash": "00" * 32, "verdict": "blocked"}, "no active entry"),
    (404, {"kind": "pdq", "hash": GONE.hex(), "verdict": "blocked"}, "no active entry"),
    (404, {"kind": "md5", "hash": MD5.hex(), "origin": Q, "verdict": "blocked"}, "no active entry"),
    (409, {"origin": P, "index": 3, "verdict": "blocked"}, "was retracted"),
]


async def test_bad_requests_get_one_line_and_change_nothing(
    partner: tuple[Node, Node, str],
) -> None:
    a, _, url = partner
    token = admin(a)
    for want, body, words in BAD:
        status, answer = await post(url, body, token)
        assert (status, list(answer)) == (want, ["error"]), (body, answer)
        assert words in answer["error"] and "\n" not in answer["error"], (body, answer)
    raw = [
        (400, b"{", {}, "not valid JSON"),
        (400, b"[1]", {}, "must be a JSON object"),
        (400, b"[" * 5000, {}, "nested too deeply"),
        (400, b"\xff", {}, "not valid JSON"),
        (415, b"{}", {"Content-Type": "text/plain"}, "JSON body"),
        (413, b"{" + b" " * MAX_FEEDBACK_BODY + b"}", {}, "larger than"),
    ]
    for want, data, headers, words in raw:
        headers = {"Content-Type": "application/json", **headers}
        status, answer = await post(url, None, token, raw=data, headers=headers)
        assert status == want and words in answer["error"], (data[:20], answer)
    assert own_records(a) == []


async def test_a_retraction_applied_since_the_check_refuses_the_feedback(
    partner: tuple[Node, Node, str],
) -> None:
    """The targets are checked again inside the append's transaction: a retraction that
    a sync applied between the lookup and the append refuses the batch, writes nothing."""
    a, _r, _url = partner
    conn = a.db.conn
    target = entry_target(conn, P, 0)  # active now
    p_log = logstore.get_log(conn, P)
    assert p_log is not None
    with transaction(a.db) as tx:  # as the sync thread would, between the two
        tx.execute("UPDATE bank SET status = 'retracted' WHERE log_id = ? AND idx = 0", (p_log.id,))
    before = own_records(a)
    with pytest.raises(InactiveTarget, match="retracted"):
        publish(a.own_log(clock()), [target], Verdict.BLOCKED)
    assert own_records(a) == before
