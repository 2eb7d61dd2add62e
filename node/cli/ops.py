"""``hashfed backup``, ``hashfed restore`` and ``hashfed recover`` (node/services/recovery.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from hashfed.node.cli.output import emit
from hashfed.node.config import load_config
from hashfed.node.home import open_node
from hashfed.node.logsetup import log_options, start_logging
from hashfed.node.services.recovery import backup, recover, restore
from hashfed.node.store.migrate import plan


@click.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--with-keys",
    is_flag=True,
    help="Also copy the secret keys (mode 0600; DEST must not be readable by others).",
)
@click.pass_obj
def backup_command(home: Path, dest: Path, with_keys: bool) -> None:
    """Copy the node (database, signed head, hashfed.toml, witness policy) into DEST.

    The copy is consistent (SQLite's online backup API) and safe while 'hashfed
    serve' runs. Keys are left out unless --with-keys: keep them in a separate,
    safer place. A publisher restored from a backup recovers what it signed
    since from its partners ('hashfed recover').

    \b
    Example:
        hashfed backup /var/backups/hashfed/$(date +%F)
    """
    with open_node(home) as node:
        report = backup(node, dest, with_keys)
    click.echo(
        f"backed up {report.origin} at size {report.size} to {report.dest}: "
        + ", ".join(report.files)
    )


@click.command("restore")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.pass_obj
def restore_command(home: Path, src: Path) -> None:
    """Restore the backup in SRC into the node directory (new or empty).

    The restored node refuses to append to its log until 'hashfed recover --from
    PEER' has learned the largest size it signed (it may have signed more after
    the backup) and fetched the missing entries from a mirror: a log must never
    fork.

    \b
    Example:
        hashfed --dir /srv/hashfed restore /var/backups/hashfed/2026-11-29
        hashfed --dir /srv/hashfed recover --from partner-a
    """
    config = restore(src, home)
    click.echo(f"restored {config.origin} into {home}")
    click.echo("appending is blocked until 'hashfed recover --from PEER' has run", err=True)


@click.command("recover")
@click.option(
    "--from",
    "source",
    required=True,
    help="A configured peer that mirrors this log, or its URL (with --peer-vkey).",
)
@click.option("--peer-vkey", help="The peer's peer-authentication key, when --from is a URL.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@log_options
@click.pass_obj
def recover_command(
    home: Path,
    source: str,
    peer_vkey: str | None,
    as_json: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Rebuild this publisher's own log from a partner's mirror, then let it append again.

    It learns the largest size this log signed (from its witnesses and its
    partners), fetches and verifies every missing entry, tile and checkpoint from
    the mirror as a sync would (content that mirrors erased stays erased), and
    reports the case desk records that only this node held. With only the keys
    left (a lost disk), put them in DIR/keys/ and give the mirror's URL and key.
    Exits 1, and keeps appending blocked, if no mirror holds the largest size.

    \b
    Example:
        hashfed --dir /srv/hashfed recover --from https://partner.example:8470 \\
            --peer-vkey peer:partner.example/hashfed+1a2b3c4d+AbC...
    """
    if peer_vkey is None and "://" in source:
        raise click.UsageError("--from is a URL: give the peer's key with --peer-vkey")
    if log_level or log_format:  # the sync events, logged as serve logs them
        start_logging(load_config(home).log, log_level, log_format)
    report = asyncio.run(recover(home, source, peer_vkey, lambda line: click.echo(line, err=True)))
    row = {
        "origin": report.origin,
        "old_size": report.old_size,
        "new_size": report.new_size,
        "learned_size": report.learned_size,
        "sources": report.sources,
        "mirror": report.mirror,
        "errors": report.errors,
        "lost": report.lost,
    }
    if as_json:
        emit([row], "json", [])
    else:
        click.echo(
            f"recovered {report.origin}: size {report.old_size} -> {report.new_size} from "
            f"{report.mirror}; largest size signed: {report.learned_size}"
        )
        for error in report.errors:
            click.echo(f"note: {error}", err=True)
        for item in report.lost:
            click.echo(f"lost: {item}")


@click.command("migrate")
@click.option("--dry-run", is_flag=True, help="Only say which migrations would run.")
@click.pass_obj
def migrate_command(home: Path, dry_run: bool) -> None:
    """Bring the database to this hashfed's schema, or say what that would do.

    Every command migrates the database when it opens it; run this after an
    upgrade (with 'hashfed serve' stopped, after 'hashfed backup') to do it at a
    time of your choosing. --dry-run prints each pending step and flags the ones
    that rewrite a large table and will take long.

    \b
    Example:
        hashfed migrate --dry-run
    """
    config = load_config(home)
    version, steps = plan(config.database)
    if not steps:
        click.echo(f"schema version {version}: up to date")
        return
    click.echo(f"schema version {version} -> {steps[-1].version}: {len(steps)} step(s)")
    for step in steps:
        rows = ", ".join(f"{t}: {n} rows" for t, n in step.rewrites.items())
        speed = (
            "LONG: rewrites " + rows if step.slow else ("rewrites " + rows if rows else "instant")
        )
        click.echo(f"-- to version {step.version} ({speed})\n{step.sql}")
    if dry_run:
        return
    open_node(home).close()
    click.echo(f"migrated to schema version {steps[-1].version}")
