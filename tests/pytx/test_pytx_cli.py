"""The real python-threatexchange CLI fetches from a real hashfed publisher through the extension.

The publisher is the real ``hashfed serve`` process: a person opens and
withdraws cases over its case API (hashes computed by hashfed's own hasher, as
on their device), and the operator publishes them with ``hashfed cases
publish``. The platform runs the real ``threatexchange`` CLI (``config
extensions add``, ``config collab edit``, ``fetch``, ``match``) with its state
in a HOME of its own, and authenticates with a peer key through the session
handshake.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hashfed.node.home import init_node
from hashfed.node.http.cases import PIN_HEADER
from hashfed.signing.keys import generate_key
from pytxhelpers import BIN, ORIGIN, OTHER_PHOTO, PHOTO, THIRD_PHOTO, pdq_of, platform


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hashfed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hashfed"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Publisher:
    home: Path
    url: str
    log_key: str

    def open_case(self, *photos: Path) -> tuple[str, str]:
        """Opens a case for photos as the person's device does (hashes only, over the
        case API); returns (case number, PIN)."""
        hashes = [{"kind": "pdq", "hash": pdq_of(p), "quality": 100} for p in photos]
        answer = self._post("/v1/cases", {"hashes": hashes})
        return answer["case"], answer["pin"]

    def publish_cases(self) -> None:
        """Publishes every pending case now, as the operator."""
        published = hashfed("--dir", str(self.home), "cases", "publish")
        assert published.returncode == 0, published.stdout + published.stderr

    def withdraw(self, case: tuple[str, str]) -> None:
        number, pin = case
        answer = self._post(f"/v1/cases/{number}/withdraw", {}, {PIN_HEADER: pin})
        assert answer["state"] == "withdrawn", answer

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)


def wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    while True:  # the readiness of the process itself: poll until it answers or dies
        assert server.poll() is None, "hashfed serve exited early"
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[tuple[Publisher, str]]:
    """A real 'hashfed serve' publisher that lists the platform's peer key; yields it
    and the platform's secret peer key."""
    home = tmp_path / "p"
    node = init_node(home, ORIGIN, "publisher")
    log_key = node.signer.vkey()
    node.close()
    peer_skey, peer_vkey = generate_key("peer:platform.test/pytx")
    added = hashfed("--dir", str(home), "peers", "add", "platform", "-", peer_vkey)
    assert added.returncode == 0, added.stdout + added.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "hashfed"), "--dir", str(home), "serve", "--port", str(port), "--no-sync"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server)
        yield Publisher(home, url, log_key), peer_skey
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(not PHOTO.exists(), reason="shared vectors not present")
def test_fetch_match_withdraw_no_match(tmp_path: Path, publisher: tuple[Publisher, str]) -> None:
    pub, peer_key = publisher
    first = pub.open_case(PHOTO)
    second = pub.open_case(PHOTO)  # the same photo in a second case
    pub.open_case(OTHER_PHOTO, THIRD_PHOTO)
    pub.publish_cases()
    tx = platform(tmp_path, pub.url, pub.log_key, peer_key=None)

    # The log is not public: without the peer key the node refuses, and nothing is stored.
    refused = tx.fetch()
    assert refused.returncode != 0, refused.stderr
    assert "HTTP 401" in refused.stderr and "no peer key configured" in refused.stderr
    assert not tx.state_file.exists()

    # The peer key alone is not enough: it is only used at a node whose own peer key
    # is configured (VKEY@URL), which the node proves in its session reply.
    tx.env["TX_HASHFED_PEER_KEY"] = peer_key
    refused = tx.fetch()
    assert refused.returncode != 0, refused.stderr
    assert "HTTP 401" in refused.stderr and "VKEY@URL" in refused.stderr
    assert not tx.state_file.exists()

    shown = hashfed("--dir", str(pub.home), "keys", "show", "peer")
    assert shown.returncode == 0, shown.stderr
    node_key = shown.stdout.strip()
    edit = tx.tx(
        "config", "collab", "edit", "hashfed", "stopncii", "--urls", f"{node_key}@{pub.url}",
        "--origin", ORIGIN, "--log-key", pub.log_key,
    )  # fmt: skip
    assert edit.returncode == 0, edit.stderr
    fetched = tx.fetch()
    assert fetched.returncode == 0, fetched.stderr
    found = tx.matches(PHOTO)
    assert found == ["pdq 0 (stopncii) POSITIVE_CLASS ncii"], found
    photo, other, third = (pdq_of(p) for p in (PHOTO, OTHER_PHOTO, THIRD_PHOTO))
    assert tx.records() == sorted([photo, photo, other, third])

    # One of the two cases withdrawn: the hash stays (its other entry is active).
    pub.withdraw(first)
    assert tx.fetch().returncode == 0
    assert tx.matches(PHOTO) == found
    assert tx.records() == sorted([photo, other, third])

    # Both withdrawn: the retractions delete the entries, although their content is gone.
    pub.withdraw(second)
    fetched = tx.fetch()
    assert fetched.returncode == 0, fetched.stderr
    assert tx.records() == sorted([other, third])
    assert tx.matches(PHOTO) == []
    assert tx.matches(OTHER_PHOTO) == found  # the other case is untouched
