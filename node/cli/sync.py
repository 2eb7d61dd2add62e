"""``hashfed sync`` and ``hashfed status``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from hashfed.node.cli.output import emit, iso_time, output_options
from hashfed.node.config import load_config
from hashfed.node.errors import NodeError
from hashfed.node.home import Node, open_node
from hashfed.node.logsetup import log_options, start_logging
from hashfed.node.policyfile import load_policy
from hashfed.node.services.health import UNKNOWN, assess, row_problems, status_rows
from hashfed.node.services.syncer import Outcome, sync_node
from hashfed.node.store import logstore
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.policy import format_policy
from hashfed.signing.errors import SigningError
from hashfed.sync.engine import Progress

if TYPE_CHECKING:
    pass


@contextlib.contextmanager
def _progress_bars(silent: bool) -> Iterator[Any]:
    bars: list[Any] = []

    def factory(origin: str, peer: str) -> Progress | None:
        if silent:
            return None
        state: dict[str, Any] = {}

        def report(done: int, total: int) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = click.progressbar(
                    length=total, label=f"{origin} from {peer}", file=sys.stderr
                ).__enter__()
                state["bar"], state["done"] = bar, 0
                bars.append(bar)
            bar.update(done - state["done"])
            state["done"] = done

        return report

    try:
        yield factory
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)


def _outcome_row(outcome: Outcome, flagged: int) -> dict[str, Any]:
    """Returns one origin's sync outcome; flagged is the entries flagged once it is
    over, as 'hashfed status' counts them (a flag raised and cleared within the
    sync, e.g. content erased before its retraction arrived, is not counted)."""
    result = outcome.result
    return {
        "origin": outcome.origin,
        "ok": outcome.ok,
        "peer": result.peer if result else None,
        "status": result.status if result else "failed",
        "old_size": result.old_size if result else None,
        "new_size": result.new_size if result else None,
        "applied": result.applied if result else 0,
        "flagged": flagged,
        "retracted": result.retracted if result else 0,
        "errors": outcome.errors or [],
        "notes": outcome.notes,
    }


@click.command("sync")
@click.option("--peer", "peer_name", help="Sync only from this peer.")
@click.option("--origin", help="Sync only this origin.")
@click.option("-s", "--silent", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@log_options
@click.pass_obj
def sync_command(
    home: Path,
    peer_name: str | None,
    origin: str | None,
    silent: bool,
    as_json: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Fetch, verify and apply the logs this node trusts, from its peers.

    Each checkpoint's signature, its consistency with every checkpoint this node
    holds, the inclusion of every entry and every record are checked before
    anything is applied. Exits 1 if any origin could not be synced (no peer could
    serve it), or applied nothing because its witness quorum was missing. With
    --log-level or --log-format it also logs its events to stderr as serve does.

    \b
    Example:
        hashfed sync --peer stopncii --json
    """
    if log_level or log_format:  # the events 'serve' logs, here on request only
        start_logging(load_config(home).log, log_level, log_format)
    with open_node(home) as node, _progress_bars(silent or as_json) as factory:
        outcomes = asyncio.run(
            sync_node(node, peer_name=peer_name, origin=origin, progress=factory)
        )
        flagged = {o.origin: logstore.flagged_count(node.db.conn, o.origin) for o in outcomes}
    rows = [_outcome_row(o, flagged[o.origin]) for o in outcomes]
    if as_json:
        emit(rows, "json", [])
    else:
        for row in rows:
            if row["ok"]:
                click.echo(
                    f"{row['origin']}: {row['status']} from {row['peer']}, size "
                    f"{row['old_size']} -> {row['new_size']}; {row['applied']} applied, "
                    f"{row['retracted']} retracted, {row['flagged']} flagged"
                )
            for note in row["notes"]:
                click.echo(f"{row['origin']}: {note}", err=True)
            for error in row["errors"]:  # also from peers tried before one that worked
                click.echo(f"{row['origin']}: {error}", err=True)
    waiting = [
        o.origin
        for o in outcomes
        if o.result is not None and o.result.status == "awaiting-quorum" and not o.result.applied
    ]
    for name in waiting:
        click.echo(f"{name}: nothing applied: no checkpoint with the witness quorum", err=True)
    if waiting or not all(o.ok for o in outcomes):
        sys.exit(1)


