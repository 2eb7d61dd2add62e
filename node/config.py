"""A node directory: its configuration file, keys, database and signed head.

    <home>/hashfed.toml     configuration (TOML), written by ``hashfed init``
    <home>/keys/log.key     the log-signing key (PRIVATE+KEY+...), mode 0600
    <home>/hashfed.db       the SQLite database (node.db)
    <home>/signed-head      the last checkpoint this node signed (see ownlog.py)

The directory itself is created 0700: it holds keys and bank data.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hashfed.node.errors import NodeError, NotANode
from hashfed.protocol.records import check_origin
from hashfed.protocol.validation import DEFAULT_MIN_PDQ_QUALITY

CONFIG_FILE = "hashfed.toml"
ROLES = ("publisher", "partner")


@dataclass(frozen=True)
class NodeConfig:
    """What ``hashfed.toml`` says about a node."""

    home: Path
    origin: str
    role: str = "partner"
    min_pdq_quality: int = DEFAULT_MIN_PDQ_QUALITY

    @property
    def database(self) -> Path:
        return self.home / "hashfed.db"

    @property
    def log_key(self) -> Path:
        return self.home / "keys" / "log.key"

    @property
    def signed_head(self) -> Path:
        return self.home / "signed-head"


def default_origin() -> str:
    """Returns an origin derived from this host's name, e.g. ``host.example/hashfed``."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.getfqdn() or "localhost").strip("-.")
    return f"{host or 'localhost'}/hashfed"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(config: NodeConfig) -> None:
    """Writes hashfed.toml for config (only the keys hashfed init sets)."""
    text = (
        "# hashfed node configuration\n"
        f"origin = {_toml_string(config.origin)}\n"
        f"role = {_toml_string(config.role)}\n"
        "# PDQ hashes below this quality are refused as bank entries.\n"
        f"min_pdq_quality = {config.min_pdq_quality}\n"
    )
    path = config.home / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_config(home: Path) -> NodeConfig:
    """Reads the node configuration in home, refusing a missing or invalid one."""
    path = home / CONFIG_FILE
    if not path.exists():
        raise NotANode(f"no hashfed node in {home} (no {CONFIG_FILE}); run 'hashfed init' first")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NodeError(f"{path} is not valid TOML: {exc}") from None
    origin = data.get("origin")
    role = data.get("role", "partner")
    quality = data.get("min_pdq_quality", DEFAULT_MIN_PDQ_QUALITY)
    if not isinstance(origin, str):
        raise NodeError(f"{path}: 'origin' must be a string")
    check_origin(origin)
    if role not in ROLES:
        raise NodeError(f"{path}: 'role' must be one of {', '.join(ROLES)}, not {role!r}")
    if type(quality) is not int or not 0 <= quality <= 100:
        raise NodeError(f"{path}: 'min_pdq_quality' must be an integer from 0 to 100")
    return NodeConfig(home=home, origin=origin, role=role, min_pdq_quality=quality)
