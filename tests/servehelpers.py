"""Running the real 'hashfed serve' in tests: start it, wait on its readiness, stop it.

Waits are bounded generously (minutes: a busy 2-core machine may be slow to start a
process) and end as soon as the event happens; a failure shows the server's own log.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

START_BOUND = 300.0
"""Seconds a server may take to answer (to bind, or to load its index) before a test fails."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running 'hashfed serve' process and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def fail(self, what: str) -> None:
        pytest.fail(f"{what}; the server's log:\n{self.output()}")


def start_serve(
    home: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Served:
    """Starts 'hashfed --dir home serve ARGS', its output going to a file."""
    log = log or home.parent / f"{home.name}.serve.log"
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(home), "serve", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    return Served(proc, log)


def status_of(url: str, context: ssl.SSLContext | None = None) -> int:
    """Returns the HTTP status of GET url (raises OSError if nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def wait_for_status(
    served: Served, url: str, want: int = 200, context: ssl.SSLContext | None = None
) -> None:
    """Waits until GET url answers want (bounded by START_BOUND)."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            served.fail(f"hashfed serve exited with {served.proc.returncode} before {url}")
        try:
            if status_of(url, context) == want:
                return
        except OSError:
            pass
        time.sleep(0.05)
    served.fail(f"{url} did not answer {want} within {START_BOUND:.0f} s")


def wait_for_line(served: Served, text: str) -> str:
    """Waits until the server's output holds a line containing text; returns that line."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        for line in served.output().splitlines():
            if text in line:
                return line
        if served.proc.poll() is not None:
            served.fail(f"hashfed serve exited with {served.proc.returncode}")
        time.sleep(0.02)
    served.fail(f"no line with {text!r} within {START_BOUND:.0f} s")
    raise AssertionError("unreachable")


def stop(served: Served) -> int:
    """Sends SIGTERM and returns the exit code (kills it if it does not stop in a minute)."""
    if served.proc.poll() is None:
        served.proc.terminate()
    try:
        return served.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()
        served.fail("hashfed serve did not stop within 60 s of SIGTERM")
        raise


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Waits until GET url answers 200 from a server started by hand (bounded by
    START_BOUND), failing with its output if it exits first."""
    deadline = time.monotonic() + START_BOUND
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"hashfed serve exited with {proc.returncode}:\n{output}")
        try:
            if status_of(url) == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{url} did not answer 200 within {START_BOUND:.0f} s")
