"""'hashfed status' speaks the Nagios plugin codes, and 'hashfed sync' fails when it
applied nothing for want of a witness quorum."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.home import Node
from hashfed.node.policyfile import policy_path
from hashfed.node.store.db import transaction
from hashfed.signing.keys import ALG_COSIGNATURE_V1, generate_key
from synchelpers import allow, log_id, make_node, origin_of, publish, serve, trust, use

P = origin_of("p")


def status(node: Node, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dir", str(node.config.home), "status", *args])


def cli_sync(node: Node) -> Result:
    return CliRunner().invoke(main, ["--dir", str(node.config.home), "sync", "--silent"])


async def test_status_exit_codes_follow_the_nagios_plugin_convention(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    q = make_node(tmp_path, "q")
    publish(p, 3)
    allow(p, q)
    result = status(q)
    assert result.exit_code == 0 and result.output.startswith("HASHFED OK: 1 logs, 0 followed")
    trust(q, p)
    result = status(q)  # followed but never synced: its bank is not being kept
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0] == (
        f"HASHFED CRITICAL: {P}: not synced within 86400 s (last: never)"
    )
    async with serve(p) as url:
        use(q, p, url)
        synced = await asyncio.to_thread(cli_sync, q)
        assert synced.exit_code == 0, synced.output
    result = status(q)
    assert result.exit_code == 0 and result.output.startswith("HASHFED OK: 2 logs, 1 followed")

    # A flagged entry is a WARNING; the verdict goes to stderr with --json.
    with transaction(q.db) as conn:
        conn.execute("INSERT INTO flags VALUES (?, 1, 'a record check failed')", (log_id(q, P),))
    result = status(q, "--json")
    assert result.exit_code == 1
    assert result.stderr == f"HASHFED WARNING: {P}: 1 flagged entries\n"
    rows = {r["origin"]: r for r in json.loads(result.stdout)}
    assert rows[P]["problems"] == [f"{P}: 1 flagged entries"]

    # Failing syncs are CRITICAL even without a witness policy (they used to exit 0).
    with transaction(q.db) as conn:
        conn.execute(
            "UPDATE sync_state SET failures = 3, last_error = 'p: connection refused'"
            " WHERE log_id = ?",
            (log_id(q, P),),
        )
    result = status(q)
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        f"HASHFED CRITICAL: {P}: sync failing (3 in a row: p: connection refused)"
    )
    with transaction(q.db) as conn:
        conn.execute("UPDATE logs SET halted = 1 WHERE origin = ?", (P,))
    result = status(q)
    assert result.exit_code == 2 and f"{P}: halted by evidence" in result.output.splitlines()[0]

    # A node that cannot be read is UNKNOWN (3), never mistaken for a WARNING.
    config = q.config.home / "hashfed.toml"
    config.write_text(config.read_text().replace("[sync]", "[sync]\nbogus = 1"))
    result = status(q)
    assert result.exit_code == 3 and result.output.startswith("Error: HASHFED UNKNOWN: ")
    nowhere = CliRunner().invoke(main, ["--dir", str(tmp_path / "nowhere"), "status"])
    assert nowhere.exit_code == 3 and "HASHFED UNKNOWN: no hashfed node in" in nowhere.output
    for node in (p, q):
        node.close()


async def test_sync_exits_non_zero_when_the_witness_quorum_is_missing(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    q = make_node(tmp_path, "q")
    publish(p, 3)
    allow(p, q)
    trust(q, p)
    witness_vkey = generate_key("w.test/hashfed/witness", ALG_COSIGNATURE_V1)[1]
    policy_path(q.config.home).write_text(
        f"log {p.signer.vkey()}\nwitness W {witness_vkey}\nquorum W\n"
    )
    async with serve(p) as url:
        use(q, p, url)
        result = await asyncio.to_thread(cli_sync, q)
    assert result.exit_code == 1, result.output
    assert f"{P}: nothing applied: no checkpoint with the witness quorum" in result.output
    assert q.db.conn.execute("SELECT size FROM logs WHERE origin = ?", (P,)).fetchone() == (0,)
    for node in (p, q):
        node.close()


def test_migrate_dry_run_says_what_would_run_and_changes_nothing(tmp_path: Path) -> None:
    import sqlite3

    from hashfed.node.store.db import SCHEMA_VERSION

    node = make_node(tmp_path, "n")
    publish(node, 2)
    node.close()
    home = node.config.home
    assert "up to date" in CliRunner().invoke(main, ["--dir", str(home), "migrate"]).output
    # Back to schema 5: the last step adds a column (instant).
    conn = sqlite3.connect(home / "hashfed.db")
    conn.execute("ALTER TABLE sync_state DROP COLUMN peer_size")
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    result = CliRunner().invoke(main, ["--dir", str(home), "migrate", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"schema version 5 -> {SCHEMA_VERSION}: {SCHEMA_VERSION - 5} step(s)" in result.output
    assert "(instant)" in result.output and "ADD COLUMN peer_size" in result.output
    conn = sqlite3.connect(home / "hashfed.db")
    assert conn.execute("PRAGMA user_version").fetchone() == (5,)
    conn.close()
    result = CliRunner().invoke(main, ["--dir", str(home), "migrate"])
    assert result.exit_code == 0 and f"migrated to schema version {SCHEMA_VERSION}" in result.output
