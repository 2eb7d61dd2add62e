"""Which files the bank accepts, recognised from their content.

Photos (hashed with PDQ): jpeg/jpg, png, gif, psd, tiff, xcf, tga, miff, ico, dcm,
xpm, pcx, bmp (the StopNCII list), plus heic/heif, avif and webp, which are what
phones and browsers produce. Videos (hashed with MD5 of the bytes): mp4, mov/qt,
avi, wmv (the StopNCII list), plus 3gp.

:func:`detect_format` reads the first bytes of a file and matches magic numbers;
only formats without a signature (TGA) fall back to the file's extension. DICOM is
tried first, because its 128-byte preamble may itself start with another format's
magic (often TIFF's). Files of the ISO media family (MP4, MOV, 3GP, HEIC, AVIF) are
told apart by their ``ftyp`` brands and, for movies, by their tracks (see
:mod:`hashfed.hasher.isobmff`): only a file with a video track is a video. A file
whose content matches none of the accepted formats is rejected with
:class:`~hashfed.hasher.errors.UnsupportedFormat`, whatever its extension says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hashfed.hasher.errors import EmptyFile, UnsupportedFormat
from hashfed.hasher.isobmff import AVIF_BRANDS, HEIF_BRANDS, sniff_brands, track_handlers
from hashfed.protocol.kinds import Kind as Kind  # which signal type hashes a format

HEAD_SIZE = 512
"""Bytes read from the start of a file to recognise it (DICOM's magic is at 128)."""


@dataclass(frozen=True)
class Format:
    """One accepted file format: its name, hash kind, and the library that decodes it."""

    name: str
    kind: Kind
    extensions: tuple[str, ...]
    reader: str
    """Decoder: ``pillow``, ``heif`` (pillow-heif), ``xcf`` (our own), ``wand`` (ImageMagick),
    ``pydicom``, or ``bytes`` (videos)."""
    pillow_format: str = ""
    """Pillow plugin name, so Pillow is only ever asked to decode the detected format."""


JPEG = Format("jpeg", Kind.PDQ, ("jpeg", "jpg", "jpe", "jfif"), "pillow", "JPEG")
PNG = Format("png", Kind.PDQ, ("png",), "pillow", "PNG")
GIF = Format("gif", Kind.PDQ, ("gif",), "pillow", "GIF")
PSD = Format("psd", Kind.PDQ, ("psd",), "pillow", "PSD")
TIFF = Format("tiff", Kind.PDQ, ("tiff", "tif"), "pillow", "TIFF")
XCF = Format("xcf", Kind.PDQ, ("xcf",), "xcf")
TGA = Format("tga", Kind.PDQ, ("tga",), "pillow", "TGA")
MIFF = Format("miff", Kind.PDQ, ("miff",), "wand")
ICO = Format("ico", Kind.PDQ, ("ico",), "pillow", "ICO")
DCM = Format("dcm", Kind.PDQ, ("dcm", "dicom"), "pydicom")
XPM = Format("xpm", Kind.PDQ, ("xpm",), "pillow", "XPM")
PCX = Format("pcx", Kind.PDQ, ("pcx",), "pillow", "PCX")
BMP = Format("bmp", Kind.PDQ, ("bmp", "dib"), "pillow", "BMP")
HEIC = Format("heic", Kind.PDQ, ("heic", "heif", "hif"), "heif")
AVIF = Format("avif", Kind.PDQ, ("avif",), "pillow", "AVIF")
WEBP = Format("webp", Kind.PDQ, ("webp",), "pillow", "WEBP")
MP4 = Format("mp4", Kind.MD5, ("mp4", "m4v"), "bytes")
MOV = Format("mov", Kind.MD5, ("mov", "qt"), "bytes")
AVI = Format("avi", Kind.MD5, ("avi",), "bytes")
WMV = Format("wmv", Kind.MD5, ("wmv", "asf"), "bytes")
THREEGP = Format("3gp", Kind.MD5, ("3gp", "3g2"), "bytes")

PHOTO_FORMATS: tuple[Format, ...] = (
    JPEG, PNG, GIF, PSD, TIFF, XCF, TGA, MIFF, ICO, DCM, XPM, PCX, BMP, HEIC, AVIF, WEBP,
)  # fmt: skip
VIDEO_FORMATS: tuple[Format, ...] = (MP4, MOV, AVI, WMV, THREEGP)
ALL_FORMATS: tuple[Format, ...] = PHOTO_FORMATS + VIDEO_FORMATS

ACCEPTED_PHOTO_EXTENSIONS = (
    "jpeg", "jpg", "png", "gif", "psd", "tiff", "xcf", "tga", "miff", "ico", "dcm", "xpm", "pcx",
    "bmp", "heic", "heif", "avif", "webp",
)  # fmt: skip
"""The photo types the bank accepts: StopNCII's list, then what phones and browsers make."""
ACCEPTED_VIDEO_EXTENSIONS = ("mp4", "mov", "avi", "qt", "wmv", "3gp")
"""The video types the bank accepts: StopNCII's list, then 3GP (older phones)."""

# Formats with no magic number: recognised by extension only.
_EXTENSION_ONLY = {ext: fmt for fmt in (TGA,) for ext in fmt.extensions}

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# QuickTime top-level atoms that may open a .mov file older than the ftyp box.
_QT_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def accepted_formats_text() -> str:
    """accepted_formats_text returns the accepted types as one line, for error messages."""
    return (
        f"photos: {', '.join(ACCEPTED_PHOTO_EXTENSIONS)}; "
        f"videos: {', '.join(ACCEPTED_VIDEO_EXTENSIONS)}"
    )


def _sniff(head: bytes) -> Format | None:
    if head[128:132] == b"DICM":  # before all others: the preamble is free-form
        return DCM
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head.startswith(b"8BPS\x00\x01"):
        return PSD
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return TIFF
    if head.startswith(b"gimp xcf "):
        return XCF
    if head.startswith(b"id=ImageMagick"):
        return MIFF
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return ICO
    if head.lstrip()[:9] == b"/* XPM */":
        return XPM
    if head[:2] == b"BM" and len(head) >= 18:
        return BMP
    if len(head) >= 4 and head[0] == 0x0A and head[1] in (0, 2, 3, 4, 5) and head[2] == 1:
        return PCX
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:16] == _ASF_GUID:
        return WMV
    brands = sniff_brands(head)
    if brands is not None:
        return _iso_format(brands)
    if head[4:8] in _QT_ATOMS:
        return MOV
    return None


