"""The person's page as the node serves it (node/http/casepage.py), and its message catalogs.

Browser behaviour is in test_case_page_browser.py; here: the headers that make the
privacy promise (CSP, no referrer, no cache, no cookie), the language choice, which
files are served, the access log, that the shipped build matches web/, and that every
string the page shows exists in Dutch and in English.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hashfed.hasher.formats import ACCEPTED_PHOTO_EXTENSIONS, ACCEPTED_VIDEO_EXTENSIONS
from hashfed.node.config import ServerConfig
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.casepage import (
    CONTENT_SECURITY_POLICY,
    choose_language,
    setup_case_page,
    static_files,
)
from hashfed.node.store.db import open_database
from synchelpers import make_node
from webhelpers import ROOT, harness

WEB = ROOT / "web"
CATALOG_DIR = WEB / "src" / "i18n"
STATES = ("review", "pending", "active", "withdrawn", "rejected")  # specs/case-api.md
REFUSALS = (
    "empty",
    "mislabelled",
    "not-accepted",
    "unrecognised",
    "audio-only",
    "no-video-track",
    "no-movie-header",
)  # web/src/formats.ts


async def _client(tmp_path: Path) -> TestClient[web.Request, web.Application]:
    node = make_node(tmp_path, "p", "publisher")
    db = open_database(node.config.database)
    app = create_app(NodeServices(db.conn, node.config.origin, ServerConfig()))
    setup_case_page(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


async def test_page_headers_keep_everything_on_the_node(tmp_path: Path) -> None:
    client = await _client(tmp_path)
    try:
        response = await client.get("/case/", headers={"Accept-Language": "nl-NL,nl;q=0.9"})
        assert response.status == 200
        html = await response.text()
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert csp == CONTENT_SECURITY_POLICY
        for directive in (
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "worker-src 'self'",
            "connect-src 'self'",
            "img-src 'self' blob:",
        ):
            assert directive in csp.split("; ")
        assert "unsafe-inline" not in csp and "http" not in csp
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in headers
        assert '<html lang="nl">' in html
        assert "<script>" not in html and " on" + "click=" not in html  # no inline script
        assert not re.search(r"""(src|href)="(https?:)?//""", html.split("<main")[0])
        for name, kind in (
            ("app.js", "text/javascript"),
            ("worker.js", "text/javascript"),
            ("style.css", "text/css"),
            ("mozjpeg_dec.wasm", "application/wasm"),
            ("squoosh_png_bg.wasm", "application/wasm"),
            ("icon.svg", "image/svg+xml"),
        ):
            asset = await client.get(f"/case/{name}")
            assert asset.status == 200, name
            assert asset.content_type == kind
            assert asset.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        for name in ("index.html", "..%2Fcasepage.py", "nope.js", ".hidden.js", "app.js.map"):
            assert (await client.get(f"/case/{name}")).status == 404, name
        moved = await client.get("/case?lang=nl", allow_redirects=False)
        assert moved.status == 302 and moved.headers["Location"] == "/case/?lang=nl"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("query", "accept", "want"),
    [
        (None, None, "en"),
        (None, "nl-NL,nl;q=0.9,en;q=0.8", "nl"),
        (None, "en-GB,en;q=0.9,nl;q=0.8", "en"),
        (None, "de-DE,de;q=0.9,nl;q=0.5,en;q=0.4", "nl"),
        (None, "en;q=0.2, nl-BE", "nl"),
        (None, "nl;q=0, fr", "en"),
        (None, "nl;q=bad, en;q=0.1", "en"),
        ("nl", "en", "nl"),
        ("en", "nl", "en"),
        ("xx", "nl", "nl"),
    ],
)
def test_language_follows_the_query_then_accept_language(
    query: str | None, accept: str | None, want: str
) -> None:
    assert choose_language(query, accept) == want


