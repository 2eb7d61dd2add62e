"""hashfed peers / trust / keys show, and the [server] and [sync] config sections."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hashfed.node.cli.main import main
from hashfed.node.config import DEFAULT_PORT, load_config, write_config
from hashfed.node.errors import NodeError
from hashfed.node.home import open_node
from hashfed.node.store.db import open_database
from hashfed.signing.keys import ALG_COSIGNATURE_V1, generate_key

ORIGIN = "me.example/hashfed"


def cosigner_vkey(name: str) -> str:
    return generate_key(name, ALG_COSIGNATURE_V1)[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "node"
    result = CliRunner().invoke(main, ["-d", str(home), "init", "--origin", ORIGIN])
    assert result.exit_code == 0, result.output
    return home


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["-d", str(home), *args])


def ok(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(home: Path, *args: str) -> str:
    result = run(home, *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_init_creates_three_keys_and_keys_show_lists_them(home: Path) -> None:
    for name in ("log", "peer", "witness"):
        assert (home / "keys" / f"{name}.key").stat().st_mode & 0o777 == 0o600
    rows = json.loads(ok(home, "keys", "show", "--json"))
    assert [r["key"] for r in rows] == ["log", "peer", "witness"]
    assert len({r["vkey"] for r in rows}) == 3
    # The log key is named after the origin, the peer key peer:<origin>: not to be confused.
    assert rows[0]["vkey"].startswith(ORIGIN + "+")
    assert rows[1]["vkey"].startswith("peer:" + ORIGIN + "+")
    # The cosigning key is a tlog-cosignature/v1 key (type 0x04) of its own name.
    assert rows[2]["vkey"].startswith(ORIGIN + "/witness+")
    assert base64.b64decode(rows[2]["vkey"].split("+", 2)[2])[0] == 0x04
    text = ok(home, "keys", "show")
    assert text.startswith("log: " + ORIGIN) and "\npeer: peer:" + ORIGIN in text
    assert "\nwitness: " + ORIGIN + "/witness+" in text


def test_open_node_requires_a_distinct_peer_key(home: Path) -> None:
    (home / "keys" / "peer.key").unlink()
    assert "peer.key" in refused(home, "keys", "show")


def test_peers_add_list_show_remove(home: Path) -> None:
    vkey = generate_key("peer:a.example/hashfed")[1]
    out = ok(home, "peers", "add", "a", "https://a.example:8470/", vkey)
    assert "added peer a" in out and "every log" in out
    vkey_b = generate_key("peer:b.example/hashfed")[1]
    ok(home, "peers", "add", "b", "http://10.0.0.7:8470", vkey_b, "--read", "x.example/log")
    rows = json.loads(ok(home, "peers", "list", "--json"))
    assert [(r["name"], r["url"], r["read"]) for r in rows] == [
        ("a", "https://a.example:8470", None),
        ("b", "http://10.0.0.7:8470", ["x.example/log"]),
    ]
    csv = ok(home, "peers", "list", "--csv").splitlines()
    assert csv[0] == "name,url,vkey,read" and csv[1].endswith(",*")
    assert "(all)" in ok(home, "peers", "list")
    shown = json.loads(ok(home, "peers", "show", "b", "--json"))
    assert shown["vkey"] == vkey_b and shown["key_name"] == "peer:b.example/hashfed"
    assert "x.example/log" in ok(home, "peers", "show", "b")
    ok(home, "peers", "remove", "a")
    assert [r["name"] for r in json.loads(ok(home, "peers", "list", "--json"))] == ["b"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.example",
        "a.example:8470",
        "https://",
        "http://u:p@a.example",
        "http://a:99999",
        "https://a.example/?q=1",
    ],
)
def test_peers_add_refuses_bad_urls(home: Path, url: str) -> None:
    vkey = generate_key("peer:a.example/hashfed")[1]
    assert "peer URL" in refused(home, "peers", "add", "a", url, vkey)


def test_peers_add_refuses_bad_keys_and_names(home: Path) -> None:
    url = "https://a.example"
    assert "not a verifier key" in refused(home, "peers", "add", "a", url, "nonsense")
    vkey = generate_key("peer:a.example/hashfed")[1]
    assert "not a verifier key" in refused(home, "peers", "add", "a", url, vkey[:-2] + "AA")
    assert "type 0x04" in refused(home, "peers", "add", "a", url, cosigner_vkey("w.example"))
    assert "peer name" in refused(home, "peers", "add", "a b", url, vkey)
    assert "comma" in refused(home, "peers", "add", "a", url, vkey, "--read", "x,y")


def test_peers_add_refuses_duplicates_and_remove_unknown(home: Path) -> None:
    vkey = generate_key("peer:a.example/hashfed")[1]
    ok(home, "peers", "add", "a", "https://a.example", vkey)
    other = generate_key("peer:c.example/hashfed")[1]
    assert "already configured" in refused(home, "peers", "add", "a", "https://c.example", other)
    assert "already has the key" in refused(home, "peers", "add", "c", "https://a.example", vkey)
    assert "no peer named 'zz'" in refused(home, "peers", "remove", "zz")
    assert "no peer named 'zz'" in refused(home, "peers", "show", "zz")


def test_trust_add_list_remove(home: Path) -> None:
    vkey = generate_key("stopncii.example/bank")[1]
    assert "trusting stopncii.example/bank as a publisher" in ok(
        home, "trust", "add", vkey, "--role", "publisher"
    )
    vkey_p = generate_key("p.example/hashfed")[1]
    ok(home, "trust", "add", vkey_p, "--role", "partner")
    rows = json.loads(ok(home, "trust", "list", "--json"))
    assert rows == [
        {"origin": "p.example/hashfed", "vkey": vkey_p, "role": "partner"},
        {"origin": "stopncii.example/bank", "vkey": vkey, "role": "publisher"},
    ]
    assert ok(home, "trust", "list", "--csv").splitlines()[0] == "origin,role,vkey"
    with open_node(home) as node:  # trusting made an empty log for sync to fill
        from hashfed.node.store import logstore

        log = logstore.get_log(node.db.conn, "stopncii.example/bank")
        assert log is not None and not log.own and log.size == 0 and log.vkey == vkey
    ok(home, "trust", "remove", "p.example/hashfed")
    assert [r["origin"] for r in json.loads(ok(home, "trust", "list", "--json"))] == [
        "stopncii.example/bank"
    ]
    ok(home, "trust", "add", vkey_p, "--role", "publisher")  # the kept log has the same key


def test_trust_refusals(home: Path) -> None:
    vkey = generate_key("stopncii.example/bank")[1]
    ok(home, "trust", "add", vkey, "--role", "publisher")
    assert "already trusted" in refused(home, "trust", "add", vkey, "--role", "partner")
    assert "is not trusted" in refused(home, "trust", "remove", "nobody.example/log")
    assert "not a verifier key" in refused(home, "trust", "add", "x+1+2", "--role", "partner")
    assert "type 0x04" in refused(
        home, "trust", "add", cosigner_vkey("w.example"), "--role", "partner"
    )
    result = run(home, "trust", "add", generate_key("q.example")[1], "--role", "boss")
    assert result.exit_code == 2 and "boss" in result.output
    own = json.loads(ok(home, "keys", "show", "--json"))[0]["vkey"]
    assert "own origin" in refused(home, "trust", "add", own, "--role", "partner")
    other_key_same_origin = generate_key(ORIGIN)[1]
    assert "own origin" in refused(home, "trust", "add", other_key_same_origin, "--role", "partner")
    # a log that holds nothing is forgotten with its trust, so a wrong key can be replaced
    # (tests/test_recoverable.py: a log that holds entries cannot change key)
    ok(home, "trust", "remove", "stopncii.example/bank")
    rotated = generate_key("stopncii.example/bank")[1]
    ok(home, "trust", "add", rotated, "--role", "publisher")


def test_trust_origin_is_the_key_name() -> None:
    """A vkey names its log: there is no way to trust a key under another origin."""
    result = CliRunner().invoke(main, ["trust", "add", "-h"])
    assert "VKEY, whose name is the log's origin" in result.output
    assert "publisher" in result.output and "feedback" in result.output


def test_peer_and_log_keys_are_not_confused(home: Path) -> None:
    # Told apart by their names alone, before either is configured.
    log_vkey = generate_key("s.example/bank")[1]
    out = refused(home, "peers", "add", "s", "https://s.example", log_vkey)
    assert "is a log-signing key" in out and "'peer:s.example/bank'" in out
    assert "hashfed trust add" in out
    peer_vkey = generate_key("peer:t.example/bank")[1]
    out = refused(home, "trust", "add", peer_vkey, "--role", "partner")
    assert "is a peer-authentication key" in out and "'t.example/bank'" in out
    assert "hashfed peers add" in out
    ok(home, "trust", "add", log_vkey, "--role", "publisher")
    ok(home, "peers", "add", "t", "https://t.example", peer_vkey)


def test_migration_2_on_a_schema_1_database(tmp_path: Path) -> None:
    import sqlite3

    from hashfed.node.store.db import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0] + "\nPRAGMA user_version=1;")
    conn.close()
    db = open_database(path)
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {"peers", "trust"} <= set(db.table_names())


# --- configuration ---------------------------------------------------------------


def set_config(home: Path, text: str) -> None:
    (home / "hashfed.toml").write_text(f'origin = "{ORIGIN}"\n{text}\n')


def test_config_defaults_and_round_trip(home: Path) -> None:
    config = load_config(home)
    assert config.server.port == DEFAULT_PORT and config.server.listen == "127.0.0.1"
    assert config.server.public_logs == () and config.tls_files is None
    assert config.sync.interval == 300 and config.sync.jitter == 0.2
    assert config.sync.backoff_max == 3600 and config.sync.retention == 0
    (home / "hashfed.toml").write_text(
        f'origin = "{ORIGIN}"\n[server]\nport = 9000\ntls_cert = "c.pem"\ntls_key = "k.pem"\n'
        'public_logs = ["pub.example/log"]\nrequest_timeout = 2.5\n'
        "[sync]\ninterval = 10\njitter = 0\nretention = 86400\n"
    )
    config = load_config(home)
    assert config.server.port == 9000 and config.server.public_logs == ("pub.example/log",)
    assert config.tls_files == (home / "c.pem", home / "k.pem")
    assert config.server.request_timeout == 2.5
    assert config.sync.interval == 10 and config.sync.retention == 86400
    write_config(config)
    assert load_config(home) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 70000", "port must be an integer from 0 to 65535"),
        ('[server]\nport = "80"', "port must be an integer"),
        ('[server]\ntls_cert = "c.pem"', "tls_cert and tls_key go together"),
        ('[server]\ntls_key = "k.pem"', "tls_cert and tls_key go together"),
        ('[server]\npublic_logs = "a.example/log"', "public_logs must be a list"),
        ('[server]\npublic_logs = ["has space"]', "public_logs origin"),
        ("[server]\nmax_body = 0", "max_body must be an integer"),
        ("[server]\nrequest_timeout = 0", "request_timeout must be a number"),
        ('[server]\nlisten = ""', "listen must be a host name"),
        ("[server]\nprot = 1", "unknown setting 'prot' in [server]"),
        ("server = 1", "'server' must be a table"),
        ("[sync]\ninterval = 0", "interval must be a number"),
        ("[sync]\njitter = 1.5", "jitter must be a number from 0 to 0.9"),
        ("[sync]\njitter = true", "jitter must be a number"),
        ("[sync]\ninterval = 600\nbackoff_max = 60", "backoff_max (60) must be at least"),
        ("[sync]\nretention = -1", "retention must be an integer"),
    ],
)
def test_config_validation(home: Path, text: str, message: str) -> None:
    set_config(home, text)
    with pytest.raises(NodeError, match=r"hashfed\.toml") as excinfo:
        load_config(home)
    assert message in str(excinfo.value)
    assert message in refused(home, "peers", "list")


def test_trust_refuses_a_key_whose_name_cannot_be_an_origin(home: Path) -> None:
    from hashfed.protocol.records import MAX_ORIGIN_LENGTH

    vkey = generate_key("x" * (MAX_ORIGIN_LENGTH + 1))[1]
    assert "cannot be a log origin" in refused(home, "trust", "add", vkey, "--role", "partner")
