"""Running the real 'hashfed serve' as a child process, for the operations tests."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servehelpers import START_BOUND


def http(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    """Sends one request (the path exactly as given) and returns (status, body)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(url: str, server: subprocess.Popen[bytes], stderr: Path) -> None:
    """Waits until GET url/readyz answers 200: the port is bound and the match index
    loaded (or fails if the server exits)."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"hashfed serve exited early:\n{stderr.read_text()}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            if http("GET", url + "/readyz")[0] == 200:
                return
        time.sleep(0.05)
    pytest.fail(f"{url} did not come up")


@contextlib.contextmanager
def serving(
    home: Path, port: int, *args: str, command: list[str] | None = None
) -> Iterator[tuple[str, Path]]:
    """Runs 'hashfed serve' on home at port with JSON logs; yields (base URL, stderr path).

    On exit it sends SIGTERM and checks the process stopped cleanly, so the stderr
    file then holds every line the server logged."""
    stderr = home.parent / f"{home.name}-serve.log"
    base = command or [sys.executable, "-m", "hashfed.node"]
    argv = [*base, "--dir", str(home), "serve", "--port", str(port), "--log-format", "json"]
    with stderr.open("wb") as err:
        server = subprocess.Popen([*argv, *args], stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, stderr)
        yield url, stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, stderr.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Parses every line of a JSON log; fails on any line that is not a JSON object."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{path}:{n} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        out.append(record)
    return out
