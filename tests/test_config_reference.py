"""Settings declared once (node/config.py): the reference, round trips and refusals.

Each test walks the declarations themselves, so a setting added later is covered
without touching this file (a new free-form string needs a sample in SAMPLES).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hashfed.node import config as config_module
from hashfed.node.config import CONFIG_FILE, NodeConfig, load_config, reference, write_config
from hashfed.node.errors import NodeError
from hashfed.node.settings import Declared, Section, declared, toml_value

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
ORIGIN = "t.example/node"

# Values of free-form settings that differ from their defaults and pass their checks.
SAMPLES: dict[str, Any] = {
    "origin": "round.example/trip",
    "server.listen": "0.0.0.0",
    "server.tls_cert": "tls/cert.pem",
    "server.tls_key": "tls/key.pem",
    "server.public_logs": ("a.example/log", "b.example/log"),
    "cases.smtp_host": "mail.example",
    "cases.smtp_from": 'desk "cases"@example.org',
    "cases.client_ip_header": "X-Forwarded-For\\",
    "match.thresholds": {"a.example/bank": 0, "b.example/bank": 24},
    "metrics.listen": "127.0.0.2",
}


def settings(cls: type[Section] = NodeConfig, name: str = "") -> Iterator[tuple[str, Declared]]:
    """Yields (section name, declaration) for every setting, depth first."""
    for item in declared(cls):
        if item.section is not None:
            yield from settings(item.section, f"{name}.{item.name}" if name else item.name)
        else:
            yield name, item


def other_value(section: str, item: Declared) -> Any:
    """Returns a valid value of the setting that is not its default."""
    dotted = f"{section}.{item.name}" if section else item.name
    if dotted in SAMPLES:
        return SAMPLES[dotted]
    spec = item.spec
    assert spec is not None
    if item.hint is bool:
        return not item.default
    if item.hint in (int, float):
        assert spec.low is not None and spec.high is not None
        return item.hint(spec.high if item.default != spec.high else spec.low)
    if spec.choices:
        return next(c for c in spec.choices if c != item.default)
    raise AssertionError(f"add a sample value for {dotted} to SAMPLES")


def build(cls: type[Section], name: str, home: Path) -> Any:
    values: dict[str, Any] = {"home": home} if cls is NodeConfig else {}
    for item in declared(cls):
        if item.section is not None:
            values[item.name] = build(
                item.section, f"{name}.{item.name}" if name else item.name, home
            )
        else:
            values[item.name] = other_value(name, item)
    return cls(**values)


def test_the_reference_is_generated_from_the_declarations() -> None:
    assert DOCS.read_text() == reference(), "docs/configuration.md is stale: run 'make docs'"
    for section, item in settings():
        assert f"| `{item.name}` |" in reference(), (section, item.name)


def test_the_reference_is_printed_by_the_module(capsys: pytest.CaptureFixture[str]) -> None:
    config_module.main(["--markdown"])
    assert capsys.readouterr().out == reference()


def test_every_setting_round_trips_through_the_file(tmp_path: Path) -> None:
    config = build(NodeConfig, "", tmp_path)
    for section, item in settings():
        owner = getattr(config, section) if section else config
        assert getattr(owner, item.name) != item.default, (section, item.name)
    write_config(config)
    assert load_config(tmp_path) == config
    lines = (tmp_path / CONFIG_FILE).read_text().splitlines()
    for number, line in enumerate(lines):  # every setting (and sub-table) under its comment
        if re.match(r"[a-z_]+ = |\[[a-z_]+\.[a-z_]+\]$", line):
            assert lines[number - 1].startswith("# "), line


def test_the_defaults_round_trip(tmp_path: Path) -> None:
    config = NodeConfig(tmp_path, ORIGIN)
    write_config(config)
    assert load_config(tmp_path) == config


def bad_values(item: Declared) -> list[str]:
    """Returns TOML literals of the wrong type, out of range or refused by a check."""
    spec = item.spec
    assert spec is not None
    if item.hint is bool:
        return ["1", '"true"']
    if item.hint in (int, float):
        assert spec.low is not None and spec.high is not None
        bad = ['"1"', "true", toml_value(spec.low - 1), toml_value(spec.high + 1)]
        return bad + (["1.5"] if item.hint is int else [])
    if item.hint is str:
        return [
            "1",
            *(['"bogus"'] if spec.choices else []),
            *(['"has space"'] if spec.check else []),
        ]
    if item.default == ():
        return ['"a.example/log"', "[1]", '["has space"]']
    return ["1", '{ "a.example/x" = 32 }', '{ "a.example/x" = "1" }', '{ "has space" = 1 }']


CASES = [(section, item.name, bad) for section, item in settings() for bad in bad_values(item)]


@pytest.mark.parametrize(("section", "key", "bad"), CASES)
def test_a_bad_value_is_refused_in_one_line_naming_the_key(
    tmp_path: Path, section: str, key: str, bad: str
) -> None:
    if section:
        text = f'origin = "{ORIGIN}"\n[{section}]\n{key} = {bad}\n'
    else:
        text = f"{key} = {bad}\n" + (f'origin = "{ORIGIN}"\n' if key != "origin" else "")
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(NodeError) as excinfo:
        load_config(tmp_path)
    message = str(excinfo.value)
    where = f"[{section}] {key}" if section else key
    assert "\n" not in message and CONFIG_FILE in message
    assert where in message and " must " in message, message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "origin must be set"),
        (f'origin = "{ORIGIN}"\nport = 1\n', "unknown setting 'port'; known: origin, role"),
        (f'origin = "{ORIGIN}"\n[serverr]\nport = 1\n', "unknown setting 'serverr'"),
        (f'origin = "{ORIGIN}"\n[log]\nlevle = "info"\n', "unknown setting 'levle' in [log]"),
        (f'origin = "{ORIGIN}"\nlog = "info"\n', "'log' must be a table ([log])"),
        (f'origin = "{ORIGIN}"\n[match.thresholds]\n"a.example/b" = 32\n', "from 0 to 31"),
    ],
)
def test_unknown_and_missing_settings_are_refused(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(NodeError, match=r"hashfed\.toml: ") as excinfo:
        load_config(tmp_path)
    assert words in str(excinfo.value)
