"""hashfed.sync.follow: a store-free client proves every bundle before handing it over.

A real publisher node serves its log on loopback; the client holds only a
compact range. Tampering goes through the real relay of synchelpers.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.home import open_node
from hashfed.protocol.evidence import check_evidence
from hashfed.protocol.merkle import leaf_hash, root_of
from hashfed.protocol.tiles import split_bundle
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList
from hashfed.sync.errors import Equivocation, PeerFault
from hashfed.sync.fetch import HttpFetcher
from hashfed.sync.follow import Behind, CompactRange, VerifiedBundle, follow
from synchelpers import Relay, is_bundle, make_node, map_bundle, origin_of, publish, serve

P = origin_of("p")


def test_compact_range_matches_the_rfc6962_root() -> None:
    rng = random.Random(7)
    for n in (0, 1, 2, 3, 255, 256, 257, 511, 513, 1000, 66000):
        leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
        tree, pos = CompactRange(), 0
        while pos < n:
            step = rng.choice((1, 3, 256, 300, 700))
            tree, pos = tree.extend(leaves[pos : pos + step]), pos + step
        assert (tree.size, tree.root()) == (n, root_of(leaves))
        assert len(tree.hashes) == n.bit_count()


def test_compact_range_refuses_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="holds 2 hashes, not 1"):
        CompactRange(3, (b"\0" * 32,))


async def collect(
    url: str, verifier_key: str, tree: CompactRange | None = None, note: str = ""
) -> list[VerifiedBundle]:
    tree = tree or CompactRange()
    async with aiohttp.ClientSession() as session:
        fetcher = HttpFetcher(session, "peer", url)
        return [b async for b in follow(fetcher, P, parse_verifier(verifier_key), tree, note)]


def entries_of(node_dir: Path) -> list[bytes]:
    with open_node(node_dir) as node:
        rows = node.db.conn.execute(
            "SELECT data FROM bundles WHERE log_id = (SELECT id FROM logs WHERE origin = ?)"
            " ORDER BY idx",
            (P,),
        )
        return [e for (data,) in rows for e in split_bundle(data, "bundle")]


async def test_follows_from_empty_then_resumes(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 300)
    vkey = p.signer.vkey()
    async with serve(p, public_logs=(P,)) as url:
        first = await collect(url, vkey)
        assert [(b.start, len(b.entries)) for b in first] == [(0, 256), (256, 44)]
        assert all(len(b.contents) == len(b.entries) for b in first)
        last = first[-1]
        assert last.tree.size == 300 and last.tree.root() == last.checkpoint.root
        publish(p, 500, seed=2)
        more = await collect(url, vkey, last.tree, last.note)
        assert [(b.start, len(b.entries)) for b in more] == [(300, 212), (512, 256), (768, 32)]
        assert more[-1].tree.root() == more[-1].checkpoint.root
        # Up to date: nothing more.
        assert await collect(url, vkey, more[-1].tree, more[-1].note) == []
        entries = [e for b in first + more for e in b.entries]
        assert entries == entries_of(tmp_path / "p")
        ahead = CompactRange().extend([leaf_hash(e) for e in entries] + [b"\1" * 32])
        with pytest.raises(Behind, match=r"older checkpoint \(800 < 801\)"):
            await collect(url, vkey, ahead)


async def test_a_tampered_bundle_is_never_yielded(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 600)

    def flip_last(items: list[bytes]) -> list[bytes]:
        last = bytearray(items[-1])
        last[len(last) // 2] ^= 1
        return [*items[:-1], bytes(last)]

    async def tamper(request, status, body):  # type: ignore[no-untyped-def]
        # Only the second bundle: the first is yielded, the fetch stops at the second.
        if is_bundle(request) and status == 200 and "/001" in request.path:
            return map_bundle(body, flip_last)
        return body

    async with serve(p, public_logs=(P,)) as url:
        relay = Relay(url)
        relay.tamper = tamper
        async with relay.running() as relay_url, aiohttp.ClientSession() as session:
            fetcher = HttpFetcher(session, "relay", relay_url)
            got: list[VerifiedBundle] = []
            with pytest.raises(PeerFault, match="relay: the entries it serves"):
                verifier = parse_verifier(p.signer.vkey())
                async for bundle in follow(fetcher, P, verifier, CompactRange()):
                    got.append(bundle)
            assert [b.start for b in got] == [0]
            assert got[0].entries == entries_of(tmp_path / "p")[:256]


@pytest.mark.parametrize("honest_extra", [10, 100])
async def test_a_fork_raises_equivocation_with_evidence(tmp_path: Path, honest_extra: int) -> None:
    """The client holds a fork's tree of 310; the honest log of 310 or 400 does not extend it."""
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 300)
    vkey = p.signer.vkey()
    async with serve(p, public_logs=(P,)) as url:
        held = (await collect(url, vkey))[-1]
    p.close()
    shutil.copytree(tmp_path / "p", tmp_path / "fork")
    p, fork = open_node(tmp_path / "p"), open_node(tmp_path / "fork")
    publish(fork, 10, seed=3)  # the same key signs two different extensions of 300
    publish(p, honest_extra, seed=4)
    async with serve(fork, public_logs=(P,)) as fork_url:
        fork_head = (await collect(fork_url, vkey, held.tree, held.note))[-1]
    async with serve(p, public_logs=(P,)) as url:
        with pytest.raises(Equivocation, match="signed two inconsistent checkpoints") as info:
            await collect(url, vkey, fork_head.tree, fork_head.note)
    evidence = info.value.evidence
    assert evidence is not None
    a, b = check_evidence(evidence, VerifierList(parse_verifier(vkey)), P)
    assert (a.size, b.size) == (310, 300 + honest_extra) and a.root != b.root
    fork.close()
    p.close()
