"""Match over a synced bank: the CLI and POST /v1/match on real loopback nodes.

A publisher P publishes; partner A trusts it, syncs, and matches from the CLI
and over HTTP. After P retracts and A syncs, the same lookups find nothing.
A's feedback, synced back by P, shows in P's match output and status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from click.testing import CliRunner
from hashfed.node.cli.main import main
from hashfed.node.config import ServerConfig
from hashfed.node.home import Node
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.match import MATCH_PATH, MAX_BATCH, MAX_BODY
from hashfed.node.match.bank import BankIndex
from hashfed.node.services.ownlog import NewHash
from hashfed.node.store.db import open_database
from hashfed.protocol.records import Kind
from hashfed.sync.auth import SessionClient
from media import movie
from synchelpers import allow, clock, make_node, origin_of, run_app, serve, sync, trust, use

P = origin_of("p")
A = origin_of("a")

RNG = np.random.default_rng(11)
PDQ = [RNG.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(5)]
MD5 = RNG.integers(0, 256, 16, dtype=np.uint8).tobytes()


def near(h: bytes, bits: int) -> bytes:
    a = np.frombuffer(h, dtype=np.uint8).copy()
    for b in range(bits):
        a[b // 8] ^= 1 << (b % 8)
    return a.tobytes()


@asynccontextmanager
async def serve_matching(node: Node) -> AsyncIterator[tuple[str, BankIndex, Any]]:
    """Serves node with a match index, as 'hashfed serve' does; yields (url, index, conn)."""
    db = open_database(node.config.database)
    index = BankIndex.load(db.conn)
    app = create_app(
        NodeServices(
            db.conn,
            node.config.origin,
            ServerConfig(),
            match_index=index,
            api_token=node.api_token(),
        )
    )
    async with run_app(app) as url:
        yield url, index, db.conn
    db.conn.close()


def cli(node: Node, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--dir", str(node.config.home), *args])
    return result


async def post(url: str, body: Any, token: str | None, raw: bytes | None = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + MATCH_PATH, data=data, headers=headers) as r,
    ):
        return r.status, await r.json()


def batch(*items: tuple[str, bytes]) -> dict[str, Any]:
    return {"hashes": [{"kind": k, "hash": h.hex()} for k, h in items]}


async def test_match_cli_and_http_then_retraction(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    log = p.own_log(clock())
    log.publish([NewHash(Kind.PDQ, h, 100, ("ncii",)) for h in PDQ])
    log.publish([NewHash(Kind.MD5, MD5, None, ("ncii", "test"))])  # entry 5
    allow(p, a)
    trust(a, p)
    async with serve(p) as p_url, serve_matching(a) as (a_url, index, conn):
        use(a, p, p_url)
        outcome = await sync(a)
        assert outcome.ok and outcome.result.new_size == 6
        index.update_from_sync(conn, outcome.result)
        token = a.api_token()

        # CLI: a near PDQ hash (distance 3) and the exact MD5.
        r = cli(a, "match", near(PDQ[2], 3).hex(), MD5.hex(), "--json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert [(m["origin"], m["index"], m["distance"]) for m in doc[0]["matches"]] == [(P, 2, 3)]
        assert doc[0]["matches"][0]["labels"] == ["ncii"]
        assert doc[0]["matches"][0]["added"] == 1_700_000_000
        assert [(m["origin"], m["index"], m["distance"]) for m in doc[1]["matches"]] == [(P, 5, 0)]
        table = cli(a, "match", PDQ[0].hex())
        assert table.exit_code == 0 and P in table.output and "2023-11-14" in table.output

        # HTTP with the local API token.
        status, body = await post(a_url, batch(("pdq", near(PDQ[2], 3)), ("md5", MD5)), token)
        assert status == 200
        (first, second) = body["results"]
        assert first["kind"] == "pdq" and first["hash"] == near(PDQ[2], 3).hex()
        assert [(m["origin"], m["index"], m["distance"]) for m in first["matches"]] == [(P, 2, 3)]
        assert first["matches"][0]["feedback"]["blocked"] == 0
        assert [(m["index"], m["labels"]) for m in second["matches"]] == [(5, ["ncii", "test"])]

        # P retracts entries 2 and 5; A syncs. Before the index hears of it, the bank
        # check already hides them; after update_from_sync the index no longer holds them.
        log.retract([2, 5])
        outcome = await sync(a)
        assert sorted(outcome.result.retracted_indices) == [2, 5]
        status, body = await post(a_url, batch(("pdq", PDQ[2]), ("md5", MD5)), token)
        assert status == 200 and [x["matches"] for x in body["results"]] == [[], []]
        before = len(index)
        index.update_from_sync(conn, outcome.result)
        assert len(index) == before - 2
        status, body = await post(a_url, batch(("pdq", PDQ[2]), ("md5", MD5)), token)
        assert status == 200 and [x["matches"] for x in body["results"]] == [[], []]
        r = cli(a, "match", PDQ[2].hex(), MD5.hex())
        assert r.exit_code == 0
        assert r.output.splitlines() == [f"{PDQ[2].hex()}: no match", f"{MD5.hex()}: no match"]
        # The other entries still match.
        status, body = await post(a_url, batch(("pdq", PDQ[3])), token)
        assert [m["index"] for m in body["results"][0]["matches"]] == [3]


async def test_partner_feedback_reaches_the_publisher(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    p.own_log(clock()).publish([NewHash(Kind.PDQ, h, 100, ("ncii",)) for h in PDQ])
    trust(a, p)
    trust(p, a, role="partner")
    async with serve(p) as p_url, serve(a) as a_url:
        # Each is the other's peer: it syncs from it and may read its logs.
        use(a, p, p_url)
        use(p, a, a_url)
        assert (await sync(a)).ok
        r = cli(a, "feedback", P, "1", "--verdict", "blocked", "--tag", "upload")
        assert r.exit_code == 0, r.output
        assert cli(a, "feedback", P, "1", "--verdict", "false_positive").exit_code == 0
        # Refused: an entry A does not hold, a log A does not hold, A's own log, a bad verdict.
        r = cli(a, "feedback", P, "99", "--verdict", "blocked")
        assert r.exit_code == 1 and "not a hash addition this node holds" in r.output
        r = cli(a, "feedback", "nowhere.test/x", "0", "--verdict", "blocked")
        assert r.exit_code == 1 and "holds no log" in r.output
        r = cli(a, "feedback", A, "0", "--verdict", "blocked")
        assert r.exit_code == 1 and "own" in r.output
        assert cli(a, "feedback", P, "1", "--verdict", "great").exit_code == 2

        outcome = await sync(p)
        assert outcome.ok and outcome.result.applied == 2
    r = cli(p, "match", PDQ[1].hex(), "--json")
    assert r.exit_code == 0, r.output
    (match,) = json.loads(r.output)[0]["matches"]
    assert (match["origin"], match["index"]) == (P, 1)
    assert match["feedback"]["blocked"] == 1 and match["feedback"]["false_positive"] == 1
    assert "blocked:1 false_positive:1" in cli(p, "match", PDQ[1].hex()).output
    status = {row["origin"]: row for row in json.loads(cli(p, "status", "--json").stdout)}
    assert status[P]["feedback"] == 2 and status[A]["feedback"] == 0
    assert "feedback" in cli(p, "status", "--wide").output.splitlines()[1]
    # A sees its own feedback too.
    r = cli(a, "match", PDQ[1].hex(), "--json")
    assert json.loads(r.output)[0]["matches"][0]["feedback"]["blocked"] == 1


async def test_match_api_auth_and_bad_input(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    p.own_log(clock()).publish([NewHash(Kind.PDQ, h, 100, ("ncii",)) for h in PDQ])
    reader, narrow = make_node(tmp_path, "r"), make_node(tmp_path, "n")
    allow(p, reader)
    allow(p, narrow, read=("other.test/log",))
    good = batch(("pdq", PDQ[0]))
    async with serve_matching(p) as (url, _, _):
        token = p.api_token()
        assert (await post(url, good, None))[0] == 401
        flipped = ("y" if token[0] == "x" else "x") + token[1:]  # never the token itself
        assert (await post(url, good, flipped))[0] == 401
        assert (await post(url, good, token + "x"))[0] == 401
        status, body = await post(url, good, token)
        assert status == 200 and [m["index"] for m in body["results"][0]["matches"]] == [0]
        # A peer session token works too; a peer sees only origins it may read.
        async with aiohttp.ClientSession() as session:
            peer_auth = await SessionClient(reader.peer_signer, P).authorization(session, url)
            narrow_auth = await SessionClient(narrow.peer_signer, P).authorization(session, url)
        status, body = await post(url, good, peer_auth.split(" ", 1)[1])
        assert status == 200 and [m["index"] for m in body["results"][0]["matches"]] == [0]
        status, body = await post(url, good, narrow_auth.split(" ", 1)[1])
        assert status == 200 and body["results"][0]["matches"] == []
        # The API token opens nothing else.
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/logs", headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            assert r.status == 401

        pdq_hex = PDQ[0].hex()
        cases: list[tuple[Any, int | None, str]] = [
            (b"{not json", None, "not JSON"),
            ([1], None, "JSON object"),
            ({"hashes": []}, None, "empty"),
            ({"hashes": "x"}, None, "must be a list"),
            ({"hashes": [{"kind": "pdq", "hash": pdq_hex}], "x": 1}, None, "exactly one key"),
            (batch(*[("pdq", PDQ[0])] * (MAX_BATCH + 1)), None, "more than 1000"),
            ({"hashes": [{"kind": "pdq", "hash": pdq_hex}, {"kind": "sha1", "hash": "ab"}]}, 1,
             "hashes[1]: unknown kind 'sha1'"),
            ({"hashes": [{"kind": "pdq", "hash": pdq_hex}] * 2 + [{"kind": "pdq",
              "hash": "zz" * 32}]}, 2, "hashes[2]: pdq hash 'zzzz"),
            ({"hashes": [{"kind": "md5", "hash": pdq_hex}]}, 0,
             "hashes[0]: md5 hash has 64 hex characters, want 32"),
            ({"hashes": [{"kind": "pdq", "hash": "ab" * 31}]}, 0, "want 64"),
            ({"hashes": [{"kind": "pdq", "hash": 5}]}, 0, "hex string"),
            ({"hashes": [{"kind": "pdq"}]}, 0, 'exactly "kind" and "hash"'),
            ({"hashes": ["ab"]}, 0, 'exactly "kind" and "hash"'),
        ]  # fmt: skip
        for body_in, item, message in cases:
            raw = body_in if isinstance(body_in, bytes) else None
            status, body = await post(url, body_in, token, raw=raw)
            assert status == 400, (body_in, body)
            assert body["item"] == item and message in body["error"], body
        status, body = await post(url, None, token, raw=b" " * (MAX_BODY + 1))
        assert status == 413


def test_match_cli_bad_arguments_and_files(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    p.close()
    r = cli(p, "match", "abcd")
    assert r.exit_code == 2 and "4 hex characters" in r.output
    r = cli(p, "match", "--kind", "md5", PDQ[0].hex())
    assert r.exit_code == 2 and "want 32" in r.output
    r = cli(p, "match", "--kind", "sha1", PDQ[0].hex())
    assert r.exit_code == 2
    r = cli(p, "match", str(tmp_path / "missing.jpg"))
    assert r.exit_code == 1 and "missing.jpg" in r.output
    video = tmp_path / "clip.mp4"
    video.write_bytes(movie(b"mp42"))
    r = cli(p, "match", str(video), "--json")
    assert r.exit_code == 0, r.output
    (doc,) = json.loads(r.output)
    assert doc["kind"] == "md5" and doc["query"] == str(video) and doc["matches"] == []


VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "pdq"


def test_match_photo_with_dihedral(tmp_path: Path) -> None:
    rotated = VECTORS / "images" / "dih" / "bridge-2-rotate-90.jpg"
    if not rotated.exists():
        pytest.skip("shared PDQ vectors not present")
    p = make_node(tmp_path, "p", "publisher")
    original = bytes.fromhex("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22")
    p.own_log(clock()).publish([NewHash(Kind.PDQ, original, 100, ("ncii",))])
    p.close()
    r = cli(p, "match", str(rotated), "--json")
    assert r.exit_code == 0 and json.loads(r.output)[0]["matches"] == []
    r = cli(p, "match", str(rotated), "--dihedral", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert len(doc) == 8 and doc[0]["query"] == str(rotated)
    hits = [(q["query"], m["origin"], m["index"]) for q in doc for m in q["matches"]]
    assert len(hits) == 1 and hits[0][1:] == (origin_of("p"), 0) and "[rotate" in hits[0][0]
