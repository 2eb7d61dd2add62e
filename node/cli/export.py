"""``hashfed export DIR``: write (or bring up to date) the static tlog-tiles tree."""

from __future__ import annotations

from pathlib import Path

import click
from hashfed.node.cli.output import emit, output_options
from hashfed.node.home import open_node
from hashfed.node.services.export import export_logs


@click.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@output_options
@click.pass_obj
def export_command(home: Path, directory: Path, fmt: str) -> None:
    """Write every log this node holds as a static C2SP tlog-tiles tree under DIRECTORY.

    Files go to DIRECTORY/log/<sha256 of origin>/..., the paths 'hashfed serve'
    answers, each written to a temporary file and renamed into place, the
    checkpoint last. Run again to write only what changed: new tiles and bundles,
    and content bundles rewritten where content was erased. Serve DIRECTORY/log/
    with nginx (docs/scaling.md), or let 'hashfed serve --export DIRECTORY'
    keep it current.

    \b
    Example:
        hashfed export /srv/hashfed/tree
    """
    with open_node(home) as node:
        report = export_logs(node.db.conn, directory)
    rows = [
        {
            "origin": log.origin,
            "prefix": "/" + log.prefix,
            "size": log.size,
            "files": log.files,
            "content_rewritten": log.content_rewritten,
        }
        for log in report.logs
    ]
    emit(rows, fmt, ["origin", "prefix", "size", "files", "content_rewritten"])