def _iso_format(brands: tuple[bytes, ...]) -> Format:
    """The format an ``ftyp`` box names: a photo brand wins, else the movie family."""
    major = brands[0]
    if major in AVIF_BRANDS:
        return AVIF
    if major in HEIF_BRANDS:
        return HEIC
    if any(b in AVIF_BRANDS for b in brands):
        return AVIF
    if any(b in HEIF_BRANDS for b in brands) and major not in (b"isom", b"mp41", b"mp42"):
        return HEIC
    if major == b"qt  ":
        return MOV
    if major.startswith(b"3g"):
        return THREEGP
    return MP4


def _check_video_tracks(path: Path, fmt: Format) -> None:
    """Raise UnsupportedFormat unless the movie-family file at ``path`` has a video track."""
    with open(path, "rb") as f:
        handlers = track_handlers(f)
    if handlers is not None and "vide" in handlers:
        return
    if handlers is None:
        why = f"{fmt.name.upper()}-family file without a movie header (truncated, or not a video)"
    elif handlers and all(h == "soun" for h in handlers):
        why = f"audio only: this {fmt.name.upper()}-family file has no video track"
    else:
        kinds = ", ".join(sorted(set(handlers))) or "none"
        why = f"no video track in this {fmt.name.upper()}-family file (tracks: {kinds})"
    raise UnsupportedFormat(f"{why}; accepted: {accepted_formats_text()}")


def sniff_format(head: bytes) -> Format | None:
    """sniff_format returns the format that a file's first bytes name, or None.

    It reads nothing more: a movie-family file's tracks are not checked and TGA is
    never recognised. For files on disk, use :func:`detect_format`.
    """
    return _sniff(head)


def read_head(path: Path) -> bytes:
    """read_head returns the first HEAD_SIZE bytes of the file at ``path``.

    It raises EmptyFile for a zero-byte file; OSErrors pass through.
    """
    with open(path, "rb") as f:
        head = f.read(HEAD_SIZE)
    if not head:
        raise EmptyFile("empty file (0 bytes)")
    return head


def detect_format(path: Path, head: bytes) -> Format:
    """detect_format returns the accepted format of a file from its first bytes ``head``.

    Only formats without a magic number (TGA) are recognised by ``path``'s extension;
    a movie-family file is read further, to find a video track. It raises
    UnsupportedFormat, naming the accepted formats, for anything else (audio-only
    MP4/M4A files included).
    """
    fmt = _sniff(head)
    if fmt in (MP4, MOV, THREEGP):
        _check_video_tracks(path, fmt)
    if fmt is not None:
        return fmt
    ext = path.suffix.lower().lstrip(".")
    if ext in _EXTENSION_ONLY:
        return _EXTENSION_ONLY[ext]
    if ext in ACCEPTED_PHOTO_EXTENSIONS or ext in ACCEPTED_VIDEO_EXTENSIONS:
        why = f"named .{ext} but its content is not {ext.upper()} (corrupt or mislabelled)"
    elif ext:
        why = f".{ext} files are not accepted"
    else:
        why = "content not recognised"
    raise UnsupportedFormat(f"{why}; accepted: {accepted_formats_text()}")
