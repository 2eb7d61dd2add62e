"""The log commands of the CLI, run in-process with click's CliRunner."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.home import open_node
from hashfed.node.store import logstore
from hashfed.protocol.checkpoint import open_checkpoint
from hashfed.protocol.merkle import check_inclusion, leaf_hash
from hashfed.protocol.tlog_proof import parse_tlog_proof
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList

ORIGIN = "test.example/log"
PDQ = [hashlib.sha256(b"pdq %d" % i).hexdigest() for i in range(20)]
MD5 = [hashlib.md5(b"md5 %d" % i).hexdigest() for i in range(20)]


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--dir", str(home), *args], input=input)


def ok(home: Path, *args: str, input: str | None = None) -> Result:
    result = run(home, *args, input=input)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def fails(home: Path, *args: str, input: str | None = None) -> Result:
    """Runs a command that must fail cleanly: non-zero exit, a message, no traceback."""
    result = run(home, *args, input=input)
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def size(home: Path) -> int:
    return int(json.loads(ok(home, "log", "checkpoint", "--json").stdout)["size"])


def state(home: Path) -> tuple[Any, ...]:
    """The size, root, bank and signed head: what a refused command must leave alone."""
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        rows = node.db.conn.execute("SELECT * FROM bank ORDER BY idx").fetchall()
    return log.size, log.root, log.checkpoint, rows, (home / "signed-head").read_bytes()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    ok(path, "init", "--origin", ORIGIN)
    return path


def csv_text(n: int = 3) -> str:
    lines = ["kind,hash,quality,labels"]
    lines += [f"pdq,{PDQ[i]},{90 - i},ncii" for i in range(n - 1)]
    lines.append(f"md5,{MD5[0]},,")
    return "\n".join(lines) + "\n"


# -- init and keys ----------------------------------------------------------------------------


def test_init_creates_private_node(tmp_path: Path) -> None:
    home = tmp_path / "a" / "node"
    result = ok(home, "init", "--origin", ORIGIN, "--role", "publisher")
    assert ORIGIN in result.output
    assert "log verifier key: " + ORIGIN + "+" in result.output
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "keys" / "log.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "hashfed.db").stat().st_mode) == 0o600
    assert (home / "keys" / "log.key").read_text().startswith("PRIVATE+KEY+" + ORIGIN + "+")
    assert 'role = "publisher"' in (home / "hashfed.toml").read_text()
    assert size(home) == 0
    assert ok(home, "log", "verify").stdout.strip().endswith("ok")


def test_init_refuses_existing_node(home: Path) -> None:
    key = (home / "keys" / "log.key").read_bytes()
    result = fails(home, "init", "--origin", "another.example/log")
    assert "already holds a hashfed node" in result.output
    assert (home / "keys" / "log.key").read_bytes() == key


@pytest.mark.parametrize("origin", ["has space", "a+b", "x" * 256, ""])
def test_init_refuses_bad_origin(tmp_path: Path, origin: str) -> None:
    home = tmp_path / "node"
    result = fails(home, "init", "--origin", origin)
    assert "origin" in result.output
    assert not (home / "hashfed.toml").exists()
    assert not (home / "keys" / "log.key").exists()


def test_init_default_origin(tmp_path: Path) -> None:
    home = tmp_path / "node"
    ok(home, "init")
    vkey = ok(home, "keys", "show", "--json").stdout
    assert json.loads(vkey)[0]["vkey"].split("+")[0].endswith("/hashfed")


def test_keys_show(home: Path) -> None:
    with open_node(home) as node:
        vkey = node.signer.vkey()
    lines = ok(home, "keys", "show").stdout.splitlines()
    assert lines[0] == f"log: {vkey}"
    rows = json.loads(ok(home, "keys", "show", "--json").stdout)
    assert rows[0] == {"key": "log", "vkey": vkey, "file": str(home / "keys" / "log.key")}
    # Every key listed (the log key, and any other the node has) is a valid verifier key.
    assert [f"{r['key']}: {r['vkey']}" for r in rows] == lines
    for row in rows:
        parse_verifier(row["vkey"])


# -- publish ----------------------------------------------------------------------------------


def test_publish_csv_file(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text(csv_text(3))
    result = ok(home, "publish", str(source))
    assert "published 3 records at indices 0..2; log size 3" in result.output
    rows = json.loads(ok(home, "log", "show", "--json").stdout)
    assert [(r["kind"], r["hash"], r["quality"], r["labels"]) for r in rows] == [
        ("pdq", PDQ[0], 90, ["ncii"]),
        ("pdq", PDQ[1], 89, ["ncii"]),
        ("md5", MD5[0], None, []),
    ]
    assert {r["status"] for r in rows} == {"active"}


def test_publish_stdin_and_json(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(2))
    lines = [
        json.dumps({"kind": "pdq", "hash": PDQ[5], "quality": 77, "labels": ["synthetic"]}),
        "",
        json.dumps({"kind": "md5", "hash": MD5[5].upper()}),
    ]
    result = ok(home, "publish", "--json", input="\n".join(lines) + "\n")
    assert json.loads(result.stdout)["published"] == 2
    assert json.loads(result.stdout)["first_index"] == 2
    assert json.loads(result.stdout)["size"] == 4
    rows = json.loads(ok(home, "log", "show", "--json", "--start", "2").stdout)
    assert [(r["index"], r["hash"], r["labels"]) for r in rows] == [
        (2, PDQ[5], ["synthetic"]),
        (3, MD5[5], []),
    ]


def test_publish_hash_csv_with_path_variant_and_label(home: Path) -> None:
    text = (
        "kind,hash,quality,path,variant\n"
        f"pdq,{PDQ[0]},100,/photos/a.jpg,original\n"
        f"md5,{MD5[1]},,/videos/b.mp4,file\n"
    )
    ok(home, "publish", "--label", "ncii", "--label", "test", "-", input=text)
    rows = json.loads(ok(home, "log", "show", "--json").stdout)
    assert [(r["hash"], r["labels"]) for r in rows] == [
        (PDQ[0], ["ncii", "test"]),
        (MD5[1], ["ncii", "test"]),
    ]


def test_publish_format_option(home: Path) -> None:
    line = json.dumps({"kind": "md5", "hash": MD5[2]}) + "\n"
    ok(home, "publish", "--format", "jsonl", "-", input="\n" + line)
    assert size(home) == 1
    fails(home, "publish", "--format", "csv", "-", input=line)
    assert size(home) == 1


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("kind,hash,quality,colour\n" + f"pdq,{PDQ[0]},90,red\n", ["colour"]),
        (f"kind,hash,quality\npdq,{PDQ[0]},90\npdq,{PDQ[1][:-1]}x,90\n", ["line 3", "hex"]),
        (f"kind,hash,quality\npdq,{PDQ[0]},90\npdq,{PDQ[1][:-2]},90\n", ["line 3", "31 bytes"]),
        (f"kind,hash,quality\nmd5,{MD5[0]},\npdq,{PDQ[1]},\n", ["line 3", "quality"]),
        (f"kind,hash,quality\npdq,{PDQ[1]},49\n", ["line 2", "49"]),
        (f"kind,hash,quality\nsha1,{PDQ[1]},90\n", ["line 2", "kind"]),
        (f"kind,hash\nmd5,{'0' * 32}\n", ["line 2", "all zeros"]),
        ("kind,hash\nmd5,d41d8cd98f00b204e9800998ecf8427e\n", ["line 2", "empty file"]),
        (f"kind,hash,quality,labels\npdq,{PDQ[1]},90,Bad Label\n", ["line 2", "label"]),
        (f"kind,hash,quality\npdq,{PDQ[1]},90,extra\n", ["line 2", "more fields"]),
        ("hash,quality\n" + f"{PDQ[1]},90\n", ["header"]),
        ('{"kind": "md5", "hash": "' + MD5[0] + '"}\n{"kind": "md5", "hash"\n', ["line 2", "JSON"]),
        ('{"kind": "md5", "hash": "' + MD5[0] + '", "size": 3}\n', ["line 1", "size"]),
        ('{"kind": "pdq", "hash": "' + PDQ[0] + '", "quality": true}\n', ["line 1", "quality"]),
        ("", ["empty"]),
        ("\n\n", ["empty"]),
        ("kind,hash,quality\n", ["no records"]),
    ],
)
def test_publish_bad_input_changes_nothing(home: Path, text: str, words: list[str]) -> None:
    ok(home, "publish", "-", input=csv_text(2))
    before = state(home)
    result = fails(home, "publish", "-", input=text)
    for word in words:
        assert word in result.output, result.output
    assert state(home) == before


def test_publish_missing_file(home: Path, tmp_path: Path) -> None:
    result = fails(home, "publish", str(tmp_path / "nope.csv"))
    assert "nope.csv" in result.output


# -- retract ------------------------------------------------------------------------------


def test_retract(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(4))
    result = ok(home, "retract", "1", "2", "--reason", "deleted")
    assert "retracted 2 records in entries 4..4" in result.output
    rows = json.loads(ok(home, "log", "show", "--json").stdout)
    assert [r["status"] for r in rows[:4]] == ["active", "retracted", "retracted", "active"]
    assert rows[1]["hash"] is None and rows[2]["hash"] is None
    assert rows[4] == {
        "index": 4,
        "type": "retract",
        "reason": "deleted",
        "indices": [1, 2],
        "time": rows[4]["time"],
    }
    assert ok(home, "log", "verify").stdout.strip().endswith("ok")


@pytest.mark.parametrize("args", [["9"], ["0", "9"], ["3"], ["1", "1"], ["-1"], ["x"]])
def test_retract_bad_index_changes_nothing(home: Path, args: list[str]) -> None:
    ok(home, "publish", "-", input=csv_text(3))
    ok(home, "retract", "1")  # entry 3
    before = state(home)
    result = fails(home, "retract", *args)
    assert result.output.strip()
    assert state(home) == before


def test_retract_needs_an_index(home: Path) -> None:
    fails(home, "retract")


# -- log show / checkpoint / proof ----------------------------------------------------------------


def test_log_show_table(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(3))
    ok(home, "retract", "0")
    out = ok(home, "log", "show").stdout.splitlines()
    assert out[0].split() == ["index", "type", "kind", "hash", "quality", "labels", "status"]
    assert set(out[1]) <= {"-", " "}
    assert len(out) == 2 + 4
    assert out[2].split()[:3] == ["0", "add", "pdq"] and out[2].split()[-1] == "retracted"
    assert PDQ[1] in out[3] and "active" in out[3]
    assert out[5].split()[:4] == ["3", "retract", "retracts", "0"]
    limited = ok(home, "log", "show", "--start", "1", "--limit", "1").stdout.splitlines()
    assert len(limited) == 3 and PDQ[1] in limited[2]
    csv_out = ok(home, "log", "show", "--csv").stdout.splitlines()
    assert csv_out[0] == "index,type,kind,hash,quality,labels,status"
    assert len(csv_out) == 5


def test_log_show_empty_and_beyond(home: Path) -> None:
    assert json.loads(ok(home, "log", "show", "--json").stdout) == []
    ok(home, "publish", "-", input=csv_text(2))
    assert json.loads(ok(home, "log", "show", "--json", "--start", "5").stdout) == []


def test_log_checkpoint(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(3))
    note = ok(home, "log", "checkpoint").stdout
    assert note == (home / "signed-head").read_text()
    with open_node(home) as node:
        vkey = node.signer.vkey()
    cp, _ = open_checkpoint(note, VerifierList(parse_verifier(vkey)), ORIGIN)
    doc = json.loads(ok(home, "log", "checkpoint", "--json").stdout)
    assert doc == {"origin": ORIGIN, "size": 3, "root": cp.root.hex(), "note": note}
    assert cp.size == 3


def test_log_proof_verifies(home: Path) -> None:
    lines = ["kind,hash"] + [f"md5,{h}" for h in MD5[:19]]
    ok(home, "publish", "-", input="\n".join(lines) + "\n")
    ok(home, "retract", "4")
    with open_node(home) as node:
        vkey = node.signer.vkey()
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        entries = logstore.read_entries(node.db.conn, log.id, 0, log.size)
    assert len(entries) == 20
    for index in (0, 4, 13, 19):
        proof = parse_tlog_proof(ok(home, "log", "proof", str(index)).stdout)
        assert proof.index == index
        cp, _ = open_checkpoint(proof.checkpoint_note, VerifierList(parse_verifier(vkey)), ORIGIN)
        assert cp.size == 20
        check_inclusion(leaf_hash(entries[index]), index, cp.size, list(proof.proof), cp.root)
        with pytest.raises(ValueError):
            other = entries[(index + 1) % 20]
            check_inclusion(leaf_hash(other), index, cp.size, list(proof.proof), cp.root)


def test_log_proof_single_entry(home: Path) -> None:
    ok(home, "publish", "-", input=f"kind,hash\nmd5,{MD5[0]}\n")
    text = ok(home, "log", "proof", "0").stdout
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert "\nindex 0\n\n" in text
    assert parse_tlog_proof(text).proof == ()


@pytest.mark.parametrize("index", ["3", "1000"])
def test_log_proof_of_nonexistent_index(home: Path, index: str) -> None:
    ok(home, "publish", "-", input=csv_text(3))
    result = fails(home, "log", "proof", index)
    assert f"entry {index} does not exist" in result.output


def test_log_proof_of_empty_log(home: Path) -> None:
    assert "does not exist" in fails(home, "log", "proof", "0").output


# -- log verify --------------------------------------------------------------------------------


def test_log_verify_ok(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(5))
    ok(home, "retract", "2")
    out = ok(home, "log", "verify").stdout
    assert out.startswith(f"{ORIGIN}: 6 entries")
    assert out.strip().endswith("ok")
    doc = json.loads(ok(home, "log", "verify", "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == []
    assert (doc["origin"], doc["size"], doc["entries"], doc["bank_rows"]) == (ORIGIN, 6, 6, 5)


def test_log_verify_names_tampering(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(5))
    with open_node(home) as node:
        node.db.conn.execute("UPDATE bank SET quality = 51 WHERE idx = 1")
    result = run(home, "log", "verify")
    assert result.exit_code == 1
    assert "PROBLEM bank row 1: does not match the commitment" in result.stderr
    assert "1 problem(s) found" in result.stdout
    result = run(home, "log", "verify", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["problems"] == [
        {"where": "bank row 1", "message": "does not match the commitment in the log's entry"}
    ]


def test_log_verify_names_a_tampered_entry(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(5))
    with open_node(home) as node:
        data = bytearray(node.db.conn.execute("SELECT data FROM bundles").fetchone()[0])
        data[-3] ^= 1
        node.db.conn.execute("UPDATE bundles SET data = ?", (bytes(data),))
    result = run(home, "log", "verify")
    assert result.exit_code == 1
    assert "PROBLEM tile 0/0: differs from the tile derived from the entries (entry 4)" in (
        result.stderr
    )


# -- errors: no node, insecure key ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "show"],
        ["publish", "-"],
        ["retract", "1"],
        ["log", "show"],
        ["log", "checkpoint"],
        ["log", "proof", "0"],
        ["log", "verify"],
    ],
)
def test_commands_without_a_node(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "empty"
    result = fails(home, *args, input=csv_text(2))
    assert "run 'hashfed init'" in result.output
    assert not home.exists() or not any(home.iterdir())


@pytest.mark.parametrize(
    "args", [["keys", "show"], ["publish", "-"], ["log", "verify"], ["log", "checkpoint"]]
)
def test_group_readable_key_is_refused(home: Path, args: list[str]) -> None:
    ok(home, "publish", "-", input=csv_text(2))
    before = state(home)
    key = home / "keys" / "log.key"
    os.chmod(key, 0o644)
    result = fails(home, *args, input=csv_text(3))
    assert "chmod 600" in result.output
    assert str(key) in result.output
    os.chmod(key, 0o600)
    assert state(home) == before


def test_missing_signed_head_is_a_clear_error(home: Path) -> None:
    ok(home, "publish", "-", input=csv_text(2))
    (home / "signed-head").unlink()
    result = fails(home, "publish", "-", input=f"kind,hash\nmd5,{MD5[9]}\n")
    assert "signed-head is missing" in result.output
    assert size(home) == 2


def test_help_is_short_flag(home: Path) -> None:
    assert "proof" in ok(home, "log", "-h").stdout


def test_log_proof_json_and_a_clear_error_for_a_missing_entry(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from hashfed.node.cli.main import main
    from hashfed.protocol.merkle import check_inclusion

    home = tmp_path / "n"
    runner = CliRunner()
    assert runner.invoke(main, ["-d", str(home), "init", "--origin", "n.test/log"]).exit_code == 0
    csv = "kind,hash\nmd5,0a21c8f85a55a9e276ffc2c53f6887c4\nmd5,5d41402abc4b2a76b9719d911017c592\n"
    assert runner.invoke(main, ["-d", str(home), "publish", "-"], input=csv).exit_code == 0
    result = runner.invoke(main, ["-d", str(home), "log", "proof", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    check_inclusion(
        bytes.fromhex(doc["leaf_hash"]),
        doc["index"],
        doc["size"],
        [bytes.fromhex(h) for h in doc["proof"]],
        bytes.fromhex(doc["root"]),
    )
    assert doc["tlog_proof"].startswith("c2sp.org/tlog-proof@v1\nextra ")
    assert parse_tlog_proof(doc["tlog_proof"]).extra == bytes.fromhex(doc["entry"])
    result = runner.invoke(main, ["-d", str(home), "retract", "7"])
    assert result.exit_code == 1
    assert "entry 7 does not exist: the log has 2 entries" in result.output
