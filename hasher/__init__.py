"""hashfed.hasher: PDQ for photos and MD5 for videos, on the device that holds them.

Library entry points:

- :func:`hash_paths` hashes files and directories (recursively, on all cores) and
  yields a :class:`Result` per hash or a :class:`FileError` per failed file.
- :class:`PdqSignal` and :class:`Md5Signal` are the signal types (python-threatexchange
  style: ``get_name``, ``validate``, ``compare``, ``get_examples``, ``hash_file``).
- :func:`detect_format` recognises the accepted formats from file content.

This package imports nothing from the node, sync or signing packages.
"""

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

SIGNAL_TYPES: dict[str, type[SignalType]] = {s.get_name(): s for s in (PdqSignal, Md5Signal)}
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
