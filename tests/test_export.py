"""hashfed export: the static tlog-tiles tree, served by a plain static file server.

A partner syncing from the exported tree (a GET-only server with no session
endpoint) must end with the same bank as one syncing from the node itself,
before and after growth and erasure, and the tree must never hold erased
content, a temporary file, or a file the web server's worker cannot read.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from click.testing import CliRunner
from hashfed.node.cli.main import main as cli
from hashfed.node.services.export import STATE_FILE, export_logs, export_loop
from hashfed.node.store import logstore
from hashfed.node.store.db import transaction
from hashfed.node.store.peers import forget_mirror
from hashfed.protocol.tiles import content_path, entries_path, log_prefix, tile_path
from servehelpers import free_port, wait_healthy
from synchelpers import (
    active_hashes,
    allow,
    bank,
    bank_state,
    clock,
    make_node,
    origin_of,
    pdq_hashes,
    publish,
    run_app,
    serve,
    sync,
    trust,
    use,
)

P = origin_of("p")


@asynccontextmanager
async def static_tree(root: Path) -> AsyncIterator[str]:
    """Serves root/log/ read-only (GET only, no session endpoint), like a bare web server."""
    app = web.Application()
    (root / "log").mkdir(parents=True, exist_ok=True)
    app.router.add_static("/log", root / "log")
    async with run_app(app) as url:
        yield url


def tree_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "log").rglob("*"))
        if p.is_file()
    }


async def test_partner_from_tree_gets_the_same_bank(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    from_node, from_tree = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    root = tmp_path / "tree"
    publish(p, 300)
    p.own_log(clock()).retract([5])
    first = export_logs(p.db.conn, root)
    (log,) = first.logs
    assert (log.origin, log.size) == (P, 301)
    prefix = root / log_prefix(P)
    assert (prefix / tile_path(0, 1, 45)).is_file() and (prefix / entries_path(1, 45)).is_file()
    assert (prefix / "checkpoint").read_text() == p.db.conn.execute(
        "SELECT checkpoint FROM logs WHERE origin = ?", (P,)
    ).fetchone()[0]

    allow(p, from_node)
    for partner in (from_node, from_tree):
        trust(partner, p)
    async with serve(p) as p_url, static_tree(root) as tree_url:
        use(from_node, p, p_url)
        use(from_tree, p, tree_url)
        for partner in (from_node, from_tree):
            outcome = await sync(partner)
            assert outcome.ok, outcome.errors
        assert bank(from_tree, P) == bank(from_node, P)
        assert bank_state(from_tree, P) == bank_state(p, P)

        # Growth past a full bundle and tile, and an erasure inside an older bundle
        # whose partial version (width 45) is still on disk.
        publish(p, 400, seed=2)
        p.own_log(clock()).retract([3, 290])
        before = tree_files(root)
        assert pdq_hashes(300, 1)[290].hash in b"".join(before.values())
        second = export_logs(p.db.conn, root)
        assert second.logs[0].content_rewritten == 1  # bundle 0 lost content; 1 also grew
        after = tree_files(root)
        changed = {k for k in after if before.get(k) != after[k]}
        # Only what grew or lost content was written: never an old full tile or bundle.
        assert not any("/tile/" in k and "/000" in k and ".p/" not in k for k in changed)
        assert not (prefix / tile_path(0, 1, 45)).exists()  # superseded by the full tile
        for partner in (from_node, from_tree):
            outcome = await sync(partner)
            assert outcome.ok, outcome.errors
        assert bank(from_tree, P) == bank(from_node, P)
        assert bank_state(from_tree, P) == bank_state(p, P)

    # Erased content is nowhere in the tree (partial versions included).
    blob = b"".join(after.values())
    gone = [pdq_hashes(300, 1)[i].hash for i in (3, 5, 290)]
    assert pdq_hashes(300, 1)[4].hash in blob
    assert not any(digest in blob for digest in gone)
    # A third export with nothing new writes nothing.
    assert export_logs(p.db.conn, root).files == 0
    # Readable by the web server's worker, and no temporary file left behind.
    for path in root.rglob("*"):
        assert not path.name.startswith(".tmp-")
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044 if path.is_file() else mode & 0o055 == 0o055
    assert (root / STATE_FILE).is_file() and not (root / "log" / STATE_FILE).exists()


async def test_old_partial_content_is_rewritten_on_erasure(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    root = tmp_path / "tree"
    publish(p, 10)
    export_logs(p.db.conn, root)
    publish(p, 10, seed=2)
    export_logs(p.db.conn, root)
    prefix = root / log_prefix(P)
    narrow = prefix / content_path(0, 10)
    assert narrow.is_file()
    digest = active_hashes(p, P)[2][1]
    assert digest in narrow.read_bytes()
    p.own_log(clock()).retract([2])
    export_logs(p.db.conn, root)
    assert digest not in narrow.read_bytes()
    assert digest not in (prefix / content_path(0, 21)).read_bytes()


async def test_export_loop_follows_another_process(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    root = tmp_path / "tree"
    publish(p, 3)
    exported: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(
        export_loop(p.config.database, root, poll=0.05, on_export=exported.put_nowait)
    )
    try:
        assert await asyncio.wait_for(exported.get(), 60) > 0  # the first export
        publish(p, 2, seed=2)  # another connection commits
        await asyncio.wait_for(exported.get(), 60)
        checkpoint = (root / log_prefix(P) / "checkpoint").read_text()
        assert checkpoint.split("\n")[1] == "5"
    finally:
        task.cancel()


def test_export_command(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    p.close()
    runner = CliRunner()
    home = str(tmp_path / "p")
    result = runner.invoke(cli, ["-d", home, "export", str(tmp_path / "tree"), "--json"])
    assert result.exit_code == 0, result.output
    assert '"size": 3' in result.output and "/log/" in result.output
    again = runner.invoke(cli, ["-d", home, "export", str(tmp_path / "tree"), "--json"])
    assert '"files": 0' in again.output
    (tmp_path / "tree" / STATE_FILE).write_text("{not json")
    broken = runner.invoke(cli, ["-d", home, "export", str(tmp_path / "tree")])
    assert broken.exit_code == 1 and "delete it to export everything" in broken.output
    assert os.path.isdir(tmp_path / "tree" / "log")


def test_serve_keeps_the_tree_current(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    tree = tmp_path / "tree"
    checkpoint = tree / log_prefix(P) / "checkpoint"
    port = free_port()
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(p.config.home), "serve"]
    server = subprocess.Popen(
        [*command, "--no-sync", "--port", str(port), "--export", str(tree)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", server)
        wait_until(lambda: checkpoint.is_file(), server)
        publish(p, 2, seed=2)  # this process commits; the server's exporter follows
        wait_until(lambda: checkpoint.read_text().split("\n")[1] == "5", server)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()


def wait_until(condition: Callable[[], bool], server: subprocess.Popen[bytes]) -> None:
    """Waits for condition (an export landing), failing if the server exits first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert server.poll() is None, "hashfed serve exited early"
        assert time.monotonic() < deadline, "the export did not land within a minute"
        time.sleep(0.05)