async def test_page_requests_are_logged_without_address_or_headers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = make_node(tmp_path, "p", "publisher")
    db = open_database(node.config.database)
    app = create_app(NodeServices(db.conn, node.config.origin, ServerConfig()))
    setup_case_page(app)
    runner = web.AppRunner(app, access_log=None)  # the node's own access log, as in serve
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            caplog.set_level(logging.INFO, logger="hashfed.access")
            url = f"http://127.0.0.1:{port}/case/?lang=nl"
            async with session.get(url, headers={"User-Agent": "secret-agent"}) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()
        db.conn.close()
    access = [r for r in caplog.records if r.name == "hashfed.access"]
    lines = [caplog.handler.format(r) for r in access]
    assert lines and all("127.0.0.1" not in line and "secret-agent" not in line for line in lines)
    assert all(r.client is None for r in access)  # type: ignore[attr-defined]


def test_shipped_build_matches_the_sources(tmp_path: Path) -> None:
    node = harness("pdq_cli")[0]
    out = tmp_path / "build"
    subprocess.run([node, str(WEB / "build.mjs"), str(out)], check=True, cwd=WEB)
    shipped = Path(str(static_files()))
    names = sorted(p.name for p in shipped.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    for name in names:
        assert (shipped / name).read_bytes() == (out / name).read_bytes(), (
            f"node/http/casepage_static/{name} is stale: run `make web` and commit it"
        )


def _catalogs() -> dict[str, dict[str, str]]:
    return {p.stem: json.loads(p.read_text("utf-8")) for p in sorted(CATALOG_DIR.glob("*.json"))}


def _keys_used() -> set[str]:
    html = (WEB / "static" / "index.html").read_text("utf-8")
    app = (WEB / "src" / "app.ts").read_text("utf-8")
    used = set(re.findall(r'data-i18n(?:-label)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\(\s*"([^"]+)"', app))
    used |= {f"state-{s}" for s in STATES} | {f"explain-{s}" for s in STATES}
    used |= {f"file-refused-{code}" for code in REFUSALS}
    assert "t(`state-${state}`)" in app and "t(`file-${code}`" in app  # the dynamic keys
    return used


def test_every_string_is_translated() -> None:
    catalogs = _catalogs()
    assert set(catalogs) == {"en", "nl"}
    used = _keys_used()
    assert len(used) > 80
    for lang, catalog in catalogs.items():
        missing = sorted(used - set(catalog))
        assert missing == [], f"{lang} lacks {missing}"
        unused = sorted(set(catalog) - used)
        assert unused == [], f"{lang} has unused keys {unused}"
        assert all(value.strip() for value in catalog.values()), lang
    en, nl = catalogs["en"], catalogs["nl"]
    for key in en:
        assert set(re.findall(r"\{\w+\}", en[key])) == set(re.findall(r"\{\w+\}", nl[key])), key
    same = [k for k in en if en[k] == nl[k]]
    assert len(same) <= 3, f"Dutch strings copied from English: {same}"


def _ts_list(source: str, name: str) -> list[str]:
    match = re.search(rf"export const {name} = \[(.*?)\];", source, re.S)
    assert match is not None, name
    return re.findall(r'"([^"]+)"', match.group(1))


def test_page_accepts_the_hashers_types() -> None:
    source = (WEB / "src" / "formats.ts").read_text("utf-8")
    photos = _ts_list(source, "ACCEPTED_PHOTO_EXTENSIONS")
    videos = _ts_list(source, "ACCEPTED_VIDEO_EXTENSIONS")
    assert photos == list(ACCEPTED_PHOTO_EXTENSIONS)
    assert videos == list(ACCEPTED_VIDEO_EXTENSIONS)
    html = (WEB / "static" / "index.html").read_text("utf-8")
    accept = re.search(r'id="files" multiple accept="([^"]+)"', html)
    assert accept is not None
    offered = {a.lstrip(".") for a in accept.group(1).split(",")}
    assert set(photos) | set(videos) <= offered
    for lang, catalog in _catalogs().items():
        listed = catalog["file-refused-not-accepted"].lower()
        named = {"jpg": "jpeg"}  # the sentence names the type once
        missing = [e for e in (*photos, *videos) if named.get(e, e) not in listed]
        assert missing == [], f"{lang} does not name {missing}"
