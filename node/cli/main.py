"""The ``hashfed`` command line: one click group, one module per area of commands."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import click
from hashfed.node.cli.output import emit, output_options
from hashfed.node.config import ROLES, default_origin
from hashfed.node.errors import NodeError
from hashfed.node.home import init_node, open_node
from hashfed.node.version import __version__
from hashfed.protocol.errors import ProtocolError
from hashfed.signing.errors import SigningError
from hashfed.sync.errors import SyncError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_HOME = "hashfed-node"


# The subcommands, each imported only when it runs: importing them all (aiohttp,
# numpy, Pillow...) would cost every command most of a second.
LAZY_COMMANDS = {
    "backup": "hashfed.node.cli.ops:backup_command",
    "recover": "hashfed.node.cli.ops:recover_command",
    "restore": "hashfed.node.cli.ops:restore_command",
    "case": "hashfed.node.cli.case:case_group",
    "cases": "hashfed.node.cli.case:cases_group",
    "evidence": "hashfed.node.cli.witness:evidence_group",
    "export": "hashfed.node.cli.export:export_command",
    "feedback": "hashfed.node.cli.match:feedback_command",
    "hash": "hashfed.node.cli.hash:hash_command",
    "log": "hashfed.node.cli.log:log_group",
    "match": "hashfed.node.cli.match:match_command",
    "migrate": "hashfed.node.cli.ops:migrate_command",
    "peers": "hashfed.node.cli.peers:peers_group",
    "policy": "hashfed.node.cli.witness:policy_group",
    "publish": "hashfed.node.cli.log:publish_command",
    "retract": "hashfed.node.cli.log:retract_command",
    "serve": "hashfed.node.cli.serve:serve_command",
    "status": "hashfed.node.cli.sync:status_command",
    "sync": "hashfed.node.cli.sync:sync_command",
    "trust": "hashfed.node.cli.peers:trust_group",
    "witness": "hashfed.node.cli.witness:witness_group",
}


class _Group(click.Group):
    """A group that loads subcommands lazily and turns hashfed's own errors into
    one-line messages, not tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return super().get_command(ctx, name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NodeError, ProtocolError, SigningError, SyncError, OSError) as exc:
            if isinstance(exc, OSError) and not exc.filename:
                raise
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-d",
    "--dir",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_HOME,
    show_default=True,
    envvar="HASHFED_DIR",
    help="The node directory (or set HASHFED_DIR).",
)
@click.version_option(__version__, prog_name="hashfed")
@click.pass_context
def main(ctx: click.Context, home: Path) -> None:
    """hashfed: a federated node for sharing banks of NCII hashes over signed logs.

    \b
    Start a node and publish to its log:
        hashfed init --origin stopncii.example/bank --role publisher
        hashfed hash ~/photos --csv | hashfed publish -
        hashfed log verify
    """
    ctx.obj = home


@main.command("init")
@click.option("--origin", help="The log's origin (and key name). Default: HOST/hashfed.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="partner",
    show_default=True,
    help="publisher: runs the trusted bank; partner: a platform that follows it.",
)
@click.pass_obj
def init_command(home: Path, origin: str | None, role: str) -> None:
    """Create a node directory with its three keys (log, peer, witness) and an empty signed log.

    \b
    Example:
        hashfed --dir /srv/hashfed init --origin stopncii.example/bank --role publisher
    """
    node = init_node(home, default_origin() if origin is None else origin, role)
    with node:
        click.echo(f"created {role} node {node.config.origin} in {home}")
        click.echo(f"log verifier key: {node.signer.vkey()}")
        click.echo(f"peer verifier key: {node.peer_signer.vkey()}")
        click.echo(f"witness verifier key: {node.witness_signer().vkey()}")
        click.echo(
            f"the secret keys are in {node.config.log_key.parent}/ (mode 0600); back them up"
        )


@main.group("keys")
def keys_group() -> None:
    """Show this node's keys."""


@keys_group.command("show")
@click.argument(
    "only",
    metavar="[log|peer|witness]",
    required=False,
    type=click.Choice(["log", "peer", "witness"]),
)
@output_options
@click.pass_obj
def keys_show(home: Path, only: str | None, fmt: str) -> None:
    """Print the node's three public verifier keys, one per purpose.

    'log' signs its log, 'peer' authenticates it to other nodes, and 'witness'
    cosigns other logs' checkpoints. Other nodes trust this node's log with
    'hashfed trust add <log vkey>', accept it as a peer with 'hashfed peers add
    NAME URL <peer vkey>', and list it as a witness in their tlog-policy file.

    With one of log, peer or witness, prints just that vkey (for scripts).

    \b
    Example:
        hashfed keys show --json
        hashfed trust add "$(hashfed --dir ../publisher keys show log)" --role publisher
    """
    with open_node(home) as node:
        rows = [
            {"key": "log", "vkey": node.signer.vkey(), "file": str(node.config.log_key)},
            {"key": "peer", "vkey": node.peer_signer.vkey(), "file": str(node.config.peer_key)},
            {
                "key": "witness",
                "vkey": node.witness_signer().vkey(),
                "file": str(node.config.witness_key),
            },
        ]
    if only is not None:
        click.echo(next(row["vkey"] for row in rows if row["key"] == only))
        return
    if fmt == "table":
        for row in rows:
            click.echo(f"{row['key']}: {row['vkey']}")
        return
    emit(rows, fmt, ["key", "vkey", "file"])
