"""Hash many files: a typed result per file, directories recursed, all cores used.

:func:`hash_paths` yields, in input order, one or more :class:`Result` per photo or
video and one :class:`FileError` per file that could not be hashed; a bad file
never stops the batch. Photos whose EXIF orientation asks for a rotation or flip
(tag 2..8) get a second result, ``variant="exif-rotated"``, hashing what a viewer
shows; the first result always hashes the stored pixels, as partners do.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hashfed.hasher.decode import decode
from hashfed.hasher.errors import HasherError, UnreadableFile
from hashfed.hasher.formats import Kind, detect_format, read_head
from hashfed.hasher.md5 import MD5_NAME, md5_file
from hashfed.hasher.pdq import PDQ_NAME, PDQ_QUALITY_THRESHOLD, pdq_dihedral_from_rgb, pdq_from_rgb

STORED = "stored"
"""Variant of a hash of the file's stored pixels (or bytes)."""
EXIF_ROTATED = "exif-rotated"
"""Variant of a hash of the pixels with the EXIF orientation applied."""

POOL_MIN_FILES = 4
"""Below this many files, hash in this process rather than start a pool."""


@dataclass(frozen=True)
class Result:
    """One hash of one file."""

    path: str
    kind: str
    """``pdq`` or ``md5`` (the signal type's frozen name)."""
    hash: str
    """Lowercase hex: 64 characters for PDQ, 32 for MD5."""
    quality: int | None
    """PDQ quality, 0..100; None for MD5."""
    variant: str
    """``stored`` or ``exif-rotated``."""
    publishable: bool
    """False when PDQ quality is below PDQ_QUALITY_THRESHOLD."""
    format: str
    """The detected format, e.g. ``jpeg``, ``mp4``."""
    dihedral: tuple[str, ...] | None = None
    """With ``dihedral=True``: the 8 hashes named in DIHEDRAL_NAMES (the first is ``hash``)."""

    @property
    def error(self) -> None:
        """Always None: a Result is a success (FileError.error is the message)."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """to_dict returns the result as a JSON-ready dictionary."""
        d = asdict(self)
        d["dihedral"] = list(self.dihedral) if self.dihedral is not None else None
        return d


@dataclass(frozen=True)
class FileError:
    """A file that could not be hashed, and why."""

    path: str
    error: str
    """A one-line, actionable message."""
    reason: str
    """The condition's class name, e.g. ``CorruptImage``, ``TooManyPixels``."""

    def to_dict(self) -> dict[str, Any]:
        """to_dict returns the error as a JSON-ready dictionary."""
        return asdict(self)


Outcome = Result | FileError

MAX_MESSAGE = 300
"""The longest error message kept for one file, in characters."""


def one_line(message: str) -> str:
    """one_line returns ``message`` on one line: whitespace runs collapsed, cut at MAX_MESSAGE."""
    flat = " ".join(message.split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 1] + "…"


def _os_error(path: Path, e: OSError) -> FileError:
    if e.errno == errno.ELOOP:
        msg = "symlink loop (too many levels of symbolic links)"
    elif isinstance(e, PermissionError):
        msg = "permission denied: cannot read this file"
    elif isinstance(e, FileNotFoundError):
        msg = "no such file (or a dangling symlink)"
    elif isinstance(e, IsADirectoryError):
        msg = "is a directory"
    else:
        msg = f"cannot read: {e.strerror or e}"
    return FileError(str(path), msg, UnreadableFile.__name__)


