"""The calls HMA (Open Media Match) makes to an exchange, in its order, against a real node.

HMA is not on PyPI, so this test replays what its fetcher and Postgres storage
do with an exchange (OpenMediaMatch/background_tasks/fetcher.py and
storage/postgres/impl.py at facebook/ThreatExchange@baefb4e), with the real pytx:

* the collab config and the credentials are stored as JSON (pytx's
  ``dataclass_json``) and loaded back; the client comes from ``for_collab``
  inside ``CredentialHelper.set_default``;
* the stored checkpoint is loaded from JSON, checked with ``is_stale`` and
  passed to ``fetch_iter``; each delta's ``get_progress_timestamp`` must not
  rewind;
* deltas are merged (``dict.update``) and committed every 5,000 updates (or
  60 s), and at the end: a commit checks that the stored checkpoint still
  equals the one the fetch started from, converts each record on its own
  with ``naive_convert_to_signal_type`` (a record that converts to nothing, or
  None, deletes the stored one), pickles the records, and stores the new
  checkpoint as JSON;
* an exception in the fetch drops the uncommitted merge and keeps the stored
  checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import typing as t
from pathlib import Path

import pytest
from aiohttp import web
from hashfed.node.home import Node, init_node
from hashfed.node.services.ownlog import NewHash
from hashfed.node.store import peers
from hashfed.node.store.db import transaction
from hashfed.protocol.records import Kind
from hashfed.signing.keys import generate_key
from hashfed.sync.auth import SESSION_PATH
from hashfed.sync.pytx import HashfedSignalExchangeAPI
from hashfed.sync.pytx.api import HashfedFetchFailed
from hashfed.sync.pytx.config import HashfedCheckpoint, HashfedCollabConfig, HashfedCredentials
from hashfed.sync.pytx.entries import HashfedSignalMetadata
from synchelpers import NOWHERE, Relay, clock, is_bundle, map_bundle, pdq_hashes, serve
from threatexchange.exchanges.fetch_state import FetchCheckpointBase, FetchDelta
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.utils import dataclass_json

ORIGIN = "p.test/hashfed"
COMMIT_TO_DB_MAX_SIZE = 5000  # HMA's fetcher.py
SIGNAL_TYPES = [PdqSignal, VideoMD5Signal]
TWICE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


class HmaStore:
    """HMA's exchange storage, in memory, with its JSON and pickle round trips."""

    def __init__(self, collab: HashfedCollabConfig, credentials: HashfedCredentials) -> None:
        self.collab_json = json.dumps(dataclass_json.dataclass_dump_dict(collab))
        self.credentials_json = json.dumps(dataclass_json.dataclass_dump_dict(credentials))
        self.checkpoint_json: str | None = None
        self.checkpoint_ts: int | None = None
        self.records: dict[str, bytes] = {}  # ExchangeData: fetch_id -> pickled record
        self.signals: dict[str, dict[str, set[str]]] = {}  # signal type -> hash -> fetch_ids
        self.commits = 0

    def collab(self) -> HashfedCollabConfig:
        loaded = json.loads(self.collab_json)
        return dataclass_json.dataclass_load_dict(loaded, HashfedCollabConfig)

    def client(self) -> HashfedSignalExchangeAPI:
        creds = dataclass_json.dataclass_load_dict(
            json.loads(self.credentials_json), HashfedSignalExchangeAPI.get_credential_cls()
        )
        with creds.set_default(creds, "db"):
            return HashfedSignalExchangeAPI.for_collab(self.collab())

    def checkpoint(self) -> FetchCheckpointBase | None:
        if self.checkpoint_json is None:
            return None
        return dataclass_json.dataclass_load_dict(
            json.loads(self.checkpoint_json), HashfedSignalExchangeAPI.get_checkpoint_cls()
        )

    def commit(
        self,
        old_checkpoint: FetchCheckpointBase | None,
        dat: dict[t.Any, t.Any],
        checkpoint: FetchCheckpointBase,
    ) -> None:
        assert self.checkpoint() == old_checkpoint, "Checkpoint has changed since fetch started"
        collab = self.collab()
        for raw_k, val in dat.items():
            k = str(raw_k)
            as_signal_types = {}
            if val is not None:
                as_signal_types = HashfedSignalExchangeAPI.naive_convert_to_signal_type(
                    SIGNAL_TYPES, collab, {raw_k: val}
                )
                if not as_signal_types:
                    val = None
            self._drop(k)
            if val is None:
                continue
            self.records[k] = pickle.dumps(val)
            for signal_type, signals in as_signal_types.items():
                for signal, metadata in signals.items():
                    assert isinstance(metadata, HashfedSignalMetadata)
                    by_hash = self.signals.setdefault(signal_type.get_name(), {})
                    by_hash.setdefault(signal, set()).add(k)
        self.checkpoint_json = json.dumps(dataclass_json.dataclass_dump_dict(checkpoint))
        self.checkpoint_ts = checkpoint.get_progress_timestamp()
        self.commits += 1

    def _drop(self, k: str) -> None:
        self.records.pop(k, None)
        for by_hash in self.signals.values():
            for signal in [s for s, ids in by_hash.items() if k in ids]:
                by_hash[signal].discard(k)
                if not by_hash[signal]:
                    del by_hash[signal]

    def bank(self) -> dict[str, set[str]]:
        """Returns the PDQ bank: hash -> fetch ids."""
        return {h: set(ids) for h, ids in self.signals.get("pdq", {}).items()}


