"""Errors raised by :mod:`hashfed.hasher`, one class per condition.

Every error carries a one-line, actionable message; :func:`hashfed.hasher.hash_paths`
turns each into a :class:`~hashfed.hasher.batch.FileError` for that file and goes on
with the rest of the batch.
"""

from __future__ import annotations


class HasherError(Exception):
    """Base class: a file could not be hashed."""


class UnsupportedFormat(HasherError):
    """The file's content (or, for TGA, its extension) is not an accepted format."""


class EmptyFile(HasherError):
    """The file has zero bytes."""


class CorruptImage(HasherError):
    """The file claims an accepted photo format but cannot be decoded (truncated or corrupt)."""


class TooManyPixels(HasherError):
    """The image header declares more pixels than the limit (a decompression bomb)."""


class MissingDecoder(HasherError):
    """The library that reads this format is not installed."""


class UnreadableFile(HasherError):
    """The file cannot be opened or read (permissions, missing, symlink loop, I/O error)."""
