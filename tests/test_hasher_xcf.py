"""XCF files from GIMP 2.10 hash as GIMP shows them.

The fixtures in ``fixtures/xcf/`` were made by GIMP 2.10.34 itself in batch mode
(``fixtures/xcf/make_fixtures.py``): each ``NAME.xcf`` beside GIMP's own flattened
export ``NAME.png``. They cover headers v009, v011 and v012, 8-bit perceptual,
16-bit linear and float linear precision, layer offsets, opacity, alpha, a layer
group, the union and clip-to-backdrop composite modes, and the normal, multiply,
screen and overlay modes in their GIMP 2.10 and legacy forms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import FileError, Result, hash_path
from hashfed.hasher.pdq import distance
from PIL import Image
from test_hasher_formats import photo, write_xcf

__all__ = ["photo"]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "xcf"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.xcf"))
SINGLE_LAYER = {"single", "single-u16"}
MAX_BITS = 8
"""The issue's target; these fixtures actually come out at 0 bits."""


def _hash(path: Path) -> str:
    [r] = hash_path(path)
    assert isinstance(r, Result), r
    return r.hash


@pytest.mark.parametrize("name", NAMES)
def test_gimp_file_hashes_like_gimps_export(name: str) -> None:
    ours, gimps = _hash(FIXTURES / f"{name}.xcf"), _hash(FIXTURES / f"{name}.png")
    if name in SINGLE_LAYER:
        assert ours == gimps
    assert distance(ours, gimps) <= MAX_BITS


def test_fixtures_cover_current_gimp_headers() -> None:
    versions = {(FIXTURES / f"{n}.xcf").read_bytes()[:14] for n in NAMES}
    assert {b"gimp xcf v009\0", b"gimp xcf v011\0", b"gimp xcf v012\0"} <= versions


def test_rle_tiles(tmp_path: Path, photo: Image.Image) -> None:
    top = photo.rotate(90, expand=False).crop((0, 0, 60, 40))
    write_xcf([(top, 30, 20), (photo, 0, 0)], photo.size, tmp_path / "raw.xcf")
    write_xcf([(top, 30, 20), (photo, 0, 0)], photo.size, tmp_path / "rle.xcf", rle=True)
    assert _hash(tmp_path / "rle.xcf") == _hash(tmp_path / "raw.xcf")


@pytest.mark.parametrize("cut", [30, 200, 2000])
def test_truncated_gimp_file_is_one_line(tmp_path: Path, cut: int) -> None:
    data = (FIXTURES / "multiply-screen.xcf").read_bytes()
    (tmp_path / "cut.xcf").write_bytes(data[:cut])
    [err] = hash_path(tmp_path / "cut.xcf")
    assert isinstance(err, FileError) and err.reason == "CorruptImage", err
    assert "\n" not in err.error and "XCF" in err.error


def test_corrupt_tiles_are_refused(tmp_path: Path) -> None:
    data = bytearray((FIXTURES / "normal-opacity-offset.xcf").read_bytes())
    rng = np.random.default_rng(3)
    data[len(data) // 2 : len(data) // 2 + 400] = rng.bytes(400)
    (tmp_path / "bad.xcf").write_bytes(bytes(data))
    [out] = hash_path(tmp_path / "bad.xcf")
    assert isinstance(out, Result | FileError)
    if isinstance(out, FileError):
        assert out.reason == "CorruptImage" and "\n" not in out.error
