"""The real 'hashfed serve' with JSON logs: every route, the attack paths that used to
leak case numbers, and no secret in any line."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from pathlib import Path

from hashfed.node.config import write_config
from hashfed.node.home import ensure_admin_token
from hashfed.protocol.session import sign_session_request
from hashfed.protocol.tiles import log_prefix
from prodhelpers import http, json_lines, serving
from servehelpers import free_port
from synchelpers import allow, make_node, origin_of, publish

P = origin_of("p")
PIN = "correct-horse-battery-41"
EMAIL = "person.private@example.org"
JSON = {"Content-Type": "application/json"}


def case_hashes(seed: int) -> list[dict[str, object]]:
    digest = ((seed.to_bytes(4, "big") + (7).to_bytes(4, "big")) * 4).hex()
    return [{"kind": "pdq", "hash": digest, "quality": 100}]


def test_every_route_logged_as_json_by_route_name_and_no_secret_appears(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    q = make_node(tmp_path, "q")
    allow(p, q)
    publish(p, 3)
    api_token = p.api_token()
    admin_token = ensure_admin_token(p.config.home)
    write_config(p.config)
    home = p.config.home
    p.close()
    prefix = "/" + log_prefix(P)
    secrets: list[str] = [PIN, EMAIL, api_token, admin_token]
    expected: list[tuple[str, str, int]] = []  # (method, route, status) in order

    with serving(home, free_port(), "--no-sync") as (url, stderr):

        def call(
            method: str,
            path: str,
            route: str,
            status: int,
            headers: dict[str, str] | None = None,
            body: object = None,
        ) -> bytes:
            data = None if body is None else json.dumps(body).encode()
            got, answer = http(method, url + path, headers, data)
            assert got == status, (method, path, got, answer)
            expected.append((method, route, status))
            return answer

        call("GET", "/healthz", "/healthz", 200)
        call("GET", "/logs", "/logs", 401)
        call("GET", prefix + "/checkpoint", "/log/{origin_hash}/checkpoint", 401)
        session = sign_session_request(P, int(time.time()), q.peer_signer).encode()
        status, answer = http("POST", url + "/v1/auth/session", {}, session)
        assert status == 200, answer
        expected.append(("POST", "/v1/auth/session", 200))
        token = json.loads(answer)["token"]
        secrets.append(token)
        peer = {"Authorization": "Bearer " + token}
        call("GET", prefix + "/checkpoint", "/log/{origin_hash}/checkpoint", 200, peer)
        call("GET", prefix + "/tile/0/000.p/3", "/log/{origin_hash}/tile/{tail}", 200, peer)
        call("GET", prefix + "/tile/entries/000.p/3", "/log/{origin_hash}/tile/{tail}", 200, peer)
        call("GET", prefix + "/content/000.p/3", "/log/{origin_hash}/content/{tail}", 200, peer)
        match = {"hashes": [{"kind": "pdq", "hash": ((1).to_bytes(4, "big") * 8).hex()}]}
        bearer = {"Authorization": "Bearer " + api_token, **JSON}
        call("POST", "/v1/match", "/v1/match", 200, bearer, match)
        call("POST", "/v1/match", "/v1/match", 400, bearer, {"hashes": "no"})
        call("POST", "/witness/add-checkpoint", "/witness/add-checkpoint", 400, {}, "x")

        # The case desk: an email it cannot send, then a case with its own PIN.
        call(
            "POST",
            "/v1/cases",
            "/v1/cases",
            400,
            JSON,
            {"hashes": case_hashes(1), "pin": PIN, "email": EMAIL},
        )
        opened = json.loads(
            call(
                "POST", "/v1/cases", "/v1/cases", 201, JSON, {"hashes": case_hashes(2), "pin": PIN}
            )
        )
        number = opened["case"]
        secrets += [number, number.split("-", 1)[-1]]
        pin = {"X-Case-PIN": PIN}
        call("GET", f"/v1/cases/{number}", "/v1/cases/{number}", 200, pin)
        call("GET", f"/v1/cases/{number}?pin={PIN}", "/v1/cases/{number}", 400)
        call(
            "POST",
            f"/v1/cases/{number}/status",
            "/v1/cases/{number}/status",
            200,
            JSON,
            {"pin": PIN},
        )
        call("POST", f"/v1/cases/{number}/hashes", "/v1/cases/{number}/hashes", 409, JSON, {})
        call(
            "POST",
            f"/v1/cases/{number}/withdraw",
            "/v1/cases/{number}/withdraw",
            404,
            {"X-Case-PIN": "wrong-pin-000"},
        )
        # The paths that used to put the case number in the log.
        call("GET", f"/v1/cases?{number}", "unmatched", 405)
        call("GET", f"/v1/cases;{number}", "unmatched", 401)
        call("POST", f"/V1/CASES/{number}/withdraw", "unmatched", 401, pin)
        call("GET", f"/x/v1/cases/{number}", "unmatched", 401)
        # Requests aiohttp's parser refuses: its own logger used to quote them.
        assert raw_request(url, f"GET /v1/cases/{number} HTTP/1.1\r\nX-Case-PIN: {PIN}\0")
        assert raw_request(url, f"GET /v1/cases/{number}\x7f HTTP/1.1\r\nX-Case-PIN: {PIN}")
        call("POST", f"/v1/cases/{number}/withdraw", "/v1/cases/{number}/withdraw", 200, pin)

        admin = {"Authorization": "Bearer " + admin_token}
        call("GET", "/metrics", "/metrics", 401, peer)  # a peer session is not enough
        call("GET", "/metrics", "/metrics", 200, admin)
        call("GET", "/v1/status", "/v1/status", 200, admin)

    text = stderr.read_text()
    for secret in secrets:
        assert secret not in text, f"{secret!r} appears in the log"
    records = json_lines(stderr)
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z")
    access = [r for r in records if r.get("event") == "request"]
    seen = [(r["method"], r["route"], r["status"]) for r in access]
    probes = len(seen) - len(expected)  # the readiness probes of serving()
    assert seen[probes:] == expected
    assert {route for _, route, _ in seen[:probes]} == {"/readyz"}
    for r in access:
        assert r["logger"] == "hashfed.access" and r["duration"] >= 0
        private = r["route"] == "unmatched" or r["route"].startswith("/v1/cases")
        assert r["client"] == (None if private else "127.0.0.1"), r
    peers = {r["route"]: r["peer"] for r in access if r["status"] == 200}
    assert peers["/log/{origin_hash}/content/{tail}"] == "q"
    assert peers["/v1/match"] == "api-token" and peers["/metrics"] == "admin"
    events = [r.get("event") for r in records]
    assert events.count("start") == 1 and events.count("stop") == 1
    assert events.count("case_opened") == 1 and events.count("case_withdrawn") == 1
    assert events.index("start") < events.index("request") and events[-1] != "start"
    [refusal] = [r for r in records if r.get("event") == "witness_refused"]
    assert refusal["status"] == 400


def raw_request(url: str, head: str) -> bytes:
    """Sends head (a request line and headers, exactly as given) and returns the answer."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer
