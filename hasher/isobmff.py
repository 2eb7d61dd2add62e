"""Tell photos, videos and audio apart in the ISO base media file family (MP4, MOV, HEIF).

MP4, QuickTime, 3GP, HEIC/HEIF and AVIF files all begin with the same box layout
(ISO/IEC 14496-12): a 32-bit big-endian size, a four-character type, then the
payload; a size of 1 means a 64-bit size follows the type, and 0 means "to the end
of the file". The first box is usually ``ftyp``: a major brand, a minor version,
then compatible brands, each four characters. For example, an iPhone photo starts

    00 00 00 18 'ftyp' 'heic' 00 00 00 00 'mif1' 'heic'

and a phone video ``... 'ftyp' 'isom' ... 'isom' 'iso2' 'avc1' 'mp41'``.

A brand alone does not say whether a file holds video: M4A audio and HEIF image
sequences use video-family brands. So a movie-family file counts as a video only
when its ``moov`` box holds a track whose media handler (``moov/trak/mdia/hdlr``)
is ``vide``. :func:`sniff_brands` reads the brands from a file's first bytes and
:func:`track_handlers` walks the file's boxes to list its tracks' handler types.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
"""Brands of HEIF still images and image sequences (ISO/IEC 23008-12); HEIC is HEVC-coded."""
AVIF_BRANDS = frozenset({b"avif", b"avis"})
"""Brands of AVIF images and image sequences (AV1-coded HEIF)."""

MAX_MOOV_BYTES = 64 << 20
"""The largest ``moov`` box read to find the tracks (real ones are a few MB at most)."""
MAX_TOP_LEVEL_BOXES = 10_000
"""Top-level boxes walked before giving up (a real file has a handful)."""

_CONTAINERS = (b"trak", b"mdia")


def sniff_brands(head: bytes) -> tuple[bytes, ...] | None:
    """sniff_brands returns (major brand, *compatible brands) from an ``ftyp`` box at offset 0.

    It returns None when ``head`` does not start with an ``ftyp`` box.
    """
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    size = struct.unpack(">I", head[:4])[0]
    end = min(max(size, 12), len(head))
    compatible = [head[i : i + 4] for i in range(16, end - 3, 4)]
    return (head[8:12], *compatible)


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield (type, payload) of the boxes laid end to end in ``data``."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                return
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header:
            return
        yield kind, data[pos + header : pos + size]
        pos += size


def _handlers(moov: bytes) -> list[str]:
    found = []
    for kind, payload in _boxes(moov):
        if kind == b"trak":
            found.extend(_handlers(payload))
        elif kind == b"mdia":
            for sub_kind, sub in _boxes(payload):
                if sub_kind == b"hdlr" and len(sub) >= 12:  # version/flags, pre_defined, type
                    found.append(sub[8:12].decode("latin-1"))
    return found


def _top_level_boxes(f: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload offset, payload size) of each top-level box, seeking past payloads."""
    f.seek(0, 2)
    file_size = f.tell()
    pos = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if pos + 8 > file_size:
            return
        f.seek(pos)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            raw = f.read(8)
            if len(raw) < 8:
                return
            size = struct.unpack(">Q", raw)[0]
            header = 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            return
        yield kind, pos + header, min(size, file_size - pos) - header
        pos += size


def track_handlers(f: BinaryIO) -> list[str] | None:
    """track_handlers returns the handler type of each track in the file, e.g. ``["vide", "soun"]``.

    It returns None when the file has no readable ``moov`` box (not a movie, or truncated).
    """
    for kind, offset, size in _top_level_boxes(f):
        if kind == b"moov":
            if size > MAX_MOOV_BYTES:
                return None
            f.seek(offset)
            return _handlers(f.read(size))
    return None