def _status_rows(node: Node, now: int | None = None) -> list[dict[str, Any]]:
    return status_rows(node.db.conn, node.config, now)


class _NagiosCommand(click.Command):
    """A command whose failures exit 3 (UNKNOWN) rather than click's 1 or 2, so that a
    monitoring system never reads "the node could not be read" as a WARNING."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if exc.exit_code == UNKNOWN:
                raise
            raise _Unknown(exc.format_message()) from None
        except (NodeError, ProtocolError, SigningError, OSError) as exc:
            raise _Unknown(str(exc)) from None


class _Unknown(click.ClickException):
    exit_code = UNKNOWN

    def format_message(self) -> str:
        return f"HASHFED UNKNOWN: {self.message}"


STATUS_COLUMNS = ["origin", "role", "size", "synced_at", "failures", "flagged", "halted"]
"""The status table's columns: within 100 characters for origins of ordinary length."""

STATUS_WIDE = [
    "origin",
    "role",
    "size",
    "root_prefix",
    "synced_at",
    "lag_seconds",
    "lag_entries",
    "last_peer",
    "failures",
    "flagged",
    "feedback",
    "halted",
    "evidence_count",
    "age_seconds",
    "last_error",
]
"""Every column, with --wide."""


@click.command("status", cls=_NagiosCommand)
@click.option(
    "--check",
    is_flag=True,
    hidden=True,
    help="Accepted for compatibility: staleness is always CRITICAL now.",
)
@click.option("--wide", is_flag=True, help="Every column in the table (--json has them all).")
@output_options
@click.pass_obj
def status_command(home: Path, check: bool, wide: bool, fmt: str) -> None:
    """Show each log: size, last sync, lag, peer, errors, flagged entries, feedback, evidence,
    and how fresh its newest checkpoint that meets the witness policy is.

    The table fits 100 columns; --wide shows every column (lag, peer, feedback,
    evidence, witness age, last error), as --json and --csv do.

    The first line is a verdict for monitoring (a Nagios plugin): it exits 0 (OK),
    1 (WARNING: flagged entries), 2 (CRITICAL: an origin halted by evidence, its sync
    failing, or not synced, or not cosigned by the witness quorum, within [sync]
    max_age) or 3 (UNKNOWN: the node could not be read). With --json or --csv the
    rows go to stdout and the verdict to stderr.

    feedback counts the feedback records this node holds about entries of that log;
    age_seconds is how long ago the policy's quorum of witnesses last cosigned it.

    \b
    Example:
        hashfed status --json
    """
    with open_node(home) as node:
        rows = _status_rows(node)
        policy = load_policy(node.config.home)
        max_age = node.config.sync.max_age
    verdict = assess(rows, max_age)
    if fmt == "table":
        click.echo(verdict.line())
        for row in rows:
            row["evidence_count"] = len(row["evidence"])
            row["root_prefix"] = row["root"][:12]
            row["synced_at"] = iso_time(row["last_sync"])
        emit(rows, "table", STATUS_WIDE if wide else STATUS_COLUMNS)
        if policy is not None:
            names = ", ".join(w.name for w in policy.witnesses) or "none"
            click.echo(f"\nwitness policy: quorum {policy.quorum} (witnesses: {names})")
            click.echo("  " + format_policy(policy).rstrip().replace("\n", "\n  "))
        for row in rows:
            for item in row["evidence"]:
                click.echo(f"\nEVIDENCE for {row['origin']}: {item['detail']}\n{item['text']}")
    else:
        click.echo(verdict.line(), err=True)
        for row in rows:
            row["problems"] = [reason for _, reason in row_problems(row, max_age)]
        emit(
            rows,
            fmt,
            [
                "origin",
                "role",
                "size",
                "root",
                "last_sync",
                "lag_seconds",
                "lag_entries",
                "last_peer",
                "last_error",
                "failures",
                "flagged",
                "feedback",
                "halted",
                "witnessed",
                "attested",
                "age_seconds",
                "stale",
                "out_of_date",
            ],
        )
    sys.exit(verdict.code)
