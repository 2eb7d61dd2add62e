"""Phone photos (HEIC, AVIF, WebP), movie-family files told apart by their tracks,
DICOM recognised before any other magic, and one line per failed file.

HEIC files are written with pillow-heif and AVIF/WebP with Pillow at test time; the
rotation tests store the photo with an orientation that the encoders write as HEIF
``irot``/``imir`` boxes, so the decoder must apply it once, as a phone shows it.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import FileError, Result, UnsupportedFormat, hash_path
from hashfed.hasher.decode import ORIENTATION_TAG, _quiet
from hashfed.hasher.pdq import distance, pdq_from_rgb
from media import box, movie
from PIL import Image
from test_hasher_formats import photo, write_dicom

__all__ = ["photo"]  # the fixture, re-used

LOSSY_BITS = 16
"""Bits a lossy re-encode of the 160×100 test photo may move its PDQ hash."""


def _want(img: Image.Image) -> str:
    return pdq_from_rgb(np.asarray(img.convert("RGB")))[0]


def _one(path: Path) -> Result:
    outcomes = hash_path(path)
    assert len(outcomes) == 1, outcomes
    [r] = outcomes
    assert isinstance(r, Result), r
    return r


def _refused(path: Path) -> FileError:
    [err] = hash_path(path)
    assert isinstance(err, FileError), err
    assert "\n" not in err.error
    return err


def test_webp_lossless_hashes_exactly(tmp_path: Path, photo: Image.Image) -> None:
    photo.save(tmp_path / "a.webp", "WEBP", lossless=True)
    r = _one(tmp_path / "a.webp")
    assert (r.format, r.hash) == ("webp", _want(photo))


def test_heic_is_a_photo_not_a_video(tmp_path: Path, photo: Image.Image) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.from_pillow(photo).save(tmp_path / "IMG_0001.HEIC", quality=95)
    assert (tmp_path / "IMG_0001.HEIC").read_bytes()[4:8] == b"ftyp"
    r = _one(tmp_path / "IMG_0001.HEIC")
    assert (r.kind, r.format, r.variant) == ("pdq", "heic", "stored")
    assert distance(r.hash, _want(photo)) <= LOSSY_BITS


def test_avif_is_a_photo_not_a_video(tmp_path: Path, photo: Image.Image) -> None:
    photo.save(tmp_path / "a.avif", "AVIF", quality=95)
    r = _one(tmp_path / "a.avif")
    assert (r.kind, r.format) == ("pdq", "avif")
    assert distance(r.hash, _want(photo)) <= LOSSY_BITS


def _oriented(photo: Image.Image) -> tuple[Image.Image, Image.Exif, Image.Image]:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # shown rotated 90° clockwise
    return photo, exif, photo.transpose(Image.Transpose.ROTATE_270)


def test_heic_rotation_is_applied_once(tmp_path: Path, photo: Image.Image) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    stored, exif, shown = _oriented(photo)
    stored.save(tmp_path / "rot.heic", "HEIF", exif=exif.tobytes(), quality=95)
    with open(tmp_path / "rot.heic", "rb") as f:
        assert b"irot" in f.read()
    assert pillow_heif  # the plugin above registered the HEIF writer
    [r] = hash_path(tmp_path / "rot.heic")  # one hash: no EXIF variant on top
    assert isinstance(r, Result)
    assert distance(r.hash, _want(shown)) <= LOSSY_BITS
    assert distance(r.hash, _want(stored)) > 64


def test_avif_rotation_is_applied_once(tmp_path: Path, photo: Image.Image) -> None:
    stored, exif, shown = _oriented(photo)
    stored.save(tmp_path / "rot.avif", "AVIF", exif=exif, quality=95)
    with open(tmp_path / "rot.avif", "rb") as f:
        assert b"irot" in f.read()
    [r] = hash_path(tmp_path / "rot.avif")
    assert isinstance(r, Result)
    assert distance(r.hash, _want(shown)) <= LOSSY_BITS
    assert distance(r.hash, _want(stored)) > 64


@pytest.fixture(autouse=True, scope="module")
def _heif_writer() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()


def test_video_with_its_header_at_the_end(tmp_path: Path) -> None:
    data = movie(b"mp42", moov_last=True, payload=bytes(5000))
    (tmp_path / "v.mp4").write_bytes(data)
    assert (_one(tmp_path / "v.mp4").kind, _one(tmp_path / "v.mp4").format) == ("md5", "mp4")


def test_video_with_sound_is_a_video(tmp_path: Path) -> None:
    (tmp_path / "v.mov").write_bytes(movie(b"qt  ", handlers=(b"soun", b"vide")))
    assert _one(tmp_path / "v.mov").format == "mov"


@pytest.mark.parametrize("name", ["song.m4a", "voice.3gp", "song.mp4"])
def test_audio_only_is_refused(tmp_path: Path, name: str) -> None:
    brand = {"song.m4a": b"M4A ", "voice.3gp": b"3gp5", "song.mp4": b"mp42"}[name]
    (tmp_path / name).write_bytes(movie(brand, handlers=(b"soun",)))
    err = _refused(tmp_path / name)
    assert err.reason == UnsupportedFormat.__name__
    assert err.error.startswith("audio only") and "accepted: photos:" in err.error


def test_movie_without_tracks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(box(b"ftyp", b"isom\x00\x00\x00\x00isom") + bytes(99))
    err = _refused(tmp_path / "broken.mp4")
    assert "without a movie header" in err.error


def test_dicom_preamble_that_looks_like_tiff(tmp_path: Path, photo: Image.Image) -> None:
    gray = np.asarray(photo.convert("L"))
    write_dicom(gray, tmp_path / "plain.dcm")
    data = bytearray((tmp_path / "plain.dcm").read_bytes())
    data[:8] = b"II*\x00" + struct.pack("<I", 8)  # as in pydicom's CT_small.dcm
    (tmp_path / "tiffish.dcm").write_bytes(bytes(data))
    plain, tiffish = _one(tmp_path / "plain.dcm"), _one(tmp_path / "tiffish.dcm")
    assert tiffish.format == "dcm" and tiffish.hash == plain.hash


def test_bomb_message_quotes_our_limit(tmp_path: Path) -> None:
    # 30000×20000 = 600 MP: over Pillow's own hard limit too, whose message says 400 MP.
    ihdr = struct.pack(">IIBBBBB", 30000, 20000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    )
    err = _refused(tmp_path / "bomb.png")
    assert err.reason == "TooManyPixels" and "200-megapixel limit" in err.error
    assert "400" not in err.error


def test_decoder_chatter_never_reaches_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    # What libtiff (C, straight to descriptor 2) and Pillow/pydicom (Python warnings) do.
    with _quiet():
        os.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 65000\n")
        warnings.warn("Possibly corrupt EXIF data", UserWarning, stacklevel=1)
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "after\n"
