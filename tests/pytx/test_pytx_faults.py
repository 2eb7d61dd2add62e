"""The real threatexchange CLI behind a tampering relay, and against a forked log.

The publisher is a real node app on loopback (synchelpers.serve); the relay is
the real HTTP server of synchelpers that rewrites what the node answers. The
platform fetches through the relay with the real ``threatexchange`` CLI. A
fetch that meets a fault fails, and the state it had stays byte for byte.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import msgpack
import pytest
from aiohttp import web
from hashfed.node.home import Node, init_node, open_node
from hashfed.node.services.ownlog import NewHash, _Batch
from hashfed.protocol.records import Kind
from pytxhelpers import ORIGIN, OTHER_PHOTO, PHOTO, THIRD_PHOTO, Platform, pdq_of, platform
from synchelpers import Relay, clock, is_bundle, map_bundle, pdq_hashes, serve

pytestmark = pytest.mark.skipif(not PHOTO.exists(), reason="shared vectors not present")


def make_publisher(tmp_path: Path) -> Node:
    return init_node(tmp_path / "p", ORIGIN, "publisher")


def publish_photos(node: Node, *photos: Path, quality: int = 100) -> None:
    hashes = [NewHash(Kind.PDQ, bytes.fromhex(pdq_of(p)), quality, ("ncii",)) for p in photos]
    node.own_log(clock()).publish(hashes)


async def run(call, *args):  # type: ignore[no-untyped-def]
    """Runs a blocking CLI call while the servers keep serving on this loop."""
    return await asyncio.to_thread(call, *args)


def flip_last(items: list[bytes]) -> list[bytes]:
    last = bytearray(items[-1])
    last[len(last) // 2] ^= 0x01
    return [*items[:-1], bytes(last)]


async def flip_entries(request: web.Request, status: int, body: bytes) -> bytes:
    return map_bundle(body, flip_last) if is_bundle(request) and status == 200 else body


async def fetch_refused(tx: Platform, *expected: str) -> subprocess.CompletedProcess[str]:
    before = tx.state_file.read_bytes()
    done = await run(tx.fetch)
    assert done.returncode != 0, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    assert tx.state_file.read_bytes() == before
    return done


async def test_tampered_entry_fails_and_the_state_stays(tmp_path: Path) -> None:
    p = make_publisher(tmp_path)
    publish_photos(p, PHOTO, THIRD_PHOTO)  # two: pytx 1.2.17 loses a one-hash PDQ index
    async with serve(p, public_logs=(ORIGIN,)) as url:
        relay = Relay(url)
        async with relay.running() as relay_url:
            tx = platform(tmp_path, relay_url, p.signer.vkey())
            assert (await run(tx.fetch)).returncode == 0
            assert await run(tx.matches, PHOTO)
            publish_photos(p, OTHER_PHOTO)

            relay.tamper = flip_entries  # the state file, and so the matches, stay
            await fetch_refused(tx, "the entries it serves", "failed to fetch")

            relay.tamper = None  # an honest answer again: the fetch completes
            assert (await run(tx.fetch)).returncode == 0
            assert tx.records() == sorted(map(pdq_of, (PHOTO, THIRD_PHOTO, OTHER_PHOTO)))


async def test_fork_fails_with_evidence_and_the_state_stays(tmp_path: Path) -> None:
    """The same key signs two histories after the photo: one the size of the tree the
    platform holds, and one larger."""
    p = make_publisher(tmp_path)
    publish_photos(p, PHOTO, THIRD_PHOTO)
    p.close()
    shutil.copytree(tmp_path / "p", tmp_path / "fork")
    p, fork = open_node(tmp_path / "p"), open_node(tmp_path / "fork")
    publish_photos(p, OTHER_PHOTO)
    fork.own_log(clock()).publish(pdq_hashes(300, seed=9))  # the same key, another history
    async with (
        serve(p, public_logs=(ORIGIN,)) as url,
        serve(fork, public_logs=(ORIGIN,)) as fork_url,
    ):
        relay = Relay(url)
        async with relay.running() as relay_url:
            tx = platform(tmp_path, relay_url, p.signer.vkey())
            assert (await run(tx.fetch)).returncode == 0

            relay.upstream = fork_url  # the relay now serves the fork
            done = await fetch_refused(tx, "signed two inconsistent checkpoints")
            assert "hashfed.org/equivocation@v1" in done.stderr  # the evidence, logged
    fork.close()
    p.close()


async def test_committed_invalid_entries_are_skipped(tmp_path: Path) -> None:
    p = make_publisher(tmp_path)
    publish_photos(p, PHOTO)
    publish_photos(p, THIRD_PHOTO, quality=60)  # valid for the publisher, below the 80 set below
    unknown = msgpack.packb({"type": "vote", "v": 1, "x": 1})  # a record type pytx cannot know
    p.own_log(clock())._append(_Batch(entries=[unknown]))
    publish_photos(p, OTHER_PHOTO)
    async with serve(p, public_logs=(ORIGIN,)) as url:
        tx = platform(tmp_path, url, p.signer.vkey(), None, "--min-pdq-quality", "80")
        done = await run(tx.fetch)
    assert done.returncode == 0, done.stderr
    assert "hashfed entry 1: skipped: pdq quality 60 is below" in done.stderr
    assert "hashfed entry 2: skipped: record type 'vote'" in done.stderr
    assert tx.records() == sorted([pdq_of(PHOTO), pdq_of(OTHER_PHOTO)])
    p.close()