def test_same_size_new_checkpoint_is_rewritten(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 3)
    root = tmp_path / "tree"
    export_logs(p.db.conn, root)
    # The same tree with one more (cosignature) line: only the checkpoint changes.
    note = p.db.conn.execute("SELECT checkpoint FROM logs WHERE origin = ?", (P,)).fetchone()[0]
    cosigned = note + "— witness.example/w AAAAAA==\n"
    p.db.conn.execute("UPDATE logs SET checkpoint = ? WHERE origin = ?", (cosigned, P))
    report = export_logs(p.db.conn, root)
    assert report.files == 1
    assert (root / log_prefix(P) / "checkpoint").read_text() == cosigned


async def test_forgotten_log_leaves_the_tree(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    partner = make_node(tmp_path, "a", "publisher")
    publish(p, 20)
    publish(partner, 5)
    allow(p, partner)
    trust(partner, p)
    async with serve(p) as url:
        use(partner, p, url)
        outcome = await sync(partner)
        assert outcome.ok, outcome.errors
    root = tmp_path / "tree"
    export_logs(partner.db.conn, root)
    folder = root / log_prefix(P)
    assert (folder / "checkpoint").is_file() and (folder / content_path(0, 20)).is_file()
    assert P in json.loads((root / STATE_FILE).read_text())["logs"]
    # Anything else under log/ that is not a log's folder is left alone.
    (root / "log" / "README").write_text("mine")

    log = logstore.get_log(partner.db.conn, P)
    assert log is not None
    with transaction(partner.db):
        forget_mirror(partner.db.conn, log)
    report = export_logs(partner.db.conn, root)
    assert report.removed == [log_prefix(P)]
    assert not folder.exists()
    assert P not in json.loads((root / STATE_FILE).read_text())["logs"]
    assert (root / log_prefix(origin_of("a")) / "checkpoint").is_file()
    assert (root / "log" / "README").read_text() == "mine"
    assert not any(p.name.startswith(".tmp-") for p in (root / "log").iterdir())
    assert export_logs(partner.db.conn, root).removed == []


def test_shrunk_log_leaves_no_file_beyond_its_size(tmp_path: Path) -> None:
    big = make_node(tmp_path / "old", "p", "publisher")
    publish(big, 300)
    root = tmp_path / "tree"
    export_logs(big.db.conn, root)
    assert (root / log_prefix(P) / tile_path(0, 1, 44)).is_file()
    # A new database for the same origin, with fewer entries.
    small = make_node(tmp_path / "new", "p", "publisher")
    publish(small, 10)
    export_logs(small.db.conn, root)
    fresh = tmp_path / "fresh"
    export_logs(small.db.conn, fresh)
    assert tree_files(root) == tree_files(fresh)
    assert json.loads((root / STATE_FILE).read_text()) == json.loads(
        (fresh / STATE_FILE).read_text()
    )
