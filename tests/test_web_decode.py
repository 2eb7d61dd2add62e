"""The page decodes photos to the node's pixels: its hashes are 0 bits from `hashfed hash`.

One shared corpus, run through both the page's code (under Node, with the same
WebAssembly decoders the page loads) and the node's hasher: the reference images and
generated JPEGs (baseline and progressive, YCbCr and grey, every chroma subsampling,
every EXIF orientation) and PNGs (every colour type and bit depth, with and without
transparency). Every JPEG and PNG the page accepts gives exactly the hasher's hashes and
variants; everything else gets the same refusal, or a pointer to `hashfed hash`. Phone
photos (WebP, HEIC, AVIF) and DICOM (also with a TIFF-like preamble) get that pointer;
movie-family files (MP4, MOV, 3GP, M4A) are told apart by brands and tracks as the
hasher does them: a video track wherever `moov` sits, audio only or no `moov` refused.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hashfed.hasher.batch import FileError, Result, hash_path
from media import box, movie
from PIL import Image
from test_hasher_formats import write_dicom
from webhelpers import (
    PDQ_IMAGES,
    VECTORS,
    exif_orientation_block,
    jpeg_bytes,
    node_verdicts,
    png_bytes,
    smooth_image,
    start_hash_in_node,
)


def _jpeg_corpus(folder: Path, rng: np.random.Generator) -> list[Path]:
    paths = []
    for i in range(48):
        h, w = (int(v) for v in rng.integers(16, 400, 2))
        rgb = Image.fromarray(smooth_image(rng, h, w))
        img = rgb.convert("L") if i % 4 == 3 else rgb
        exif = Image.Exif()
        orientation = i % 9
        if orientation:
            exif[0x0112] = orientation
        options: dict[str, Any] = {
            "quality": int(rng.integers(30, 98)),
            "progressive": bool(i % 2),
            "exif": exif.tobytes() if orientation else b"",
        }
        if img.mode == "RGB":
            options["subsampling"] = i % 3  # 4:4:4, 4:2:2, 4:2:0
        path = folder / f"gen-{i}.jpg"
        path.write_bytes(jpeg_bytes(img, **options))
        paths.append(path)
    # Orientation from XMP when EXIF has none (Pillow's getexif), EXIF winning over XMP.
    xmp6 = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    plain = Image.fromarray(smooth_image(rng, 90, 120))
    for name, exif_orientation in (("xmp-only", 0), ("exif1-xmp6", 1), ("exif3-xmp6", 3)):
        exif = Image.Exif()
        if exif_orientation:
            exif[0x0112] = exif_orientation
        data = jpeg_bytes(plain, quality=85, exif=exif.tobytes() if exif_orientation else b"")
        app1 = b"http://ns.adobe.com/xap/1.0/\x00" + xmp6
        segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
        path = folder / f"{name}.jpg"
        path.write_bytes(data[:2] + segment + data[2:])
        paths.append(path)
    cmyk = folder / "cmyk.jpg"
    cmyk.write_bytes(jpeg_bytes(Image.fromarray(smooth_image(rng, 40, 50)).convert("CMYK")))
    return [*paths, cmyk]


def _png_corpus(folder: Path, rng: np.random.Generator) -> list[Path]:
    cases: list[tuple[str, bytes]] = []
    h, w = 37, 53
    grey = smooth_image(rng, h, w)[..., 0].astype(np.uint32)
    rgb = smooth_image(rng, h, w).astype(np.uint32)
    alpha = rng.integers(0, 256, (h, w, 1)).astype(np.uint32)
    alpha[:5] = 0
    alpha[5:10] = 255
    for depth in (1, 2, 4, 8, 16):
        samples = grey >> (8 - depth) if depth < 8 else grey
        if depth == 16:
            samples = grey * 257 + rng.integers(0, 257, grey.shape)
        cases.append((f"grey{depth}", png_bytes(samples, 0, depth)))
        cases.append((f"grey{depth}-trns", png_bytes(samples, 0, depth, trns=b"\x00\x01")))
    for depth in (8, 16):
        scale = 257 if depth == 16 else 1
        cases.append((f"rgb{depth}", png_bytes(rgb * scale, 2, depth)))
        cases.append((f"la{depth}", png_bytes(np.dstack([grey, alpha[..., 0]]) * scale, 4, depth)))
        cases.append((f"rgba{depth}", png_bytes(np.dstack([rgb, alpha]) * scale, 6, depth)))
    trns_rgb = rgb.copy()
    trns_rgb[:3] = (10, 20, 30)
    cases.append(("rgb8-trns", png_bytes(trns_rgb, 2, 8, trns=b"\x00\x0a\x00\x14\x00\x1e")))
    cases.append(("rgb16-trns", png_bytes(trns_rgb * 257, 2, 16, trns=b"\x00\x0a\x00\x14\x00\x1e")))
    for depth in (1, 2, 4, 8):
        colours = 1 << depth
        palette = rng.integers(0, 256, colours * 3).astype(np.uint8).tobytes()
        index = rng.integers(0, colours, (h, w)).astype(np.uint32)
        cases.append((f"p{depth}", png_bytes(index, 3, depth, palette=palette)))
        trns = rng.integers(0, 256, colours).astype(np.uint8).tobytes()
        cases.append((f"p{depth}-trns", png_bytes(index, 3, depth, palette=palette, trns=trns)))
    for orientation in (3, 6, 8):
        block = exif_orientation_block(orientation)
        cases.append((f"rgb8-exif{orientation}", png_bytes(rgb, 2, 8, exif=block)))
    xmp8 = b'<x:xmpmeta tiff:Orientation="8"/>'
    cases.append(
        ("xmp-text", png_bytes(rgb, 2, 8, text=(b"tEXt", b"XML:com.adobe.xmp\x00" + xmp8)))
    )
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp8
    cases.append(("xmp-itxt", png_bytes(rgb, 2, 8, text=(b"iTXt", itxt))))
    raw = b"Raw profile type exif\x00\nexif\n      30\n" + exif_orientation_block(6).hex().encode()
    cases.append(("raw-exif", png_bytes(rgb, 2, 8, text=(b"tEXt", raw))))
    buf = io.BytesIO()
    Image.fromarray(smooth_image(rng, 60, 45)).save(buf, "PNG", interlace=1)
    cases.append(("interlaced", buf.getvalue()))
    paths = []
    for name, data in cases:
        path = folder / f"{name}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _others(folder: Path) -> list[Path]:
    img = Image.fromarray(smooth_image(np.random.default_rng(3), 30, 40))
    paths = []
    for fmt, ext in (("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tiff"), ("WEBP", "webp")):
        path = folder / f"other.{ext}"
        img.save(path, fmt)
        paths.append(path)
    for name, data in (
        ("clip.avi", b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(range(200))),
        ("clip.wmv", bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + b"\x01" * 100),
        ("clip.mov", b"\x00\x00\x00\x08moov" + b"\x02" * 100),
        ("clip.qt", b"\x00\x00\x00\x14ftypqt  " + b"\x03" * 100),
        ("renamed.mp4", b"\x00\x00\x00\x14ftypisom" + b"\x04" * 100),
        ("fake.mp4", b"not a video"),
        ("empty.png", b""),
        ("text.jpg", b"not a photo at all"),
        ("notes.txt", b"hello"),
        ("noext", b"\x00\x01\x02"),
    ):
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def _phones_and_movies(folder: Path) -> list[Path]:
    """Phone photos, DICOM, and the ISO media family, told apart by brands and tracks."""
    pillow_heif = pytest.importorskip("pillow_heif")
    img = Image.fromarray(smooth_image(np.random.default_rng(4), 64, 80))
    img.save(folder / "lossless.webp", "WEBP", lossless=True)
    pillow_heif.from_pillow(img).save(folder / "IMG_0001.HEIC", quality=90)
    img.save(folder / "photo.avif", "AVIF", quality=90)
    write_dicom(np.asarray(img.convert("L")), folder / "plain.dcm")
    paths = [folder / n for n in ("lossless.webp", "IMG_0001.HEIC", "photo.avif", "plain.dcm")]
    dicom = bytearray((folder / "plain.dcm").read_bytes())
    dicom[:8] = b"II*\x00" + struct.pack("<I", 8)  # a preamble that starts as a TIFF
    hdlr = box(b"hdlr", bytes(8) + b"vide" + bytes(13))
    moov = box(b"moov", box(b"mvhd", bytes(100)) + box(b"trak", box(b"mdia", hdlr)))
    mdat64 = struct.pack(">I4sQ", 1, b"mdat", 16 + 3000) + bytes(3000)  # a 64-bit box size
    meta = box(b"meta", bytes(24))
    for name, data in (
        ("tiffish.dcm", bytes(dicom)),
        ("brand-only.heic", box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic") + meta),
        ("miaf-avif.avif", box(b"ftyp", b"miaf\x00\x00\x00\x00miafavif") + meta),
        ("song.m4a", movie(b"M4A ", handlers=(b"soun",))),
        ("voice.3gp", movie(b"3gp5", handlers=(b"soun",))),
        ("clip.3gp", movie(b"3gp5", handlers=(b"soun", b"vide"))),
        ("moov-last.mp4", movie(b"mp42", (b"soun", b"vide"), bytes(5000), moov_last=True)),
        ("mdat64-moov-last.mp4", box(b"ftyp", b"mp42\x00\x00\x00\x00mp42isom") + mdat64 + moov),
        ("hint-only.mp4", movie(handlers=(b"hint",))),
        ("no-moov.mp4", box(b"ftyp", b"isom\x00\x00\x00\x00isom") + bytes(99)),
        ("heif-brand.mp4", box(b"ftyp", b"isom\x00\x00\x00\x00isommif1") + moov),
    ):
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def _node_view(outcomes: list[Result | FileError]) -> Any:
    if isinstance(outcomes[0], FileError):
        return ("error", outcomes[0].reason)
    return [(r.hash, r.quality, r.variant) for r in outcomes if isinstance(r, Result)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(1515)
    vectors = sorted(p for p in PDQ_IMAGES.rglob("*") if p.is_file())
    video = VECTORS / "video" / "chair-19-sd-bar.mp4"
    return [
        *vectors,
        video,
        *_jpeg_corpus(folder, rng),
        *_png_corpus(folder, rng),
        *_others(folder),
        *_phones_and_movies(folder),
    ]


_NEEDS_CLI_SUFFIXES = {".jpg", ".png", ".gif", ".bmp", ".tiff", ".webp", ".heic", ".avif", ".dcm"}
"""Files the page recognises but cannot decode as the hasher does: it points to the CLI."""

# The hasher's words for the movie-family refusals the page names with a code.
_MOVIE_REFUSALS = {
    "refused:audio-only": "audio only",
    "refused:no-video-track": "no video track",
    "refused:no-movie-header": "without a movie header",
}


def test_page_hashes_equal_the_hasher(corpus: list[Path]) -> None:
    running = start_hash_in_node(corpus)  # the page's code and the hasher run side by side
    hasher = {path: hash_path(path) for path in corpus}
    page = node_verdicts(running)
    exact = needs_cli = 0
    for path in corpus:
        mine = page[str(path)]
        theirs = hasher[path]
        if "hashes" in mine:
            got = [(h["hash"], h["quality"], h["variant"]) for h in mine["hashes"]]
            assert got == _node_view(theirs), path
            exact += 1
        elif mine.get("kind") == "md5":
            assert isinstance(theirs[0], Result) and theirs[0].kind == "md5", path
            assert (mine["hash"], mine["format"]) == (theirs[0].hash, theirs[0].format), path
        elif mine["reason"] == "needs-cli":
            needs_cli += 1
            assert path.suffix.lower() in _NEEDS_CLI_SUFFIXES, path
            # The hasher recognises it as the page does (hashing it, or finding it damaged).
            if isinstance(theirs[0], Result):
                assert mine["format"] == theirs[0].format, path
            else:
                assert theirs[0].reason not in {"UnsupportedFormat", "EmptyFile"}, (path, theirs)
        elif mine["reason"].startswith("refused:"):
            assert isinstance(theirs[0], FileError), path
            assert theirs[0].reason in {"UnsupportedFormat", "EmptyFile"}, path
            if mine["reason"] in _MOVIE_REFUSALS:
                assert _MOVIE_REFUSALS[mine["reason"]] in theirs[0].error, (path, theirs[0])
        else:
            pytest.fail(f"{path}: page says {mine['reason']}, hasher says {theirs}")
    assert exact >= 100
    variants = {Path(p).name: len(r["hashes"]) for p, r in page.items() if "hashes" in r}
    for name in ("xmp-only.jpg", "exif3-xmp6.jpg", "xmp-text.png", "xmp-itxt.png", "gen-6.jpg"):
        assert variants[name] == 2, name  # stored pixels, and as a viewer shows them
    assert variants["exif1-xmp6.jpg"] == 1  # EXIF says upright; XMP is not read then
    names = {Path(p).name for p, r in page.items() if r.get("reason") == "needs-cli"}
    phones = {
        "lossless.webp", "IMG_0001.HEIC", "photo.avif", "plain.dcm", "tiffish.dcm",
        "brand-only.heic", "miaf-avif.avif",
    }  # fmt: skip
    assert {"cmyk.jpg", "CMYK.jpg", "other.gif", "other.bmp", "other.tiff", "F.webp"} <= names
    assert phones <= names
    assert names <= phones | {
        "cmyk.jpg", "CMYK.jpg", "other.gif", "other.bmp", "other.tiff", "other.webp",
        "F.webp", "I.webp", "HSV.webp", "PA.webp", "LAB.webp",
        "grey1-trns.png", "grey2-trns.png", "grey4-trns.png", "rgb16-trns.png", "raw-exif.png",
    }  # fmt: skip
    assert needs_cli == len(names)
    formats = {Path(p).name: r.get("format") for p, r in page.items()}
    assert formats["tiffish.dcm"] == "dcm"  # DICOM's marker wins over the TIFF magic
    assert (formats["IMG_0001.HEIC"], formats["miaf-avif.avif"]) == ("heic", "avif")
    assert (formats["clip.3gp"], formats["heif-brand.mp4"]) == ("3gp", "mp4")
    reasons = {Path(p).name: r.get("reason") for p, r in page.items()}
    assert reasons["song.m4a"] == reasons["voice.3gp"] == "refused:audio-only"
    assert reasons["no-moov.mp4"] == "refused:no-movie-header"
    assert reasons["hint-only.mp4"] == "refused:no-video-track"
    kinds = {Path(p).name: r.get("kind") for p, r in page.items()}
    assert kinds["moov-last.mp4"] == kinds["mdat64-moov-last.mp4"] == "md5"
