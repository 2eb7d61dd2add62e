"""Peer keys and log keys cannot be confused, and the client checks the server's peer key."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from hashfed.node.config import ServerConfig
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.store.db import open_database, transaction
from hashfed.node.store.peers import add_peer
from hashfed.protocol.session import peer_key_name
from hashfed.signing.keys import generate_key, parse_verifier
from hashfed.sync.auth import SessionClient, SessionRefused
from synchelpers import allow, make_node, origin_of, publish, run_app, serve, sync, trust, use

P = origin_of("p")


async def test_a_wrong_server_key_is_caught_in_the_handshake(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 5)
    allow(p, a)
    trust(a, p)
    _, impostor = generate_key(peer_key_name(P))  # right name, another node's key
    async with serve(p) as url:
        with transaction(a.db) as conn:
            add_peer(conn, "p", url, impostor)
        outcome = await sync(a)
    assert not outcome.ok
    (error,) = outcome.errors
    assert "did not prove that it holds the peer key configured for it" in error
    assert "hashfed peers add" in error


async def test_the_right_server_key_syncs(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 5)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        assert (await sync(a)).ok


async def test_a_server_that_does_not_sign_its_reply_is_refused(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    allow(p, a)
    db = open_database(p.config.database)
    app = create_app(NodeServices(db.conn, P, ServerConfig()))  # no peer_signer: no signed reply
    try:
        async with run_app(app) as url, aiohttp.ClientSession() as session:
            server_key = parse_verifier(p.peer_signer.vkey())
            # Without a key to check, the client takes the token (as before) ...
            assert await SessionClient(a.peer_signer, P).authorization(session, url)
            # ... with one, it refuses a server that does not prove it holds the key.
            client = SessionClient(a.peer_signer, P, server_key=server_key)
            with pytest.raises(SessionRefused, match="carries no signed session reply"):
                await client.authorization(session, url)
    finally:
        db.conn.close()


def test_log_and_peer_keys_have_distinct_names(tmp_path: Path) -> None:
    node = make_node(tmp_path, "p", "publisher")
    assert node.signer.name == P
    assert node.peer_signer.name == "peer:" + P
