"""Every accepted format hashes; samples are generated at test time.

Pillow writes jpeg/png/gif/tiff/tga/ico/pcx/bmp; ImageMagick (Wand) writes miff and
a layered psd; pydicom writes dcm; xpm and xcf are written by hand below (neither
Pillow nor ImageMagick writes them), following the formats' public descriptions.
"""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hashfed.hasher import (
    ACCEPTED_PHOTO_EXTENSIONS,
    ACCEPTED_VIDEO_EXTENSIONS,
    FileError,
    Result,
    UnsupportedFormat,
    detect_format,
    hash_path,
)
from hashfed.hasher.pdq import distance, pdq_from_rgb
from media import box, movie
from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = (
    HERE / ".." / ".." / "shared" / "vectors" / "pdq" / "images" / "dih" / "bridge-1-original.jpg"
)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A detailed 160×100 RGB photo (PDQ quality 100)."""
    if SOURCE.is_file():
        with Image.open(SOURCE) as img:
            return img.convert("RGB").resize((160, 100), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(7)  # fallback: smooth random texture
    small = rng.integers(0, 256, (10, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((160, 100), Image.Resampling.BICUBIC)


def _want(img: Image.Image) -> str:
    return pdq_from_rgb(np.asarray(img.convert("RGB")))[0]


def _one(path: Path) -> Result:
    outcomes = hash_path(path)
    assert len(outcomes) == 1, outcomes
    [r] = outcomes
    assert isinstance(r, Result), r
    return r


def write_xpm(img: Image.Image, path: Path) -> None:
    """Write a palette XPM2/3 file (one character per pixel, up to 64 colours)."""
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    idx = np.asarray(pal)
    colours = pal.getpalette() or []
    chars = "".join(chr(c) for c in range(ord("0"), ord("0") + 64))
    used = sorted(set(idx.flatten().tolist()))
    lines = ["/* XPM */", "static char *sample[] = {", f'"{pal.width} {pal.height} {len(used)} 1",']
    for i in used:
        r, g, b = colours[3 * i : 3 * i + 3]
        lines.append(f'"{chars[i]} c #{r:02x}{g:02x}{b:02x}",')
    for row in idx:
        lines.append('"' + "".join(chars[i] for i in row) + '",')
    lines[-1] = lines[-1].rstrip(",")
    lines.append("};")
    path.write_text("\n".join(lines) + "\n")


def write_xcf(
    layers: list[tuple[Image.Image, int, int]],
    size: tuple[int, int],
    path: Path,
    rle: bool = False,
) -> None:
    """Write an uncompressed (or RLE) RGBA XCF (v0); ``layers`` top first, with offsets."""
    w, h = size

    def u32(*vs: int) -> bytes:
        return struct.pack(">" + "I" * len(vs), *vs)

    def prop(kind: int, payload: bytes) -> bytes:
        return u32(kind, len(payload)) + payload

    out = bytearray(b"gimp xcf file\x00" + u32(w, h, 0))
    out += prop(17, bytes([int(rle)])) + prop(0, b"")  # PROP_COMPRESSION, PROP_END
    ptr_at = len(out)
    out += b"\x00" * 4 * (len(layers) + 1) + u32(0)  # layer pointers, 0; no channels
    pointers = []
    for n, (layer, x, y) in enumerate(layers):
        rgba = np.asarray(layer.convert("RGBA"))
        lh, lw = rgba.shape[:2]
        pointers.append(len(out))
        name = f"layer{n}".encode() + b"\x00"
        out += u32(lw, lh, 1, len(name)) + name
        out += prop(15, struct.pack(">ii", x, y)) + prop(8, u32(1)) + prop(6, u32(255))
        out += prop(0, b"")
        hier_ptr_at = len(out)
        out += u32(0, 0)  # hierarchy pointer (patched), no layer mask
        hier = len(out)
        out[hier_ptr_at : hier_ptr_at + 4] = u32(hier)
        out += u32(lw, lh, 4)
        level_ptr_at = len(out)
        out += u32(0, 0)
        level = len(out)
        out[level_ptr_at : level_ptr_at + 4] = u32(level)
        tiles = [(ty, tx) for ty in range(0, lh, 64) for tx in range(0, lw, 64)]
        out += u32(lw, lh)
        tile_ptr_at = len(out)
        out += b"\x00" * 4 * (len(tiles) + 1)
        for i, (ty, tx) in enumerate(tiles):
            out[tile_ptr_at + 4 * i : tile_ptr_at + 4 * i + 4] = u32(len(out))
            tile = rgba[ty : ty + 64, tx : tx + 64]
            out += (
                b"".join(_rle(tile[..., c].tobytes()) for c in range(4)) if rle else tile.tobytes()
            )
    for i, p in enumerate(pointers):
        out[ptr_at + 4 * i : ptr_at + 4 * i + 4] = u32(p)
    # ImageMagick sizes the last uncompressed tile as a 1.5 × 64×64×4 window: pad for it.
    out += b"\x00" * (64 * 64 * 6)
    path.write_bytes(bytes(out))


def _rle(plane: bytes) -> bytes:
    """XCF's RLE of one byte plane: runs of a repeated byte, else short literal stretches."""
    out, i = bytearray(), 0
    while i < len(plane):
        run = 1
        while i + run < len(plane) and run < 127 and plane[i + run] == plane[i]:
            run += 1
        if run >= 3:
            out += bytes([run - 1, plane[i]])
            i += run
            continue
        n = min(127, len(plane) - i)
        out += bytes([256 - n]) + plane[i : i + n]
        i += n
    return bytes(out)