def hash_path(path: Path | str, *, dihedral: bool = False, exif: bool = True) -> list[Outcome]:
    """hash_path returns the results for one file, or a single FileError; it never raises."""
    path = Path(path)
    try:
        fmt = detect_format(path, read_head(path))
        if fmt.kind is Kind.MD5:
            return [Result(str(path), MD5_NAME, md5_file(path), None, STORED, True, fmt.name)]
        decoded = decode(path, fmt, exif=exif)
        variants = [(STORED, decoded.rgb)]
        if decoded.rotated is not None:
            variants.append((EXIF_ROTATED, decoded.rotated))
        results: list[Outcome] = []
        for variant, rgb in variants:
            hashes: tuple[str, ...] | None = None
            if dihedral:
                hashes, quality = pdq_dihedral_from_rgb(rgb)
                hex_hash = hashes[0]
            else:
                hex_hash, quality = pdq_from_rgb(rgb)
            results.append(
                Result(
                    str(path),
                    PDQ_NAME,
                    hex_hash,
                    quality,
                    variant,
                    quality >= PDQ_QUALITY_THRESHOLD,
                    fmt.name,
                    hashes,
                )
            )
        return results
    except HasherError as e:
        return [FileError(str(path), one_line(str(e)), type(e).__name__)]
    except OSError as e:
        return [_os_error(path, e)]
    except MemoryError:
        return [FileError(str(path), "out of memory while decoding", "MemoryError")]
    except Exception as e:  # a decoder bug must not stop the batch
        message = one_line(f"decoder failed ({type(e).__name__}): {e}")
        return [FileError(str(path), message, type(e).__name__)]


def iter_files(paths: Iterable[Path | str]) -> Iterator[Path | FileError]:
    """iter_files yields the files named by ``paths``, recursing into directories.

    Directory symlinks are followed, but a directory already on the current path
    (a symlink loop) is reported as a FileError rather than entered again. Entries
    are visited in sorted order, so output is stable.
    """
    for p in paths:
        yield from _walk(Path(p), ())


def _walk(path: Path, ancestors: tuple[tuple[int, int], ...]) -> Iterator[Path | FileError]:
    try:
        st = path.stat()
    except OSError as e:
        yield _os_error(path, e)
        return
    if not stat.S_ISDIR(st.st_mode):
        yield path
        return
    ident = (st.st_dev, st.st_ino)
    if ident in ancestors:
        yield FileError(str(path), "symlink loop: directory contains itself", "UnreadableFile")
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as e:
        yield _os_error(path, e)
        return
    for entry in entries:
        yield from _walk(Path(entry.path), (*ancestors, ident))


def _pool_context() -> Any:
    """Fork while this process has one thread (fast, no __main__ re-import); else forkserver."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(["hashfed.hasher.batch"])
    return ctx


def hash_paths(
    paths: Iterable[Path | str],
    *,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    dihedral: bool = False,
    exif: bool = True,
) -> Iterator[Outcome]:
    """hash_paths yields the results of every file under ``paths``, in input order.

    ``workers`` is the number of processes (default: every core); with one worker,
    or fewer than POOL_MIN_FILES files, hashing happens in this process. ``progress``
    is called with each file's path once it is done. ``dihedral`` adds the 8
    rotation/flip hashes to each PDQ result; ``exif=False`` skips the EXIF-rotated
    variant.
    """
    items = list(iter_files(paths))
    files = [p for p in items if isinstance(p, Path)]
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers < 1:
        raise ValueError(f"workers must be at least 1, not {n_workers}")
    job = partial(hash_path, dihedral=dihedral, exif=exif)

    def done(item: Path | FileError) -> None:
        if progress is not None:
            progress(str(item) if isinstance(item, Path) else item.path)

    if n_workers == 1 or len(files) < POOL_MIN_FILES:
        for item in items:
            here = [item] if isinstance(item, FileError) else job(item)
            done(item)
            yield from here
        return
    with ProcessPoolExecutor(
        max_workers=min(n_workers, len(files)), mp_context=_pool_context()
    ) as pool:
        # Largest files first keeps every worker busy to the end; results still come
        # back in input order.
        futures: dict[int, Future[list[Outcome]]] = {}
        for i in sorted(range(len(items)), key=lambda i: -_size(items[i])):
            item = items[i]
            if isinstance(item, Path):
                futures[i] = pool.submit(job, item)
        for i, item in enumerate(items):
            outcomes: list[Outcome]
            if isinstance(item, FileError):
                outcomes = [item]
            else:
                try:
                    outcomes = futures.pop(i).result()
                except BrokenProcessPool:
                    outcomes = [
                        FileError(
                            str(item),
                            "the hashing process crashed on this or another file "
                            "(decoder crash or out of memory?)",
                            "WorkerCrashed",
                        )
                    ]
            done(item)
            yield from outcomes


def _size(item: Path | FileError) -> int:
    if isinstance(item, FileError):
        return -1
    try:
        return item.stat().st_size
    except OSError:
        return -1