def merge_delta(into: FetchDelta | None, new: FetchDelta) -> FetchDelta:
    if into is None:
        return new
    into.updates.update(new.updates)
    into.checkpoint = new.checkpoint
    return into


def hma_fetch(store: HmaStore, max_commits: int | None = None) -> bool:
    """HMA's _fetch for one collab; returns whether it reached up to date.

    max_commits stands in for HMA's per-fetch time limit (it breaks out of the
    loop, abandoning the iterator, and commits what is pending)."""
    client = store.client()
    starting = store.checkpoint()
    checkpoint = starting
    if starting is not None and starting.is_stale():
        checkpoint = None
    pending: FetchDelta | None = None
    up_to_date = False
    for delta in client.fetch_iter(SIGNAL_TYPES, checkpoint):
        assert delta.checkpoint is not None
        progress = delta.checkpoint.get_progress_timestamp()
        # HMA pickles nothing here, but its storage does: the checkpoint must survive it.
        assert pickle.loads(pickle.dumps(delta.checkpoint)) == delta.checkpoint
        pending = merge_delta(pending, delta)
        if checkpoint is not None:
            before = checkpoint.get_progress_timestamp()
            if before is not None and progress is not None:
                assert before <= progress, "checkpoint time rewound?"
        checkpoint = delta.checkpoint
        if len(pending.updates) >= COMMIT_TO_DB_MAX_SIZE:
            store.commit(starting, pending.updates, pending.checkpoint)
            starting, pending = pending.checkpoint, None
            if max_commits is not None and store.commits >= max_commits:
                break
    else:
        up_to_date = True
    if pending is not None:
        store.commit(starting, pending.updates, pending.checkpoint)
    return up_to_date


def publish(node: Node, hashes: list[NewHash]) -> None:
    node.own_log(clock()).publish(hashes)


def active_pdq(node: Node) -> dict[str, set[str]]:
    rows = node.db.conn.execute(
        "SELECT idx, hex(hash) FROM bank WHERE status = 'active' AND kind = 'pdq'"
    )
    bank: dict[str, set[str]] = {}
    for index, digest in rows:
        bank.setdefault(digest.lower(), set()).add(str(index))
    return bank


def make_store(url: str, node: Node, peer_key: str | None = None) -> HmaStore:
    """Returns HMA's storage with the exchange configured for node's log at url ([VKEY@]URL).
    Without peer_key, the platform's peer key is not one the node knows, so it reads
    the public log."""
    # What HMA's POST /c/exchanges does with {"bank": ..., "api": ..., "api_json": {...}}.
    api_json = {"urls": [url], "origin": ORIGIN, "log_key": node.signer.vkey()}
    api_json.update(name="STOPNCII", enabled=True, api=HashfedSignalExchangeAPI.get_name())
    collab = dataclass_json.dataclass_load_dict(api_json, HashfedCollabConfig)
    if peer_key is None:
        peer_key, _ = generate_key("peer:hma.test/platform")
    return HmaStore(collab, HashfedCredentials(peer_key))


