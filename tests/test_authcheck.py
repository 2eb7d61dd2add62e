"""/v1/auth/check accepts only canonical paths of the exported tree (node/http/authcheck.py).

A proxy must pass the normalised path it serves the file from; any other
spelling (``..``, ``%2e``, ``//``, a query, ...) is refused and never cached,
and a peer asking for a log the node does not hold gets 403, never 200.
"""

from __future__ import annotations

import doctest
from pathlib import Path

import aiohttp
import pytest
from hashfed.node.config import ServerConfig
from hashfed.node.http import authcheck
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.authcheck import log_of_path
from hashfed.node.store.db import open_database
from hashfed.protocol.tiles import content_path, entries_path, log_prefix, tile_path
from hashfed.sync.auth import SessionClient
from synchelpers import allow, make_node, origin_of, publish, run_app

P = origin_of("p")
H = "ab" * 32
OTHER = "cd" * 32

GOOD = [
    f"/log/{H}/checkpoint",
    f"/log/{H}/{tile_path(0, 1234067)}",
    f"/log/{H}/{tile_path(2, 0, 3)}",
    f"/log/{H}/{entries_path(5, 200)}",
    f"/log/{H}/{content_path(1, 45)}",
]
BAD = [
    f"/log/{H}/../{OTHER}/checkpoint",
    f"/log/{H}/%2e%2e/{OTHER}/checkpoint",
    f"/log/{H}/%2E%2E/{OTHER}/checkpoint",
    f"//log/{OTHER}/checkpoint",
    f"/log//{OTHER}/checkpoint",
    f"/log/{OTHER}//checkpoint",
    f"/log/{OTHER}/./checkpoint",
    f"/log/{OTHER}/tile/0/../../checkpoint",
    f"/log/{OTHER}/checkpoint?x=1",
    f"/log/{OTHER}/checkpoint/",
    f"/log/{OTHER}/checkpoint%00",
    f"/log/{OTHER.upper()}/checkpoint",
    f"/log/{OTHER}/tile/0/0",
    f"/log/{OTHER}/tile/0/000.p/256",
    f"/log/{OTHER}/content/000.p/0",
    f"/log/{OTHER}/",
    f"/log/{OTHER}",
    f"/log/{OTHER}/.tmp-checkpoint.1",
    f"log/{OTHER}/checkpoint",
    f"http://x/log/{OTHER}/checkpoint",
    "/etc/passwd",
    "",
]


def test_doctests() -> None:
    assert doctest.testmod(authcheck).failed == 0


@pytest.mark.parametrize("uri", GOOD)
def test_canonical_paths_name_their_log(uri: str) -> None:
    assert log_of_path(uri) == H


@pytest.mark.parametrize("uri", BAD)
def test_odd_paths_are_refused(uri: str) -> None:
    assert log_of_path(uri) is None


async def test_check_refuses_odd_paths_and_unknown_logs(tmp_path: Path) -> None:
    p, b, c = (make_node(tmp_path, n, r) for n, r in (("p", "publisher"), ("b", ""), ("c", "")))
    publish(p, 3)
    allow(p, b)
    allow(p, c, read=("someone.else/log",))
    public = "/" + log_prefix(P)
    db = open_database(p.config.database)
    app = create_app(NodeServices(db.conn, P, ServerConfig(public_logs=(P,))))
    async with run_app(app) as url, aiohttp.ClientSession() as session:

        async def check(uri: str, header: str | None = None) -> tuple[int, str]:
            headers = {"X-Original-URI": uri}
            if header:
                headers["Authorization"] = header
            async with session.get(f"{url}/v1/auth/check", headers=headers) as r:
                return r.status, r.headers["X-Accel-Expires"]

        c_header = await SessionClient(c.peer_signer, P).authorization(session, url)
        assert await check(f"{public}/checkpoint") == (200, "10")
        unknown = f"/log/{'0' * 64}"
        # A peer's token and a log the node does not hold: refused, never 200.
        assert (await check(f"{unknown}/checkpoint", c_header))[0] == 403
        assert (await check(f"{unknown}/checkpoint"))[0] == 401
        for uri in (
            f"{public}/../{unknown[5:]}/checkpoint",
            f"{unknown}/../{public[5:]}/checkpoint",
            f"{public}/%2e%2e/x/checkpoint",
            f"/{public}/checkpoint",
            f"{public}/checkpoint?a",
        ):
            for header in (None, c_header):
                assert await check(uri, header) == (403, "0"), (uri, header)
    db.conn.close()
