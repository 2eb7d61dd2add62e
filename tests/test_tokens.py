"""Stateless session tokens (hashfed-token/v1): one login serves every process of a node,
removing a peer ends its tokens at once everywhere, and /v1/auth/check answers a proxy."""

from __future__ import annotations

import doctest
import os
import stat
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.config import ServerConfig
from hashfed.node.errors import NodeError
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.services import tokens
from hashfed.node.services.tokens import InvalidToken, check_token, load_session_secret, mint_token
from hashfed.node.store import peers
from hashfed.node.store.db import open_database, transaction
from hashfed.protocol.tiles import log_prefix
from hashfed.sync.auth import SessionClient
from hashfed.sync.fetch import HttpFetcher
from synchelpers import allow, make_node, origin_of, publish, run_app

P = origin_of("p")
VKEY = "a.example/hashfed+12345678+AAAA"


def test_doctests() -> None:
    assert doctest.testmod(tokens, optionflags=doctest.ELLIPSIS).failed == 0


def test_token_is_bound_to_secret_audience_and_time() -> None:
    secret = os.urandom(32)
    token = mint_token(secret, "n.example", VKEY, 2000)
    claims = check_token(secret, "n.example", token, now=1999)
    assert claims.key_id == tokens.key_id(VKEY) and claims.expires == 2000
    assert mint_token(secret, "n.example", VKEY, 2000) != token  # a fresh nonce each time
    for secret_, audience, token_, now in (
        (os.urandom(32), "n.example", token, 1999),  # another node's secret
        (secret, "other.example", token, 1999),  # another audience
        (secret, "n.example", token, 2000),  # expired
        (secret, "n.example", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), 1999),
        (secret, "n.example", token[:-1], 1999),
        (secret, "n.example", "!" * len(token), 1999),
    ):
        with pytest.raises(InvalidToken):
            check_token(secret_, audience, token_, now)


def test_session_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    first = load_session_secret(path)
    assert load_session_secret(path) == first and len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"short")
    with pytest.raises(NodeError, match="exactly 32 bytes"):
        load_session_secret(path)


async def test_one_login_serves_every_replica_and_removal_is_immediate(tmp_path: Path) -> None:
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 3)
    allow(p, b)
    secret = load_session_secret(tmp_path / "session.key")
    dbs = [open_database(p.config.database) for _ in range(3)]
    apps = [
        create_app(NodeServices(db.conn, P, ServerConfig(), session_secret=secret))
        for db in dbs[:2]
    ]
    loner = create_app(NodeServices(dbs[2].conn, P, ServerConfig()))  # no shared secret
    client = SessionClient(b.peer_signer, P)
    async with (
        run_app(apps[0]) as writer,
        run_app(apps[1]) as replica,
        run_app(loner) as other,
        aiohttp.ClientSession() as session,
    ):
        header = await client.authorization(session, writer)  # log in at the writer only
        path = f"{log_prefix(P)}/checkpoint"
        for url, status in ((writer, 200), (replica, 200), (other, 401)):
            async with session.get(f"{url}/{path}", headers={"Authorization": header}) as r:
                assert r.status == status, url
        # The fetcher on the replica reuses the writer's token: no new login there.
        fetcher = HttpFetcher(session, "p", replica, client)
        assert (await fetcher.checkpoint(P)).startswith(P.encode())
        with transaction(p.db) as conn:
            peers.remove_peer(conn, "b")
        async with session.get(f"{replica}/{path}", headers={"Authorization": header}) as r:
            assert r.status == 401
            assert "no longer configured" in await r.text()
    for db in dbs:
        db.conn.close()


async def test_auth_check_answers_for_a_proxy(tmp_path: Path) -> None:
    p, b, c = (make_node(tmp_path, n, r) for n, r in (("p", "publisher"), ("b", ""), ("c", "")))
    q = make_node(tmp_path, "q", "publisher")  # a log p does not hold
    publish(p, 3)
    allow(p, b)
    allow(p, c, read=("someone.else/log",))
    db = open_database(p.config.database)
    app = create_app(NodeServices(db.conn, P, ServerConfig()))
    async with run_app(app) as url, aiohttp.ClientSession() as session:

        async def check(uri: str, header: str | None = None) -> tuple[int, str, str]:
            headers = {"X-Original-URI": uri}
            if header:
                headers["Authorization"] = header
            async with session.get(f"{url}/v1/auth/check", headers=headers) as r:
                return r.status, r.headers["X-Hashfed-Scope"], r.headers["X-Accel-Expires"]

        tile = f"/{log_prefix(P)}/tile/0/000.p/3"
        b_header = await SessionClient(b.peer_signer, P).authorization(session, url)
        c_header = await SessionClient(c.peer_signer, P).authorization(session, url)
        assert await check(tile) == (401, "private", "0")
        assert await check(tile, "Bearer " + "x" * 87) == (401, "private", "0")
        assert await check(tile, b_header) == (200, "private", "10")
        assert (await check(tile, c_header))[0] == 403
        assert (await check(f"/{log_prefix(q.config.origin)}/checkpoint", b_header))[0] == 403
        assert (await check(f"/{log_prefix(q.config.origin)}/checkpoint"))[0] == 401
        assert (await check("/etc/passwd", b_header))[0] == 403
    db.conn.close()
    public = open_database(p.config.database)
    app = create_app(NodeServices(public.conn, P, ServerConfig(public_logs=(P,))))
    async with run_app(app) as url, aiohttp.ClientSession() as session:
        headers = {"X-Original-URI": f"/{log_prefix(P)}/checkpoint"}
        async with session.get(f"{url}/v1/auth/check", headers=headers) as r:
            assert (r.status, r.headers["X-Hashfed-Scope"]) == (200, "public")
    public.conn.close()
