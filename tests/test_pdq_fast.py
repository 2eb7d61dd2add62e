"""Our PDQ engine (hasher/_pdq.c) against pdqhash 0.2.8, the engine partners run.

Every vector image, and 1,200 generated images of many sizes (thin, tiny, exactly
64×64, large), contents (noise, gradients, flat, repeated values that tie at the
median) and colour modes, must give the same 256 bits and the same quality, for
the plain hash and for the 8 dihedral hashes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import decode, detect_format, pdq_dihedral_from_rgb, pdq_from_rgb
from hashfed.hasher.decode import rgb_array
from hashfed.hasher.formats import read_head
from PIL import Image

pdqhash = pytest.importorskip("pdqhash")

PDQ = Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors" / "pdq"
GENERATED = 1200
MODES = ("RGB", "L", "P", "RGBA", "CMYK", "LA", "I;16", "1", "YCbCr")


def _theirs(rgb: np.ndarray) -> tuple[str, int]:
    vector, quality = pdqhash.compute(rgb)
    return np.packbits(vector.astype(np.uint8)).tobytes().hex(), int(quality)


def _theirs_dihedral(rgb: np.ndarray) -> tuple[tuple[str, ...], int]:
    vectors, quality = pdqhash.compute_dihedral(rgb)
    hexes = tuple(np.packbits(v.astype(np.uint8)).tobytes().hex() for v in vectors)
    return hexes, int(quality)


def _vector_paths() -> list[Path]:
    if not (PDQ / "expected.csv").is_file():
        return []
    with open(PDQ / "expected.csv", newline="") as f:
        return [PDQ / row["path"] for row in csv.DictReader(f)]


@pytest.mark.parametrize("path", _vector_paths(), ids=lambda p: p.name)
def test_every_vector_image_bit_identical(path: Path) -> None:
    fmt = detect_format(path, read_head(path))
    rgb = decode(path, fmt, exif=False).rgb
    assert pdq_from_rgb(rgb) == _theirs(rgb)
    if rgb.shape[0] * rgb.shape[1] <= 2_000_000:  # pdqhash's dihedral is slow on 12 MP
        assert pdq_dihedral_from_rgb(rgb) == _theirs_dihedral(rgb)


def _size(rng: np.random.Generator, n: int) -> tuple[int, int]:
    if n % 50 == 0:
        return 64, 64  # pdqhash's no-blur shortcut (plain hash only)
    if n % 50 == 1:
        return int(rng.integers(1, 7)), int(rng.integers(1, 7))  # around the 5-pixel minimum
    if n % 50 == 2:
        return int(rng.integers(5, 9)), int(rng.integers(200, 1500))  # a thin strip
    if n % 97 == 3:
        return int(rng.integers(900, 1400)), int(rng.integers(900, 1400))  # windows of 8..11
    return int(rng.integers(5, 300)), int(rng.integers(5, 300))


def _content(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    kind = n % 5
    if kind == 0:  # noise
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == 1:  # a smooth photo-like texture
        small = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))
    if kind == 2:  # flat: every coefficient ties
        return np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    if kind == 3:  # few distinct values: many ties near the median
        return (rng.integers(0, 2, (h, w, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]  # gradients
    return np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], 2)


def _generated(n: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + n)
    h, w = _size(rng, n)
    img = Image.fromarray(np.ascontiguousarray(_content(rng, n, h, w), dtype=np.uint8))
    mode = MODES[n % len(MODES)]
    if mode != "RGB":
        img = img.convert("L").convert(mode) if mode == "I;16" else img.convert(mode)
    return rgb_array(img)  # every mode through our own conversion, as a file would go


@pytest.mark.parametrize("chunk", range(4))
def test_generated_images_bit_identical(chunk: int) -> None:
    differing = []
    for n in range(chunk, GENERATED, 4):
        rgb = _generated(n)
        if pdq_from_rgb(rgb) != _theirs(rgb):
            differing.append((n, rgb.shape, "plain"))
        if n % 3 == 0 and pdq_dihedral_from_rgb(rgb) != _theirs_dihedral(rgb):
            differing.append((n, rgb.shape, "dihedral"))
    assert differing == []


def test_rejects_what_is_not_rgb_bytes() -> None:
    from hashfed.hasher import _pdq

    with pytest.raises(ValueError, match="uint8"):
        _pdq.hash(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        _pdq.hash(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        _pdq.hash(np.zeros((10, 10, 3), dtype=np.uint8)[:, ::2])
