"""tlog-tiles caching headers: immutable tiles and bundles, a short-lived checkpoint,
private unless the log is configured public, gzip bundles when asked for."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from hashfed.protocol.tiles import entries_path, log_prefix, tile_path
from hashfed.sync.auth import SessionClient
from synchelpers import allow, make_node, publish, serve


async def test_private_log_headers(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 5)
    allow(p, a)
    prefix = log_prefix(p.config.origin)
    async with serve(p) as url, aiohttp.ClientSession(auto_decompress=False) as session:
        auth = await SessionClient(a.peer_signer, p.config.origin).authorization(session, url)
        headers = {"Authorization": auth, "Accept-Encoding": "gzip"}
        async with session.get(f"{url}/{prefix}/checkpoint", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "private, max-age=2, must-revalidate"
            assert r.headers["Content-Type"].startswith("text/plain")
        async with session.get(f"{url}/{prefix}/{tile_path(0, 0, 5)}", headers=headers) as r:
            assert r.status == 200 and len(await r.read()) == 5 * 32
            assert r.headers["Cache-Control"] == "private, max-age=31536000, immutable"
        async with session.get(f"{url}/{prefix}/{entries_path(0, 5)}", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "private, max-age=31536000, immutable"
            assert r.headers["Content-Encoding"] == "gzip"
        # A tile wider than the log does not exist yet.
        async with session.get(f"{url}/{prefix}/{tile_path(0, 0, 6)}", headers=headers) as r:
            assert r.status == 404
    p.close()
    a.close()


async def test_public_log_is_served_public_without_authentication(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    prefix = log_prefix(p.config.origin)
    async with serve(p, public_logs=(p.config.origin,)) as url, aiohttp.ClientSession() as s:
        async with s.get(f"{url}/{prefix}/checkpoint") as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "public, max-age=2, must-revalidate"
        async with s.get(f"{url}/{prefix}/{entries_path(0, 3)}") as r:
            assert r.status == 200
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    p.close()
