"""``hashfed log check-proof``: a C2SP tlog-proof checked offline, with no node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.home import open_node
from hashfed.node.store import logstore
from hashfed.protocol.tlog_proof import format_tlog_proof, parse_tlog_proof
from hashfed.signing.keys import generate_key
from test_cli_log import MD5, ok

ORIGIN = "test.example/log"


def check(*args: str) -> Result:
    """Runs check-proof from a directory that holds no node."""
    return CliRunner().invoke(main, ["--dir", "/nonexistent", "log", "check-proof", *args])


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, str, list[bytes]]:
    """A node with 7 entries (one a retraction): its home, its log vkey, its entries."""
    home = tmp_path / "node"
    ok(home, "init", "--origin", ORIGIN)
    ok(home, "publish", "-", input="kind,hash\n" + "".join(f"md5,{h}\n" for h in MD5[:6]))
    ok(home, "retract", "2")
    with open_node(home) as node:
        vkey = node.signer.vkey()
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        entries = logstore.read_entries(node.db.conn, log.id, 0, log.size)
    return home, vkey, entries


def test_every_proof_checks_offline(
    tmp_path: Path, published: tuple[Path, str, list[bytes]]
) -> None:
    home, vkey, entries = published
    for index, entry in enumerate(entries):
        proof = tmp_path / f"{index}.tlog-proof"
        proof.write_text(ok(home, "log", "proof", str(index)).stdout)
        result = check(str(proof), "--vkey", vkey)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"ok: entry {index} is in {ORIGIN} at size 7")
        given = tmp_path / "entry.bin"
        given.write_bytes(entry)
        result = check(str(proof), str(given), "--vkey", vkey, "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["ok"] is True and doc["index"] == index and doc["size"] == 7


def test_a_wrong_entry_key_or_proof_is_refused(
    tmp_path: Path, published: tuple[Path, str, list[bytes]]
) -> None:
    home, vkey, entries = published
    text = ok(home, "log", "proof", "3").stdout
    proof_file = tmp_path / "3.tlog-proof"
    proof_file.write_text(text)
    other = tmp_path / "other.bin"
    other.write_bytes(entries[4])
    result = check(str(proof_file), str(other), "--vkey", vkey)
    assert result.exit_code == 1 and "not the entry the proof carries" in result.output

    _, stranger = generate_key(ORIGIN)
    result = check(str(proof_file), "--vkey", stranger)
    assert result.exit_code == 1 and "does not hold" in result.output

    # The extra data is not trusted by itself: a proof naming another entry fails inclusion.
    parsed = parse_tlog_proof(text)
    forged = format_tlog_proof(3, list(parsed.proof), parsed.checkpoint_note, entries[4])
    proof_file.write_text(forged)
    result = check(str(proof_file), "--vkey", vkey)
    assert result.exit_code == 1 and "inclusion proof" in result.output

    # A proof without an entry needs the entry's bytes.
    bare = format_tlog_proof(3, list(parsed.proof), parsed.checkpoint_note)
    proof_file.write_text(bare)
    result = check(str(proof_file), "--vkey", vkey)
    assert result.exit_code == 1 and "give the entry" in result.output
    given = tmp_path / "entry.bin"
    given.write_bytes(entries[3])
    assert check(str(proof_file), str(given), "--vkey", vkey).exit_code == 0

    proof_file.write_text(text[:40])
    result = check(str(proof_file), "--vkey", vkey)
    assert result.exit_code == 1 and "Traceback" not in result.output
