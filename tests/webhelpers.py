"""Helpers for the tests of the person's page (web/): its Node harnesses and corpora.

The harnesses are built by ``make web`` into ``web/build/``; a test that needs one
fails with that instruction when it is missing, never skips.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WEB_BUILD = ROOT / "web" / "build"
VECTORS = ROOT.parent / "shared" / "vectors"
PDQ_IMAGES = VECTORS / "pdq" / "images"


def harness(name: str) -> list[str]:
    """harness returns the command that runs the Node harness ``web/build/<name>.mjs``."""
    script = WEB_BUILD / f"{name}.mjs"
    node = shutil.which("node")
    assert node is not None, "node is not installed: run `make web`"
    assert script.exists(), f"{script} is missing: run `make web`"
    return [node, str(script)]


def pdq_in_node(images: list[npt.NDArray[np.uint8]]) -> list[tuple[str, int]]:
    """pdq_in_node returns the page's (hash, quality) for each height × width × 3 array."""
    payload = b"".join(
        struct.pack("<II", a.shape[1], a.shape[0]) + np.ascontiguousarray(a).tobytes()
        for a in images
    )
    out = subprocess.run(harness("pdq_cli"), input=payload, capture_output=True, check=True)
    rows = out.stdout.decode().split()
    assert len(rows) == len(images), out.stderr.decode()
    return [(h, int(q)) for h, q in (row.split(",") for row in rows)]


def start_hash_in_node(paths: list[Path]) -> subprocess.Popen[str]:
    """start_hash_in_node starts the page's hashing of ``paths`` (see :func:`node_verdicts`)."""
    command = [*harness("hash_cli"), *map(str, paths)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def node_verdicts(process: subprocess.Popen[str]) -> dict[str, dict[str, Any]]:
    """node_verdicts returns the page's verdict on each file, keyed by path."""
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    return {r["path"]: r for r in results}


def png_bytes(
    pixels: npt.NDArray[Any],
    color_type: int,
    bit_depth: int,
    *,
    palette: bytes = b"",
    trns: bytes = b"",
    exif: bytes = b"",
    text: tuple[bytes, bytes] | None = None,
) -> bytes:
    """png_bytes encodes a PNG of any colour type and bit depth (filter 0, no interlace).

    ``pixels`` is height × width × samples of unsigned integers below 2**bit_depth;
    ``text`` is one (chunk type, body) of metadata, e.g. a tEXt chunk.
    """
    height, width = pixels.shape[:2]
    samples = pixels.reshape(height, width, -1)
    rows = []
    for row in samples:
        flat = row.reshape(-1).astype(np.uint32)
        if bit_depth == 16:
            data = flat.astype(">u2").tobytes()
        elif bit_depth == 8:
            data = flat.astype(np.uint8).tobytes()
        else:
            per_byte = 8 // bit_depth
            padded = np.zeros(-(-len(flat) // per_byte) * per_byte, dtype=np.uint32)
            padded[: len(flat)] = flat
            groups = padded.reshape(-1, per_byte)
            shifts = np.array([bit_depth * (per_byte - 1 - i) for i in range(per_byte)])
            data = (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()
        rows.append(b"\x00" + data)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if exif:
        out += chunk(b"eXIf", exif)
    if text is not None:
        out += chunk(*text)
    if palette:
        out += chunk(b"PLTE", palette)
    if trns:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    return out


def exif_orientation_block(orientation: int) -> bytes:
    """exif_orientation_block returns a TIFF-structured EXIF block with one orientation tag."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00\x08\x00\x00\x00\x01\x00" + entry + b"\x00\x00\x00\x00"


def jpeg_bytes(img: Image.Image, **options: Any) -> bytes:
    """jpeg_bytes encodes ``img`` as a JPEG with Pillow's ``options``."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", **options)
    return buf.getvalue()


def smooth_image(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.uint8]:
    """smooth_image returns a photo-like RGB array: gradients, blobs and a little noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((height, width, 3))
    for c in range(3):
        fx, fy, phase = rng.uniform(0.2, 8.0), rng.uniform(0.2, 8.0), rng.uniform(0, 6.3)
        out[..., c] = 127 + 100 * np.sin(fx * x / width * 6.3 + phase) * np.cos(fy * y / height)
    out += rng.normal(0, rng.uniform(0, 12), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)
