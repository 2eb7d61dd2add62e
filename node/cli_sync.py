"""``hashfed sync``, ``hashfed status`` and ``hashfed serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import sqlite_utils
from aiohttp import web
from hashfed.hasher.index import warm_up
from hashfed.node import logstore, peers
from hashfed.node.auth import ACCESS_LOG_FORMAT
from hashfed.node.bankindex import BankIndex, refresh_loop
from hashfed.node.caseapi import RedactingAccessLogger, serve_cases
from hashfed.node.config import NodeConfig
from hashfed.node.db import open_database
from hashfed.node.home import Node, open_node
from hashfed.node.output import emit, iso_time, output_options, plural
from hashfed.node.policyfile import load_policy, quorum_check
from hashfed.node.server import create_app
from hashfed.node.syncer import Outcome, sync_loop, sync_node
from hashfed.node.witness import Witness
from hashfed.node.witnesspush import push_checkpoint
from hashfed.protocol.policy import format_policy
from hashfed.sync.engine import Progress


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
@click.pass_obj
def sync_command(
    home: Path, peer_name: str | None, origin: str | None, silent: bool, as_json: bool
) -> None:
    """Fetch, verify and apply the logs this node trusts, from its peers.

    Each checkpoint's signature, its consistency with every checkpoint this node
    holds, the inclusion of every entry and every record are checked before
    anything is applied. Exits 1 if any origin could not be synced.

    \b
    Example:
        hashfed sync --peer stopncii --json
    """
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
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def _status_rows(node: Node, now: int | None = None) -> list[dict[str, Any]]:
    conn = node.db.conn
    roles = {t.origin: t.role for t in peers.list_trust(conn)}
    now = int(time.time()) if now is None else now
    policy = load_policy(node.config.home)
    rows = []
    for log in logstore.list_logs(conn):
        sync = conn.execute(
            "SELECT last_attempt, last_success, last_peer, last_error, failures, peer_size"
            " FROM sync_state WHERE log_id = ?",
            (log.id,),
        ).fetchone() or (None, None, None, None, 0, None)
        evidence = (
            conn.execute(
                "SELECT found, detail, text FROM evidence WHERE log_id = ? ORDER BY id", (log.id,)
            ).fetchall()
            + conn.execute(
                "SELECT found, detail, text FROM witness_evidence WHERE origin = ? ORDER BY id",
                (log.origin,),
            ).fetchall()
        )
        check = quorum_check(policy, log.origin, lambda: now)
        if log.own and (policy is None or not any(w.url for w in policy.witnesses)):
            check = None  # an own log carries cosignatures only if the node pushes to witnesses
        met, attested = check(log.checkpoint) if check and log.checkpoint else (False, None)
        flagged = conn.execute("SELECT count(*) FROM flags WHERE log_id = ?", (log.id,)).fetchone()[
            0
        ]
        halted = conn.execute("SELECT halted FROM logs WHERE id = ?", (log.id,)).fetchone()[0]
        feedback = conn.execute(
            "SELECT count(*) FROM feedback WHERE target_origin = ?", (log.origin,)
        ).fetchone()[0]
        rows.append(
            {
                "origin": log.origin,
                "role": "own" if log.own else roles.get(log.origin, "untrusted"),
                "size": log.size,
                "root": log.root.hex(),
                "checkpoint": log.checkpoint,
                "last_sync": sync[1],
                "lag_seconds": None if log.own or sync[1] is None else now - sync[1],
                # Entries a peer has offered (in a verified checkpoint) beyond ours.
                "lag_entries": None if log.own or sync[5] is None else max(0, sync[5] - log.size),
                "last_peer": sync[2],
                "last_error": sync[3],
                "failures": sync[4],
                "flagged": flagged,
                "feedback": feedback,
                "halted": bool(halted) or bool(evidence),
                "witnessed": None if check is None else met,
                "attested": attested,
                "age_seconds": None if attested is None else now - attested,
                "policy": None if check is None or policy is None else format_policy(policy),
                "stale": check is not None
                and (attested is None or now - attested > node.config.sync.max_age),
                "evidence": [{"found": e[0], "detail": e[1], "text": e[2]} for e in evidence],
            }
        )
    return rows


@click.command("status")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 2 if a log covered by the witness policy has no checkpoint with the quorum "
    "newer than [sync] max_age.",
)
@output_options
@click.pass_obj
def status_command(home: Path, check: bool, fmt: str) -> None:
    """Show each log: size, last sync, lag, peer, errors, flagged entries, feedback, evidence,
    and how fresh its newest checkpoint that meets the witness policy is.

    feedback counts the feedback records this node holds about entries of that log;
    age_seconds is how long ago the policy's quorum of witnesses last cosigned it.

    Exits 1 if any origin is halted by evidence of equivocation; with --check,
    exits 2 if a log's witnessed checkpoint is older than [sync] max_age.

    \b
    Example:
        hashfed status --json
    """
    with open_node(home) as node:
        rows = _status_rows(node)
        policy = load_policy(node.config.home)
        max_age = node.config.sync.max_age
    if fmt == "table":
        for row in rows:
            row["evidence_count"] = len(row["evidence"])
            row["root_prefix"] = row["root"][:12]
            row["synced_at"] = iso_time(row["last_sync"])
        emit(
            rows,
            "table",
            [
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
            ],
        )
        if policy is not None:
            names = ", ".join(w.name for w in policy.witnesses) or "none"
            click.echo(f"\nwitness policy: quorum {policy.quorum} (witnesses: {names})")
            click.echo("  " + format_policy(policy).rstrip().replace("\n", "\n  "))
        for row in rows:
            for item in row["evidence"]:
                click.echo(f"\nEVIDENCE for {row['origin']}: {item['detail']}\n{item['text']}")
    else:
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
            ],
        )
    for row in rows:
        if row["stale"]:
            click.echo(
                f"WARNING: {row['origin']}: no checkpoint with the witness quorum newer than "
                f"{max_age:g} s (last: {row['age_seconds']} s ago)",
                err=True,
            )
    if any(row["halted"] for row in rows):
        sys.exit(1)
    if check and any(row["stale"] for row in rows):
        sys.exit(2)


async def witness_loop(
    db: sqlite_utils.Database,
    config: NodeConfig,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Submits the own checkpoint to the policy's witnesses within seconds of a change
    (a case batch, a withdrawal) and again at a steady cadence even when nothing is
    new, so that an idle log stays provably fresh (new cosignature timestamps).

    db is a connection of its own: the background sync applies on another one."""
    step = min(2.0, config.sync.witness_interval)
    pushed_size, since = -1, config.sync.witness_interval
    while True:
        log = logstore.get_log(db.conn, config.origin)
        size = -1 if log is None else log.size
        if size != pushed_size or since >= config.sync.witness_interval:
            policy = load_policy(config.home)
            if policy is not None and any(w.url for w in policy.witnesses):
                report = await push_checkpoint(db, config.origin, policy)
                for name, error in report.errors.items():
                    logging.getLogger("hashfed.witness").warning("witness %s: %s", name, error)
            pushed_size, since = size, 0.0
        await sleep(step)
        since += step


