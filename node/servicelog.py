"""What ``hashfed serve`` adds around the app: its logging flags, its start and stop
events, readiness for systemd, and the sync rounds counted for the metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from aiohttp import web
from hashfed.node.config import LOG_FORMATS, LOG_LEVELS, LogConfig
from hashfed.node.logsetup import configure_logging
from hashfed.node.metrics import app_metrics
from hashfed.node.sdnotify import notify

if TYPE_CHECKING:
    from hashfed.node.syncer import Outcome

log = logging.getLogger("hashfed.serve")


F = TypeVar("F", bound=Callable[..., Any])


def log_options(command: F) -> F:
    """Adds ``--log-level`` and ``--log-format`` (default: ``[log]`` in hashfed.toml)."""
    command = click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        help="text, or json (one object per line). Default: [log] format.",
    )(command)
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help="Least severe level logged. Default: [log] level.",
    )(command)


def start_logging(config: LogConfig, level: str | None, fmt: str | None) -> None:
    """Configures logging to stderr from [log], with the flags (if given) winning."""
    configure_logging((level or config.level).lower(), fmt or config.format)


def ready(origin: str, url: str) -> None:
    """Logs the start and tells systemd (Type=notify) the node is serving."""
    log.info("serving %s on %s", origin, url, extra={"event": "start", "origin": origin})
    notify("READY=1\nSTATUS=serving " + url)


async def stopping(origin: str) -> None:
    """Logs the stop and tells systemd the node is shutting down (an on_shutdown hook)."""
    notify("STOPPING=1")
    log.info("stopping %s", origin, extra={"event": "stop", "origin": origin})


def observe_sync_round(app: web.Application, outcomes: list[Outcome] | None) -> None:
    """Counts one background sync round per origin, ok or failed, in the app's metrics."""
    metrics = app_metrics(app)
    if metrics is None:
        return
    for outcome in outcomes or []:
        metrics.sync_rounds.labels(outcome.origin, "ok" if outcome.ok else "failed").inc()
