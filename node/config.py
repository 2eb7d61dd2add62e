"""A node directory: its configuration file, keys, database and signed head.

    <home>/hashfed.toml     configuration (TOML), written by ``hashfed init``
    <home>/keys/log.key     the log-signing key (PRIVATE+KEY+...), mode 0600
    <home>/keys/peer.key    the peer-authentication key (same name, a distinct key), 0600
    <home>/keys/witness.key reserved for the cosigning key (a later version)
    <home>/hashfed.db       the SQLite database (node.db)
    <home>/signed-head      the last checkpoint this node signed (see ownlog.py)

The directory itself is created 0700: it holds keys and bank data.

Every setting of hashfed.toml is declared once, below, as a field of its section
(node/settings.py): type, default, range or choices and help text. That declaration
drives loading and checking the file, the commented file ``hashfed init`` writes, and
the reference docs/configuration.md (``python -m hashfed.node.config --markdown``).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hashfed.node.errors import NodeError, NotANode
from hashfed.node.settings import Section, about, load_section, markdown_text, setting, toml_text
from hashfed.protocol.records import check_origin
from hashfed.protocol.validation import DEFAULT_MIN_PDQ_QUALITY

CONFIG_FILE = "hashfed.toml"
ROLES = ("publisher", "partner")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DEFAULT_PORT = 8470

_TITLE = "hashfed node configuration (reference: docs/configuration.md)"
_DAY = 86400
_WEEK = 7 * _DAY


def _origin(where: str, value: str) -> None:
    check_origin(value, where)


def _each_origin(where: str, value: str) -> None:
    check_origin(value, f"{where} origin")


def _host(where: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{where} must be a host name or address, not {value!r}")


def _host_or_empty(where: str, value: str) -> None:
    if value:
        _host(where, value)


@dataclass(frozen=True)
class ServerConfig(Section):
    """How 'hashfed serve' listens and what it serves openly."""

    listen: str = setting(
        "127.0.0.1",
        "Address 'hashfed serve' listens on (--listen overrides).",
        check=_host,
        allowed="a host name or address",
    )
    port: int = setting(
        DEFAULT_PORT, "TCP port 'hashfed serve' listens on (--port overrides).", low=0, high=65535
    )
    tls_cert: str = setting(
        "",
        "Serve HTTPS with this PEM certificate chain, a path relative to the node directory; "
        "set it with tls_key, or leave both empty for plain HTTP behind a TLS-terminating proxy.",
    )
    tls_key: str = setting(
        "", "The PEM private key of tls_cert, a path relative to the node directory."
    )
    public_logs: tuple[str, ...] = setting(
        (),
        "Origins anyone may read without authenticating; every other log is served only to "
        "configured peers allowed to read it ('hashfed peers add').",
        check=_each_origin,
        allowed="origins",
    )
    max_body: int = setting(65536, "Largest request body accepted, in bytes.", low=1024, high=2**30)
    request_timeout: float = setting(30, "Seconds a request may take.", low=1, high=3600)

    def check(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(
                "tls_cert and tls_key go together: set both to serve HTTPS, "
                "or neither to serve plain HTTP (behind a TLS-terminating proxy)"
            )


@dataclass(frozen=True)
class SyncConfig(Section):
    """How often and how patiently this node syncs."""

    interval: float = setting(
        300, "Seconds between background syncs in 'hashfed serve'.", low=1, high=_WEEK
    )
    jitter: float = setting(
        0.2, "Spread of each wait, as a fraction of interval (+/-).", low=0, high=0.9
    )
    backoff_max: float = setting(
        3600,
        "After failures the wait doubles, up to this many seconds (at least interval).",
        low=1,
        high=_WEEK,
    )
    retention: int = setting(
        0,
        "Seconds to keep a retracted hash once the retraction is applied (0: erase at once).",
        low=0,
        high=100 * 365 * _DAY,
    )
    witness_interval: float = setting(
        600,
        "Seconds between re-submissions of this node's checkpoint to its witnesses, even when "
        "nothing is new, so that an idle log stays provably fresh.",
        low=1,
        high=_WEEK,
    )
    max_age: float = setting(
        _DAY,
        "Age in seconds beyond which 'hashfed status' calls an origin's checkpoint stale "
        "(not synced, or under a witness policy not cosigned, within it: CRITICAL).",
        low=1,
        high=365 * _DAY,
    )

    def check(self) -> None:
        if self.backoff_max < self.interval:
            raise ValueError(
                f"backoff_max ({self.backoff_max:g}) must be at least interval ({self.interval:g})"
            )


@dataclass(frozen=True)
class CasesConfig(Section):
    """The publisher's case desk (services/casedesk.py, specs/case-api.md); partners ignore it."""

    review: bool = setting(False, "Hold new cases for the operator's 'hashfed cases approve'.")
    batch_interval: float = setting(
        3600, "Seconds between batches that publish pending case hashes.", low=1, high=_WEEK
    )
    time_granularity: int = setting(
        3600, "Seconds a published case time is rounded down to.", low=1, high=_DAY
    )
    min_batch_cases: int = setting(
        5,
        "A batch waits for this many pending cases, unless the oldest has waited max_hold.",
        low=1,
        high=10000,
    )
    max_hold: int = setting(
        _DAY, "Seconds a pending case waits at most for a batch.", low=1, high=4 * _WEEK
    )
    open_burst: int = setting(
        5, "Cases one client may open at once (a token bucket).", low=1, high=10000
    )
    open_per_hour: float = setting(
        10, "Cases one client may open per hour after the burst.", low=0.01, high=1e6
    )
    guess_burst: int = setting(10, "PIN checks one client may make at once.", low=1, high=10000)
    guess_per_hour: float = setting(
        30, "PIN checks one client may make per hour after the burst.", low=0.01, high=1e6
    )
    max_failures: int = setting(
        5, "Wrong PINs from one network before it is locked out of a case.", low=1, high=100
    )
    lockout: int = setting(
        60,
        "Seconds of the first lockout; each next one doubles, up to a day (services/pinguard.py).",
        low=1,
        high=_DAY,
    )
    case_guess_budget: int = setting(
        100, "Wrong PINs one case takes a day from all networks together.", low=1, high=100_000
    )
    open_global_burst: int = setting(
        200,
        "Cases all clients together may open at once (a network's first case in an hour "
        "passes even when this bucket is empty).",
        low=1,
        high=1_000_000,
    )
    open_global_per_hour: float = setting(
        1000, "Cases all clients together may open per hour after the burst.", low=0.01, high=1e7
    )
    pin_workers: int = setting(
        2, "Threads that hash and check PINs (scrypt), apart from everything else.", low=1, high=64
    )
    max_pin_checks: int = setting(
        1000, "PIN checks that may wait for those threads at once.", low=1, high=100_000
    )
    smtp_host: str = setting(
        "", "SMTP server for the optional email of the case number (empty: no email)."
    )
    smtp_port: int = setting(25, "Port of the SMTP server.", low=1, high=65535)
    smtp_from: str = setting("", "Sender's address of that email (required with smtp_host).")
    smtp_starttls: bool = setting(
        True, "Upgrade the SMTP connection with STARTTLS before the case number is sent."
    )
    client_ip_header: str = setting(
        "",
        "Header a trusted reverse proxy sets to the client's address, e.g. X-Forwarded-For "
        "(empty: the TCP peer's address).",
    )

    def check(self) -> None:
        if self.smtp_host and "@" not in self.smtp_from:
            raise ValueError("smtp_from must be the sender's address when smtp_host is set")


