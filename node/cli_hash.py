"""``hashfed hash``: placeholder until the hasher lands."""

import click


@click.command("hash")
def hash_command() -> None:
    """Hash photos (PDQ) and videos (MD5) on this device."""
    raise click.ClickException("not implemented yet")
