"""A node directory: its configuration file, keys, database and signed head.

    <home>/hashfed.toml     configuration (TOML), written by ``hashfed init``
    <home>/keys/log.key     the log-signing key (PRIVATE+KEY+...), mode 0600
    <home>/keys/peer.key    the peer-authentication key (same name, a distinct key), 0600
    <home>/keys/witness.key reserved for the cosigning key (a later version)
    <home>/hashfed.db       the SQLite database (node.db)
    <home>/signed-head      the last checkpoint this node signed (see ownlog.py)

The directory itself is created 0700: it holds keys and bank data.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hashfed.node.errors import NodeError, NotANode
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.records import check_origin
from hashfed.protocol.validation import DEFAULT_MIN_PDQ_QUALITY

CONFIG_FILE = "hashfed.toml"
ROLES = ("publisher", "partner")


DEFAULT_PORT = 8470


@dataclass(frozen=True)
class ServerConfig:
    """The ``[server]`` section: how ``hashfed serve`` listens and what it serves openly.

    tls_cert and tls_key are both set (the node serves HTTPS itself) or both
    empty (plain HTTP, e.g. behind a TLS-terminating reverse proxy); relative
    paths are relative to the node directory. public_logs are origins anyone may
    read without authenticating. max_body bounds request bodies in bytes;
    request_timeout is in seconds.
    """

    listen: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tls_cert: str = ""
    tls_key: str = ""
    public_logs: tuple[str, ...] = ()
    max_body: int = 65536
    request_timeout: float = 30


@dataclass(frozen=True)
class SyncConfig:
    """The ``[sync]`` section: how often and how patiently this node syncs.

    interval is the seconds between background syncs, spread by up to
    ±jitter × interval; after failures the wait doubles up to backoff_max
    seconds. retention is how many seconds a retracted hash is kept (0: erased
    as soon as the retraction is applied). witness_interval is how often a node
    with witnesses in its policy re-submits its checkpoint to them even when
    nothing is new, so an idle log stays provably fresh; max_age is the age
    (seconds) beyond which 'hashfed status' calls a log's checkpoint stale.
    """

    interval: float = 300
    jitter: float = 0.2
    backoff_max: float = 3600
    retention: int = 0
    witness_interval: float = 600
    max_age: float = 86400


@dataclass(frozen=True)
class CasesConfig:
    """The ``[cases]`` section: the publisher's case desk (node/cases.py, specs/case-api.md).

    review holds new cases for the operator's approval. Pending hashes are
    published every batch_interval seconds, with their time rounded down to
    time_granularity, once at least min_batch_cases cases are pending or the
    oldest has waited max_hold seconds. open_burst/open_per_hour and
    guess_burst/guess_per_hour are per-client token buckets for opening cases
    and for PIN checks; open_global_burst/open_global_per_hour is the bucket
    all clients share for opening cases (a network's first case in an hour
    passes even when it is empty). max_failures wrong PINs from one network
    lock it out of a case for lockout seconds, doubling each time (at most a
    day); case_guess_budget bounds the wrong PINs one case takes a day from all
    networks together (node/pinguard.py). pin_workers threads hash and check
    PINs (scrypt), apart from everything else; at most max_pin_checks checks
    wait for them at once. smtp_* say where the optional email goes (smtp_host
    empty: no email); smtp_starttls (default on) upgrades the SMTP connection
    with STARTTLS before the case number is sent. client_ip_header names a
    header a trusted reverse proxy sets to the client's address (empty: the TCP
    peer's address).
    """

    review: bool = False
    batch_interval: float = 3600
    time_granularity: int = 3600
    min_batch_cases: int = 5
    max_hold: int = 86400
    open_burst: int = 5
    open_per_hour: float = 10
    guess_burst: int = 10
    guess_per_hour: float = 30
    max_failures: int = 5
    lockout: int = 60
    case_guess_budget: int = 100
    open_global_burst: int = 200
    open_global_per_hour: float = 1000
    pin_workers: int = 2
    max_pin_checks: int = 1000
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_starttls: bool = True
    client_ip_header: str = ""


@dataclass(frozen=True)
class MatchConfig:
    """The ``[match]`` section: the PDQ distance up to which an upload matches a bank
    hash (at most 31, the index's exact range), and lower thresholds per origin."""

    threshold: int = 31
    thresholds: dict[str, int] = field(default_factory=dict)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    """The ``[log]`` section: what long-running commands (``hashfed serve``) log, to stderr.

    level is one of :data:`LOG_LEVELS`; format is ``text`` (one readable line per
    event) or ``json`` (one JSON object per line, for a log shipper). See node/logsetup.py.
    """

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` section: Prometheus ``GET /metrics`` and the admin ``GET /v1/status``.

    When enabled, both are served to holders of the admin token (``keys/admin.token``)
    only, never to peers (node/adminapi.py): on the main port, or, with listen set, on
    a separate admin listener at listen:port (and then not on the main port).
    """

    enabled: bool = True
    listen: str = ""
    port: int = 9470


@dataclass(frozen=True)
class NodeConfig:
    """What ``hashfed.toml`` says about a node."""

    home: Path
    origin: str
    role: str = "partner"
    min_pdq_quality: int = DEFAULT_MIN_PDQ_QUALITY
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


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_config(config: NodeConfig) -> None:
    """Writes hashfed.toml for config, with a comment on every setting."""
    server, sync = config.server, config.sync
    public = ", ".join(_toml_string(o) for o in server.public_logs)
    text = (
        "# hashfed node configuration\n"
        f"origin = {_toml_string(config.origin)}\n"
        f"role = {_toml_string(config.role)}\n"
        "# PDQ hashes below this quality are refused as bank entries.\n"
        f"min_pdq_quality = {config.min_pdq_quality}\n"
        "\n"
        "[server]\n"
        "# Address and TCP port 'hashfed serve' listens on.\n"
        f"listen = {_toml_string(server.listen)}\n"
        f"port = {server.port}\n"
        "# Serve HTTPS with this certificate chain and key (PEM, paths relative to the\n"
        "# node directory); set both, or leave both empty for plain HTTP behind a proxy.\n"
        f"tls_cert = {_toml_string(server.tls_cert)}\n"
        f"tls_key = {_toml_string(server.tls_key)}\n"
        "# Origins anyone may read without authenticating; every other log is served\n"
        "# only to configured peers allowed to read it ('hashfed peers add').\n"
        f"public_logs = [{public}]\n"
        "# Largest request body accepted, in bytes, and the per-request timeout, in seconds.\n"
        f"max_body = {server.max_body}\n"
        f"request_timeout = {_toml_number(server.request_timeout)}\n"
        "\n"
        "[sync]\n"
        "# Seconds between background syncs in 'hashfed serve', spread by +/- jitter\n"
        "# (a fraction of the interval); after failures the wait doubles up to backoff_max.\n"
        f"interval = {_toml_number(sync.interval)}\n"
        f"jitter = {_toml_number(sync.jitter)}\n"
        f"backoff_max = {_toml_number(sync.backoff_max)}\n"
        "# Seconds to keep a retracted hash once the retraction is applied (0: erase at once).\n"
        f"retention = {sync.retention}\n"
        "# Seconds between re-submissions of this node's checkpoint to its witnesses, and\n"
        "# the age beyond which 'hashfed status' calls a witnessed checkpoint stale.\n"
        f"witness_interval = {_toml_number(sync.witness_interval)}\n"
        f"max_age = {_toml_number(sync.max_age)}\n"
        + _cases_toml(config.cases)
        + _match_toml(config.match)
        + _log_toml(config.log, config.metrics)
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
    try:
        return _node_config(home, path, data)
    except ProtocolError as exc:  # an origin that is not one, named by check_origin
        raise NodeError(f"{path}: {exc}") from None


def _node_config(home: Path, path: Path, data: dict[str, Any]) -> NodeConfig:
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
    return NodeConfig(
        home=home,
        origin=origin,
        role=role,
        min_pdq_quality=quality,
        server=_server_config(path, _section(path, data, "server", ServerConfig)),
        sync=_sync_config(path, _section(path, data, "sync", SyncConfig)),
        cases=_cases_config(path, _section(path, data, "cases", CasesConfig)),
        match=_match_config(path, _section(path, data, "match", MatchConfig)),
        log=_log_config(path, _section(path, data, "log", LogConfig)),
        metrics=_metrics_config(path, _section(path, data, "metrics", MetricsConfig)),
    )


def _match_config(path: Path, section: dict[str, Any]) -> MatchConfig:
    threshold = _integer(path, "[match] threshold", section.get("threshold", 31), 0, 31)
    table = section.get("thresholds", {})
    if not isinstance(table, dict):
        raise NodeError(f"{path}: [match] thresholds must be a table of origin = distance")
    thresholds = {}
    for origin, value in table.items():
        check_origin(origin, "[match] thresholds origin")
        thresholds[origin] = _integer(path, f"[match] thresholds {origin!r}", value, 0, 31)
    return MatchConfig(threshold, thresholds)


def _match_toml(match: MatchConfig) -> str:
    lines = [
        "",
        "[match]",
        "# PDQ Hamming distance up to which an upload matches a bank hash (0..31).",
        f"threshold = {match.threshold}",
        '# Lower it for some origins with a table, e.g. "stopncii.example/bank" = 24',
        "[match.thresholds]",
    ]
    lines += [f"{_toml_string(o)} = {t}" for o, t in sorted(match.thresholds.items())]
    return "\n".join(lines) + "\n"


def _section(path: Path, data: dict[str, Any], name: str, cls: type) -> dict[str, Any]:
    """Returns the [name] table of data (empty if absent), refusing keys cls does not have."""
    section = data.get(name, {})
    if not isinstance(section, dict):
        raise NodeError(f"{path}: '{name}' must be a table ([{name}])")
    known = [f.name for f in fields(cls)]
    for key in section:
        if key not in known:
            raise NodeError(
                f"{path}: unknown setting {key!r} in [{name}]; known: {', '.join(known)}"
            )
    return section


def _integer(path: Path, where: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise NodeError(f"{path}: {where} must be an integer from {low} to {high}, not {value!r}")
    return value


def _number(path: Path, where: str, value: Any, low: float, high: float) -> float:
    if type(value) not in (int, float) or not low <= value <= high:
        raise NodeError(f"{path}: {where} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def _string(path: Path, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise NodeError(f"{path}: {where} must be a string, not {value!r}")
    return value


def _server_config(path: Path, section: dict[str, Any]) -> ServerConfig:
    d = ServerConfig()
    listen = _string(path, "[server] listen", section.get("listen", d.listen))
    if not listen or any(c.isspace() for c in listen):
        raise NodeError(f"{path}: [server] listen must be a host name or address, not {listen!r}")
    port = _integer(path, "[server] port", section.get("port", d.port), 0, 65535)
    cert = _string(path, "[server] tls_cert", section.get("tls_cert", d.tls_cert))
    key = _string(path, "[server] tls_key", section.get("tls_key", d.tls_key))
    if bool(cert) != bool(key):
        raise NodeError(
            f"{path}: [server] tls_cert and tls_key go together: set both to serve HTTPS, "
            "or neither to serve plain HTTP (behind a TLS-terminating proxy)"
        )
    public = section.get("public_logs", list(d.public_logs))
    if not isinstance(public, list):
        raise NodeError(f"{path}: [server] public_logs must be a list of origins")
    for origin in public:
        if not isinstance(origin, str):
            raise NodeError(f"{path}: [server] public_logs must be a list of origins")
        try:
            check_origin(origin, "[server] public_logs origin")
        except ValueError as exc:
            raise NodeError(f"{path}: {exc}") from None
    max_body = _integer(path, "[server] max_body", section.get("max_body", d.max_body), 1024, 2**30)
    timeout = _number(
        path, "[server] request_timeout", section.get("request_timeout", d.request_timeout), 1, 3600
    )
    return ServerConfig(listen, port, cert, key, tuple(public), max_body, timeout)


def _sync_config(path: Path, section: dict[str, Any]) -> SyncConfig:
    d = SyncConfig()
    interval = _number(path, "[sync] interval", section.get("interval", d.interval), 1, 86400 * 7)
    jitter = _number(path, "[sync] jitter", section.get("jitter", d.jitter), 0, 0.9)
    backoff = _number(
        path, "[sync] backoff_max", section.get("backoff_max", d.backoff_max), 1, 86400 * 7
    )
    if backoff < interval:
        raise NodeError(
            f"{path}: [sync] backoff_max ({backoff:g}) must be at least interval ({interval:g})"
        )
    retention = _integer(
        path, "[sync] retention", section.get("retention", d.retention), 0, 100 * 365 * 86400
    )
    witness_interval = _number(
        path,
        "[sync] witness_interval",
        section.get("witness_interval", d.witness_interval),
        1,
        86400 * 7,
    )
    max_age = _number(path, "[sync] max_age", section.get("max_age", d.max_age), 1, 86400 * 365)
    return SyncConfig(interval, jitter, backoff, retention, witness_interval, max_age)


def _cases_toml(cases: CasesConfig) -> str:
    flag = {True: "true", False: "false"}
    return (
        "\n"
        "[cases]\n"
        "# The case desk (publisher only). Hold new cases for 'hashfed cases approve'?\n"
        f"review = {flag[cases.review]}\n"
        "# Seconds between batches that publish pending case hashes, and the granularity\n"
        "# (seconds) their published time is rounded down to.\n"
        f"batch_interval = {_toml_number(cases.batch_interval)}\n"
        f"time_granularity = {cases.time_granularity}\n"
        "# A batch waits for this many cases, unless the oldest has waited max_hold seconds.\n"
        f"min_batch_cases = {cases.min_batch_cases}\n"
        f"max_hold = {cases.max_hold}\n"
        "# Per client address: cases opened (burst, then per hour) and PIN checks.\n"
        f"open_burst = {cases.open_burst}\n"
        f"open_per_hour = {_toml_number(cases.open_per_hour)}\n"
        f"guess_burst = {cases.guess_burst}\n"
        f"guess_per_hour = {_toml_number(cases.guess_per_hour)}\n"
        "# Wrong PINs from one network before it is locked out of a case, and the first\n"
        "# lockout in seconds (doubles); wrong PINs one case takes a day from everyone.\n"
        f"max_failures = {cases.max_failures}\n"
        f"lockout = {cases.lockout}\n"
        f"case_guess_budget = {cases.case_guess_budget}\n"
        "# Cases all clients together may open (burst, then per hour).\n"
        f"open_global_burst = {cases.open_global_burst}\n"
        f"open_global_per_hour = {_toml_number(cases.open_global_per_hour)}\n"
        "# Threads that check PINs (scrypt), and how many checks may wait for them.\n"
        f"pin_workers = {cases.pin_workers}\n"
        f"max_pin_checks = {cases.max_pin_checks}\n"
        "# SMTP server for the optional email of the case number (empty host: no email).\n"
        f"smtp_host = {_toml_string(cases.smtp_host)}\n"
        f"smtp_port = {cases.smtp_port}\n"
        f"smtp_from = {_toml_string(cases.smtp_from)}\n"
        f"smtp_starttls = {flag[cases.smtp_starttls]}\n"
        "# Header a trusted reverse proxy sets to the client's address (empty: none).\n"
        f"client_ip_header = {_toml_string(cases.client_ip_header)}\n"
    )


def _bool(path: Path, where: str, value: Any) -> bool:
    if type(value) is not bool:
        raise NodeError(f"{path}: {where} must be true or false, not {value!r}")
    return value


def _cases_config(path: Path, section: dict[str, Any]) -> CasesConfig:
    d = CasesConfig()

    def get(name: str) -> Any:
        return section.get(name, getattr(d, name))

    day, week = 86400, 86400 * 7
    config = CasesConfig(
        review=_bool(path, "[cases] review", get("review")),
        batch_interval=_number(path, "[cases] batch_interval", get("batch_interval"), 1, week),
        time_granularity=_integer(
            path, "[cases] time_granularity", get("time_granularity"), 1, day
        ),
        min_batch_cases=_integer(path, "[cases] min_batch_cases", get("min_batch_cases"), 1, 10000),
        max_hold=_integer(path, "[cases] max_hold", get("max_hold"), 1, 4 * week),
        open_burst=_integer(path, "[cases] open_burst", get("open_burst"), 1, 10000),
        open_per_hour=_number(path, "[cases] open_per_hour", get("open_per_hour"), 0.01, 1e6),
        guess_burst=_integer(path, "[cases] guess_burst", get("guess_burst"), 1, 10000),
        guess_per_hour=_number(path, "[cases] guess_per_hour", get("guess_per_hour"), 0.01, 1e6),
        max_failures=_integer(path, "[cases] max_failures", get("max_failures"), 1, 100),
        lockout=_integer(path, "[cases] lockout", get("lockout"), 1, day),
        case_guess_budget=_integer(
            path, "[cases] case_guess_budget", get("case_guess_budget"), 1, 100_000
        ),
        open_global_burst=_integer(
            path, "[cases] open_global_burst", get("open_global_burst"), 1, 1_000_000
        ),
        open_global_per_hour=_number(
            path, "[cases] open_global_per_hour", get("open_global_per_hour"), 0.01, 1e7
        ),
        pin_workers=_integer(path, "[cases] pin_workers", get("pin_workers"), 1, 64),
        max_pin_checks=_integer(path, "[cases] max_pin_checks", get("max_pin_checks"), 1, 100_000),
        smtp_host=_string(path, "[cases] smtp_host", get("smtp_host")),
        smtp_port=_integer(path, "[cases] smtp_port", get("smtp_port"), 1, 65535),
        smtp_from=_string(path, "[cases] smtp_from", get("smtp_from")),
        smtp_starttls=_bool(path, "[cases] smtp_starttls", get("smtp_starttls")),
        client_ip_header=_string(path, "[cases] client_ip_header", get("client_ip_header")),
    )
    if config.smtp_host and "@" not in config.smtp_from:
        raise NodeError(
            f"{path}: [cases] smtp_from must be the sender's address when smtp_host is set"
        )
    return config


def _log_toml(log: LogConfig, metrics: MetricsConfig) -> str:
    flag = {True: "true", False: "false"}
    return (
        "\n"
        "[log]\n"
        "# What 'hashfed serve' logs to stderr: level (debug, info, warning, error) and\n"
        "# format (text, or json: one object per line). --log-level/--log-format override.\n"
        f"level = {_toml_string(log.level)}\n"
        f"format = {_toml_string(log.format)}\n"
        "\n"
        "[metrics]\n"
        "# Serve Prometheus metrics (GET /metrics) and origin health (GET /v1/status) on the\n"
        "# main port, to holders of keys/admin.token only (never to peers). With listen set,\n"
        "# serve them on a separate admin listener at listen:port instead of the main port.\n"
        f"enabled = {flag[metrics.enabled]}\n"
        f"listen = {_toml_string(metrics.listen)}\n"
        f"port = {metrics.port}\n"
    )


def _choice(path: Path, where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise NodeError(f"{path}: {where} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _log_config(path: Path, section: dict[str, Any]) -> LogConfig:
    d = LogConfig()
    return LogConfig(
        level=_choice(path, "[log] level", section.get("level", d.level), LOG_LEVELS),
        format=_choice(path, "[log] format", section.get("format", d.format), LOG_FORMATS),
    )


def _metrics_config(path: Path, section: dict[str, Any]) -> MetricsConfig:
    d = MetricsConfig()
    enabled = _bool(path, "[metrics] enabled", section.get("enabled", d.enabled))
    listen = _string(path, "[metrics] listen", section.get("listen", d.listen))
    if any(c.isspace() for c in listen):
        raise NodeError(f"{path}: [metrics] listen must be a host name or address, not {listen!r}")
    port = _integer(path, "[metrics] port", section.get("port", d.port), 0, 65535)
    return MetricsConfig(enabled, listen, port)
