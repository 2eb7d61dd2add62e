"""Every answer under /v1/ is JSON, errors included; nested JSON is a 400, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hashfed.node.config import CasesConfig, ServerConfig
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.cases import CASES_PATH, PIN_HEADER, setup_case_api
from hashfed.node.match.bank import BankIndex
from hashfed.node.services.casedesk import open_case_desk
from hashfed.node.store.db import open_database
from synchelpers import make_node

NESTED = b"[" * 5000
NUMBER = "HF-0000-0000-0000-0000-0000-0000-00"


@asynccontextmanager
async def node_server(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Serves a publisher with its case desk and match API on loopback: (url, API token)."""
    node = make_node(tmp_path, "p", "publisher")
    desk = open_case_desk(node.config, node.signer)
    db = open_database(node.config.database)
    app = create_app(
        NodeServices(
            db.conn,
            node.config.origin,
            ServerConfig(max_body=4096),
            match_index=BankIndex.load(db.conn),
            api_token=node.api_token(),
        )
    )
    setup_case_api(app, desk, CasesConfig(guess_burst=1000, open_burst=1000))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", node.api_token()
    finally:
        await runner.cleanup()
        desk.close()
        db.conn.close()


async def _json_answer(resp: aiohttp.ClientResponse) -> dict[str, object]:
    assert resp.content_type == "application/json", (resp.status, await resp.text())
    body = json.loads(await resp.text())
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    return body


@pytest.mark.parametrize(
    "path",
    [CASES_PATH, f"{CASES_PATH}/{NUMBER}/status", f"{CASES_PATH}/{NUMBER}/withdraw", "/v1/match"],
)
async def test_deeply_nested_json_is_a_json_400(tmp_path: Path, path: str) -> None:
    async with node_server(tmp_path) as (url, token), aiohttp.ClientSession() as session:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {token}",
            PIN_HEADER: "correct-horse-42",
        }
        async with session.post(url + path, data=NESTED, headers=headers) as resp:
            assert resp.status == 400
            await _json_answer(resp)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", CASES_PATH, 405),
        ("DELETE", f"{CASES_PATH}/{NUMBER}/withdraw", 405),
        ("POST", f"{CASES_PATH}/{NUMBER}//withdraw", 404),
        ("GET", f"{CASES_PATH}/{NUMBER}/nothing", 404),
        ("GET", "/v1/match", 405),
    ],
)
async def test_router_errors_under_v1_are_json(
    tmp_path: Path, method: str, path: str, status: int
) -> None:
    async with node_server(tmp_path) as (url, token), aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.request(method, url + path, headers=headers) as resp:
            assert resp.status == status
            body = await _json_answer(resp)
            assert NUMBER not in str(body)
            if status == 405:
                assert resp.headers["Allow"]
                assert "not allowed" in str(body["error"])


async def test_oversized_body_under_v1_is_a_json_413(tmp_path: Path) -> None:
    async with node_server(tmp_path) as (url, token), aiohttp.ClientSession() as session:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        body = json.dumps({"hashes": [{"kind": "md5", "hash": "0" * 32}] * 9000}).encode()
        async with session.post(url + "/v1/match", data=body, headers=headers) as resp:
            assert resp.status == 413
            await _json_answer(resp)
        async with session.post(url + CASES_PATH, data=body, headers=headers) as resp:
            assert resp.status == 413
            await _json_answer(resp)


async def test_c2sp_endpoints_keep_their_own_formats(tmp_path: Path) -> None:
    async with node_server(tmp_path) as (url, _token), aiohttp.ClientSession() as session:
        async with session.get(url + "/healthz") as resp:  # JSON, outside /v1/ too
            assert resp.status == 200 and resp.content_type == "application/json"
            assert await resp.json() == {"status": "ok"}
        async with session.get(url + "/nowhere") as resp:
            assert resp.status in (401, 404)
