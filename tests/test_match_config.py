"""Per-origin PDQ thresholds from hashfed.toml ([match]), through 'hashfed match'."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from hashfed.node.cli.main import main
from hashfed.node.config import MatchConfig, load_config, write_config
from hashfed.node.home import init_node
from hashfed.node.services.ownlog import NewHash
from hashfed.protocol.records import Kind

BASE = bytes.fromhex("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22")


def flip(digest: bytes, bits: int) -> bytes:
    """Returns digest with its first bits bits flipped (distance exactly bits)."""
    value = int.from_bytes(digest, "big") ^ (((1 << bits) - 1) << (256 - bits))
    return value.to_bytes(32, "big")


def matches(home: Path, digest: bytes) -> list[dict[str, object]]:
    result = CliRunner().invoke(main, ["-d", str(home), "match", digest.hex(), "--json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout)[0]["matches"])


def test_thresholds_per_origin_from_the_config(tmp_path: Path) -> None:
    home = tmp_path / "n"
    with init_node(home, "n.test/hashfed", "publisher") as node:
        node.own_log().publish([NewHash(Kind.PDQ, BASE, 100)])
        config = node.config
    assert [m["distance"] for m in matches(home, flip(BASE, 12))] == [12]  # default 31
    write_config(replace(config, match=MatchConfig(31, {"n.test/hashfed": 10})))
    assert load_config(home).match.thresholds == {"n.test/hashfed": 10}
    assert matches(home, flip(BASE, 12)) == []
    assert [m["distance"] for m in matches(home, flip(BASE, 8))] == [8]
    write_config(replace(config, match=MatchConfig(5)))  # a lower default for every origin
    assert matches(home, flip(BASE, 8)) == []


def test_a_threshold_above_31_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "n"
    init_node(home, "n.test/hashfed").close()
    text = (home / "hashfed.toml").read_text().replace("threshold = 31", "threshold = 32")
    (home / "hashfed.toml").write_text(text)
    result = CliRunner().invoke(main, ["-d", str(home), "status"])
    assert result.exit_code == 3 and "[match] threshold" in result.output  # Nagios UNKNOWN
