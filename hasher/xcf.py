"""Read GIMP's XCF files and composite their layers as GIMP 2.10 shows them.

An XCF file holds layers, not a flattened picture, so hashing one means
compositing it. ImageMagick 6 reads only old-format files; this reader handles
what GIMP 2.10 writes (versions up to v013: 64-bit offsets, zlib tiles, 8/16/32-bit
integer and half/float/double precision, linear or perceptual) and older files
(RLE tiles, 32-bit offsets).

The layout, from GIMP's own description of the format (``devel-docs/xcf.txt``):
all numbers big-endian; a header ``gimp xcf vNNN\\0`` (``file`` for version 0),
width, height, base type, precision (from version 4), then properties (type,
length, payload; type 0 ends the list), then offsets of the layers (top first)
and of the channels, each list ending in 0. Offsets are 32-bit before version 11
and 64-bit from it. A layer is width, height, type, name, properties, then the
offsets of its pixel hierarchy and of its mask. A hierarchy is width, height,
bytes per pixel and the offset of its first level; a level is width, height and
the offsets of its 64×64 tiles, row by row. A tile is raw, RLE-compressed one
byte plane at a time, or zlib-compressed with its pixels interleaved.

Compositing follows GIMP 2.10: each layer's opacity (and applied mask) scales its
alpha; each layer blends and composites in the colour space (linear or perceptual)
and with the composite mode (union, clip to backdrop, clip to layer, intersection)
that the file records for it, GIMP's defaults where it records none; the result is
flattened onto white. Normal,
multiply, screen, addition, subtract, difference, darken, lighten, overlay and
their legacy forms are blended as GIMP does; any other mode is composited as
normal, which is close for a hash but not exact. Layer groups are composited as
their visible children.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from hashfed.hasher.errors import CorruptImage

FloatArray = npt.NDArray[np.float32]

TILE = 64
MAX_LAYERS = 1000

_PROP_END, _PROP_COLORMAP, _PROP_OPACITY, _PROP_MODE, _PROP_VISIBLE = 0, 1, 6, 7, 8
_PROP_APPLY_MASK, _PROP_OFFSETS, _PROP_COMPRESSION = 11, 15, 17
_PROP_GROUP_ITEM, _PROP_FLOAT_OPACITY = 29, 33
_PROP_COMPOSITE_MODE, _PROP_COMPOSITE_SPACE, _PROP_BLEND_SPACE = 35, 36, 37
_UNION, _CLIP_TO_BACKDROP, _CLIP_TO_LAYER, _INTERSECTION = 1, 2, 3, 4

# GimpPrecision from version 7: (numpy dtype, linear?)
_PRECISIONS = {
    100: (">u1", True), 150: (">u1", False), 200: (">u2", True), 250: (">u2", False),
    300: (">u4", True), 350: (">u4", False), 500: (">f2", True), 550: (">f2", False),
    600: (">f4", True), 650: (">f4", False), 700: (">f8", True), 750: (">f8", False),
}  # fmt: skip
# Versions 4-6 numbered them 0..5 (all perceptual except the float ones).
_OLD_PRECISIONS = {0: 150, 1: 250, 2: 350, 3: 550, 4: 600, 5: 700}

# Layer types: (channels, has alpha, indexed)
_TYPES = {0: (3, False, False), 1: (4, True, False), 2: (1, False, False),
          3: (2, True, False), 4: (1, False, True), 5: (2, True, True)}  # fmt: skip

_LEGACY_MODES = set(range(23))
_NORMAL, _MULTIPLY, _SCREEN, _OVERLAY = {0, 28}, {3, 30}, {4, 31}, {5, 23}
_DIFFERENCE, _ADDITION, _SUBTRACT = {6, 32}, {7, 33}, {8, 34}
_DARKEN, _LIGHTEN = {9, 35}, {10, 36}
_PASS_THROUGH = 61
# Newer modes that GIMP 2.10 blends in perceptual values by default.
_PERCEPTUAL_BLEND = {23, 31, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptImage("XCF file is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def offset(self, wide: bool) -> int:
        return int(struct.unpack(">Q", self.take(8))[0]) if wide else self.u32()

    def string(self) -> bytes:
        return self.take(self.u32())

    def properties(self) -> dict[int, bytes]:
        props: dict[int, bytes] = {}
        for _ in range(10_000):
            kind, length = self.u32(), self.u32()
            if kind == _PROP_END:
                return props
            props[kind] = self.take(length)
        raise CorruptImage("XCF file has an endless property list")


@dataclass
class Layer:
    """One layer's pixels (float RGBA, linear or perceptual as stored) and how it blends."""

    rgba: FloatArray
    linear: bool
    x: int
    y: int
    mode: int
    opacity: float
    visible: bool
    blend_space: int
    composite_space: int
    composite_mode: int
    is_group: bool = False
    children: list[Layer] = field(default_factory=list)