@dataclass(frozen=True)
class MatchConfig(Section):
    """Which bank hashes an uploaded PDQ hash matches."""

    threshold: int = setting(
        31,
        "PDQ Hamming distance up to which an upload matches a bank hash (31 at most, the "
        "index's exact range).",
        low=0,
        high=31,
    )
    thresholds: dict[str, int] = setting(  # noqa: RUF009 (an empty dict by default_factory)
        {},
        'Lower thresholds for some origins, one line each, e.g. "stopncii.example/bank" = 24.',
        low=0,
        high=31,
        check=_each_origin,
        allowed="origin",
    )


@dataclass(frozen=True)
class LogConfig(Section):
    """What long-running commands ('hashfed serve') log, to stderr (node/logsetup.py)."""

    level: str = setting("info", "Least severe level logged (--log-level).", choices=LOG_LEVELS)
    format: str = setting(
        "text",
        "text: one readable line per event; json: one JSON object per line, for a log "
        "shipper (--log-format).",
        choices=LOG_FORMATS,
    )


@dataclass(frozen=True)
class MetricsConfig(Section):
    """Prometheus GET /metrics and the admin GET /v1/status, for monitoring (node/http/admin.py).

    Both are served to holders of the admin token (keys/admin.token) only, never to peers.
    """

    enabled: bool = setting(True, "Serve them, to holders of keys/admin.token only.")
    listen: str = setting(
        "",
        "Serve them on a separate admin listener at listen:port (e.g. an internal address) "
        "instead of the main port (empty: on the main port).",
        check=_host_or_empty,
        allowed="a host name or address, or empty",
    )
    port: int = setting(9470, "Port of that admin listener.", low=0, high=65535)


