"""Backup, restore and recovery from the network: a publisher restored from a backup older
than what its partners and witness hold refuses to fork, fetches the missing tail, and
resumes; a publisher that lost its disk rebuilds its log from a partner and its keys."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.errors import ForkRefused
from hashfed.node.home import Node, open_node
from hashfed.node.store import peers
from hashfed.node.store.db import transaction
from synchelpers import (
    allow,
    bank_state,
    log_id,
    make_node,
    origin_of,
    publish,
    serve,
    sync,
    trust,
    use,
)
from witnesshelpers import Clock, policy_text, push, serve_witness, set_policy, witness_log

P = origin_of("p")


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dir", str(home), *args])


def set_url(node: Node, name: str, url: str, vkey: str) -> None:
    """Points node's peer name at url (adding the peer if it has none)."""
    with transaction(node.db) as conn:
        if peers.get_peer(conn, name) is not None:
            peers.remove_peer(conn, name)
        peers.add_peer(conn, name, url, vkey)


def size_of(node: Node, origin: str) -> int:
    row = node.db.conn.execute("SELECT size FROM logs WHERE origin = ?", (origin,)).fetchone()
    return int(row[0])


def test_backup_refuses_a_world_readable_destination_for_keys(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 2)
    open_dir = tmp_path / "shared"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    result = cli(p.config.home, "backup", str(open_dir), "--with-keys")
    assert result.exit_code == 1 and "readable by other users" in result.output
    assert list(open_dir.iterdir()) == []
    result = cli(p.config.home, "backup", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "b" / "keys").exists()  # no keys unless asked
    result = cli(p.config.home, "backup", str(tmp_path / "k"), "--with-keys")
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "k").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert json.loads((tmp_path / "k" / "backup.json").read_text())["size"] == 2
    p.close()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", "keys/../../x", "a/b", ""])
def test_restore_refuses_a_manifest_naming_files_outside_the_node(
    tmp_path: Path, name: str
) -> None:
    p = make_node(tmp_path, "p", "publisher")
    publish(p, 1)
    assert cli(p.config.home, "backup", str(tmp_path / "b")).exit_code == 0
    p.close()
    manifest_path = tmp_path / "b" / "backup.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append(name)
    manifest_path.write_text(json.dumps(manifest))
    home = tmp_path / "restored"
    result = cli(home, "restore", str(tmp_path / "b"))
    assert result.exit_code == 1, result.output
    assert "not a file of a node directory" in result.output
    assert not home.exists() and not (tmp_path / "escaped").exists()