@dataclass
class XcfImage:
    """A parsed XCF file: its canvas size and its layers, bottom first."""

    width: int
    height: int
    layers: list[Layer]


def read_header(data: bytes) -> tuple[int, int, int]:
    """read_header returns (version, width, height) of an XCF file."""
    if not data.startswith(b"gimp xcf ") or len(data) < 26:
        raise CorruptImage("not an XCF file (bad header)")
    tag = data[9:13]
    if tag == b"file":
        version = 0
    elif tag[:1] == b"v" and tag[1:].isdigit():
        version = int(tag[1:])
    else:
        raise CorruptImage(f"unknown XCF version {tag!r}")
    width, height = struct.unpack(">II", data[14:22])
    return version, width, height


def parse(data: bytes, *, max_pixels: int) -> XcfImage:
    """parse returns the layers of the XCF file ``data``; it raises CorruptImage."""
    version, width, height = read_header(data)
    r = _Reader(data)
    r.pos = 26
    precision = 150
    if version >= 4:
        code = r.u32()
        precision = code if version >= 7 else _OLD_PRECISIONS.get(code, -1)
    if precision not in _PRECISIONS:
        raise CorruptImage(f"XCF file has an unknown precision {precision}")
    dtype, linear = _PRECISIONS[precision]
    props = r.properties()
    compression = props.get(_PROP_COMPRESSION, b"\x00")[0]
    colormap = _colormap(props.get(_PROP_COLORMAP))
    wide = version >= 11
    offsets = []
    for _ in range(MAX_LAYERS + 1):
        off = r.offset(wide)
        if off == 0:
            break
        offsets.append(off)
    else:
        raise CorruptImage(f"XCF file has more than {MAX_LAYERS} layers")
    ctx = _Context(data, wide, compression, np.dtype(dtype), linear, colormap, max_pixels)
    flat = [ctx.layer(off) for off in offsets]  # top first, groups before their children
    top_level = 0
    for i, (path, layer) in enumerate(flat):
        if not path:  # top-level items carry no path: their index, counted from the top
            flat[i] = ((top_level,), layer)
            top_level += 1
    return XcfImage(width, height, _tree(flat[::-1]))


