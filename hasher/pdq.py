"""PDQ: Meta's perceptual photo hash, as partners compute it (pdqhash at full resolution).

A PDQ hash is 256 bits written as 64 lowercase hex characters, bit 0 of pdqhash's
vector being the most significant bit of the first hex digit (python-threatexchange's
encoding). Two hashes match when their Hamming distance is at most
:data:`PDQ_MATCH_THRESHOLD`. Each hash comes with a quality from 0 to 100; a hash
whose quality is below :data:`PDQ_QUALITY_THRESHOLD` is too featureless to match
reliably and is not offered for publishing.

The hashing itself is :mod:`hashfed.hasher._pdq`, a small C extension that gives
the same bits and quality as pdqhash 0.2.8 (the engine python-threatexchange runs)
several times faster: it computes luminance row by row into the first blur, runs
the column blur across whole rows, and blurs in the second round only what the
64×64 sampling reads. ``tests/test_pdq_fast.py`` holds it to pdqhash bit for bit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from hashfed.hasher import _pdq
from hashfed.hasher.errors import UnsupportedFormat
from hashfed.hasher.formats import Kind, detect_format, read_head
from hashfed.hasher.signal import Comparison, SignalType
from hashfed.protocol.kinds import PDQ

if TYPE_CHECKING:
    from hashfed.hasher.decode import RGBArray

PDQ_NAME = str(PDQ.name)
"""The frozen name of the PDQ kind (hashfed.protocol.kinds)."""

PDQ_QUALITY_THRESHOLD = PDQ.default_quality_floor or 0
"""Hashes with a quality below this are reported but not publishable."""

PDQ_MATCH_THRESHOLD = PDQ.max_distance
"""Two PDQ hashes match when they differ in at most this many of their 256 bits."""

PDQ_HEX_LENGTH = PDQ.hex_length

DIHEDRAL_NAMES = (
    "original", "rotate90", "rotate180", "rotate270",
    "flipv", "fliph", "rotate90-flipv", "rotate90-fliph",
)  # fmt: skip
"""Names of pdqhash.compute_dihedral's eight hashes, in its order."""

_PDQ_RE = re.compile(f"[0-9a-f]{{{PDQ_HEX_LENGTH}}}")


def pdq_from_rgb(rgb: RGBArray) -> tuple[str, int]:
    """pdq_from_rgb returns (hex hash, quality) of a height × width × 3 uint8 RGB array."""
    hashes, quality = _pdq.hash(np.ascontiguousarray(rgb, dtype=np.uint8))
    return hashes[0].hex(), quality


def pdq_dihedral_from_rgb(rgb: RGBArray) -> tuple[tuple[str, ...], int]:
    """pdq_dihedral_from_rgb returns the 8 hashes named in DIHEDRAL_NAMES, and the quality."""
    hashes, quality = _pdq.hash(np.ascontiguousarray(rgb, dtype=np.uint8), dihedral=True)
    return tuple(h.hex() for h in hashes), quality


def distance(a: str, b: str) -> int:
    """distance returns the Hamming distance in bits between two hex PDQ hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class PdqSignal(SignalType):
    """PDQ perceptual hash, for photos."""

    @classmethod
    def get_name(cls) -> str:
        return PDQ_NAME

    @classmethod
    def validate(cls, signal: str) -> str:
        """validate strips and lowercases ``signal``; it must then be 64 hex characters."""
        canonical = signal.strip().lower()
        if not _PDQ_RE.fullmatch(canonical):
            raise ValueError(
                f"not a PDQ hash: {signal!r} (expected {PDQ_HEX_LENGTH} hex characters)"
            )
        return canonical

    @classmethod
    def compare(cls, a: str, b: str) -> Comparison:
        return Comparison.from_distance(
            distance(cls.validate(a), cls.validate(b)), PDQ_MATCH_THRESHOLD
        )

    @classmethod
    def get_examples(cls) -> list[str]:
        # From the PDQ reference images (bridge photo, its 90° rotation, pen-and-coaster).
        return [
            "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
            "30a10efd71cc3d429013d48d0ffffc52e34e0e17ada952a9d29685211ea9e5af",
            "1f811b9d267fbc6693c0c7f30e041f9df49b836303e10f067fcdfc12c02d01f9",
        ]

    @classmethod
    def hash_file(cls, path: Path) -> str:
        """hash_file returns the PDQ hash of the stored pixels of the photo at ``path``."""
        return cls.hash_file_with_quality(path)[0]

    @classmethod
    def hash_file_with_quality(cls, path: Path) -> tuple[str, int]:
        """hash_file_with_quality returns (hash, quality) of the photo at ``path``.

        It raises a HasherError (UnsupportedFormat for a video or unknown type).
        """
        fmt = detect_format(path, read_head(path))
        if fmt.kind is not Kind.PDQ:
            raise UnsupportedFormat(f"{fmt.name} is a video format: hash it with MD5")
        from hashfed.hasher.decode import decode  # Pillow: only once a photo is hashed

        return pdq_from_rgb(decode(path, fmt, exif=False).rgb)

    @classmethod
    def hash_bytes(cls, data: bytes) -> tuple[str, int]:
        """hash_bytes returns (hash, quality) of an in-memory image Pillow can read."""
        from hashfed.hasher.decode import decode_bytes

        return pdq_from_rgb(decode_bytes(data))
