"""'hashfed serve' binds first, loads its index off the event loop, stops at once, and
fails to start with one line; the other commands never import the index, and nothing
imports a JIT compiler (numba, llvmlite)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from hashfed.node.cli.main import main
from hashfed.node.config import NodeConfig, ServerConfig, write_config
from hashfed.node.home import init_node
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.readiness import Readiness
from hashfed.node.store.db import open_database
from servehelpers import (
    Served,
    free_port,
    start_serve,
    status_of,
    stop,
    wait_for_line,
    wait_for_status,
)

PDQ_HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
BANK_CSV = f"kind,hash,quality\npdq,{PDQ_HASH},100\nmd5,0a21c8f85a55a9e276ffc2c53f6887c4,\n"

HEAVY = ("numba", "llvmlite", "hashfed.node.match.index", "hashfed.node.match._mih")
"""What only matching needs (the index and its C loops), and JIT compilers nothing needs."""

COMPILERS = ("numba", "llvmlite")

_SERVE_WATCHED = """
import sys

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {compilers!r}:
            sys.stderr.write(f"IMPORTED {{name}}\\n")
            sys.stderr.flush()
        return None

sys.meta_path.insert(0, Watch())
sys.argv = ["hashfed", *sys.argv[1:]]
from hashfed.node.entry import main
main()
"""

_RUN_EACH = """
import json, sys
from click.testing import CliRunner
from hashfed.node.entry import main as entry

heavy = {heavy!r}
sys.argv = ["hashfed", "--version"]
entry()
report = [["--version", 0, [m for m in heavy if m in sys.modules], ""]]
from hashfed.node.cli.main import main

for args in json.loads(sys.argv_json):
    result = CliRunner().invoke(main, args, input={bank!r})
    loaded = [m for m in heavy if m in sys.modules]
    report.append([args, result.exit_code, loaded, result.output[-300:]])
