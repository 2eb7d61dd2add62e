"""Origin health: what ``hashfed status``, the admin ``GET /v1/status`` and the metrics report.

:func:`status_rows` describes every log the node holds (size, last sync, lag,
failures, flagged entries, evidence, witness freshness); :func:`assess` turns
them into one verdict with the exit codes monitoring tools already understand
(Nagios plugin codes)::

    0 OK        every followed origin is syncing and fresh
    1 WARNING   some origin has flagged entries (signed and included, failed a record check)
    2 CRITICAL  an origin is halted by evidence, its sync is failing, or it is stale:
                not synced (or, under a witness policy, not cosigned) within [sync] max_age;
                or the own log was restored and not yet recovered (specs/recovery.md)
    3 UNKNOWN   the state could not be read (hashfed status itself failed)

Origin health never takes a node out of a load balancer: a stale bank still
matches. ``/healthz`` and ``/readyz`` say only whether this process can serve.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from hashfed.node.config import NodeConfig
from hashfed.node.policyfile import load_policy, quorum_check
from hashfed.node.services.ownlog import pending_marker
from hashfed.node.store import logstore, peers, status
from hashfed.protocol.policy import format_policy

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def status_rows(
    conn: sqlite3.Connection, config: NodeConfig, now: int | None = None
) -> list[dict[str, Any]]:
    """Returns one row per log the node holds, with its sync state and freshness.

    stale is true when a witness policy covers the log and no checkpoint with its
    quorum is newer than [sync] max_age; out_of_date when a followed log has not
    synced successfully within max_age (or never has).
    """
    roles = {t.origin: t.role for t in peers.list_trust(conn)}
    now = int(time.time()) if now is None else now
    policy = load_policy(config.home)
    max_age = config.sync.max_age
    restore_pending = pending_marker(config.home).exists()
    rows = []
    for log in logstore.list_logs(conn):
        sync = status.sync_state(conn, log.id)
        evidence = status.log_evidence(conn, log.id, log.origin)
        check = quorum_check(policy, log.origin, lambda: now)
        if log.own and (policy is None or not any(w.url for w in policy.witnesses)):
            check = None  # an own log carries cosignatures only if the node pushes to witnesses
        met, attested = check(log.checkpoint) if check and log.checkpoint else (False, None)
        flagged = status.flag_count(conn, log.id)
        halted = status.is_halted(conn, log.id)
        feedback = status.feedback_count(conn, log.origin)
        role = "own" if log.own else roles.get(log.origin, "untrusted")
        followed = role not in ("own", "untrusted")
        last_success, offered = sync.last_success, sync.peer_size
        rows.append(
            {
                "origin": log.origin,
                "role": role,
                "size": log.size,
                "root": log.root.hex(),
                "checkpoint": log.checkpoint,
                "last_sync": last_success,
                "lag_seconds": None if log.own or last_success is None else now - last_success,
                # Entries a peer has offered (in a verified checkpoint) beyond ours.
                "lag_entries": None if log.own or offered is None else max(0, offered - log.size),
                "offered_size": offered,
                "last_peer": sync.last_peer,
                "last_error": sync.last_error,
                "failures": sync.failures,
                "flagged": flagged,
                "feedback": feedback,
                "halted": halted or bool(evidence),
                "witnessed": None if check is None else met,
                "attested": attested,
                "age_seconds": None if attested is None else now - attested,
                "policy": None if check is None or policy is None else format_policy(policy),
                "stale": check is not None and (attested is None or now - attested > max_age),
                "out_of_date": followed and (last_success is None or now - last_success > max_age),
                "restore_pending": bool(log.own) and restore_pending,
                "evidence": [
                    {"found": e.found, "detail": e.detail, "text": e.text} for e in evidence
                ],
            }
        )
    return rows


@dataclass(frozen=True)
class Verdict:
    """The node's health: a Nagios state code and one line saying why."""

    code: int
    reason: str

    @property
    def state(self) -> str:
        return STATE_NAMES[self.code]

    def line(self) -> str:
        """Returns the plugin output line, e.g. ``HASHFED CRITICAL: p.example/bank: halted``."""
        return f"HASHFED {self.state}: {self.reason}"


def row_problems(row: dict[str, Any], max_age: float) -> list[tuple[int, str]]:
    """Returns the (state, reason) of everything wrong with one status row."""
    problems: list[tuple[int, str]] = []
    origin = row["origin"]
    if row["halted"]:
        problems.append((CRITICAL, f"{origin}: halted by evidence"))
    if row.get("restore_pending"):
        problems.append(
            (CRITICAL, f"{origin}: restored from a backup; run 'hashfed recover' to append again")
        )
    if row["failures"]:
        problems.append(
            (CRITICAL, f"{origin}: sync failing ({row['failures']} in a row: {row['last_error']})")
        )
    if row["stale"]:
        age = "never" if row["age_seconds"] is None else f"{row['age_seconds']} s ago"
        problems.append(
            (CRITICAL, f"{origin}: no witness quorum within {max_age:g} s (last: {age})")
        )
    if row.get("out_of_date"):
        last = "never" if row["lag_seconds"] is None else f"{row['lag_seconds']} s ago"
        problems.append((CRITICAL, f"{origin}: not synced within {max_age:g} s (last: {last})"))
    if row["flagged"]:
        problems.append((WARNING, f"{origin}: {row['flagged']} flagged entries"))
    return problems


def assess(rows: list[dict[str, Any]], max_age: float) -> Verdict:
    """Returns the worst state among rows, with every problem of that state as the reason."""
    problems = [p for row in rows for p in row_problems(row, max_age)]
    if not problems:
        followed = sum(1 for r in rows if r["role"] not in ("own", "untrusted"))
        return Verdict(OK, f"{len(rows)} logs, {followed} followed, all syncing and fresh")
    worst = max(code for code, _ in problems)
    return Verdict(worst, "; ".join(reason for code, reason in problems if code == worst))


def status_document(
    conn: sqlite3.Connection, config: NodeConfig, now: int | None = None
) -> dict[str, Any]:
    """Returns the admin ``GET /v1/status`` answer: the verdict and every log's row."""
    rows = status_rows(conn, config, now)
    verdict = assess(rows, config.sync.max_age)
    for row in rows:
        row["problems"] = [reason for _, reason in row_problems(row, config.sync.max_age)]
        row.pop("checkpoint", None)
    return {"state": verdict.state, "code": verdict.code, "reason": verdict.reason, "logs": rows}