async def in_thread(call: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
    """HMA fetches from a background thread (APScheduler); the node serves on this loop."""
    return await asyncio.to_thread(call, *args)


async def test_hma_fetches_commits_resumes_and_deletes(tmp_path: Path) -> None:
    p = init_node(tmp_path / "p", ORIGIN, "publisher")
    twice = NewHash(Kind.PDQ, bytes.fromhex(TWICE), 100, ("ncii",))
    publish(p, [twice, *pdq_hashes(6000, seed=1)])
    publish(p, [*pdq_hashes(6000, seed=2), twice])  # the same hash under a second case
    async with serve(p, public_logs=(ORIGIN,)) as url:
        store = make_store(url, p)
        # A fetch stopped by HMA's time limit after one commit, then resumed.
        assert not await in_thread(hma_fetch, store, 1)
        first = store.checkpoint()
        assert isinstance(first, HashfedCheckpoint) and 0 < first.size < 12002
        assert await in_thread(hma_fetch, store)
        assert store.bank() == active_pdq(p)
        assert store.bank()[TWICE] == {"0", "12001"}

        # One of the two entries retracted: the hash stays; both: it goes.
        p.own_log(clock()).retract([0])
        assert await in_thread(hma_fetch, store)
        assert store.bank()[TWICE] == {"12001"}
        p.own_log(clock()).retract([12001, 5, 6])
        assert await in_thread(hma_fetch, store)
        assert TWICE not in store.bank()
        assert store.bank() == active_pdq(p)
        assert len(store.records) == 11998
        # Up to date: no delta, nothing committed.
        commits = store.commits
        assert await in_thread(hma_fetch, store)
        assert store.commits == commits


def flip_last(items: list[bytes]) -> list[bytes]:
    last = bytearray(items[-1])
    last[len(last) // 2] ^= 0x01
    return [*items[:-1], bytes(last)]


async def test_hma_keeps_its_checkpoint_when_a_fetch_fails(tmp_path: Path) -> None:
    p = init_node(tmp_path / "p", ORIGIN, "publisher")
    publish(p, pdq_hashes(300, seed=1))
    async with serve(p, public_logs=(ORIGIN,)) as url:
        relay = Relay(url)
        async with relay.running() as relay_url:
            store = make_store(relay_url, p)
            assert await in_thread(hma_fetch, store)
            before = (store.checkpoint_json, dict(store.records), store.bank())
            publish(p, pdq_hashes(100, seed=2))

            async def tamper(request: web.Request, status: int, body: bytes) -> bytes:
                return map_bundle(body, flip_last) if is_bundle(request) else body

            relay.tamper = tamper
            try:
                await in_thread(hma_fetch, store)
            except Exception as exc:  # HMA's fetch() logs it and marks the fetch failed
                assert "the entries it serves" in str(exc)
            else:
                raise AssertionError("a tampered fetch must fail")
            assert (store.checkpoint_json, store.records, store.bank()) == before


def blank_last(items: list[bytes]) -> list[bytes]:
    return [*items[:-1], b""]


async def test_content_a_relay_withheld_arrives_at_the_next_fetch(tmp_path: Path) -> None:
    p = init_node(tmp_path / "p", ORIGIN, "publisher")
    publish(p, pdq_hashes(10, seed=1))
    erased = pdq_hashes(1, seed=3)
    publish(p, erased)
    p.own_log(clock()).retract([10])  # erased at the source before anyone fetched it
    publish(p, pdq_hashes(10, seed=2))
    async with serve(p, public_logs=(ORIGIN,)) as url:
        relay = Relay(url)
        async with relay.running() as relay_url:
            store = make_store(relay_url, p)

            async def withhold(request: web.Request, status: int, body: bytes) -> bytes:
                if "/content/" in request.path and status == 200:
                    return map_bundle(body, blank_last)
                return body

            relay.tamper = withhold
            assert await in_thread(hma_fetch, store)
            checkpoint = store.checkpoint()
            assert isinstance(checkpoint, HashfedCheckpoint)
            # Entry 10 was erased and retracted: nothing to ask for. Entry 21, withheld: asked.
            assert list(checkpoint.missing_content()) == [21]
            assert len(store.bank()) == 19

            relay.tamper = None
            assert await in_thread(hma_fetch, store)
            checkpoint = store.checkpoint()
            assert isinstance(checkpoint, HashfedCheckpoint) and checkpoint.missing == []
            assert store.bank() == active_pdq(p) and len(store.bank()) == 20


async def test_a_node_that_cannot_prove_its_peer_key_gets_no_token(tmp_path: Path) -> None:
    p = init_node(tmp_path / "p", ORIGIN, "publisher")
    publish(p, pdq_hashes(10, seed=1))
    peer_skey, peer_vkey = generate_key("peer:hma.test/platform")
    with transaction(p.db) as conn:
        peers.add_peer(conn, "platform", NOWHERE, peer_vkey)
    async with serve(p) as url:  # the log is private: only its peers read it
        relay = Relay(url)  # sees whatever the exchange sends
        authorized: list[str] = []

        async def record(request: web.Request, status: int, body: bytes) -> bytes:
            if "Authorization" in request.headers:
                authorized.append(request.path)
            return body

        relay.tamper = record
        async with relay.running() as relay_url:
            # A server holding another peer key than the configured one: its session
            # reply does not verify, so its token is never used.
            _, impostor = generate_key("peer:" + ORIGIN)
            store = make_store(f"{impostor}@{relay_url}", p, peer_skey)
            with pytest.raises(HashfedFetchFailed, match="did not prove that it holds"):
                await in_thread(hma_fetch, store)
            assert relay.paths == [SESSION_PATH] and authorized == []
            assert store.checkpoint_json is None

            # No peer key configured for the URL: no session at all, and the error says
            # how to configure one.
            store = make_store(relay_url, p, peer_skey)
            with pytest.raises(HashfedFetchFailed, match=r"read anonymously.*VKEY@URL"):
                await in_thread(hma_fetch, store)
            assert SESSION_PATH not in relay.paths[1:] and authorized == []

            # The node's own peer key: it proves it, and its token opens the private log.
            store = make_store(f"{p.peer_signer.vkey()}@{relay_url}", p, peer_skey)
            assert await in_thread(hma_fetch, store)
            assert authorized and store.bank() == active_pdq(p)
