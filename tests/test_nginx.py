"""Debian's real nginx serving an exported tree, with the checked-in configuration.

A partner syncs through nginx (logging in through it, every tile authorised by
hashfed's /v1/auth/check), for a private and for a public log; an anonymous
client gets nothing from a private log; the caching headers follow tlog-tiles.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.services.export import export_logs
from hashfed.protocol.tiles import content_path, entries_path, log_prefix, tile_path
from hashfed.sync.auth import SessionClient
from nginxhelpers import run_nginx, shared_dir
from synchelpers import (
    allow,
    bank,
    bank_state,
    clock,
    make_node,
    origin_of,
    publish,
    serve,
    sync,
    trust,
    use,
)

P = origin_of("p")


@pytest.mark.parametrize("public", [False, True], ids=["private", "public"])
async def test_partner_syncs_through_nginx(tmp_path: Path, public: bool) -> None:
    p = make_node(tmp_path, "p", "publisher")
    partner, direct, stranger = (make_node(tmp_path, n) for n in ("a", "d", "s"))
    publish(p, 300)
    p.own_log(clock()).retract([7])
    allow(p, partner)
    allow(p, direct)
    for node in (partner, direct, stranger):
        trust(node, p)
    config = {"public_logs": (P,)} if public else {}
    prefix = "/" + log_prefix(P)
    with shared_dir() as base:
        tree = base / "tree"
        export_logs(p.db.conn, tree)
        async with serve(p, **config) as node_url:
            with run_nginx(base, tree, node_url) as url:
                use(partner, p, url)
                use(direct, p, node_url)
                use(stranger, p, url)
                outcome = await sync(partner)
                assert outcome.ok, outcome.errors
                assert (await sync(direct)).ok
                assert bank(partner, P) == bank(direct, P)
                assert bank_state(partner, P) == bank_state(p, P)

                # A node that is not p's peer: refused at login (through nginx).
                outcome = await sync(stranger)
                assert outcome.ok == public, outcome.errors

                async with aiohttp.ClientSession() as session:
                    token = await SessionClient(partner.peer_signer, P).authorization(session, url)
                    scope = "public" if public else "private"
                    for path, policy in (
                        ("checkpoint", "max-age=2, must-revalidate"),
                        (tile_path(0, 1, 45), "max-age=31536000, immutable"),
                        (entries_path(0), "max-age=31536000, immutable"),
                        (content_path(1, 45), "no-store"),
                    ):
                        async with session.get(
                            f"{url}{prefix}/{path}", headers={"Authorization": token}
                        ) as r:
                            assert r.status == 200, path
                            assert r.headers["Cache-Control"] == f"{scope}, {policy}", path
                            body = await r.read()
                        assert body == (tree / log_prefix(P) / path).read_bytes()
                        async with session.get(f"{url}{prefix}/{path}") as r:
                            assert r.status == (200 if public else 401), path
                            if not public:
                                assert P.encode() not in await r.read()
                    async with session.get(
                        f"{url}{prefix}/checkpoint", headers={"Authorization": token}
                    ) as r:
                        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
                    # Neither a bad token, nor hidden files, nor the check endpoint itself.
                    bad = {"Authorization": "Bearer " + "A" * 87}
                    async with session.get(f"{url}{prefix}/checkpoint", headers=bad) as r:
                        assert r.status == (200 if public else 401)
                    (tree / log_prefix(P) / ".tmp-partial").write_bytes(b"half")
                    async with session.get(
                        f"{url}{prefix}/.tmp-partial", headers={"Authorization": token}
                    ) as r:
                        assert r.status == 404
                    async with session.get(f"{url}/v1/auth/check") as r:
                        assert r.status == 404
                    async with session.get(
                        f"{url}/log/{'0' * 64}/checkpoint", headers={"Authorization": token}
                    ) as r:
                        assert r.status == 403  # a log this node does not hold


async def raw_get(url: str, path: str, token: str | None = None) -> tuple[int, bytes]:
    """GETs path exactly as written (no normalisation of .., %2e or //); returns status, body."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: {token}\r\n" if token else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_no_path_trick_reaches_a_private_log(tmp_path: Path) -> None:
    """A public log's path with .., %2e%2e or // in it, or an unknown log's, never opens a
    private log's file: nginx authorises the normalised path it serves."""
    p = make_node(tmp_path, "p", "publisher")  # P: private
    q = make_node(tmp_path, "q", "publisher")  # Q: mirrored by p, public
    c = make_node(tmp_path, "c")  # a peer of p that may read neither
    publish(p, 5)
    publish(q, 5)
    allow(q, p)
    trust(p, q)
    allow(p, c, read=("someone.else/log",))
    async with serve(q) as q_url:
        use(p, q, q_url)
        outcome = await sync(p)
        assert outcome.ok, outcome.errors
    Q = origin_of("q")
    private, public = log_prefix(P)[4:], log_prefix(Q)[4:]
    unknown = "0" * 64
    with shared_dir() as base:
        tree = base / "tree"
        export_logs(p.db.conn, tree)
        secret = (tree / log_prefix(P) / "checkpoint").read_bytes()
        async with serve(p, public_logs=(Q,)) as node_url:
            with run_nginx(base, tree, node_url) as url:
                async with aiohttp.ClientSession() as session:
                    token = await SessionClient(c.peer_signer, P).authorization(session, url)
                assert await raw_get(url, f"/log/{public}/checkpoint") == (
                    200,
                    (tree / log_prefix(Q) / "checkpoint").read_bytes(),
                )
                assert (await raw_get(url, f"/log/{private}/checkpoint"))[0] == 401
                tricks = [
                    f"/log/{public}/../{private}/checkpoint",
                    f"/log/{public}/%2e%2e/{private}/checkpoint",
                    f"/log/{public}/%2E%2E/{private}/checkpoint",
                    f"/log/{public}/.%2e/{private}/checkpoint",
                    f"//log/{private}/checkpoint",
                    f"/log//{private}/checkpoint",
                    f"/log/{private}//checkpoint",
                    f"/log/{unknown}/../{private}/checkpoint",
                    f"/log/{public}/tile/../../{private}/checkpoint",
                ]
                for path in tricks:
                    for auth in (None, token):
                        status, body = await raw_get(url, path, auth)
                        assert status in (401, 403), (path, auth, status)
                        assert secret not in body and P.encode() not in body, path
                # The unknown-log trick with a valid token, and an unknown log itself.
                assert (await raw_get(url, f"/log/{unknown}/checkpoint", token))[0] == 403
                # Nothing outside log/ (the state file names every log).
                for path in ("/.hashfed-export.json", f"/log/{public}/../../.hashfed-export.json"):
                    status, body = await raw_get(url, path)
                    assert status == 404, path
                    assert P.encode() not in body
