"""Mistakes an operator can undo: a wrong ``trust add``, a mirrored log no longer wanted."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.home import open_node
from hashfed.node.store import logstore
from hashfed.signing.keys import generate_key
from synchelpers import allow, make_node, origin_of, publish, serve, sync, trust, use

P = origin_of("p")


def cli(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--dir", str(home), *args], input=input)


def test_trust_remove_on_an_empty_log_lets_the_origin_be_trusted_again(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    _, wrong = generate_key(P)  # a key of the right name, but not the publisher's log key
    home = a.config.home
    assert cli(home, "trust", "add", wrong, "--role", "publisher").exit_code == 0
    result = cli(home, "trust", "remove", P)
    assert result.exit_code == 0, result.output
    assert "forgot it" in result.output
    result = cli(home, "trust", "add", p.signer.vkey(), "--role", "publisher")
    assert result.exit_code == 0, result.output
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, P)
        assert log is not None and log.vkey == p.signer.vkey()


async def test_log_forget_drops_a_mirror_and_never_the_own_log(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    publish(p, 300)
    allow(p, a)
    trust(a, p)
    async with serve(p) as url:
        use(a, p, url)
        assert (await sync(a)).ok
    home = a.config.home
    result = cli(home, "trust", "remove", P)
    assert result.exit_code == 0 and "forgot" not in result.output  # it holds entries: kept
    _, rotated = generate_key(P)
    result = cli(home, "trust", "add", rotated, "--role", "publisher")
    assert result.exit_code == 1 and "another key" in result.output

    result = cli(home, "log", "forget", P, input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    with open_node(home) as node:
        mirror = logstore.get_log(node.db.conn, P)
        assert mirror is not None

    result = cli(home, "log", "forget", P, input="y\n")
    assert result.exit_code == 0, result.output
    assert "forgot p.test/hashfed (300 entries)" in result.output
    with open_node(home) as node:
        assert logstore.get_log(node.db.conn, P) is None
        for table in ("bank", "bundles", "tiles", "checkpoints", "sync_state"):
            sql = f"SELECT count(*) FROM {table} WHERE log_id = ?"
            assert node.db.conn.execute(sql, (mirror.id,)).fetchone()[0] == 0, table
        assert node.db.conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 1

    own = cli(home, "log", "forget", a.config.origin, "--yes")
    assert own.exit_code == 1 and "own log" in own.output
    missing = cli(home, "log", "forget", "nobody.example/log", "--yes")
    assert missing.exit_code == 1 and "holds no log" in missing.output

    # Trusted again, it starts from nothing and syncs the whole log again.
    trust(a, p)
    assert cli(home, "peers", "remove", "p").exit_code == 0
    async with serve(p) as url:
        use(a, p, url)
        with open_node(home) as node:
            assert logstore.get_log(node.db.conn, P) is not None
        assert (await sync(a)).ok
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, P)
        assert log is not None and log.size == 300
