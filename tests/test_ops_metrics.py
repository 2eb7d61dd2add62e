"""Prometheus metrics and the admin status of real 'hashfed serve' processes, scraped after
a sync, a match and a case, and read with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hashfed.node.config import CasesConfig, write_config
from hashfed.node.home import ensure_admin_token
from hashfed.node.http.metrics import Metrics
from prodhelpers import http, json_lines, serving
from prometheus_client.parser import text_string_to_metric_families
from servehelpers import free_port
from synchelpers import allow, make_node, origin_of, pdq_hashes, publish, trust, use

P, Q = origin_of("p"), origin_of("q")
RULES = Path(__file__).resolve().parent.parent / "docs" / "alerts.yml"
JSON = {"Content-Type": "application/json"}


def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Returns every sample of url/metrics as {(name, sorted labels): value}."""
    status, body = http("GET", url + "/metrics", {"Authorization": "Bearer " + token})
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        samples[("#family", (("name", family.name),))] = 0.0
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def status_of(url: str, token: str) -> dict[str, Any]:
    status, body = http("GET", url + "/v1/status", {"Authorization": "Bearer " + token})
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def wait_until_synced(url: str, token: str, size: int) -> None:
    """Waits for the partner's background sync to apply size entries of P and index them."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        samples = scrape(url, token)
        if samples.get(("hashfed_bank_active_hashes", (("kind", "pdq"),))) == size:
            return
        time.sleep(0.05)
    pytest.fail(f"the partner did not sync {size} entries: {status_of(url, token)}")


def case(url: str, seed: int, pin: str) -> tuple[int, dict[str, Any]]:
    digest = ((seed.to_bytes(4, "big") + (9).to_bytes(4, "big")) * 4).hex()
    body = {"hashes": [{"kind": "pdq", "hash": digest, "quality": 100}], "pin": pin}
    status, answer = http("POST", url + "/v1/cases", JSON, json.dumps(body).encode())
    return status, json.loads(answer)


def test_scrape_after_a_sync_a_match_and_a_case(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    p.config = replace(p.config, cases=replace(CasesConfig(), open_burst=2, max_failures=1))
    write_config(p.config)
    q = make_node(tmp_path, "q")
    publish(p, 3)
    allow(p, q)
    trust(q, p)
    p_port, q_port = free_port(), free_port()
    use(q, p, f"http://127.0.0.1:{p_port}")
    p_admin, q_admin = ensure_admin_token(p.config.home), ensure_admin_token(q.config.home)
    q_api = q.api_token()
    for node in (p, q):
        node.close()

    with (
        serving(p.config.home, p_port, "--no-sync") as (p_url, _),
        serving(q.config.home, q_port) as (q_url, q_log),
    ):
        wait_until_synced(q_url, q_admin, 3)
        # A match that hits and one that misses, with q's local API token.
        bearer = {"Authorization": "Bearer " + q_api, **JSON}
        for digest in (pdq_hashes(1, 1)[0].hash, b"\xff" * 32):
            doc = {"hashes": [{"kind": "pdq", "hash": digest.hex()}]}
            assert http("POST", q_url + "/v1/match", bearer, json.dumps(doc).encode())[0] == 200
        # Cases: two opened, a third refused by the rate limit; one withdrawn; one locked.
        status, first = case(p_url, 1, "pin-of-the-first-case")
        assert status == 201
        assert case(p_url, 2, "pin-of-the-second-case")[0] == 201
        assert case(p_url, 3, "pin-of-the-third-case")[0] == 429
        withdraw = f"{p_url}/v1/cases/{first['case']}/withdraw"
        assert http("POST", withdraw, {"X-Case-PIN": "wrong-pin-1"})[0] == 404
        assert http("POST", withdraw, {"X-Case-PIN": "pin-of-the-first-case"})[0] == 429
        q_samples, p_samples = scrape(q_url, q_admin), scrape(p_url, p_admin)
        q_status = status_of(q_url, q_admin)
        # A peer's session or no token at all gets nothing.
        assert http("GET", q_url + "/metrics")[0] == 401
        assert http("GET", q_url + "/v1/status", {"Authorization": "Bearer " + q_api})[0] == 401

    # The partner logged its sync round as one structured line.
    [first, *_] = [r for r in json_lines(q_log) if r.get("event") == "sync"]
    assert first["origin"] == P and first["peer"] == "p" and first["error"] is None
    assert (first["from_size"], first["to_size"], first["applied"], first["flagged"]) == (
        0,
        3,
        3,
        0,
    )
    assert first["status"] == "advanced" and first["duration"] >= 0
    # The partner: the origin it follows, its bank, its matches.
    assert value(q_samples, "hashfed_log_size", origin=P, role="publisher") == 3
    assert value(q_samples, "hashfed_log_size", origin=Q, role="own") == 0
    assert value(q_samples, "hashfed_log_offered_size", origin=P) == 3
    assert value(q_samples, "hashfed_log_lag_entries", origin=P) == 0
    last_sync = value(q_samples, "hashfed_log_last_sync_timestamp_seconds", origin=P)
    assert time.time() - 600 < last_sync <= time.time()
    assert value(q_samples, "hashfed_log_sync_failures", origin=P) == 0
    assert value(q_samples, "hashfed_log_flagged_entries", origin=P) == 0
    assert value(q_samples, "hashfed_log_halted", origin=P) == 0
    assert value(q_samples, "hashfed_log_cosignatures", origin=P) == 0
    assert value(q_samples, "hashfed_sync_rounds_total", origin=P, result="ok") >= 1
    assert value(q_samples, "hashfed_bank_active_hashes", kind="pdq") == 3
    assert value(q_samples, "hashfed_bank_active_hashes", kind="md5") == 0
    assert value(q_samples, "hashfed_index_load_seconds") >= 0
    assert value(q_samples, "hashfed_freshness_bound_seconds") == 86400
    assert value(q_samples, "hashfed_match_requests_total", result="hit") == 1
    assert value(q_samples, "hashfed_match_requests_total", result="miss") == 1
    assert value(q_samples, "hashfed_match_duration_seconds_count", result="hit") == 1
    assert value(q_samples, "hashfed_match_duration_seconds_bucket", result="hit", le="+Inf") == 1
    requests = value(
        q_samples, "hashfed_http_requests_total", route="/v1/match", method="POST", status="200"
    )
    assert requests == 2
    [build] = [labels for name, labels in q_samples if name == "hashfed_build_info"]
    assert dict(build)["version"] == "0.1.0"
    # The publisher: its case desk.
    assert value(p_samples, "hashfed_cases_opened_total") == 2
    assert value(p_samples, "hashfed_case_rate_limited_total", what="opening") == 1
    assert value(p_samples, "hashfed_case_lockouts_total") == 1
    assert value(p_samples, "hashfed_cases_withdrawn_total") == 0
    assert value(p_samples, "hashfed_log_size", origin=P, role="own") == 3
    # The admin status agrees.
    assert q_status["state"] == "OK" and q_status["code"] == 0, q_status
    row = {r["origin"]: r for r in q_status["logs"]}[P]
    assert (row["size"], row["failures"], row["halted"], row["problems"]) == (3, 0, False, [])
    # Every metric the example alert rules use appeared in a scrape (as samples, or
    # declared: the witness timestamp has samples only under a witness policy).
    seen = {name for name, _ in (*q_samples, *p_samples)} | {
        dict(labels)["name"] for name, labels in (*q_samples, *p_samples) if name == "#family"
    }
    used = set(re.findall(r"\bhashfed_[a-z_]+", RULES.read_text()))
    assert used and used <= seen, used - seen


async def test_a_separate_admin_listener_serves_metrics_and_the_main_port_does_not(
    tmp_path: Path,
) -> None:
    from hashfed.node.config import MetricsConfig, ServerConfig
    from hashfed.node.home import ensure_admin_token as admin_token
    from hashfed.node.http.app import AdminAccess, NodeServices, create_app
    from hashfed.node.store.db import open_database
    from synchelpers import run_app

    node = make_node(tmp_path, "n")
    admin_port = free_port()
    config = replace(node.config, metrics=MetricsConfig(listen="127.0.0.1", port=admin_port))
    token = admin_token(config.home)
    db = open_database(config.database)
    app = create_app(
        NodeServices(db.conn, config.origin, ServerConfig(), admin=AdminAccess(config, token))
    )
    bearer = {"Authorization": "Bearer " + token}
    async with run_app(app) as url:
        admin = f"http://127.0.0.1:{admin_port}"
        status, body = await asyncio.to_thread(http, "GET", admin + "/metrics", bearer)
        assert status == 200 and b"hashfed_log_size{" in body
        assert (await asyncio.to_thread(http, "GET", admin + "/metrics"))[0] == 401
        status, body = await asyncio.to_thread(http, "GET", admin + "/v1/status", bearer)
        assert status == 200 and json.loads(body)["state"] == "OK"
        assert (await asyncio.to_thread(http, "GET", url + "/metrics", bearer))[0] == 401
    db.conn.close()
    node.close()


def test_unknown_methods_share_one_label() -> None:
    """aiohttp accepts any method name; each must not become a series of its own."""
    metrics = Metrics()
    for n in range(50):
        metrics.observe_request("unmatched", f"FOO{n}", 405)
    metrics.observe_request("/logs", "GET", 401)
    labels = {
        sample.labels["method"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "hashfed_http_requests_total"
    }
    assert labels == {"OTHER", "GET"}
