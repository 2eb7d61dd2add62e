"""The ``hashfed`` console script.

``hashfed --version`` is answered here, before the command line (click, the node's
configuration, SQLite) is imported, so that it costs little more than starting Python.
Everything else goes to :func:`hashfed.node.cli.main.main`.
"""

from __future__ import annotations

import sys

from hashfed.node.version import __version__


def main() -> None:
    """Runs the hashfed command line."""
    if sys.argv[1:] == ["--version"]:
        print(f"hashfed, version {__version__}")
        return
    from hashfed.node.cli.main import main as cli

    cli()
