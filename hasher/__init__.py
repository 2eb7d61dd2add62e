"""hashfed.hasher: PDQ for photos and MD5 for videos, on the device that holds them.

Library entry points:

- :func:`hash_paths` hashes files and directories (recursively, on all cores) and
  yields a :class:`Result` per hash or a :class:`FileError` per failed file.
- :class:`PdqSignal` and :class:`Md5Signal` are the signal types (python-threatexchange
  style: ``get_name``, ``validate``, ``compare``, ``get_examples``, ``hash_file``).
- :func:`detect_format` recognises the accepted formats from file content.

This package imports nothing from the node, sync or signing packages.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hashfed.hasher.batch import (
        EXIF_ROTATED,
        STORED,
        FileError,
        Outcome,
        Result,
        hash_path,
        hash_paths,
        iter_files,
    )
    from hashfed.hasher.decode import BACKGROUND, MAX_PIXELS, Decoded, decode, to_rgb
    from hashfed.hasher.errors import (
        CorruptImage,
        EmptyFile,
        HasherError,
        MissingDecoder,
        TooManyPixels,
        UnreadableFile,
        UnsupportedFormat,
    )
    from hashfed.hasher.formats import (
        ACCEPTED_PHOTO_EXTENSIONS,
        ACCEPTED_VIDEO_EXTENSIONS,
        ALL_FORMATS,
        PHOTO_FORMATS,
        VIDEO_FORMATS,
        Format,
        Kind,
        accepted_formats_text,
        detect_format,
    )
    from hashfed.hasher.md5 import MD5_NAME, Md5Signal, md5_file
    from hashfed.hasher.pdq import (
        DIHEDRAL_NAMES,
        PDQ_MATCH_THRESHOLD,
        PDQ_NAME,
        PDQ_QUALITY_THRESHOLD,
        PdqSignal,
        pdq_dihedral_from_rgb,
        pdq_from_rgb,
    )
    from hashfed.hasher.signal import Comparison, SignalType

# Each name below lives in a submodule that is imported on first use: the decoders
# pull in Pillow and numpy, which a node that only serves or syncs never needs (and
# whose import would cost 'hashfed serve' a good part of its start-up).
_HOMES = {
    "batch": ("EXIF_ROTATED", "STORED", "FileError", "Outcome", "Result", "hash_path",
              "hash_paths", "iter_files"),
    "decode": ("BACKGROUND", "MAX_PIXELS", "Decoded", "decode", "to_rgb"),
    "errors": ("CorruptImage", "EmptyFile", "HasherError", "MissingDecoder", "TooManyPixels",
               "UnreadableFile", "UnsupportedFormat"),
    "formats": ("ACCEPTED_PHOTO_EXTENSIONS", "ACCEPTED_VIDEO_EXTENSIONS", "ALL_FORMATS",
                "PHOTO_FORMATS", "VIDEO_FORMATS", "Format", "Kind", "accepted_formats_text",
                "detect_format"),
    "md5": ("MD5_NAME", "Md5Signal", "md5_file"),
    "pdq": ("DIHEDRAL_NAMES", "PDQ_MATCH_THRESHOLD", "PDQ_NAME", "PDQ_QUALITY_THRESHOLD",
            "PdqSignal", "pdq_dihedral_from_rgb", "pdq_from_rgb"),
    "signal": ("Comparison", "SignalType"),
}  # fmt: skip
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Imports the submodule that defines name, the first time name is asked for."""
    if name == "SIGNAL_TYPES":
        from hashfed.hasher.md5 import Md5Signal
        from hashfed.hasher.pdq import PdqSignal

        value: Any = {s.get_name(): s for s in (PdqSignal, Md5Signal)}
    elif name in _HOME_OF:
        value = getattr(importlib.import_module(f"hashfed.hasher.{_HOME_OF[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """This package: its ``decode`` is the function, as when it imported everything at
    once, even after the submodule of that name is imported (which would otherwise
    bind the submodule over it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "decode" and isinstance(value, types.ModuleType):
            return  # the submodule stays in sys.modules; __getattr__ binds the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


SIGNAL_TYPES: dict[str, type[SignalType]]
"""The device's signal types by their frozen name (a kind of hashfed.protocol.kinds each)."""

__all__ = [
    "ACCEPTED_PHOTO_EXTENSIONS",
    "ACCEPTED_VIDEO_EXTENSIONS",
    "ALL_FORMATS",
    "BACKGROUND",
    "DIHEDRAL_NAMES",
    "EXIF_ROTATED",
    "MAX_PIXELS",
    "MD5_NAME",
    "PDQ_MATCH_THRESHOLD",
    "PDQ_NAME",
    "PDQ_QUALITY_THRESHOLD",
    "PHOTO_FORMATS",
    "SIGNAL_TYPES",
    "STORED",
    "VIDEO_FORMATS",
    "Comparison",
    "CorruptImage",
    "Decoded",
    "EmptyFile",
    "FileError",
    "Format",
    "HasherError",
    "Kind",
    "Md5Signal",
    "MissingDecoder",
    "Outcome",
    "PdqSignal",
    "Result",
    "SignalType",
    "TooManyPixels",
    "UnreadableFile",
    "UnsupportedFormat",
    "accepted_formats_text",
    "decode",
    "detect_format",
    "hash_path",
    "hash_paths",
    "iter_files",
    "md5_file",
    "pdq_dihedral_from_rgb",
    "pdq_from_rgb",
    "to_rgb",
]
