"""Several URL prefixes for one origin: sync tries them in order and fails over on errors;
a GET-only mirror (no session endpoint) serves public logs and refuses private ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from hashfed.node.errors import NodeError
from hashfed.node.services.export import export_logs
from hashfed.node.store import peers
from hashfed.node.store.db import transaction
from synchelpers import (
    NOWHERE,
    Relay,
    allow,
    bank,
    make_node,
    origin_of,
    publish,
    run_app,
    serve,
    sync,
    trust,
)
from test_export import static_tree

P = origin_of("p")


def use_urls(client, server, urls: list[str]) -> None:
    with transaction(client.db) as conn:
        peers.add_peer(conn, "p", urls[0], server.peer_signer.vkey(), mirrors=tuple(urls[1:]))


async def test_fails_over_in_order_and_stays_with_the_one_that_works(tmp_path: Path) -> None:
    p, a, ref = (make_node(tmp_path, n, r) for n, r in (("p", "publisher"), ("a", ""), ("r", "")))
    publish(p, 600)
    allow(p, a)
    allow(p, ref)
    trust(a, p)
    trust(ref, p)
    async with serve(p) as p_url:
        relay = Relay(p_url)
        async with relay.running() as relay_url:
            use_urls(ref, p, [p_url])
            use_urls(a, p, [NOWHERE, relay_url, p_url])
            assert (await sync(ref)).ok
            outcome = await sync(a)
            assert outcome.ok, outcome.errors
            assert bank(a, P) == bank(ref, P)
            # The relay (second) answered everything once the dead first URL failed.
            assert any("/tile/entries/" in path for path in relay.paths)

            # The relay breaks in the middle of the next catch-up: the node takes over.
            publish(p, 600, seed=2)
            assert (await sync(ref)).ok
            relay.fail = True
            outcome = await sync(a)
            assert outcome.ok, outcome.errors
            assert bank(a, P) == bank(ref, P)


async def test_every_url_failing_names_each(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 3)
    trust(a, p)
    use_urls(a, p, [NOWHERE, "http://127.0.0.1:7"])
    outcome = await sync(a)
    assert not outcome.ok
    (error,) = outcome.errors
    assert "every URL failed" in error and ":9" in error and ":7" in error


async def test_get_only_mirror_serves_public_logs_only(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    a = make_node(tmp_path, "a")
    publish(p, 300)
    export_logs(p.db.conn, tmp_path / "tree")
    trust(a, p)
    async with static_tree(tmp_path / "tree") as tree_url:
        use_urls(a, p, [tree_url])
        outcome = await sync(a)  # the static tree has no session endpoint: anonymous GETs
        assert outcome.ok, outcome.errors
        assert outcome.result.new_size == 300


async def test_get_only_mirror_of_a_private_log_is_refused_clearly(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    trust(a, p)
    app = web.Application()  # a mirror that guards the log but opens no sessions

    async def unauthorised(request: web.Request) -> web.Response:
        return web.Response(status=401, text="authentication required\n")

    app.router.add_get("/{tail:.*}", unauthorised)  # so POST gets 405
    async with run_app(app) as url:
        use_urls(a, p, [url])
        outcome = await sync(a)
    assert not outcome.ok
    assert "no session endpoint (HTTP 405)" in outcome.errors[0]
    assert "public logs only" in outcome.errors[0]


async def test_a_token_from_the_node_is_never_sent_to_a_mirror(tmp_path: Path) -> None:
    # Security review: one SessionClient used to cache one token for every URL of a
    # peer, so a token opened at the node was replayed to a --mirror (a third party
    # that could use it at the publisher for up to 600 s).
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 300)
    allow(p, a)
    trust(a, p)
    seen: list[tuple[str, str, str | None]] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        return await handler(request)

    mirror = web.Application(middlewares=[record])  # 404 (POST: 405) except the log files
    (tmp_path / "tree" / "log").mkdir(parents=True)
    mirror.router.add_static("/log", tmp_path / "tree" / "log")
    async with serve(p) as p_url:
        relay = Relay(p_url)
        async with relay.running() as relay_url, run_app(mirror) as mirror_url:
            use_urls(a, p, [relay_url, mirror_url])
            outcome = await sync(a)  # a session at the node (through the relay)
            assert outcome.ok, outcome.errors
            assert any(path == "/v1/auth/session" for path in relay.paths)
            publish(p, 300, seed=2)
            export_logs(p.db.conn, tmp_path / "tree")
            relay.fail = True  # the node's URL breaks: the mirror serves the catch-up
            outcome = await sync(a)
            assert outcome.ok, outcome.errors
            assert outcome.result.new_size == 600
    assert any(path.startswith("/log/") for _, path, _ in seen)
    assert [auth for _, _, auth in seen if auth is not None] == []


def test_mirrors_are_checked_and_kept_in_order(tmp_path: Path) -> None:
    a, p = make_node(tmp_path, "a"), make_node(tmp_path, "p", "publisher")
    with transaction(a.db) as conn:
        peer = peers.add_peer(
            conn,
            "p",
            "http://one.example/",
            p.peer_signer.vkey(),
            mirrors=("https://two.example/x",),
        )
    assert peer.urls == ("http://one.example", "https://two.example/x")
    assert peers.get_peer(a.db.conn, "p").urls == peer.urls
    with pytest.raises(NodeError, match="must be http"), transaction(a.db) as conn:
        peers.add_peer(conn, "q", "http://one.example", "x", mirrors=("ftp://bad",))
