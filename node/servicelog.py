"""What ``hashfed serve`` adds around the app: its start and stop events, readiness
for systemd, and the sync rounds counted for the metrics."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from hashfed.node.http.metrics import app_metrics
from hashfed.node.sdnotify import notify

if TYPE_CHECKING:
    from hashfed.node.services.syncer import Outcome

log = logging.getLogger("hashfed.serve")


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
