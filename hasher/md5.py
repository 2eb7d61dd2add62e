"""MD5 of a file's bytes: how the bank identifies videos (mp4, mov, avi, qt, wmv).

The file is streamed in :data:`CHUNK_SIZE` chunks, so memory stays constant
whatever the file's size. Hashes are 32 lowercase hex characters and match only
when equal.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from hashfed.hasher.signal import Comparison, SignalType
from hashfed.protocol.kinds import MD5

MD5_NAME = str(MD5.name)
"""The frozen name of the MD5 kind (hashfed.protocol.kinds)."""

CHUNK_SIZE = 1 << 20
"""Bytes read per chunk while hashing (1 MiB)."""

_MD5_RE = re.compile(f"[0-9a-f]{{{MD5.hex_length}}}")


def md5_file(path: Path | str, chunk_size: int = CHUNK_SIZE) -> str:
    """md5_file returns the lowercase hex MD5 of the file's bytes, read in constant memory."""
    digest = hashlib.md5(usedforsecurity=False)
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


class Md5Signal(SignalType):
    """MD5 of the file bytes, for videos."""

    @classmethod
    def get_name(cls) -> str:
        return MD5_NAME

    @classmethod
    def validate(cls, signal: str) -> str:
        """validate strips and lowercases ``signal``; it must then be 32 hex characters."""
        canonical = signal.strip().lower()
        if not _MD5_RE.fullmatch(canonical):
            raise ValueError(f"not an MD5 hash: {signal!r} (expected 32 hex characters)")
        return canonical

    @classmethod
    def compare(cls, a: str, b: str) -> Comparison:
        return Comparison.exact(cls.validate(a), cls.validate(b))

    @classmethod
    def get_examples(cls) -> list[str]:
        # chair-19-sd-bar.mp4 from the shared vectors, and the MD5 of no bytes.
        return ["0a21c8f85a55a9e276ffc2c53f6887c4", "d41d8cd98f00b204e9800998ecf8427e"]

    @classmethod
    def hash_file(cls, path: Path) -> str:
        return md5_file(path)
