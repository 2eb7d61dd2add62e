"""``hashfed serve``: its flags, over the start-up path (node/serving.py) and the
composition root (node/root.py)."""

from __future__ import annotations

from pathlib import Path

import click
from hashfed.node.logsetup import log_options


@click.command("serve")
@click.option("--listen", help="Address to listen on (default from hashfed.toml).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default from hashfed.toml).")
@click.option("--interval", type=click.FloatRange(min=1), help="Seconds between background syncs.")
@click.option("--no-sync", is_flag=True, help="Serve only; do not sync in the background.")
@log_options
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep this static tlog-tiles tree current (as 'hashfed export' writes it) after "
    "every publish, sync or withdrawal, for nginx or a CDN to serve.",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Run a read replica: serve logs, tiles and matches from the database another "
    "'hashfed serve' writes on this host, picking up its changes (docs/scaling.md).",
)
@click.pass_obj
def serve_command(
    home: Path,
    listen: str | None,
    port: int | None,
    interval: float | None,
    no_sync: bool,
    log_level: str | None,
    log_format: str | None,
    export_dir: Path | None,
    read_only: bool,
) -> None:
    """Serve this node's logs over HTTP(S) and sync trusted logs in the background.

    Settings come from the [server] and [sync] sections of hashfed.toml; the
    flags override them. With tls_cert and tls_key set, the node serves HTTPS
    itself; otherwise put it behind a TLS-terminating reverse proxy.

    The port is bound first: GET /healthz answers at once, and GET /readyz once
    the match index is loaded (POST /v1/match answers 503 until then). SIGTERM or
    SIGINT stops the node within a second or two, at any moment.

    \b
    Example:
        hashfed serve --port 8470
        hashfed serve --read-only --port 8471
    """
    if read_only and (export_dir is not None or interval is not None):
        raise click.UsageError("--read-only serves only; it cannot --export or sync")
    # Imported here: serving needs aiohttp's server, the case desk and the index, which
    # no other command of this module loads.
    from hashfed.node.serving import ServeOptions, exit_now, serve

    options = ServeOptions(
        listen, port, interval, no_sync, log_level, log_format, export_dir, read_only=read_only
    )
    serve(home, options, announce=_announce)
    exit_now()


def _announce(line: str) -> None:
    click.echo(line)
