"""Decode an accepted photo into RGB pixels, exactly as partners' pipelines see them.

Readers:

- **Pillow** for jpeg, png, gif, psd, tiff, tga, ico, xpm, pcx and bmp. Pillow is
  only ever asked to decode the format :func:`~hashfed.hasher.formats.detect_format`
  found. An animated GIF gives its first frame, a layered PSD its composite (the
  merged image PSD files carry), an ICO its largest image.
- **pillow-heif** for heic/heif, and Pillow's own AVIF plugin for avif. Both give
  the primary image with its ``irot``/``imir`` transforms applied, as a phone shows
  it; no EXIF orientation is applied on top (pillow-heif resets it to 1, and
  Pillow's AVIF plugin records ``irot``/``imir`` as the EXIF orientation, which is
  applied once).
- **Our own XCF reader** (:mod:`hashfed.hasher.xcf`) for xcf from every GIMP up to
  2.10: layers composited as GIMP 2.10 does (linear or perceptual per layer mode),
  flattened onto white, which is what GIMP shows and exports.
- **ImageMagick** through Wand (Debian ``libmagickwand-6.q16-6``) for miff.
- **pydicom** for dcm (first frame; YCbCr becomes RGB). Compressed transfer syntaxes
  decode where a pydicom decoder for them is installed (Pillow covers JPEG baseline
  and JPEG 2000, pydicom itself RLE; ``hashfed[dicom]`` adds pylibjpeg for JPEG
  lossless and JPEG-LS); otherwise the file gets one line naming what is missing.

Pixels become 8-bit RGB by :func:`to_rgb`: palette, greyscale, CMYK (Pillow undoes
Adobe's inverted CMYK), YCbCr, LAB and HSV convert through Pillow; transparency is
composited onto white (:data:`BACKGROUND`); 16-bit and float greyscale are scaled
to 0..255, not clipped. RGB images are passed through untouched, so PDQ hashes equal
python-threatexchange's ``pdq_from_file`` byte for byte.

Decompression bombs are refused before any pixel is decoded: the header's pixel
count must be at most :data:`MAX_PIXELS`.

Decoders talk: Python warnings (Pillow, pydicom) and C libraries writing straight
to the process's stderr (libtiff, libjpeg). :func:`decode` silences both for the
duration of one file, so a batch prints one line per file and nothing else; what
went wrong reaches the caller as that file's exception.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from hashfed.hasher import xcf
from hashfed.hasher.errors import CorruptImage, MissingDecoder, TooManyPixels
from hashfed.hasher.formats import Format
from PIL import Image, ImageOps, UnidentifiedImageError, features

MAX_PIXELS = 200_000_000
"""The most pixels (width × height) an image may declare: 200 megapixels."""

BACKGROUND = (255, 255, 255)
"""The colour transparent pixels are composited onto (white)."""

ORIENTATION_TAG = 0x0112
"""The EXIF orientation tag; values 2..8 ask a viewer to rotate or flip."""

# Pillow's own bomb guard uses this; set it explicitly so it agrees with ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

RGBArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Decoded:
    """A decoded photo: stored pixels, and the EXIF-applied pixels when they differ."""

    rgb: RGBArray
    """Height × width × 3, uint8: the stored pixels, EXIF orientation ignored."""
    orientation: int | None
    """The EXIF orientation tag when it asks for a transform (2..8), else None."""
    rotated: RGBArray | None
    """The pixels as a viewer shows them (EXIF applied), when ``orientation`` is set."""


def check_pixels(width: int, height: int, frames: int = 1) -> None:
    """check_pixels raises TooManyPixels if an image declares more than MAX_PIXELS pixels."""
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image header declares an empty size {width}×{height}")
    total = width * height * max(frames, 1)
    if total > MAX_PIXELS:
        raise TooManyPixels(
            f"image declares {width}×{height} pixels ({total / 1e6:.0f} megapixels), over "
            f"the {_LIMIT_TEXT} (possible decompression bomb)"
        )


_LIMIT_TEXT = f"{MAX_PIXELS / 1e6:.0f}-megapixel limit"


def _scale_to_uint8(a: npt.NDArray[Any], full_scale: float | None) -> npt.NDArray[np.uint8]:
    """Scale integer or float samples to 0..255 linearly rather than clipping them."""
    a = a.astype(np.float64, copy=False)
    if full_scale is None:
        lo, hi = float(np.nanmin(a)) if a.size else 0.0, float(np.nanmax(a)) if a.size else 0.0
        if lo >= 0.0 and hi <= 1.0 and a.dtype.kind == "f":
            full_scale = 1.0
        elif lo >= 0.0 and hi <= 255.0:
            full_scale = 255.0
        elif lo >= 0.0 and hi <= 65535.0:
            full_scale = 65535.0
        else:
            a = a - lo
            full_scale = (hi - lo) or 1.0
    out = np.rint(np.nan_to_num(a) * (255.0 / full_scale))
    return np.clip(out, 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """to_rgb returns ``img`` as 8-bit RGB, with the mode handled correctly.

    RGB images come back unchanged (the same object).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return rgba.convert("RGB")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(img), 65535.0)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("I", "F"):
        gray = _scale_to_uint8(np.asarray(img), None)
        return Image.fromarray(gray).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise CorruptImage(f"cannot convert image mode {mode} to RGB: {e}") from e