print(json.dumps(report))
"""


def test_commands_import_no_compiler_nor_the_index(tmp_path: Path) -> None:
    """Runs each command in turn in one fresh process, listing what it imported."""
    publisher = init_node(tmp_path / "p", "p.test/hashfed", "publisher")
    home = tmp_path / "n"
    node = init_node(home, "n.test/hashfed")
    node.close()
    photo = sorted((Path(__file__).parents[1] / "../shared/vectors/pdq/images").iterdir())[0]
    vkey, peer_vkey = publisher.signer.vkey(), publisher.peer_signer.vkey()
    publisher.close()
    d = ["--dir", str(home)]
    commands = [
        ["--help"],
        ["hash", str(photo)],
        [*d, "publish", "-"],
        [*d, "retract", "0"],
        [*d, "log", "verify"],
        [*d, "keys", "show"],
        [*d, "trust", "add", vkey, "--role", "publisher"],
        [*d, "trust", "list"],
        [*d, "peers", "add", "p", f"http://127.0.0.1:{free_port()}", peer_vkey],
        [*d, "peers", "list"],
        [*d, "sync", "--help"],
        [*d, "sync"],  # the peer is down: it fails, after loading all it needs
    ]
    code = _RUN_EACH.format(heavy=HEAVY, bank=BANK_CSV).replace(
        "sys.argv_json", repr(json.dumps(commands))
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row[0] for row in report][1:] == commands
    for args, exit_code, loaded, output in report:
        assert exit_code == (1 if args[-1] == "sync" else 0), (args, exit_code, output)
        assert loaded == [], (args, loaded)


@pytest.fixture
def published(tmp_path: Path) -> Path:
    home = tmp_path / "n"
    init_node(home, "n.test/hashfed", "publisher").close()
    result = CliRunner().invoke(main, ["--dir", str(home), "publish", "-"], input=BANK_CSV)
    assert result.exit_code == 0, result.output
    return home


def _match(url: str, token: str) -> tuple[int, dict[str, str], object]:
    body = json.dumps({"hashes": [{"kind": "pdq", "hash": PDQ_HASH}]}).encode()
    request = urllib.request.Request(
        f"{url}/v1/match",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.load(exc)


NOT_BEFORE_BIND = (
    *HEAVY,
    "numpy",
    "pandas",
    "PIL",
    "pillow_heif",
    "pydicom",
    "hashfed.node.match.bank",
    "hashfed.hasher.decode",
    "hashfed.hasher.batch",
    "hashfed.hasher.pdq",
)
"""What 'hashfed serve' imports only once its port is bound (the index, numpy) or not
at all (the hasher's decoders: only uploads to the case page and 'hashfed hash')."""

_AT_BIND = """
import json, os, signal, sys
from hashfed.node.entry import main

class Watch:
    # stdout that, at the line "serving ... on URL", reports what is imported and stops serve

    def __init__(self, out):
        self.out = out

    def write(self, text):
        if text.startswith("serving "):
            loaded = [m for m in {modules!r} if m in sys.modules]
            os.write(self.out.fileno(), json.dumps(loaded).encode() + b"\\n")
            os.kill(os.getpid(), signal.SIGTERM)
        return len(text)

    def __getattr__(self, name):
        return getattr(self.out, name)

sys.stdout = Watch(sys.stdout)
sys.argv = ["hashfed", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("read_only", [False, True])
def test_serve_binds_before_importing_numpy_the_index_or_decoders(
    published: Path, read_only: bool
) -> None:
    """The real command line in a fresh process, stopped as it says it is serving."""
    args = ["--dir", str(published), "serve", "--port", "0"]
    args += ["--read-only"] if read_only else []  # else it syncs too (nothing to sync)
    code = _AT_BIND.format(modules=NOT_BEFORE_BIND)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), f"it never said it was serving: {done.stderr}"
    assert json.loads(done.stdout.splitlines()[0]) == [], done.stderr


def test_serve_announces_only_once_bound_then_gets_ready_and_stops(
    published: Path, tmp_path: Path
) -> None:
    """... and loads and uses its index without ever importing a JIT compiler."""
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-c", _SERVE_WATCHED.format(compilers=COMPILERS)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--dir", str(published), "serve", "--port", str(port), "--no-sync"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, log)
    try:
        line = wait_for_line(served, "serving n.test/hashfed on ")
        url = line.rsplit(" ", 1)[1]
        assert url == f"http://127.0.0.1:{port}"
        assert status_of(f"{url}/healthz") == 200  # bound before it said so: no retry
        wait_for_status(served, f"{url}/readyz")
        status, _, answer = _match(url, (published / "keys" / "api.token").read_text().strip())
        assert status == 200
        assert answer["results"][0]["matches"][0]["distance"] == 0  # type: ignore[index]
    finally:
        code = stop(served)
    assert code == 0, served.output()
    assert "Traceback" not in served.output()
    assert "IMPORTED" not in served.output()


def test_sigterm_right_after_bind(published: Path) -> None:
    """SIGTERM as soon as the port is bound (the index may still be loading on its
    daemon thread) stops the node at once and leaves the database sound."""
    port = free_port()
    served = start_serve(published, "--port", str(port), "--no-sync")
    try:
        url = wait_for_line(served, "serving ").rsplit(" ", 1)[1]
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
            assert json.load(response) == {"status": "ok"}
    finally:
        served.proc.send_signal(signal.SIGTERM)
        code = stop(served)
    assert code == 0, served.output()
    assert "Traceback" not in served.output()
    db = open_database(published / "hashfed.db")  # still a sound database
    assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.conn.close()


def _break_port(config: NodeConfig) -> tuple[list[str], str, socket.socket | None]:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return ["--port", str(taken.getsockname()[1])], "the port is in use", taken


def _break_cert(config: NodeConfig) -> tuple[list[str], str, socket.socket | None]:
    server = replace(config.server, tls_cert="missing.pem", tls_key="missing.key")
    write_config(replace(config, server=server))
    return [], "cannot read the TLS certificate", None


def _break_database(config: NodeConfig) -> tuple[list[str], str, socket.socket | None]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{config.database}{suffix}").unlink(missing_ok=True)
    Path(config.database).write_bytes(b"this is not a database, " * 200)
    return [], "cannot open the database", None


def _break_config(config: NodeConfig) -> tuple[list[str], str, socket.socket | None]:
    (config.home / "hashfed.toml").write_text("origin = [unclosed\n")
    return [], "is not valid TOML", None


Breaker = Callable[[NodeConfig], tuple[list[str], str, socket.socket | None]]


def test_startup_errors_are_one_line(tmp_path: Path) -> None:
    """A port in use, a missing certificate, a damaged database, a bad config: each
    'hashfed serve' (all four run at once) exits non-zero with one line on stderr."""
    breakers: list[Breaker] = [_break_port, _break_cert, _break_database, _break_config]
    runs = []
    for breaker in breakers:
        node = init_node(tmp_path / breaker.__name__, "n.test/hashfed")
        node.close()
        args, reason, taken = breaker(node.config)
        command = [sys.executable, "-m", "hashfed.node", "--dir", str(node.config.home)]
        command += ["serve", "--no-sync", *(args or ["--port", "0"])]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runs.append((breaker.__name__, reason, taken, proc))
    for name, reason, taken, proc in runs:
        stdout, stderr = proc.communicate(timeout=300)
        if taken is not None:
            taken.close()
        assert proc.returncode != 0, name
        assert "Traceback" not in stderr, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, stderr)
        assert reason in lines[0], (name, stderr)
        assert "serving" not in stdout, name


async def test_readyz_and_match_answer_503_until_the_index_loads(
    tmp_path: Path, aiohttp_client
) -> None:  # type: ignore[no-untyped-def]
    node = init_node(tmp_path / "n", "n.test/hashfed")
    readiness = Readiness()
    readiness.wait_for("index", "reading the bank")
    app = create_app(
        NodeServices(
            node.db.conn,
            node.config.origin,
            ServerConfig(),
            match_index=lambda: None,
            api_token="secret-token",
            readiness=readiness,
        )
    )
    client: TestClient = await aiohttp_client(app)  # type: ignore[type-arg]
    health = await client.get("/healthz")
    assert health.status == 200 and await health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 503 and ready.headers["Retry-After"]
    assert await ready.json() == {"status": "starting", "waiting": {"index": "reading the bank"}}
    match = await client.post(
        "/v1/match",
        json={"hashes": [{"kind": "pdq", "hash": PDQ_HASH}]},
        headers={"Authorization": "Bearer secret-token"},
    )
    assert match.status == 503 and match.headers["Retry-After"]
    assert "loading" in (await match.json())["error"]
    readiness.ready("index")
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    node.close()