@click.command("serve")
@click.option("--listen", help="Address to listen on (default from hashfed.toml).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default from hashfed.toml).")
@click.option("--interval", type=click.FloatRange(min=1), help="Seconds between background syncs.")
@click.option("--no-sync", is_flag=True, help="Serve only; do not sync in the background.")
@click.pass_obj
def serve_command(
    home: Path, listen: str | None, port: int | None, interval: float | None, no_sync: bool
) -> None:
    """Serve this node's logs over HTTP(S) and sync trusted logs in the background.

    Settings come from the [server] and [sync] sections of hashfed.toml; the
    flags override them. With tls_cert and tls_key set, the node serves HTTPS
    itself; otherwise put it behind a TLS-terminating reverse proxy.

    \b
    Example:
        hashfed serve --port 8470
    """
    node = open_node(home)
    config = node.config
    server = replace(
        config.server,
        listen=listen if listen is not None else config.server.listen,
        port=port if port is not None else config.server.port,
    )
    if interval is not None:
        node.config = replace(config, sync=replace(config.sync, interval=interval))
    read_db = open_database(config.database)
    witness_db = open_database(config.database)  # the witness endpoint's, in worker threads
    push_db = open_database(config.database)  # pushing the own checkpoint to witnesses
    index = BankIndex.load(
        read_db.conn,
        thresholds=config.match.thresholds,
        default_threshold=config.match.threshold,
    )
    witness = Witness(witness_db, node.witness_signer(), lambda: int(time.time()))
    app = create_app(
        read_db.conn,
        config.origin,
        server,
        match_index=index,
        api_token=node.api_token(),
        witness=witness,
        peer_signer=node.peer_signer,
    )

    def after_round(outcomes: list[Outcome] | None, _delay: float) -> None:
        for outcome in outcomes or []:
            if outcome.result is not None:
                index.update_from_sync(read_db.conn, outcome.result)

    async def background_sync(_app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(warm_up)
        task = None if no_sync else asyncio.create_task(sync_loop(node, on_round=after_round))
        refresher = asyncio.create_task(refresh_loop(index, read_db.conn))
        rewitness = asyncio.create_task(witness_loop(push_db, node.config))
        yield
        for t in (task, refresher, rewitness):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        node.close()
        read_db.conn.close()
        witness_db.conn.close()
        push_db.conn.close()

    app.cleanup_ctx.append(background_sync)
    if config.role == "publisher":
        serve_cases(app, node)  # the case desk (node/caseapi.py) and its batch job
    tls = None
    if config.tls_files is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*config.tls_files)
    click.echo(
        f"match index: {plural(len(index), 'active hash', 'active hashes')}; "
        "POST /v1/match with keys/api.token"
    )
    click.echo(
        f"serving {config.origin} on {'https' if tls else 'http'}://{server.listen}:{server.port}"
    )
    web.run_app(
        app,
        host=server.listen,
        port=server.port,
        ssl_context=tls,
        access_log_format=ACCESS_LOG_FORMAT,
        access_log_class=RedactingAccessLogger,
        shutdown_timeout=10,
        print=None,
    )
