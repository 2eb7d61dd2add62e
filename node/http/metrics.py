"""Prometheus metrics for one node app, through ``prometheus_client`` (its own registry:
no global state, so two apps in one process never share a counter).

Counted as things happen (this process, since it started)::

    hashfed_http_requests_total{route,method,status}    every request (node/http/accesslog.py)
    hashfed_match_requests_total{result}                POST /v1/match: hit, miss or error
    hashfed_match_duration_seconds{result}              its latency (histogram)
    hashfed_sync_rounds_total{origin,result}            background syncs: ok or failed
    hashfed_cases_opened_total, hashfed_cases_withdrawn_total
    hashfed_case_lockouts_total                         PIN checks refused: case locked
    hashfed_case_rate_limited_total{what}               opening or pin_check refused: 429
    hashfed_build_info{version,python}                  always 1

Read from the database at each scrape (:class:`NodeCollector`), per origin::

    hashfed_log_size, hashfed_log_offered_size, hashfed_log_lag_entries
    hashfed_log_last_sync_timestamp_seconds, hashfed_log_sync_failures (in a row)
    hashfed_log_flagged_entries, hashfed_log_halted (evidence recorded)
    hashfed_log_witness_quorum, hashfed_log_witnessed_timestamp_seconds,
    hashfed_log_cosignatures                           on the latest checkpoint
    hashfed_bank_active_hashes{kind}, hashfed_index_load_seconds
    hashfed_freshness_bound_seconds                    [sync] max_age

Timestamps are Unix seconds; alert rules compute ages with ``time() - ...``
(docs/operations.md).
"""

from __future__ import annotations

import platform
import sqlite3
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from hashfed.node.config import NodeConfig
from hashfed.node.services.health import status_rows
from hashfed.node.version import __version__
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
"""HTTP methods counted under their own name in hashfed_http_requests_total."""


class Metrics:
    """The counters and histograms of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "hashfed_http_requests",
            "HTTP requests answered, by matched route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.match_requests = Counter(
            "hashfed_match_requests",
            "POST /v1/match requests, by result (hit: some hash matched; miss; error).",
            ["result"],
            registry=r,
        )
        self.match_duration = Histogram(
            "hashfed_match_duration_seconds",
            "POST /v1/match latency, by result.",
            ["result"],
            buckets=MATCH_BUCKETS,
            registry=r,
        )
        self.sync_rounds = Counter(
            "hashfed_sync_rounds",
            "Background sync attempts per origin, by result (ok or failed).",
            ["origin", "result"],
            registry=r,
        )
        self.cases_opened = Counter(
            "hashfed_cases_opened", "Cases opened at the case desk.", registry=r
        )
        self.cases_withdrawn = Counter(
            "hashfed_cases_withdrawn", "Cases withdrawn at the case desk.", registry=r
        )
        self.case_lockouts = Counter(
            "hashfed_case_lockouts",
            "Case desk PIN checks refused because the case is locked after wrong PINs.",
            registry=r,
        )
        self.case_rate_limited = Counter(
            "hashfed_case_rate_limited",
            "Case desk requests refused by a rate limit (what: opening or pin_check).",
            ["what"],
            registry=r,
        )
        Info("hashfed_build", "The hashfed version serving.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )

    def observe_request(self, route: str, method: str, status: int) -> None:
        # aiohttp accepts any method name: an unbounded label would let anyone grow
        # the registry, so methods outside HTTP's standard set count as OTHER.
        label = method if method in STANDARD_METHODS else "OTHER"
        self.http_requests.labels(route, label, str(status)).inc()

    def observe_match(self, result: str, seconds: float) -> None:
        self.match_requests.labels(result).inc()
        self.match_duration.labels(result).observe(seconds)


METRICS_KEY = web.AppKey("hashfed_metrics", Metrics)
"""Where create_app keeps the app's Metrics."""


def app_metrics(app: web.Application) -> Metrics | None:
    """Returns the app's Metrics, or None for an app built without them."""
    return app.get(METRICS_KEY)