@dataclass
class _Context:
    data: bytes
    wide: bool
    compression: int
    dtype: np.dtype[np.generic]
    linear: bool
    colormap: FloatArray | None
    max_pixels: int
    pixels_seen: int = 0

    def layer(self, offset: int) -> tuple[tuple[int, ...], Layer]:
        r = _Reader(self.data)
        r.pos = offset
        width, height, kind = r.u32(), r.u32(), r.u32()
        r.string()  # name
        props = r.properties()
        hierarchy, mask_offset = r.offset(self.wide), r.offset(self.wide)
        if kind not in _TYPES:
            raise CorruptImage(f"XCF layer has an unknown type {kind}")
        self.pixels_seen += width * height
        if self.pixels_seen > self.max_pixels:
            raise CorruptImage("XCF layers hold more pixels than the limit")
        channels, _, indexed = _TYPES[kind]
        is_group = _PROP_GROUP_ITEM in props
        if is_group or width == 0 or height == 0:
            raw = np.zeros((max(height, 0), max(width, 0), channels), dtype=np.float32)
        else:
            raw = self.pixels(hierarchy, width, height, channels)
        rgba = self.to_rgba(raw, kind)
        if (
            _PROP_APPLY_MASK in props
            and struct.unpack(">I", props[_PROP_APPLY_MASK])[0]
            and mask_offset
        ):
            rgba[..., 3] *= self.mask(mask_offset, width, height)
        x, y = struct.unpack(">ii", props.get(_PROP_OFFSETS, bytes(8)))
        opacity = struct.unpack(">I", props.get(_PROP_OPACITY, b"\x00\x00\x00\xff"))[0] / 255
        if _PROP_FLOAT_OPACITY in props:
            opacity = struct.unpack(">f", props[_PROP_FLOAT_OPACITY])[0]
        mode = struct.unpack(">I", props.get(_PROP_MODE, bytes(4)))[0]
        visible = struct.unpack(">I", props.get(_PROP_VISIBLE, b"\x00\x00\x00\x01"))[0] != 0
        blend = abs(struct.unpack(">i", props.get(_PROP_BLEND_SPACE, bytes(4)))[0])
        composite = abs(struct.unpack(">i", props.get(_PROP_COMPOSITE_SPACE, bytes(4)))[0])
        composite_mode = abs(struct.unpack(">i", props.get(_PROP_COMPOSITE_MODE, bytes(4)))[0])
        path = props.get(30, b"")
        item_path = struct.unpack(f">{len(path) // 4}I", path) if path else ()
        layer = Layer(rgba, self.linear and not indexed, x, y, mode, float(opacity), visible,
                      blend, composite, composite_mode, is_group)  # fmt: skip
        return item_path, layer

    def mask(self, offset: int, width: int, height: int) -> FloatArray:
        r = _Reader(self.data)
        r.pos = offset
        mw, mh = r.u32(), r.u32()
        r.string()
        r.properties()
        hierarchy = r.offset(self.wide)
        if (mw, mh) != (width, height):
            raise CorruptImage("XCF layer mask does not match its layer")
        gray = self.pixels(hierarchy, width, height, 1)[..., 0]
        return _unit(gray, self.dtype)

    def pixels(self, offset: int, width: int, height: int, channels: int) -> FloatArray:
        r = _Reader(self.data)
        r.pos = offset
        hw, hh, bpp = r.u32(), r.u32(), r.u32()
        size = self.dtype.itemsize
        if (hw, hh) != (width, height) or bpp != channels * size:
            raise CorruptImage(f"XCF layer pixels have {bpp} bytes, not {channels}×{size}")
        r.pos = r.offset(self.wide)
        lw, lh = r.u32(), r.u32()
        if (lw, lh) != (width, height):
            raise CorruptImage("XCF level size does not match its layer")
        cols, rows = -(-width // TILE), -(-height // TILE)
        tiles = [r.offset(self.wide) for _ in range(cols * rows)]
        end_marker = r.offset(self.wide)
        out = np.zeros((height, width, channels), dtype=self.dtype)
        for i, start in enumerate(tiles):
            ty, tx = divmod(i, cols)
            th, tw = min(TILE, height - ty * TILE), min(TILE, width - tx * TILE)
            stop = tiles[i + 1] if i + 1 < len(tiles) else (end_marker or len(self.data))
            raw = self.tile(start, stop, tw * th, bpp)
            tile = np.frombuffer(raw, dtype=self.dtype).reshape(th, tw, channels)
            out[ty * TILE : ty * TILE + th, tx * TILE : tx * TILE + tw] = tile
        return out.astype(np.float32)

    def tile(self, start: int, stop: int, pixels: int, bpp: int) -> bytes:
        want = pixels * bpp
        if self.compression == 0:
            raw = self.data[start : start + want]
        elif self.compression == 1:
            raw = _unrle(self.data, start, pixels, bpp)
        elif self.compression == 2:
            try:
                raw = zlib.decompressobj().decompress(self.data[start : max(stop, start)], want)
            except zlib.error as e:
                raise CorruptImage(f"XCF tile does not inflate: {e}") from e
        else:
            raise CorruptImage(f"XCF file uses an unknown compression {self.compression}")
        if len(raw) != want:
            raise CorruptImage("XCF tile is truncated")
        return raw

    def to_rgba(self, raw: FloatArray, kind: int) -> FloatArray:
        channels, alpha, indexed = _TYPES[kind]
        h, w = raw.shape[:2]
        out = np.ones((h, w, 4), dtype=np.float32)
        if indexed:
            if self.colormap is None:
                raise CorruptImage("indexed XCF file without a colour map")
            index = np.clip(raw[..., 0].astype(np.int64), 0, len(self.colormap) - 1)
            out[..., :3] = self.colormap[index]
            if alpha:
                out[..., 3] = raw[..., 1] / 255
            return out
        values = _unit(raw, self.dtype)
        if channels >= 3:
            out[..., :3] = values[..., :3]
        else:
            out[..., :3] = values[..., :1]
        if alpha:
            out[..., 3] = values[..., -1]
        return out


def _colormap(payload: bytes | None) -> FloatArray | None:
    if payload is None or len(payload) < 4:
        return None
    n = struct.unpack(">I", payload[:4])[0]
    rgb = np.frombuffer(payload[4 : 4 + 3 * n], dtype=np.uint8)
    if len(rgb) < 3:
        return None
    return (rgb[: (len(rgb) // 3) * 3].reshape(-1, 3) / np.float32(255)).astype(np.float32)


def _unit(raw: FloatArray, dtype: np.dtype[np.generic]) -> FloatArray:
    if dtype.kind == "u":
        return (raw / np.float32(2 ** (8 * dtype.itemsize) - 1)).astype(np.float32)
    return np.clip(np.nan_to_num(raw), 0.0, 1.0).astype(np.float32)


def _unrle(data: bytes, pos: int, pixels: int, bpp: int) -> bytes:
    """Undo XCF's RLE: each byte plane in turn, as runs and literal stretches."""
    planes = []
    for _ in range(bpp):
        plane = bytearray()
        while len(plane) < pixels:
            if pos >= len(data):
                raise CorruptImage("XCF tile is truncated")
            n = data[pos]
            pos += 1
            if n >= 128:  # a literal stretch
                if n == 128:
                    n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
                else:
                    n = 256 - n
                plane += data[pos : pos + n]
                pos += n
            else:  # a run of one value
                if n == 127:
                    n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
                else:
                    n += 1
                plane += data[pos : pos + 1] * n
                pos += 1
        if len(plane) != pixels:
            raise CorruptImage("XCF tile has a malformed RLE stream")
        planes.append(np.frombuffer(bytes(plane), dtype=np.uint8))
    return np.stack(planes, axis=1).tobytes()


def _tree(bottom_first: list[tuple[tuple[int, ...], Layer]]) -> list[Layer]:
    """Nest layers under their groups by item path; returns the top level, bottom first."""
    top: list[Layer] = []
    by_path: dict[tuple[int, ...], Layer] = {}
    for path, layer in bottom_first:
        if path:
            by_path[path] = layer
    for path, layer in bottom_first:
        parent = by_path.get(path[:-1]) if len(path) > 1 else None
        (parent.children if parent is not None and parent.is_group else top).append(layer)
    return top


def _to_linear(c: FloatArray) -> FloatArray:
    out: FloatArray = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return out


def _to_perceptual(c: FloatArray) -> FloatArray:
    c = np.clip(c, 0.0, 1.0)
    out: FloatArray = np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
    return out


def _in_space(c: FloatArray, linear: bool, want_linear: bool) -> FloatArray:
    if linear == want_linear:
        return c
    return _to_linear(c) if want_linear else _to_perceptual(c)


def _blend(mode: int, b: FloatArray, s: FloatArray) -> FloatArray:
    return np.asarray(_blend_any(mode, b, s), dtype=np.float32)


def _blend_any(mode: int, b: FloatArray, s: FloatArray) -> Any:
    if mode in _MULTIPLY:
        return b * s
    if mode in _SCREEN:
        return 1 - (1 - b) * (1 - s)
    if mode in _OVERLAY:
        return np.where(b < 0.5, 2 * b * s, 1 - 2 * (1 - b) * (1 - s))
    if mode in _DIFFERENCE:
        return np.abs(b - s)
    if mode in _ADDITION:
        return np.clip(b + s, 0, 1)
    if mode in _SUBTRACT:
        return np.clip(b - s, 0, 1)
    if mode in _DARKEN:
        return np.minimum(b, s)
    if mode in _LIGHTEN:
        return np.maximum(b, s)
    return s


def composite(image: XcfImage) -> npt.NDArray[np.uint8]:
    """composite returns the flattened image, onto white, as 8-bit perceptual RGB."""
    canvas = np.zeros((image.height, image.width, 4), dtype=np.float32)  # linear, straight
    canvas = _composite_into(canvas, image.layers)
    white = np.ones_like(canvas[..., :3])
    a = canvas[..., 3:4]
    rgb = _to_perceptual(canvas[..., :3] * a + white * (1 - a))
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _composite_into(canvas: FloatArray, layers: list[Layer]) -> FloatArray:
    for layer in layers:
        if not layer.visible:
            continue
        if layer.is_group:
            if layer.mode == _PASS_THROUGH:
                canvas = _composite_into(canvas, layer.children)
                continue
            inner = _composite_into(np.zeros_like(canvas), layer.children)
            group = Layer(
                inner, True, 0, 0, layer.mode, layer.opacity, True,
                layer.blend_space, layer.composite_space, layer.composite_mode,
            )  # fmt: skip
            canvas = _layer_onto(canvas, group)
        else:
            canvas = _layer_onto(canvas, layer)
    return canvas


def _layer_onto(canvas: FloatArray, layer: Layer) -> FloatArray:
    h, w = canvas.shape[:2]
    lh, lw = layer.rgba.shape[:2]
    x0, y0 = max(layer.x, 0), max(layer.y, 0)
    x1, y1 = min(layer.x + lw, w), min(layer.y + lh, h)
    if x0 >= x1 or y0 >= y1:
        return canvas
    src = layer.rgba[y0 - layer.y : y1 - layer.y, x0 - layer.x : x1 - layer.x]
    dst = canvas[y0:y1, x0:x1]
    legacy = layer.mode in _LEGACY_MODES
    blend_linear = _space_is_linear(
        layer.blend_space, not legacy and layer.mode not in _PERCEPTUAL_BLEND
    )
    comp_linear = _space_is_linear(layer.composite_space, not legacy)
    sa = src[..., 3:4] * layer.opacity
    da = dst[..., 3:4]
    sc = _in_space(src[..., :3], layer.linear, blend_linear)
    dc = _in_space(dst[..., :3], True, blend_linear)
    blended = _in_space(_blend(layer.mode, dc, sc), blend_linear, comp_linear)
    sc = _in_space(sc, blend_linear, comp_linear)
    dc = _in_space(dc, blend_linear, comp_linear)
    mode = layer.composite_mode or (_UNION if layer.mode in _NORMAL else _CLIP_TO_BACKDROP)
    out_a: Any
    mixed: Any
    if mode == _CLIP_TO_BACKDROP:
        out_a = da
        mixed = (blended * sa + dc * (1 - sa)) * da
    elif mode == _CLIP_TO_LAYER:
        out_a = sa
        mixed = (blended * da + sc * (1 - da)) * sa
    elif mode == _INTERSECTION:
        out_a = sa * da
        mixed = blended * out_a
    else:  # union
        out_a = sa + da * (1 - sa)
        mixed = sc * sa * (1 - da) + blended * sa * da + dc * da * (1 - sa)
    color = np.divide(mixed, out_a, out=np.zeros_like(mixed), where=out_a > 0)
    out = canvas.copy()
    out[y0:y1, x0:x1, :3] = _in_space(color, comp_linear, True)
    out[y0:y1, x0:x1, 3:4] = out_a
    return out


def _space_is_linear(space: int, default_linear: bool) -> bool:
    if space == 1:
        return True
    if space == 2:
        return False
    return default_linear
