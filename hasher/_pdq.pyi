"""Type stub for the C extension hasher/_pdq.c."""

from typing import Any

def hash(pixels: Any, dihedral: bool = False) -> tuple[tuple[bytes, ...], int]:
    """hash returns the PDQ hashes (one, or eight with ``dihedral``) and the quality."""
