"""specs/openapi.yaml: valid OpenAPI 3.1, the same operations as the node, and fuzzed
against a live ``hashfed serve`` with schemathesis (stateful and stateless)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from hashfed.node.config import ServerConfig, write_config
from hashfed.node.root import writer_node
from hashfed.node.store.db import transaction
from hashfed.node.store.peers import add_peer
from hashfed.protocol.session import peer_key_name, sign_session_request
from hashfed.signing.keys import generate_key, parse_signer
from openapi_spec_validator import validate
from synchelpers import make_node, publish

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "specs" / "openapi.yaml"
METHODS = ("get", "post", "put", "patch", "delete")
FUZZ_SECONDS = int(os.environ.get("HASHFED_FUZZ_SECONDS", "30"))


def _document() -> dict[str, Any]:
    data = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(data, dict)
    return data


def test_the_document_is_valid_openapi_3_1() -> None:
    document = _document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def _app_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """Returns the operations a publisher's 'hashfed serve' answers, as the composition
    root builds it ([metrics] enabled, on the main port)."""
    node = make_node(tmp_path, "p", "publisher")

    async def routes() -> list[web.AbstractRoute]:
        built = writer_node(node, ServerConfig(), sync=False)
        runner = web.AppRunner(built.app, handle_signals=False)
        await runner.setup()  # starts the cleanup contexts; the loops wait for a bind
        try:
            return list(built.app.router.routes())
        finally:
            await runner.cleanup()

    operations = set()
    for route in asyncio.run(routes()):
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert path, info
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)
        methods = METHODS if route.method == "*" else (route.method.lower(),)
        operations |= {(m, path) for m in methods if m != "head"}
    return operations


def test_the_document_lists_every_route_and_nothing_else(tmp_path: Path) -> None:
    documented = {
        (method, path)
        for path, item in _document()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented == _app_operations(tmp_path)


# -- schemathesis against the live node ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


@dataclass(frozen=True)
class LiveNode:
    """A running 'hashfed serve' and a credential for each security scheme."""

    url: str
    peer_token: str
    api_token: str
    admin_token: str


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[LiveNode]:
    """A publisher's 'hashfed serve' (case desk and page, match, witness, metrics)."""
    node = make_node(tmp_path, "p", "publisher")
    publish(node, 300)
    cases = replace(
        node.config.cases,
        guess_burst=10000,
        guess_per_hour=1e6,
        open_burst=10000,
        open_per_hour=1e6,
        open_global_burst=100000,
        open_global_per_hour=1e6,
    )
    node.config = replace(node.config, cases=cases)
    write_config(node.config)
    peer_skey, peer_vkey = generate_key(peer_key_name("fuzzer.test/hashfed"))
    with transaction(node.db) as conn:
        add_peer(conn, "fuzzer", "-", peer_vkey)
    api_token = node.api_token()
    assert node.config.metrics.enabled and not node.config.metrics.listen
    node.close()
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(node.config.home), "serve"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--no-sync"], stdout=log, stderr=log, env=_env()
    )
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        while True:  # wait for readiness, however slow the start
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with opener.open(url + "/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        body = sign_session_request(node.config.origin, int(time.time()), parse_signer(peer_skey))
        request = urllib.request.Request(url + "/v1/auth/session", data=body.encode())
        with opener.open(request, timeout=30) as resp:
            token = json.loads(resp.read())["token"]
        admin_token = (node.config.home / "keys" / "admin.token").read_text().strip()
        yield LiveNode(url, token, api_token, admin_token)
        assert proc.poll() is None, "the node died during the run"
        with opener.open(url + "/healthz", timeout=30) as resp:
            assert resp.status == 200  # still healthy
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_schemathesis_finds_nothing_against_the_live_node(
    live_node: LiveNode, tmp_path: Path
) -> None:
    # Each security scheme gets its own credential: the peer's session token, the
    # node's API token (/v1/match) and the admin token (/metrics, /v1/status, /v1/feedback).
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f'[auth.openapi.bearer]\nbearer = "{live_node.peer_token}"\n'
        f'[auth.openapi.apiToken]\nbearer = "{live_node.api_token}"\n'
        f'[auth.openapi.adminToken]\nbearer = "{live_node.admin_token}"\n'
    )
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            str(DOCUMENT),
            "--url",
            live_node.url,
            "--checks",
            ",".join(checks),
            "--max-time",
            str(FUZZ_SECONDS),
            "--request-timeout",
            "60",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
            "--seed",
            "1",
            # The coverage phase trips over a hypothesis internal error in this
            # environment (SystemError from ast in lambda descriptions); the other
            # phases, stateful included, run.
            "--phases",
            "examples,fuzzing,stateful",
        ],
        capture_output=True,
        text=True,
        env={**_env(), "NO_COLOR": "1"},
        cwd=tmp_path,
        timeout=FUZZ_SECONDS * 4 + 120,
    )
    summary = [line for line in result.stdout.splitlines() if line.strip()][-25:]
    print("\n".join(summary))
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
