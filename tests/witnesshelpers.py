"""Shared helpers for the witnessing tests: witness servers, policies, pushes and proofs.

A witness here is a real node directory (synchelpers.make_node) serving its real
app (create_app with a Witness) on loopback, with a clock the test moves by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from hashfed.node.config import ServerConfig
from hashfed.node.home import Node
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.witness import WITNESS_PATH, Witness
from hashfed.node.policyfile import policy_path
from hashfed.node.services.witnesspush import PushReport, push_checkpoint
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database, transaction
from hashfed.protocol.merkle import consistency_proof
from hashfed.protocol.policy import parse_policy
from hashfed.protocol.tiles import TileHashReader
from hashfed.protocol.witness import AddCheckpoint
from synchelpers import NOW, run_app


class Clock:
    """A clock the test sets by hand: ``clock.now = ...``; calling it returns now."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def witness_of(node: Node, clock: Clock) -> Witness:
    """Returns node's witness on a database connection of its own, as 'hashfed serve' does."""
    return Witness(open_database(node.config.database), node.witness_signer(clock), clock)


def witness_log(witness: Node, log_node: Node) -> None:
    """Makes witness witness log_node's own log (what 'hashfed witness add VKEY' does)."""
    with transaction(witness.db) as conn:
        conn.execute(
            "INSERT INTO witnessed (origin, vkey, size, root, note, updated)"
            " VALUES (?, ?, 0, x'', '', 0)",
            (log_node.config.origin, log_node.signer.vkey()),
        )


@dataclass
class Served:
    """A witness node being served: its base URL and the clock of its cosignatures."""

    node: Node
    url: str
    clock: Clock

    @property
    def endpoint(self) -> str:
        return self.url + WITNESS_PATH

    @property
    def vkey(self) -> str:
        return self.node.witness_signer().vkey()


@asynccontextmanager
async def serve_witness(node: Node, clock: Clock) -> AsyncIterator[Served]:
    """Serves node's logs and its witness endpoint on loopback."""
    db = open_database(node.config.database)
    witness = witness_of(node, clock)
    app = create_app(NodeServices(db.conn, node.config.origin, ServerConfig(), witness=witness))
    try:
        async with run_app(app) as url:
            yield Served(node, url, clock)
    finally:
        db.conn.close()
        witness._db.conn.close()


def policy_text(
    witnesses: list[tuple[str, Served]], quorum: str, with_urls: bool = True, logs: list[Node] = ()
) -> str:
    """Returns a tlog-policy naming each (name, witness) and quorum (a name, 'all' or 'none')."""
    lines = [f"log {n.signer.vkey()}" for n in logs]
    for name, w in witnesses:
        lines.append(f"witness {name} {w.vkey}" + (f" {w.url}/witness" if with_urls else ""))
    if quorum == "all":
        lines.append("group all-of-them all " + " ".join(n for n, _ in witnesses))
        quorum = "all-of-them"
    lines.append(f"quorum {quorum}")
    return "".join(line + "\n" for line in lines)


def set_policy(node: Node, text: str) -> None:
    parse_policy(text)
    policy_path(node.config.home).write_text(text)


async def push(node: Node, text: str) -> PushReport:
    """Pushes node's checkpoint to the witnesses (with URLs) of the policy text."""
    return await push_checkpoint(node.db, node.config.origin, parse_policy(text))


def own_note(node: Node) -> str:
    log = logstore.get_log(node.db.conn, node.config.origin)
    assert log is not None and log.checkpoint is not None
    return log.checkpoint


def proof_of(node: Node, old: int, new: int | None = None) -> tuple[bytes, ...]:
    """Returns the consistency proof old -> new (default: the log's size) of node's own log."""
    log = logstore.get_log(node.db.conn, node.config.origin)
    assert log is not None
    new = log.size if new is None else new
    if old == 0 or old == new:
        return ()
    conn = node.db.conn
    reader = TileHashReader(log.size, lambda lvl, i, w: logstore.read_tile(conn, log.id, lvl, i, w))
    return tuple(consistency_proof(old, new, reader))


def body(old: int, note: str, proof: tuple[bytes, ...] = ()) -> bytes:
    return AddCheckpoint(old, proof, note).format().encode()


async def post(
    session: aiohttp.ClientSession, endpoint: str, data: bytes
) -> tuple[int, str, str | None]:
    """POSTs an add-checkpoint body; returns (status, body text, Content-Type header)."""
    async with session.post(endpoint, data=data) as response:
        return response.status, await response.text(), response.headers.get("Content-Type")
