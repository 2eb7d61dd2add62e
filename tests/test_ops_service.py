"""The systemd unit in docs/deploy: 'systemd-analyze verify' accepts it with the real
ExecStart path, 'systemd-analyze security' rates it at most 3.0, and 'hashfed serve'
speaks Type=notify: READY=1 once its port is bound, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hashfed.node.home import init_node
from servehelpers import free_port

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "docs" / "deploy" / "hashfed.service"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed ('make tools' installs Debian's systemd)")
    return found


def unit_with_real_exec(tmp_path: Path) -> Path:
    """Returns a copy of the unit whose ExecStart is this environment's hashfed."""
    hashfed = Path(sys.executable).parent / "hashfed"
    assert hashfed.exists(), hashfed
    text = UNIT.read_text().replace("/opt/hashfed/bin/hashfed", str(hashfed))
    assert str(hashfed) in text
    path = tmp_path / "hashfed.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    unit = unit_with_real_exec(tmp_path)
    result = subprocess.run(
        [analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # A typo is reported (so the check above can fail).
    typo = tmp_path / "typo.service"
    typo.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run(
        [analyze(), "verify", str(typo)], capture_output=True, text=True, timeout=120
    )
    assert "notifyy" in result.stderr


def test_systemd_analyze_security_rates_the_unit_at_most_3(tmp_path: Path) -> None:
    unit = unit_with_real_exec(tmp_path)
    command = [analyze(), "security", "--offline=true", "--threshold=30", str(unit)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    text = UNIT.read_text()
    for setting in (
        "User=hashfed",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/hashfed",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "Type=notify",
    ):
        assert setting in text, setting
    # An unhardened unit fails the same threshold.
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nExecStart={Path(sys.executable).parent / 'hashfed'} serve\n")
    result = subprocess.run([*command[:-1], str(bare)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


def test_serve_notifies_systemd_once_the_port_is_bound(tmp_path: Path) -> None:
    home = tmp_path / "n"
    init_node(home, "n.test/hashfed").close()
    address = str(tmp_path / "notify.sock")
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(120)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        command = [sys.executable, "-m", "hashfed.node", "--dir", str(home), "serve"]
        server = subprocess.Popen(
            [*command, "--port", str(port), "--no-sync"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = notify.recv(4096).decode()
            assert ready.startswith("READY=1\n"), ready
            # READY came after the bind: the port answers at once, no waiting.
            url = f"http://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
            server.send_signal(signal.SIGTERM)
            assert notify.recv(4096).decode() == "STOPPING=1"
            assert server.wait(timeout=60) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
