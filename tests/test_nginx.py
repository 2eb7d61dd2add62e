"""Debian's real nginx serving an exported tree, with the checked-in configuration.

A partner syncs through nginx (logging in through it, every tile authorised by
hashfed's /v1/auth/check), for a private and for a public log; an anonymous
client gets nothing from a private log; the caching headers follow tlog-tiles.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from hashfed.node.export import export_logs
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
                        assert r.status == 404  # a log this node does not hold
