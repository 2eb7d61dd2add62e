"""CLI output people read: counts that agree, singular nouns for one, ISO 8601 times."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.cli.output import iso_time, plural
from hashfed.protocol.records import Reason
from synchelpers import allow, clock, make_node, publish, serve, trust, use
from test_cli_log import MD5, ok

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dir", str(home), *args])


def test_plural_and_iso_time() -> None:
    assert plural(1, "hash", "hashes") == "1 hash"
    assert plural(2, "hash", "hashes") == "2 hashes"
    assert plural(0, "record") == "0 records"
    assert iso_time(0) == "1970-01-01T00:00:00Z"
    assert iso_time(None) is None


def test_one_record_is_singular(tmp_path: Path) -> None:
    home = tmp_path / "n"
    ok(home, "init", "--origin", "n.test/log")
    out = ok(home, "publish", "-", input=f"kind,hash\nmd5,{MD5[0]}\n").output
    assert "published 1 record at indices 0..0" in out
    assert "retracted 1 record in entries" in ok(home, "retract", "0").output
    assert "the log has 2 entries" in cli(home, "retract", "7").output
    assert "1 entry," not in ok(home, "log", "verify").output


def test_witness_list_shows_iso_times(tmp_path: Path) -> None:
    home = tmp_path / "w"
    ok(home, "init", "--origin", "w.test/log")
    p = make_node(tmp_path, "p", "publisher")
    ok(home, "witness", "add", p.signer.vkey())
    table = ok(home, "witness", "list").output.splitlines()
    assert table[0].split() == ["origin", "size", "updated", "vkey"]
    assert ISO.search(table[2]), table[2]
    csv = ok(home, "witness", "list", "--csv").output.splitlines()
    assert ISO.search(csv[1]), csv[1]
    assert isinstance(json.loads(ok(home, "witness", "list", "--json").output)[0]["updated"], int)


async def test_sync_and_status_count_the_same_flags(tmp_path: Path) -> None:
    """Content erased before its retraction arrived is flagged, then cleared, within one sync:
    'sync' used to report those transient flags (6) where 'status' showed 0."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 6)
    p.own_log(clock()).retract(list(range(6)), Reason.WITHDRAWN)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        a.close()
        result = await asyncio.to_thread(cli, a.config.home, "sync", "--json", "--silent")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    status = json.loads(cli(a.config.home, "status", "--json").stdout)  # the verdict is on stderr
    held = {r["origin"]: r["flagged"] for r in status}
    assert row["flagged"] == held[row["origin"]] == 0


async def test_status_table_fits_100_columns(tmp_path: Path) -> None:
    """The status table used to be about 300 columns wide; --wide keeps every column."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 3)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        a.close()
        synced = await asyncio.to_thread(cli, a.config.home, "sync", "--silent")
    assert synced.exit_code == 0, synced.output
    narrow = cli(a.config.home, "status").stdout.splitlines()
    assert narrow[1].split() == [
        "origin",
        "role",
        "size",
        "synced_at",
        "failures",
        "flagged",
        "halted",
    ]
    assert max(len(line) for line in narrow) <= 100, narrow
    assert any(line.startswith("p.test/") and ISO.search(line) for line in narrow), narrow
    wide = cli(a.config.home, "status", "--wide").stdout.splitlines()
    assert {"lag_entries", "last_peer", "feedback", "age_seconds", "last_error"} <= set(
        wide[1].split()
    )


async def test_sync_logs_its_events_on_request(tmp_path: Path) -> None:
    """--log-format/--log-level give 'hashfed sync' the event lines 'serve' logs."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 3)
    allow(p, a)
    trust(a, p)
    command = [sys.executable, "-m", "hashfed.node", "--dir", str(a.config.home), "sync"]
    async with serve(p) as url:
        use(a, p, url)
        a.close()
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300)
        done = await asyncio.to_thread(
            run, [*command, "--silent", "--log-format", "json", "--log-level", "info"]
        )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (synced,) = [e for e in events if e.get("event") == "sync"]
    assert synced["origin"] == p.config.origin and synced["to_size"] == 3
