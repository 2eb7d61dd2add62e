"""'pip install .' (not editable) gives a working hashfed: the wheel, installed with
--no-deps into a fresh venv that sees this environment's dependencies, runs init,
publish and serve from its own files, not from the source tree."""

from __future__ import annotations

import json
import shutil
import signal
import site
import subprocess
import sys
import venv
from pathlib import Path

from prodhelpers import http, wait_ready
from servehelpers import free_port

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("node", "protocol", "signing", "sync", "hasher", "pyproject.toml", "README.md")
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_wheel_installs_and_runs_init_publish_and_serve(tmp_path: Path) -> None:
    # Build from a copy of the sources, so the test leaves nothing in the tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, src / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src))
    [wheel] = list(dist.glob("hashfed-*.whl"))

    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site_dir = Path(
        run(str(python), "-c", "import site; print(site.getsitepackages()[0])").stdout.strip()
    )
    # The dependencies come from this environment's site-packages (no network).
    (site_dir / "build-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel))
    hashfed = env_dir / "bin" / "hashfed"
    where = run(str(python), "-c", "import hashfed.node.cli.main as m; print(m.__file__)").stdout
    assert where.startswith(str(site_dir)), where
    assert (site_dir / "hashfed" / "node" / "py.typed").exists()
    match_dir = site_dir / "hashfed" / "node" / "match"
    assert list(match_dir.glob("_mih.*.so")) and (match_dir / "_mih.pyi").exists()

    home = tmp_path / "node"
    run(str(hashfed), "--dir", str(home), "init", "--origin", "w.test/bank", "--role", "publisher")
    csv = f"kind,hash,quality,labels\npdq,{PDQ},100,ncii\n"
    run(str(hashfed), "--dir", str(home), "publish", "-", input=csv)
    assert run(str(hashfed), "--dir", str(home), "log", "checkpoint").stdout.split("\n")[1] == "1"
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        server = subprocess.Popen(
            [str(hashfed), "--dir", str(home), "serve", "--port", str(port), "--no-sync"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, log)
        token = (home / "keys" / "api.token").read_text().strip()
        body = json.dumps({"hashes": [{"kind": "pdq", "hash": PDQ}]}).encode()
        status, answer = http(
            "POST",
            url + "/v1/match",
            {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
            body,
        )
        assert status == 200 and b'"distance": 0' in answer, answer
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
