"""Peer authentication of sync over real loopback HTTP against a real node's server."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from hashfed.protocol.session import sign_session_request
from hashfed.protocol.tiles import log_prefix
from hashfed.signing.keys import generate_key, parse_signer
from hashfed.sync.auth import SESSION_PATH, SessionClient
from hashfed.sync.fetch import HttpFetcher
from synchelpers import (
    NOW,
    allow,
    bank,
    clock,
    make_node,
    origin_of,
    publish,
    serve,
    snapshot,
    sync,
    trust,
    use,
)

P = origin_of("p")


async def post_session(url: str, body: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + SESSION_PATH, data=body.encode()) as resp,
    ):
        return resp.status, await resp.json()


async def test_unknown_node_gets_401(tmp_path: Path) -> None:
    p, x = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "x")
    publish(p, 10)
    trust(x, p)  # x follows P but P does not know x as a peer
    async with serve(p) as url:
        use(x, p, url)
        before = snapshot(x, P)
        outcome = await sync(x)
        assert not outcome.ok
        assert "refused a session" in outcome.errors[0]
        assert "not signed by a configured peer" in outcome.errors[0]
        assert snapshot(x, P) == before
        status, doc = await post_session(url, sign_session_request(P, NOW, x.peer_signer))
        assert status == 401 and "not signed by a configured peer" in doc["error"]


async def test_peer_without_read_permission_gets_403(tmp_path: Path) -> None:
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 10)
    allow(p, b, read=("other.test/log",))
    trust(b, p)
    async with serve(p) as url:
        use(b, p, url)
        before = snapshot(b, P)
        outcome = await sync(b)
        assert not outcome.ok and "HTTP 403" in outcome.errors[0]
        assert snapshot(b, P) == before


async def test_peer_with_read_permission_syncs(tmp_path: Path) -> None:
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 10)
    allow(p, b, read=(P,))
    trust(b, p)
    async with serve(p) as url:
        use(b, p, url)
        assert (await sync(b)).ok
    assert bank(b, P) == bank(p, P)


async def test_session_requests_refused(tmp_path: Path) -> None:
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    allow(p, b)
    async with serve(p, server_clock=clock()) as url:
        # Replayed: the same signed request twice.
        request = sign_session_request(P, NOW, b.peer_signer)
        status, doc = await post_session(url, request)
        assert status == 200 and isinstance(doc["token"], str)
        status, doc = await post_session(url, request)
        assert status == 401 and "replayed" in doc["error"]

        # Stale and from the future, by the server's (injected) clock.
        for skew in (-61, 61):
            status, doc = await post_session(
                url, sign_session_request(P, NOW + skew, b.peer_signer)
            )
            assert status == 401 and "stale" in doc["error"]
        status, _ = await post_session(url, sign_session_request(P, NOW + 60, b.peer_signer))
        assert status == 200

        # For another server.
        status, doc = await post_session(
            url, sign_session_request("other.test/hashfed", NOW, b.peer_signer)
        )
        assert status == 401 and "not 'p.test/hashfed'" in doc["error"]

        # Signed with a wrong key of the right name.
        skey, _ = generate_key(b.config.origin)
        status, doc = await post_session(url, sign_session_request(P, NOW, parse_signer(skey)))
        assert status == 401

        # Signed with b's log key, not its peer key.
        status, _ = await post_session(url, sign_session_request(P, NOW, b.signer))
        assert status == 401

        # Not signed at all.
        status, _ = await post_session(url, f"hashfed-session/v1\n{P}\n{NOW}\nAAAA\n")
        assert status in (400, 401)


async def test_data_requests_need_a_token(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    async with serve(p) as url, aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer " + "A" * 43}, {"Authorization": "Basic x"}):
            async with session.get(f"{url}/{log_prefix(P)}/checkpoint", headers=headers) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with session.get(f"{url}/{log_prefix(P)}/tile/entries/000.p/3") as resp:
            assert resp.status == 401


async def test_public_log_is_readable_without_a_session(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    async with serve(p, public_logs=(P,)) as url, aiohttp.ClientSession() as session:
        fetcher = HttpFetcher(session, "p", url)  # no authentication
        assert (await fetcher.checkpoint(P)).decode().startswith(P + "\n3\n")
        async with session.get(f"{url}/{log_prefix(P)}/checkpoint") as resp:
            assert resp.headers["Cache-Control"].startswith("public")


async def test_fetcher_reopens_a_session_after_a_server_restart(tmp_path: Path) -> None:
    p, b = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "b")
    publish(p, 3)
    allow(p, b)
    async with aiohttp.ClientSession() as session:
        async with serve(p) as url:
            fetcher = HttpFetcher(session, "p", url, SessionClient(b.peer_signer, P))
            first = await fetcher.checkpoint(P)
            port = int(url.rsplit(":", 1)[1])
        publish(p, 2, seed=2)
        # The server restarts on the same port and has forgotten every session: the
        # fetcher's token gets 401, and it opens a new session once.
        async with serve(p, port=port) as again:
            assert again == url
            second = await fetcher.checkpoint(P)
    assert first.decode().split("\n")[1] == "3" and second.decode().split("\n")[1] == "5"
