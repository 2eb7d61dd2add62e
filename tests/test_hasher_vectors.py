"""hashfed.hasher against the shared PDQ and video vectors (partner compatibility)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import (
    EXIF_ROTATED,
    STORED,
    FileError,
    Md5Signal,
    PdqSignal,
    Result,
    hash_path,
    hash_paths,
    to_rgb,
)
from hashfed.hasher.pdq import distance, pdq_from_rgb
from PIL import Image

VECTORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors"
PDQ = VECTORS / "pdq"
MODES = PDQ / "images" / "misc-images" / "modes"

pytestmark = pytest.mark.skipif(not PDQ.is_dir(), reason="shared vectors not present")


def _expected() -> dict[str, tuple[str, int]]:
    with open(PDQ / "expected.csv", newline="") as f:
        return {row["path"]: (row["pdq"], int(row["quality"])) for row in csv.DictReader(f)}


def test_every_non_modes_vector_matches_partner_exactly() -> None:
    expected = {k: v for k, v in _expected().items() if "/modes/" not in k}
    paths = [PDQ / k for k in expected]
    got = {}
    for outcome in hash_paths(paths, workers=2):
        assert isinstance(outcome, Result), outcome
        if outcome.variant == STORED:
            got[str(Path(outcome.path).relative_to(PDQ))] = (outcome.hash, outcome.quality)
    assert got == expected


def test_modes_within_8_bits_of_original() -> None:
    original, _ = PdqSignal.hash_file_with_quality(MODES / "original.jpg")
    files = sorted(MODES.iterdir())
    assert len(files) >= 14
    for f in files:
        if f.suffix == ".webp":  # not a bank format: check the colour handling directly
            h, _ = PdqSignal.hash_bytes(f.read_bytes())
        else:
            h = PdqSignal.hash_file(f)
        assert distance(h, original) <= 8, f.name


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "PA", "I", "I;16", "F", "CMYK", "YCbCr", "LAB", "HSV", "RGBA"]
)
def test_in_memory_modes_within_8_bits(mode: str) -> None:
    with Image.open(MODES / "original.jpg") as img:
        base = img.convert("RGB")
    want, _ = pdq_from_rgb(np.asarray(base))
    if mode == "I;16":  # 16-bit grey must be scaled to 8 bits, not clipped
        converted = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
        assert converted.mode == "I;16"
    elif mode == "I":
        converted = Image.fromarray(np.asarray(base.convert("L")).astype(np.int32) * 257)
    elif mode == "F":  # float grey in 0..1
        converted = Image.fromarray(np.asarray(base.convert("L")).astype(np.float32) / 255)
    else:
        converted = base.convert(mode)
    got, _ = pdq_from_rgb(np.asarray(to_rgb(converted)))
    assert distance(got, want) <= 8


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_small_jpg_is_low_quality_and_not_publishable() -> None:
    [r] = hash_path(PDQ / "images" / "misc-images" / "small.jpg")
    assert isinstance(r, Result)
    assert r.quality == 0 and not r.publishable


def test_real_exif_rotation_gives_two_results() -> None:
    expected = _expected()
    rows = hash_path(PDQ / "images" / "exif-rotn" / "exif-rotn-6.jpg")
    assert [r.variant for r in rows if isinstance(r, Result)] == [STORED, EXIF_ROTATED]
    stored, rotated = rows
    assert isinstance(stored, Result) and isinstance(rotated, Result)
    assert stored.hash == expected["images/exif-rotn/exif-rotn-6.jpg"][0]
    assert distance(stored.hash, rotated.hash) > 31
    [only] = hash_path(PDQ / "images" / "exif-rotn" / "exif-rotn-1.jpg")
    assert isinstance(only, Result) and only.variant == STORED


def test_dihedral_hashes_match_the_transformed_files() -> None:
    [r] = hash_path(PDQ / "images" / "dih" / "bridge-1-original.jpg", dihedral=True)
    assert isinstance(r, Result) and r.dihedral is not None and len(r.dihedral) == 8
    assert r.dihedral[0] == r.hash
    files = sorted((PDQ / "images" / "dih").glob("bridge-*.jpg"))
    expected = _expected()
    for i, f in enumerate(files):
        want = expected[str(f.relative_to(PDQ))][0]
        assert PdqSignal.compare(r.dihedral[i], want).match, f.name


def test_video_md5() -> None:
    [r] = hash_path(VECTORS / "video" / "chair-19-sd-bar.mp4")
    assert isinstance(r, Result) and not isinstance(r, FileError)
    assert (r.kind, r.hash, r.quality, r.format) == (
        "md5",
        "0a21c8f85a55a9e276ffc2c53f6887c4",
        None,
        "mp4",
    )
    assert r.hash == Md5Signal.get_examples()[0]