@dataclass(frozen=True)
class NodeConfig(Section):
    """What hashfed.toml says about a node: its log, its role and the sections below."""

    home: Path
    origin: str = field(
        metadata=about(
            "The origin of this node's log, also its key name; it never changes "
            "('hashfed init' derives HOST/hashfed).",
            check=_origin,
            allowed="an origin",
        )
    )
    role: str = setting(
        "partner", "publisher runs the bank and the case desk; partner follows it.", choices=ROLES
    )
    min_pdq_quality: int = setting(
        DEFAULT_MIN_PDQ_QUALITY, "PDQ hashes below this quality are refused.", low=0, high=100
    )
    server: ServerConfig = field(default_factory=ServerConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    cases: CasesConfig = field(default_factory=CasesConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def database(self) -> Path:
        return self.home / "hashfed.db"

    @property
    def log_key(self) -> Path:
        return self.home / "keys" / "log.key"

    @property
    def peer_key(self) -> Path:
        return self.home / "keys" / "peer.key"

    @property
    def witness_key(self) -> Path:
        """The cosigning key (C2SP tlog-cosignature/v1), used when witnessing other logs."""
        return self.home / "keys" / "witness.key"

    @property
    def signed_head(self) -> Path:
        return self.home / "signed-head"

    @property
    def tls_files(self) -> tuple[Path, Path] | None:
        """Returns the (certificate, key) paths to serve TLS with, or None for plain HTTP."""
        if not self.server.tls_cert:
            return None
        return self.home / self.server.tls_cert, self.home / self.server.tls_key


def default_origin() -> str:
    """Returns an origin derived from this host's name, e.g. ``host.example/hashfed``."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.getfqdn() or "localhost").strip("-.")
    return f"{host or 'localhost'}/hashfed"


def write_config(config: NodeConfig) -> None:
    """Writes hashfed.toml for config, with a comment on every setting."""
    path = config.home / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(toml_text(config, _TITLE))
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
    try:
        return load_section(NodeConfig, data, given={"home": home})
    except ValueError as exc:  # names the setting and what it allows
        raise NodeError(f"{path}: {exc}") from None


_INTRO = f"""
<!-- Generated from node/config.py by `make docs` (`python -m hashfed.node.config
--markdown`); edit the declarations there, not this file. A test keeps it in sync. -->

`hashfed init` writes `{CONFIG_FILE}` in the node directory with every setting, each
under a comment saying what it does and what it allows. Every command reads it; a bad
value or an unknown key is refused with one line naming `[section] key` and what is
allowed, so a typo never silently does nothing. Command-line flags override the file.
"""


def reference() -> str:
    """Returns the Markdown reference of every setting (docs/configuration.md)."""
    return markdown_text(NodeConfig, f"Configuration reference (`{CONFIG_FILE}`)", _INTRO)


def main(argv: list[str] | None = None) -> None:
    """Prints the configuration reference (--markdown) or a default hashfed.toml (--toml)."""
    parser = argparse.ArgumentParser(prog="python -m hashfed.node.config", description=main.__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    group.add_argument("--toml", action="store_true", help="print a default hashfed.toml")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(reference())
    else:
        config = NodeConfig(Path("."), "host.example/hashfed")
        sys.stdout.write(toml_text(config, _TITLE))


if __name__ == "__main__":
    main()