def write_dicom(gray: np.ndarray, path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = 16 if gray.dtype == np.uint16 else 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = gray.tobytes()
    ds.save_as(path, enforce_file_format=True)


PILLOW_LOSSLESS = {"png": "PNG", "tiff": "TIFF", "tga": "TGA", "bmp": "BMP", "pcx": "PCX"}


@pytest.mark.parametrize("ext", sorted(PILLOW_LOSSLESS))
def test_lossless_pillow_formats_hash_exactly(tmp_path: Path, photo: Image.Image, ext: str) -> None:
    path = tmp_path / f"sample.{ext}"
    photo.save(path, PILLOW_LOSSLESS[ext])
    r = _one(path)
    assert (r.kind, r.format, r.hash) == ("pdq", ext, _want(photo))


@pytest.mark.parametrize("ext", ["jpg", "jpeg"])
def test_jpeg(tmp_path: Path, photo: Image.Image, ext: str) -> None:
    path = tmp_path / f"sample.{ext}"
    photo.save(path, "JPEG", quality=95)
    r = _one(path)
    assert r.format == "jpeg" and distance(r.hash, _want(photo)) <= 8


def test_animated_gif_hashes_first_frame(tmp_path: Path, photo: Image.Image) -> None:
    path = tmp_path / "anim.gif"
    second = photo.transpose(Image.Transpose.ROTATE_180)
    photo.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    r = _one(path)
    assert r.format == "gif"
    assert distance(r.hash, _want(photo)) <= 16 < distance(r.hash, _want(second))


def test_ico(tmp_path: Path, photo: Image.Image) -> None:
    square = photo.resize((64, 64))
    path = tmp_path / "icon.ico"
    square.save(path, sizes=[(64, 64)])
    assert _one(path).hash == _want(square)


def test_xpm(tmp_path: Path, photo: Image.Image) -> None:
    path = tmp_path / "sample.xpm"
    write_xpm(photo, path)
    r = _one(path)
    assert r.format == "xpm" and distance(r.hash, _want(photo)) <= 16


def test_tga_is_recognised_by_extension_only(tmp_path: Path, photo: Image.Image) -> None:
    path = tmp_path / "sample.tga"
    photo.save(path, "TGA")
    assert detect_format(path, path.read_bytes()[:512]).name == "tga"
    renamed = tmp_path / "sample.bin"
    path.rename(renamed)
    [err] = hash_path(renamed)
    assert isinstance(err, FileError) and err.reason == "UnsupportedFormat"


def test_dicom_8_and_16_bit(tmp_path: Path, photo: Image.Image) -> None:
    gray = np.asarray(photo.convert("L"))
    want = _want(Image.fromarray(gray))
    write_dicom(gray, tmp_path / "a.dcm")
    write_dicom(gray.astype(np.uint16) * 257, tmp_path / "b.dcm")
    for name in ("a.dcm", "b.dcm"):
        r = _one(tmp_path / name)
        assert r.format == "dcm" and distance(r.hash, want) <= 8, name


def _wand() -> object:
    try:
        from wand.image import Image as WandImage
    except ImportError:
        pytest.skip("ImageMagick (libmagickwand) is not installed")
    return WandImage


def test_miff(tmp_path: Path, photo: Image.Image) -> None:
    wand_image = _wand()
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    with wand_image(blob=buf.getvalue(), format="png") as img:  # type: ignore[operator]
        img.save(filename=str(tmp_path / "sample.miff"))
    r = _one(tmp_path / "sample.miff")
    assert (r.format, r.hash) == ("miff", _want(photo))


def test_layered_psd_hashes_the_composite(tmp_path: Path, photo: Image.Image) -> None:
    wand_image = _wand()
    layer = photo.transpose(Image.Transpose.ROTATE_180)
    blobs = []
    for img in (photo, layer, photo.convert("L").convert("RGB")):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        blobs.append(buf.getvalue())
    # ImageMagick writes the first image as the PSD's merged composite, the rest as layers.
    with wand_image() as psd:  # type: ignore[operator]
        for blob in blobs:
            with wand_image(blob=blob, format="png") as frame:  # type: ignore[operator]
                psd.sequence.append(frame)
        psd.save(filename=str(tmp_path / "layered.psd"))
    r = _one(tmp_path / "layered.psd")
    assert r.format == "psd" and r.hash == _want(photo)


def test_layered_xcf_hashes_the_composite(tmp_path: Path, photo: Image.Image) -> None:
    _wand()
    top = photo.crop((0, 0, 80, 50)).transpose(Image.Transpose.ROTATE_180)
    write_xcf([(top, 40, 20), (photo, 0, 0)], photo.size, tmp_path / "layered.xcf")
    composite = photo.copy()
    composite.paste(top, (40, 20))
    r = _one(tmp_path / "layered.xcf")
    assert r.format == "xcf" and r.hash == _want(composite)


@pytest.mark.parametrize(
    ("ext", "head", "fmt"),
    [
        ("mp4", movie(b"isom"), "mp4"),
        ("mov", movie(b"qt  "), "mov"),
        ("qt", box(b"wide", b"") + movie(b"qt  ")[24:], "mov"),  # no ftyp: old QuickTime
        ("3gp", movie(b"3gp4"), "3gp"),
        ("avi", b"RIFF\x00\x10\x00\x00AVI LIST", "avi"),
        ("wmv", bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\x00" * 16, "wmv"),
    ],
)
def test_videos_md5_of_bytes(tmp_path: Path, ext: str, head: bytes, fmt: str) -> None:
    data = head + np.random.default_rng(1).bytes(3 << 20)  # spans several 1 MiB chunks
    path = tmp_path / f"clip.{ext}"
    path.write_bytes(data)
    r = _one(path)
    assert (r.kind, r.format, r.hash, r.quality) == (
        "md5",
        fmt,
        hashlib.md5(data).hexdigest(),
        None,
    )


def test_every_listed_extension_is_covered() -> None:
    covered_here = {"png", "tiff", "tga", "bmp", "pcx", "jpg", "jpeg", "gif", "ico", "xpm"}
    covered_here |= {"dcm", "miff", "psd", "xcf"}
    covered_here |= {"heic", "heif", "avif", "webp"}  # test_hasher_media.py
    assert covered_here == set(ACCEPTED_PHOTO_EXTENSIONS)
    assert set(ACCEPTED_VIDEO_EXTENSIONS) == {"mp4", "mov", "qt", "avi", "wmv", "3gp"}


@pytest.mark.parametrize("name", ["photo.jxr", "notes.txt", "noext"])
def test_unlisted_types_are_refused_with_the_list(
    tmp_path: Path, photo: Image.Image, name: str
) -> None:
    path = tmp_path / name
    path.write_text("hello, this is not a photo\n")
    [err] = hash_path(path)
    assert isinstance(err, FileError) and err.reason == UnsupportedFormat.__name__
    assert "accepted: photos: jpeg, jpg, png" in err.error and "wmv" in err.error