async def test_restored_publisher_refuses_to_fork_then_resumes_after_the_missing_tail(
    tmp_path: Path,
) -> None:
    p = make_node(tmp_path, "p", "publisher")
    q = make_node(tmp_path, "q")  # a partner that mirrors p and lets p read it back
    r = make_node(tmp_path, "r")  # a partner that fell behind
    w = make_node(tmp_path, "w")  # p's witness
    publish(p, 3)
    for partner in (q, r):  # each lists p as a peer (use, below): p may read its mirror
        allow(p, partner)
        trust(partner, p)
    witness_log(w, p)
    backup_dir = tmp_path / "backup"
    async with serve(p) as p_url, serve_witness(w, Clock()) as served:
        use(q, p, p_url)
        use(r, p, p_url)
        policy = policy_text([("W", served)], "W")
        set_policy(p, policy)
        assert (await push(p, policy)).cosigned == ["W"]
        assert (await sync(r)).result.new_size == 3
        # An online backup at size 3, while the node serves.
        result = await asyncio.to_thread(
            cli, p.config.home, "backup", str(backup_dir), "--with-keys"
        )
        assert result.exit_code == 0, result.output
        publish(p, 2, seed=2)
        assert (await push(p, policy)).cosigned == ["W"]  # the witness holds size 5
        assert (await sync(q)).result.new_size == 5
        p_peer_vkey = p.peer_signer.vkey()
        p.close()
        shutil.rmtree(p.config.home)  # the disk is gone; the backup is at size 3

        home = tmp_path / "p-restored"
        result = cli(home, "restore", str(backup_dir))
        assert result.exit_code == 0, result.output
        result = cli(home, "status")
        assert result.exit_code == 2 and "restored from a backup" in result.output.split("\n")[0]
        restored = open_node(home)
        assert size_of(restored, P) == 3
        with pytest.raises(ForkRefused, match="restored from a backup"):
            publish(restored, 1, seed=3)
        restored.close()

        async with serve(q) as q_url, serve(r) as r_url:
            # Only the partner that fell behind: the witness said 5, so recovery refuses.
            set_url(restored := open_node(home), "r", r_url, r.peer_signer.vkey())
            restored.close()
            result = await asyncio.to_thread(cli, home, "recover", "--from", "r")
            assert result.exit_code == 1, result.output
            assert "signed size 5" in result.output and "witness W (5)" in result.output
            assert "new origin" in result.output
            with open_node(home) as restored, pytest.raises(ForkRefused, match="no mirror"):
                publish(restored, 1, seed=3)
            # With the partner that holds size 5 it fetches the tail and verifies it.
            with open_node(home) as restored:
                set_url(restored, "q", q_url, q.peer_signer.vkey())
            result = await asyncio.to_thread(cli, home, "recover", "--from", "q", "--json")
            assert result.exit_code == 0, result.output
            [report] = json.loads(result.stdout)
            assert (report["old_size"], report["new_size"], report["learned_size"]) == (3, 5, 5)
            assert report["sources"]["witness W"] == 5 and report["sources"]["partner q"] == 5
            assert any("published after the backup" in item for item in report["lost"])

        restored = open_node(home)
        assert bank_state(restored, P) == bank_state(q, P)
        assert "restored from a backup" not in cli(home, "status").output
        publish(restored, 1, seed=4)  # it appends again, on top of size 5
        assert size_of(restored, P) == 6
        async with serve(restored) as new_url:
            for partner in (q, r):
                set_url(partner, "p", new_url, p_peer_vkey)
                outcome = await sync(partner)
                assert outcome.ok and outcome.result.new_size == 6, outcome
            assert (await push(restored, policy)).cosigned == ["W"]  # consistent with 5
        for partner in (q, r):
            assert not partner.db.conn.execute("SELECT count(*) FROM evidence").fetchone()[0]
    for node in (restored, q, r, w):
        node.close()


async def test_lost_publisher_recovers_from_a_partner_and_its_keys(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    q = make_node(tmp_path, "q")
    r = make_node(tmp_path, "r")
    publish(p, 4)
    p.own_log().retract([1])  # entry 1's content is erased everywhere
    for partner in (q, r):
        allow(p, partner)
        trust(partner, p)
    async with serve(p) as p_url:
        for partner in (q, r):
            use(partner, p, p_url)
            assert (await sync(partner)).result.new_size == 5
    p_peer_vkey = p.peer_signer.vkey()
    keys = tmp_path / "key-backup"
    shutil.copytree(p.config.home / "keys", keys)
    p.close()
    shutil.rmtree(p.config.home)

    home = tmp_path / "p-new"
    home.mkdir(mode=0o700)
    shutil.copytree(keys, home / "keys")
    async with serve(q) as q_url:
        result = await asyncio.to_thread(
            cli, home, "recover", "--from", q_url, "--peer-vkey", q.peer_signer.vkey()
        )
        assert result.exit_code == 0, result.output
    assert f"recovered {P}: size 0 -> 5" in result.output
    assert "lost: cases opened after the backup and not yet published" in result.output
    assert "lost: the peers, trusted logs and witness policy" in result.output
    rebuilt = open_node(home)
    assert bank_state(rebuilt, P) == bank_state(q, P)
    erased = rebuilt.db.conn.execute(
        "SELECT status, hash, salt FROM bank WHERE log_id = ? AND idx = 1", (log_id(rebuilt, P),)
    ).fetchone()
    assert erased == ("retracted", None, None)
    assert cli(home, "log", "verify").exit_code == 0
    allow(rebuilt, r)  # the peer list was on the lost disk: r is added again
    publish(rebuilt, 2, seed=9)
    async with serve(rebuilt) as new_url:
        for partner in (q, r):
            set_url(partner, "p", new_url, p_peer_vkey)
            outcome = await sync(partner)
            assert outcome.ok and outcome.result.applied == 2, outcome
    for node in (rebuilt, q, r):
        node.close()
