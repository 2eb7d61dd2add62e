"""The README's tour, run command by command as written, against real nodes.

The block after the ``<!-- tour: ... -->`` marker in README.md is read line by
line: ``export NAME=VALUE`` sets the environment of the commands that follow, a
line ending in ``&`` starts a background process (the test waits until its port
answers before the next command), and every other line runs in bash and must
exit 0. The only change made to the text is the port: 8470 becomes a free one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "vectors" / "pdq" / "images" / "misc-images"
MARKER = "<!-- tour:"


def tour_commands(readme: str) -> list[str]:
    """Returns the commands of the tested tour block (comments and blank lines dropped)."""
    after = readme[readme.index(MARKER) :]
    block = after.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return
        except OSError:
            time.sleep(0.1)


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    commands = tour_commands((ROOT / "README.md").read_text())
    assert any("hashfed hash photos --jsonl | hashfed publish -" in c for c in commands)
    assert any("keys show peer" in c for c in commands)  # the operators exchange keys
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("wee.jpg", "small.jpg", "c.png"):
        shutil.copy(PHOTOS / name, photos / name)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HASHFED_DIR", None)
    background: list[subprocess.Popen[bytes]] = []
    try:
        for number, command in enumerate(commands):
            command = command.replace("8470", str(port))
            exported = re.fullmatch(r"export (\w+)=(.*)", command)
            if exported:
                name, value = exported.groups()
                env[name] = value.replace("$PWD", str(tmp_path))
                continue
            if command.endswith("&"):
                log = tmp_path / f"background-{number}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        ["bash", "-c", command[:-1]], cwd=tmp_path, env=env, stdout=out, stderr=out
                    )
                background.append(proc)
                _wait_for_port(port, proc, log)
                continue
            result = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    finally:
        for proc in background:
            proc.terminate()
            proc.wait(timeout=30)