def _count_cosignatures(note: str | None) -> int:
    """Returns how many signatures besides the log's own a checkpoint note carries."""
    if not note:
        return 0
    _, _, signatures = note.partition("\n\n")
    return max(0, sum(1 for line in signatures.splitlines() if line.startswith("\u2014 ")) - 1)


class NodeCollector(Collector):
    """Reads origin health and the bank's size from the node at each scrape."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        config: NodeConfig,
        index_sizes: Callable[[], tuple[dict[str, int], float | None] | None],
        clock: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        self.conn = conn
        self.config = config
        self.index_sizes = index_sizes
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        rows = status_rows(self.conn, self.config, self.clock())
        families = {
            "size": GaugeMetricFamily(
                "hashfed_log_size", "Verified size of each log.", labels=["origin", "role"]
            ),
            "offered_size": GaugeMetricFamily(
                "hashfed_log_offered_size",
                "Largest verified size a peer offered for the log.",
                labels=["origin"],
            ),
            "lag_entries": GaugeMetricFamily(
                "hashfed_log_lag_entries",
                "Entries peers offered beyond the verified size.",
                labels=["origin"],
            ),
            "last_sync": GaugeMetricFamily(
                "hashfed_log_last_sync_timestamp_seconds",
                "When the log last synced successfully (Unix time).",
                labels=["origin"],
            ),
            "failures": GaugeMetricFamily(
                "hashfed_log_sync_failures",
                "Sync failures of the log in a row (0 after a success).",
                labels=["origin"],
            ),
            "flagged": GaugeMetricFamily(
                "hashfed_log_flagged_entries",
                "Entries signed and included but failing a record check (kept, not applied).",
                labels=["origin"],
            ),
            "halted": GaugeMetricFamily(
                "hashfed_log_halted",
                "1 if the log is halted by evidence of equivocation.",
                labels=["origin"],
            ),
            "quorum": GaugeMetricFamily(
                "hashfed_log_witness_quorum",
                "1 if the latest checkpoint meets the witness policy's quorum.",
                labels=["origin"],
            ),
            "attested": GaugeMetricFamily(
                "hashfed_log_witnessed_timestamp_seconds",
                "Newest time the policy's quorum of witnesses cosigned the log (Unix time).",
                labels=["origin"],
            ),
            "cosignatures": GaugeMetricFamily(
                "hashfed_log_cosignatures",
                "Witness cosignatures on the log's latest checkpoint.",
                labels=["origin"],
            ),
        }
        for row in rows:
            origin = row["origin"]
            families["size"].add_metric([origin, row["role"]], row["size"])
            families["flagged"].add_metric([origin], row["flagged"])
            families["halted"].add_metric([origin], int(row["halted"]))
            families["cosignatures"].add_metric([origin], _count_cosignatures(row["checkpoint"]))
            if row["role"] != "own":
                families["failures"].add_metric([origin], row["failures"])
                if row["offered_size"] is not None:
                    families["offered_size"].add_metric([origin], row["offered_size"])
                if row["lag_entries"] is not None:
                    families["lag_entries"].add_metric([origin], row["lag_entries"])
                if row["last_sync"] is not None:
                    families["last_sync"].add_metric([origin], row["last_sync"])
            if row["witnessed"] is not None:
                families["quorum"].add_metric([origin], int(row["witnessed"]))
            if row["attested"] is not None:
                families["attested"].add_metric([origin], row["attested"])
        yield from families.values()
        bound = GaugeMetricFamily(
            "hashfed_freshness_bound_seconds",
            "[sync] max_age: how old a log's last sync or witness quorum may be.",
        )
        bound.add_metric([], self.config.sync.max_age)
        yield bound
        sizes = self.index_sizes()
        if sizes is not None:
            per_kind, load_seconds = sizes
            active = GaugeMetricFamily(
                "hashfed_bank_active_hashes",
                "Active hashes in the match index, by kind.",
                labels=["kind"],
            )
            for kind, count in sorted(per_kind.items()):
                active.add_metric([kind], count)
            yield active
            if load_seconds is not None:
                loaded = GaugeMetricFamily(
                    "hashfed_index_load_seconds", "How long loading the match index took."
                )
                loaded.add_metric([], load_seconds)
                yield loaded
