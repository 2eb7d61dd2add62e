"""``hashfed peers add | list | show | remove`` and ``hashfed trust add | list | remove``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from hashfed.node.cli.output import emit, output_options
from hashfed.node.config import ROLES
from hashfed.node.home import open_node
from hashfed.node.store import peers
from hashfed.node.store.db import transaction

PEER_COLUMNS = ["name", "url", "vkey", "read"]
TRUST_COLUMNS = ["origin", "role", "vkey"]


def _peer_row(peer: peers.Peer) -> dict[str, Any]:
    return {
        "name": peer.name,
        "url": peer.url,
        "vkey": peer.vkey,
        "key_name": peer.key_name,
        "read": None if peer.read is None else list(peer.read),
    }


def _table_read(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "read": "(all)" if row["read"] is None else row["read"]}


@click.group("peers")
def peers_group() -> None:
    """Nodes this node serves its logs to and syncs from."""


@peers_group.command("add")
@click.argument("name")
@click.argument("url")
@click.argument("vkey")
@click.option(
    "--read",
    "read",
    multiple=True,
    metavar="ORIGIN",
    help="Let the peer read only this origin's log (repeat for more). Default: every log.",
)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    metavar="URL",
    help="Another base URL serving the same logs (a mirror, a static tree behind nginx or "
    "a CDN); sync fails over to them in order. Repeatable.",
)
@click.pass_obj
def peers_add(
    home: Path, name: str, url: str, vkey: str, read: tuple[str, ...], mirrors: tuple[str, ...]
) -> None:
    """Add the peer NAME, served at URL, that authenticates with the key VKEY.

    VKEY is the peer's peer-authentication key, the line labelled 'peer' in
    'hashfed keys show' on that node (its name is the node's origin). The peer
    may then read this node's logs (all of them, or only the --read ones;
    logs in [server] public_logs are open to anyone), and sync may fetch
    logs from URL. A URL of - adds a peer that only reads from this node.

    \b
    Example:
        hashfed peers add stopncii https://hashfed.stopncii.example \\
            'stopncii.example/bank+1a2b3c4d+AUx...'
        hashfed peers add partner-b http://10.0.0.7:8470 'b.example/hashfed+...' \\
            --read stopncii.example/bank
        hashfed peers add stopncii https://hashfed.stopncii.example 'stopncii...' \\
            --mirror https://cdn.stopncii.example/hashfed
    """
    with open_node(home) as node, transaction(node.db) as conn:
        peer = peers.add_peer(conn, name, url, vkey, read or None, mirrors)
    scope = "every log" if peer.read is None else ", ".join(peer.read)
    where = f"at {peer.url}" if peer.url else "(reads only; never synced from)"
    click.echo(f"added peer {peer.name} {where} (key {peer.key_name}); it may read {scope}")


@peers_group.command("list")
@output_options
@click.pass_obj
def peers_list(home: Path, fmt: str) -> None:
    """List the configured peers; read '(all)' means every log this node holds.

    \b
    Example:
        hashfed peers list --json
    """
    with open_node(home) as node:
        rows = [_peer_row(p) for p in peers.list_peers(node.db.conn)]
    if fmt == "json":
        emit(rows, fmt, PEER_COLUMNS)
    elif fmt == "csv":
        emit(
            [{**r, "read": "*" if r["read"] is None else r["read"]} for r in rows],
            fmt,
            PEER_COLUMNS,
        )
    elif not rows:
        click.echo("no peers configured (add one with 'hashfed peers add')")
    else:
        emit([_table_read(r) for r in rows], fmt, PEER_COLUMNS)


@peers_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def peers_show(home: Path, name: str, as_json: bool) -> None:
    """Show the peer NAME.

    \b
    Example:
        hashfed peers show stopncii --json
    """
    with open_node(home) as node:
        peer = peers.get_peer(node.db.conn, name)
    if peer is None:
        raise click.ClickException(
            f"no peer named {name!r} is configured (see 'hashfed peers list')"
        )
    row = _peer_row(peer)
    if as_json:
        emit([], "json", [], document=row)
        return
    row = _table_read(row)
    for key in ("name", "url", "key_name", "vkey", "read"):
        value = row[key]
        click.echo(f"{key + ':':10} {', '.join(value) if isinstance(value, list) else value}")


@peers_group.command("remove")
@click.argument("name")
@click.pass_obj
def peers_remove(home: Path, name: str) -> None:
    """Remove the peer NAME: its sessions end and it can read nothing more.

    \b
    Example:
        hashfed peers remove partner-b
    """
    with open_node(home) as node, transaction(node.db) as conn:
        peers.remove_peer(conn, name)
    click.echo(f"removed peer {name}")


@click.group("trust")
def trust_group() -> None:
    """Logs this node syncs, verifies and applies to its bank."""


@trust_group.command("add")
@click.argument("vkey")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
    help="publisher: apply its hash additions and retractions; partner: apply only its feedback.",
)
@click.pass_obj
def trust_add(home: Path, vkey: str, role: str) -> None:
    """Trust the log signed by VKEY, whose name is the log's origin.

    VKEY is the log-signing key, the line labelled 'log' in 'hashfed keys show'
    on the node that runs the log. The role says which records from that
    origin change this node's bank:

    \b
      publisher  hash additions and retractions are applied to the bank
                 (the StopNCII node, or a partner you follow for bank updates)
      partner    only its feedback is applied

    Records of a type the origin may not author are verified and kept, not
    applied. Sync fetches the log from any peer that serves it.

    \b
    Example:
        hashfed trust add 'stopncii.example/bank+1a2b3c4d+AUx...' --role publisher
    """
    with open_node(home) as node, transaction(node.db) as conn:
        trusted = peers.add_trust(conn, vkey, role)
    click.echo(f"trusting {trusted.origin} as a {trusted.role}")


@trust_group.command("list")
@output_options
@click.pass_obj
def trust_list(home: Path, fmt: str) -> None:
    """List the trusted origins, their roles and log keys.

    \b
    Example:
        hashfed trust list --csv
    """
    with open_node(home) as node:
        rows = [vars(t) for t in peers.list_trust(node.db.conn)]
    if fmt == "table" and not rows:
        click.echo("no origins trusted (add one with 'hashfed trust add')")
        return
    emit(rows, fmt, TRUST_COLUMNS)


@trust_group.command("remove")
@click.argument("origin")
@click.pass_obj
def trust_remove(home: Path, origin: str) -> None:
    """Stop trusting ORIGIN: sync no longer fetches or applies its log.

    What the node already holds from ORIGIN is kept ('hashfed log forget'
    drops it); a log that holds nothing yet is forgotten at once, so a mistaken
    'trust add' can simply be done again.

    \b
    Example:
        hashfed trust remove partner-b.example/hashfed
    """
    with open_node(home) as node, transaction(node.db) as conn:
        forgotten = peers.remove_trust(conn, origin)
    click.echo(
        f"no longer trusting {origin}"
        + ("; its log held nothing, so the node forgot it" if forgotten else "")
    )
