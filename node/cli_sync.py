"""``hashfed sync``, ``hashfed status`` and ``hashfed serve``."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from aiohttp import web
from hashfed.hasher.index import warm_up
from hashfed.node import logstore, peers
from hashfed.node.auth import ACCESS_LOG_FORMAT
from hashfed.node.bankindex import BankIndex, refresh_loop
from hashfed.node.caseapi import RedactingAccessLogger, serve_cases
from hashfed.node.db import open_database
from hashfed.node.home import Node, open_node
from hashfed.node.output import emit, output_options
from hashfed.node.server import create_app
from hashfed.node.syncer import Outcome, sync_loop, sync_node
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


def _outcome_row(outcome: Outcome) -> dict[str, Any]:
    result = outcome.result
    return {
        "origin": outcome.origin,
        "ok": outcome.ok,
        "peer": result.peer if result else None,
        "status": result.status if result else "failed",
        "old_size": result.old_size if result else None,
        "new_size": result.new_size if result else None,
        "applied": result.applied if result else 0,
        "flagged": result.flagged if result else 0,
        "retracted": result.retracted if result else 0,
        "errors": outcome.errors or [],
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
    rows = [_outcome_row(o) for o in outcomes]
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
            for error in row["errors"] if not row["ok"] else []:
                click.echo(f"{row['origin']}: {error}", err=True)
    if not all(o.ok for o in outcomes):
        sys.exit(1)


def _status_rows(node: Node) -> list[dict[str, Any]]:
    conn = node.db.conn
    roles = {t.origin: t.role for t in peers.list_trust(conn)}
    now = int(time.time())
    rows = []
    for log in logstore.list_logs(conn):
        sync = conn.execute(
            "SELECT last_attempt, last_success, last_peer, last_error, failures FROM sync_state"
            " WHERE log_id = ?",
            (log.id,),
        ).fetchone() or (None, None, None, None, 0)
        evidence = conn.execute(
            "SELECT found, detail, text FROM evidence WHERE log_id = ? ORDER BY id", (log.id,)
        ).fetchall()
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
                "last_peer": sync[2],
                "last_error": sync[3],
                "failures": sync[4],
                "flagged": flagged,
                "feedback": feedback,
                "halted": bool(halted),
                "evidence": [{"found": e[0], "detail": e[1], "text": e[2]} for e in evidence],
            }
        )
    return rows


@click.command("status")
@output_options
@click.pass_obj
def status_command(home: Path, fmt: str) -> None:
    """Show each log: size, last sync, lag, peer, errors, flagged entries, feedback, evidence.

    feedback counts the feedback records this node holds about entries of that log.

    Exits 1 if any origin is halted by evidence of equivocation.

    \b
    Example:
        hashfed status --json
    """
    with open_node(home) as node:
        rows = _status_rows(node)
    if fmt == "table":
        for row in rows:
            row["evidence_count"] = len(row["evidence"])
        emit(
            rows,
            "table",
            [
                "origin",
                "role",
                "size",
                "lag_seconds",
                "last_peer",
                "failures",
                "flagged",
                "feedback",
                "halted",
                "evidence_count",
                "last_error",
            ],
        )
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
                "last_peer",
                "last_error",
                "failures",
                "flagged",
                "feedback",
                "halted",
            ],
        )
    if any(row["halted"] for row in rows):
        sys.exit(1)


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
    index = BankIndex.load(read_db.conn)
    app = create_app(
        read_db.conn, config.origin, server, match_index=index, api_token=node.api_token()
    )

    def after_round(outcomes: list[Outcome] | None, _delay: float) -> None:
        for outcome in outcomes or []:
            if outcome.result is not None:
                index.update_from_sync(read_db.conn, outcome.result)

    async def background_sync(_app: web.Application) -> AsyncIterator[None]:
        await asyncio.to_thread(warm_up)
        task = None if no_sync else asyncio.create_task(sync_loop(node, on_round=after_round))
        refresher = asyncio.create_task(refresh_loop(index, read_db.conn))
        yield
        for t in (task, refresher):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        node.close()
        read_db.conn.close()

    app.cleanup_ctx.append(background_sync)
    if config.role == "publisher":
        serve_cases(app, node)  # the case desk (node/caseapi.py) and its batch job
    tls = None
    if config.tls_files is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*config.tls_files)
    click.echo(f"match index: {len(index)} active hashes; POST /v1/match with keys/api.token")
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