def rgb_array(img: Image.Image) -> RGBArray:
    """rgb_array returns the image's pixels as a contiguous height × width × 3 uint8 array."""
    arr = np.asarray(to_rgb(img))
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise CorruptImage(f"decoded to an unexpected pixel layout {arr.shape} {arr.dtype}")
    return arr


def _orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(ORIENTATION_TAG)
    except Exception:  # a broken EXIF block must not stop the stored-pixel hash
        return None
    return value if isinstance(value, int) and 2 <= value <= 8 else None


@contextmanager
def _bomb_guard() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


@contextmanager
def _quiet() -> Iterator[None]:
    """Drop Python warnings and anything C libraries write to file descriptor 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to protect
        saved = -1
    devnull = os.open(os.devnull, os.O_WRONLY) if saved >= 0 else -1
    try:
        if saved >= 0:
            os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if saved >= 0:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _bomb(e: Exception) -> TooManyPixels:
    return TooManyPixels(
        f"image declares more pixels than the {_LIMIT_TEXT} (possible decompression bomb)"
    )


def _decode_pillow(path: Path, fmt: Format, exif: bool) -> Decoded:
    plugin = fmt.pillow_format.lower()
    if plugin in ("avif", "webp") and not features.check(plugin):
        raise MissingDecoder(
            f"this Pillow was built without {fmt.name.upper()} support: "
            "pip install --upgrade Pillow (wheels from 11.3 on include it)"
        )
    try:
        with _bomb_guard(), Image.open(path, formats=[fmt.pillow_format]) as img:
            check_pixels(*img.size)
            img.load()  # as opened: first frame (GIF), composite (PSD), largest (ICO)
            if fmt.pillow_format == "AVIF":  # irot/imir, recorded as the EXIF orientation
                return Decoded(rgb_array(ImageOps.exif_transpose(img)), None, None)
            stored = rgb_array(img)
            orientation = _orientation(img) if exif else None
            rotated = None
            if orientation is not None:
                rotated = rgb_array(ImageOps.exif_transpose(img))
            return Decoded(stored, orientation, rotated)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(e) from e
    except UnidentifiedImageError as e:
        raise CorruptImage(f"not a readable {fmt.name.upper()} file (corrupt?)") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as e:
        if isinstance(e, PermissionError | FileNotFoundError):
            raise
        raise CorruptImage(f"cannot decode {fmt.name.upper()}: {e} (truncated or corrupt?)") from e


def _decode_heif(path: Path, fmt: Format) -> Decoded:
    try:
        import pillow_heif
    except ImportError as e:
        raise MissingDecoder(
            f"HEIC/HEIF photos are read with pillow-heif: pip install pillow-heif ({e})"
        ) from e
    try:
        with _bomb_guard():
            heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
            check_pixels(*heif.size)
            img = heif.to_pillow()  # the primary image, irot/imir applied by libheif
            return Decoded(rgb_array(img), None, None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(e) from e
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as e:
        if isinstance(e, PermissionError | FileNotFoundError):
            raise
        raise CorruptImage(f"cannot decode {fmt.name.upper()}: {e} (truncated or corrupt?)") from e


def _decode_xcf(path: Path) -> Decoded:
    data = path.read_bytes()
    _, width, height = xcf.read_header(data)
    check_pixels(width, height)
    try:
        image = xcf.parse(data, max_pixels=MAX_PIXELS)
    except MemoryError:
        raise
    except (ValueError, IndexError, struct.error) as e:
        raise CorruptImage(f"cannot decode XCF: {e} (truncated or corrupt?)") from e
    return Decoded(np.ascontiguousarray(xcf.composite(image)), None, None)


def _decode_wand(path: Path, fmt: Format) -> Decoded:
    try:
        from wand.color import Color
        from wand.exceptions import WandException
        from wand.image import Image as WandImage
    except ImportError as e:
        raise MissingDecoder(
            f"{fmt.name.upper()} files are read with ImageMagick: pip install Wand and "
            f"apt-get install libmagickwand-6.q16-6 ({e})"
        ) from e
    data = path.read_bytes()
    try:
        with WandImage.ping(blob=data, format=fmt.name) as probe:
            check_pixels(probe.width, probe.height, len(probe.sequence))
        with (
            WandImage(blob=data, format=fmt.name) as img,
            WandImage(image=img.sequence[0]) as first,  # first frame of a MIFF
        ):
            return Decoded(_wand_rgb(first, WandImage, Color), None, None)
    except WandException as e:
        raise CorruptImage(f"cannot decode {fmt.name.upper()}: {e} (truncated or corrupt?)") from e


def _wand_rgb(img: Any, wand_image: Any, color: Any) -> RGBArray:
    with wand_image(image=img) as flat:
        if flat.alpha_channel:
            flat.background_color = color("white")
            flat.alpha_channel = "remove"
        flat.depth = 8
        flat.colorspace = "srgb"
        blob = flat.make_blob("rgb")
        width, height = flat.width, flat.height
    arr = np.frombuffer(blob, dtype=np.uint8)
    if arr.size != width * height * 3:
        raise CorruptImage("ImageMagick returned an unexpected number of pixels")
    return arr.reshape(height, width, 3)


def _decode_dicom(path: Path) -> Decoded:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
        from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
        from pydicom.pixels.utils import pixel_array
    except ImportError as e:
        raise MissingDecoder(f"DICOM files are read with pydicom: pip install pydicom ({e})") from e
    try:
        ds = pydicom.dcmread(path)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
        if not has_pixels and not (rows and cols):
            kind = str(ds.get("Modality", "") or ds.get("SOPClassUID", "") or "unknown")
            raise CorruptImage(f"DICOM file holds no image (a non-image object: {kind})")
        check_pixels(cols, rows, int(ds.get("NumberOfFrames", 1) or 1))
        if not has_pixels:
            raise CorruptImage("DICOM file holds no image (no pixel data element)")
        pixels = pixel_array(ds, index=0)  # the first frame; YCbCr comes back as RGB
    except (InvalidDicomError, AttributeError, ValueError, KeyError, EOFError, OSError) as e:
        if isinstance(e, PermissionError | FileNotFoundError):
            raise
        raise CorruptImage(f"cannot decode DICOM: {_first_line(e)}") from e
    except (RuntimeError, NotImplementedError) as e:  # no decoder for this transfer syntax
        raise _missing_dicom_decoder(ds, e) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        rgb = _scale_to_uint8(pixels, float(2**bits - 1))
        return Decoded(np.ascontiguousarray(rgb), None, None)
    if pixels.ndim != 2:
        raise CorruptImage(f"DICOM pixel data has an unexpected shape {pixels.shape}")
    try:
        gray = apply_voi_lut(apply_modality_lut(pixels, ds), ds)
    except (ValueError, KeyError, IndexError, TypeError):  # a broken LUT: use the raw values
        gray = pixels
    gray = _scale_to_uint8(gray - float(np.min(gray)), None)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return Decoded(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), None, None)


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _missing_dicom_decoder(ds: Any, e: BaseException) -> MissingDecoder:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    name = f"{ts.name} ({ts})" if ts is not None else "an unknown transfer syntax"
    if isinstance(e, NotImplementedError):
        return MissingDecoder(f"cannot decode DICOM pixel data in {name}: {_first_line(e)}")
    return MissingDecoder(
        f"cannot decode DICOM pixel data in {name}: no installed decoder handles it "
        "(pip install 'hashfed[dicom]' adds pylibjpeg)"
    )


def decode(path: Path, fmt: Format, *, exif: bool = True) -> Decoded:
    """decode returns the RGB pixels of the photo at ``path``, already detected as ``fmt``.

    With ``exif`` (the default) and an EXIF orientation other than 1, it also returns
    the pixels with the orientation applied. It raises CorruptImage, TooManyPixels or
    MissingDecoder; OSErrors from opening the file pass through.
    """
    with _quiet():
        if fmt.reader == "pillow":
            return _decode_pillow(path, fmt, exif)
        if fmt.reader == "heif":
            return _decode_heif(path, fmt)
        if fmt.reader == "xcf":
            return _decode_xcf(path)
        if fmt.reader == "wand":
            return _decode_wand(path, fmt)
        if fmt.reader == "pydicom":
            return _decode_dicom(path)
    raise AssertionError(f"decode called for non-photo format {fmt.name}")


def decode_bytes(data: bytes) -> RGBArray:
    """decode_bytes returns the RGB pixels of an in-memory image that Pillow can read."""
    try:
        with _quiet(), _bomb_guard(), Image.open(io.BytesIO(data)) as img:
            check_pixels(*img.size)
            img.load()
            return rgb_array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb(e) from e
