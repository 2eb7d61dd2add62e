"""A tampering relay in front of a real node: every fault is detected and nothing is applied.

The relay is a real HTTP server that forwards to the honest node (so peer
authentication works through it) and rewrites what comes back. Each test first
syncs part of the log honestly, so the syncing node holds state that must not
change, then syncs through the relay.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from hashfed.node.cli.main import main as cli
from hashfed.node.home import Node, open_node
from hashfed.protocol.evidence import check_evidence, parse_evidence
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList
from hashfed.sync.fetch import MAX_BUNDLE_BYTES, Limits
from synchelpers import (
    Relay,
    allow,
    bank,
    is_bundle,
    is_tile,
    make_node,
    map_bundle,
    origin_of,
    publish,
    serve,
    snapshot,
    staged_count,
    sync,
    trust,
    use,
)

P = origin_of("p")
FIRST = 300  # entries B holds before the tampered sync (crosses a bundle boundary)
MORE = 400  # entries P adds afterwards, offered through the relay


@dataclass
class Net:
    p: Node
    b: Node
    relay: Relay


@asynccontextmanager
async def network(tmp_path: Path, first: int = FIRST, more: int = MORE) -> AsyncIterator[Net]:
    """P publishes first entries, B syncs them honestly, P publishes more; B's peer
    "relay" forwards to P (and tampers once a test sets relay.tamper)."""
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    if first:
        publish(p, first)
    allow(p, b)
    trust(b, p)
    async with serve(p) as p_url:
        relay = Relay(p_url)
        async with relay.running() as relay_url:
            use(b, p, relay_url, name="relay")
            if first:
                outcome = await sync(b)
                assert outcome.ok and outcome.result.new_size == first
            if more:
                publish(p, more, seed=2)
            yield Net(p, b, relay)


async def refused(net: Net, *expected: str, limits: Limits | None = None) -> str:
    """Syncs B through the relay; asserts it failed naming the problem and changed nothing."""
    before = snapshot(net.b, P)
    outcome = await sync(net.b, "relay", limits=limits)
    assert not outcome.ok and outcome.result is None
    assert outcome.errors, "a failed sync must say why"
    error = " ".join(outcome.errors)
    for text in expected:
        assert text in error, error
    assert snapshot(net.b, P) == before
    last_error = net.b.db.conn.execute("SELECT last_error FROM sync_state").fetchone()[0]
    assert last_error == outcome.errors[-1]
    return error


async def recovers(net: Net) -> None:
    """Once the relay stops tampering, B syncs everything and matches P."""
    net.relay.tamper = None
    outcome = await sync(net.b, "relay")
    assert outcome.ok, outcome.errors
    assert bank(net.b, P) == bank(net.p, P)
    assert staged_count(net.b) == 0


def on_bundle(change):
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes:
        return map_bundle(body, change) if is_bundle(request) and status == 200 else body

    return tamper


def flip(items: list[bytes]) -> list[bytes]:
    target = bytearray(items[-1])
    target[len(target) // 2] ^= 0x01
    return [*items[:-1], bytes(target)]


@pytest.mark.parametrize("first", [0, FIRST])
async def test_flipped_byte_in_entry(tmp_path: Path, first: int) -> None:
    async with network(tmp_path, first=first) as net:
        net.relay.tamper = on_bundle(flip)
        error = await refused(net, "relay:")
        assert "entries it serves" in error
        assert staged_count(net.b) == 0  # bad staged data is dropped
        await recovers(net)


async def test_dropped_entry(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        net.relay.tamper = on_bundle(lambda items: items[:-1])
        await refused(net, "relay: bundle", "entries")
        await recovers(net)


async def test_dropped_entry_in_a_full_bundle_shifted(tmp_path: Path) -> None:
    # Drop one entry but keep the count right by repeating another: the root catches it.
    async with network(tmp_path) as net:
        net.relay.tamper = on_bundle(lambda items: [*items[:3], *items[4:], items[-1]])
        await refused(net, "relay:", "entries it serves")
        await recovers(net)


async def test_reordered_entries(tmp_path: Path) -> None:
    def swap(items: list[bytes]) -> list[bytes]:
        items = list(items)
        items[-1], items[-2] = items[-2], items[-1]
        return items

    async with network(tmp_path) as net:
        net.relay.tamper = on_bundle(swap)
        await refused(net, "relay:", "entries it serves are not the ones in the signed tree")
        await recovers(net)


async def test_tampered_content_bundle(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes:
        if "/content/" in request.path and status == 200:
            return map_bundle(body, flip)
        return body

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "does not match its commitment")
        assert staged_count(net.b) == 0
        await recovers(net)


async def test_rolled_back_checkpoint_is_ignored(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        assert (await sync(net.b, "relay")).result.new_size == FIRST + MORE
        old = net.p.db.conn.execute(
            "SELECT note FROM checkpoints WHERE size = ?", (FIRST,)
        ).fetchone()[0]

        async def rollback(request: web.Request, status: int, body: bytes) -> bytes:
            return old.encode() if request.path.endswith("/checkpoint") else body

        net.relay.tamper = rollback
        before = snapshot(net.b, P)
        outcome = await sync(net.b, "relay")
        assert outcome.ok and outcome.result.status == "peer-behind"
        assert f"older checkpoint ({FIRST} < {FIRST + MORE})" in outcome.result.details[0]
        assert snapshot(net.b, P) == before
        halted = net.b.db.conn.execute("SELECT halted FROM logs WHERE origin = ?", (P,))
        assert halted.fetchone()[0] == 0


async def test_forged_checkpoint_signature(tmp_path: Path) -> None:
    async def forge(request: web.Request, status: int, body: bytes) -> bytes:
        if request.path.endswith("/checkpoint"):
            text = body.decode().split("\n")
            text[1] = str(int(text[1]) + 1)  # claim a bigger tree under the same signature
            return "\n".join(text).encode()
        return body

    async with network(tmp_path) as net:
        net.relay.tamper = forge
        await refused(net, "relay: the checkpoint it serves", "does not verify")


async def test_truncated_tile_in_the_blame_path(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes:
        if is_bundle(request):
            return map_bundle(body, flip)
        if is_tile(request):
            return body[:-5]
        return body

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:", "tiles")
        assert any(is_tile_path(path) for path in net.relay.paths), net.relay.paths
        await recovers(net)


async def test_tile_short_by_whole_hashes(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes:
        if is_bundle(request):
            return map_bundle(body, flip)
        if is_tile(request):
            return body[:-32]
        return body

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:")
        assert any(is_tile_path(path) for path in net.relay.paths)


def is_tile_path(path: str) -> bool:
    return "/tile/" in path and "/tile/entries/" not in path


async def test_oversized_bundle_streamed(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes | web.StreamResponse:
        if not is_bundle(request):
            return body
        response = web.StreamResponse()  # chunked: no Content-Length to check up front
        await response.prepare(request)
        chunk = b"\0" * 65536
        try:
            for _ in range(MAX_BUNDLE_BYTES // len(chunk) + 2):
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:", f"over the {MAX_BUNDLE_BYTES}-byte limit")


async def test_oversized_bundle_declared(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes | web.StreamResponse:
        if not is_bundle(request):
            return body
        response = web.StreamResponse()
        response.content_length = MAX_BUNDLE_BYTES + 1
        await response.prepare(request)
        with suppress(ConnectionError, RuntimeError):
            await response.write(body)
        request.transport.close()
        return response

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:", f"over the {MAX_BUNDLE_BYTES} limit")


async def test_slow_drip(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes | web.StreamResponse:
        if not is_bundle(request):
            return body
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(request)
        try:
            for i in range(0, len(body), 4):
                await response.write(body[i : i + 4])
                await asyncio.sleep(0.5)  # the fault under test: longer than Limits.read
        except (ConnectionError, RuntimeError):
            pass
        return response

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:", "timed out", limits=Limits(read=0.2))


async def test_wrong_content_length(tmp_path: Path) -> None:
    async def tamper(request: web.Request, status: int, body: bytes) -> bytes | web.StreamResponse:
        if not is_bundle(request):
            return body
        response = web.StreamResponse()
        response.content_length = len(body) + 100
        await response.prepare(request)
        await response.write(body)
        request.transport.close()  # and close before the promised bytes
        return response

    async with network(tmp_path) as net:
        net.relay.tamper = tamper
        await refused(net, "relay:", "truncated or malformed body")
        await recovers(net)


async def test_peer_error_status(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        net.relay.fail = True
        await refused(net, "relay: GET", "HTTP 500")


# -- equivocation ------------------------------------------------------------------------------


@asynccontextmanager
async def forked(tmp_path: Path, fork_extra: int) -> AsyncIterator[tuple[Node, Node, str]]:
    """P and a copy of P (same key) that diverge after 300 shared entries; B holds P's 500.

    Yields (p, b, relay peer name); B's peer "honest" is P, "relay" forwards to the fork.
    """
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 300)
    allow(p, b)
    shutil.copytree(tmp_path / "p", tmp_path / "fork")
    fork = open_node(tmp_path / "fork")
    publish(p, 200, seed=2)
    publish(fork, fork_extra, seed=3)  # the same key signs a different history
    trust(b, p)
    async with serve(p) as p_url, serve(fork) as fork_url:
        relay = Relay(fork_url)
        async with relay.running() as relay_url:
            use(b, p, p_url, name="honest")
            # The fork has P's peer key too (a copy), which B already knows as "honest":
            # add_peer refuses a second peer with one key, so insert the row directly.
            b.db.conn.execute(
                "INSERT INTO peers (name, url, vkey) VALUES (?, ?, ?)",
                ("relay", relay_url, p.peer_signer.vkey()),
            )
            outcome = await sync(b, "honest")
            assert outcome.ok and outcome.result.new_size == 500
            yield p, b, "relay"
    fork.close()


def check_equivocation(b: Node, p: Node, before: tuple, error: str) -> None:
    assert "signed two inconsistent checkpoints" in error
    assert snapshot(b, P) == before
    rows = b.db.conn.execute("SELECT detail, text FROM evidence").fetchall()
    assert len(rows) == 1
    evidence = parse_evidence(rows[0][1])
    a_cp, b_cp = check_evidence(evidence, VerifierList(parse_verifier(p.signer.vkey())), P)
    assert a_cp.root != b_cp.root or a_cp.size != b_cp.size
    assert b.db.conn.execute("SELECT halted FROM logs WHERE origin = ?", (P,)).fetchone()[0] == 1

    # hashfed status exits 2 (CRITICAL) and shows the evidence.
    result = CliRunner().invoke(cli, ["--dir", str(b.config.home), "status"])
    assert result.exit_code == 2, result.output
    assert "EVIDENCE for " + P in result.output
    assert rows[0][1].split("\n")[0] in result.output


@pytest.mark.parametrize("fork_extra", [400, 200, 100])
async def test_forked_checkpoint_halts_the_origin(tmp_path: Path, fork_extra: int) -> None:
    """A fork larger than, as large as, and smaller than B's checkpoint is equivocation."""
    async with forked(tmp_path, fork_extra) as (p, b, relay):
        before = snapshot(b, P)
        outcome = await sync(b, relay)
        assert not outcome.ok
        check_equivocation(b, p, before, " ".join(outcome.errors))

        # Halted: even the honest peer is refused now, and nothing changes.
        publish(p, 10, seed=4)
        outcome = await sync(b, "honest")
        assert not outcome.ok and "halted" in outcome.errors[0]
        assert snapshot(b, P) == before
        outcome = await sync(b)  # every peer
        assert not outcome.ok and snapshot(b, P) == before


async def test_a_bad_peer_is_skipped_for_an_honest_one(tmp_path: Path) -> None:
    async with network(tmp_path) as net, serve(net.p) as p_url:
        # P again, under a name tried after "relay"; add_peer refuses a second peer with
        # one key, so the row is inserted directly.
        net.b.db.conn.execute(
            "INSERT INTO peers (name, url, vkey) VALUES ('zz-honest', ?, ?)",
            (p_url, net.p.peer_signer.vkey()),
        )
        net.relay.tamper = on_bundle(flip)
        outcome = await sync(net.b)
        assert outcome.ok and outcome.result.peer == "zz-honest"
        assert outcome.result.new_size == FIRST + MORE
        assert len(outcome.errors) == 1 and outcome.errors[0].startswith("relay: ")
        assert bank(net.b, P) == bank(net.p, P)
        row = net.b.db.conn.execute("SELECT last_peer, last_error, failures FROM sync_state")
        assert row.fetchone() == ("zz-honest", None, 0)
