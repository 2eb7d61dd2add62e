"""The ``hashfed`` command line: one click group, one module per area of commands."""

from __future__ import annotations

import click

from hashfed.node.cli_hash import hash_command

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="hashfed")
def main() -> None:
    """hashfed: a federated node for sharing banks of NCII hashes over signed logs."""


main.add_command(hash_command)
