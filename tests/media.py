"""Minimal ISO media files (MP4, MOV, 3GP, M4A) for tests, built box by box.

Each file is an ``ftyp`` box, a ``moov`` box with one ``trak/mdia/hdlr`` per track
handler given, and an ``mdat`` box of payload, as ISO/IEC 14496-12 lays them out.
"""

from __future__ import annotations

import struct


def box(kind: bytes, payload: bytes) -> bytes:
    """box returns one ISO box: 32-bit size, four-character type, payload."""
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def movie(
    brand: bytes = b"isom",
    handlers: tuple[bytes, ...] = (b"vide",),
    payload: bytes = b"\x00" * 64,
    moov_last: bool = False,
) -> bytes:
    """movie returns a movie-family file with one track per handler type (``vide``, ``soun``)."""
    ftyp = box(b"ftyp", brand + b"\x00\x00\x02\x00" + brand + b"mp41")
    tracks = b"".join(
        box(b"trak", box(b"mdia", box(b"hdlr", b"\x00" * 8 + h + b"\x00" * 13))) for h in handlers
    )
    moov = box(b"moov", box(b"mvhd", b"\x00" * 100) + tracks)
    mdat = box(b"mdat", payload)
    return ftyp + (mdat + moov if moov_last else moov + mdat)
