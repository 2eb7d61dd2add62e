"""``hashfed export``: the node's logs as a static C2SP tlog-tiles tree, for nginx or a CDN.

Each log the node holds is written under ``DIR/<log prefix>/``, the same paths
``hashfed serve`` answers (every path from :mod:`hashfed.protocol.tiles`)::

    DIR/log/<sha256 of origin>/checkpoint
    DIR/log/<sha256 of origin>/tile/<L>/<N>[.p/<W>]        hash tiles
    DIR/log/<sha256 of origin>/tile/entries/<N>[.p/<W>]    entry bundles
    DIR/log/<sha256 of origin>/content/<N>[.p/<W>]         content bundles

Rules, so that any web server can serve the tree while it is being updated:

* **Atomic.** Every file is written to a temporary name in its directory and
  renamed into place, so a reader sees the old file or the new one, never a
  part. The checkpoint is written last: every tile and bundle it commits to
  is on disk before a reader can learn of it.
* **Incremental.** ``DIR/.hashfed-export.json`` remembers, per log, the size
  exported and a fingerprint of which entries of each content bundle still
  have content. An export writes the tiles and bundles that grew, and the
  content bundles whose content changed; nothing else. A log that did not grow
  costs one comparison of its checkpoint (which may have new cosignatures).
* **Erasure.** A content bundle holds what ``hashfed serve`` would serve at
  the same moment: retracted content is left out as soon as the database
  erases it (on the same schedule), and every partial version of that bundle
  still on disk is rewritten too. Entry bundles and hash tiles never change.
* A partial tile or bundle is removed once its full version is written
  (tlog-tiles clients fall back to the full one).
* **Forgetting.** The folder of a log the database no longer holds (``hashfed
  log forget``) is removed, with its entry in the state file, so its content
  is not served (nor kept) after the node forgot it. A log whose database size
  is below what was exported (or that has no state entry) is written again in
  full, and then every file of its folder that the new export did not write
  (tiles, bundles and content beyond the current size) is removed.

The web server serves ``DIR/log/`` only; the state file and temporary files
stay outside what it exposes (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hashfed.node.errors import NodeError
from hashfed.node.store import bank, logstore
from hashfed.node.store.db import data_version, open_database, read_snapshot
from hashfed.node.store.logstore import content_bundle
from hashfed.protocol.tiles import (
    ENTRY_BUNDLE_WIDTH,
    MAX_TILE_LEVEL,
    TILE_HEIGHT,
    content_path,
    encode_bundle,
    entries_path,
    log_prefix,
    partial_tile_size,
    split_bundle,
    tile_path,
)

_log = logging.getLogger("hashfed.export")

STATE_FILE = ".hashfed-export.json"
"""The export's memory, in DIR (outside the served ``log/`` folder)."""

FILE_MODE = 0o644
"""Exported files are readable by the web server's worker user."""

DIR_MODE = 0o755


@dataclass
class LogExport:
    """What one export wrote for one log."""

    origin: str
    prefix: str
    size: int
    files: int = 0
    content_rewritten: int = 0


@dataclass
class ExportReport:
    """What one export wrote, log by log."""

    logs: list[LogExport] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Log prefixes whose folders were removed (logs no longer held)."""

    @property
    def files(self) -> int:
        return sum(log.files for log in self.logs)


class _Writer:
    """Writes files under one root, each atomically (temporary file, then rename).

    Tiles and bundles are not synced one by one (an fsync per file would cost
    most of an export); :func:`_flush` syncs the file system once before the
    checkpoints that commit to them are written, durably."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        self.written: set[str] = set()

    def write(self, relative: str, data: bytes, durable: bool = False) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.chmod(tmp, FILE_MODE)  # whatever the umask
            os.replace(tmp, path)
            self.written.add(relative)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.count += 1

    def remove_partials(self, full_relative: str) -> None:
        """Removes the partial versions (``<full>.p/``) of a tile or bundle now full."""
        shutil.rmtree(self.root / (full_relative + ".p"), ignore_errors=True)

    def partial_widths(self, full_relative: str) -> list[int]:
        """Returns the widths of the partial versions on disk of a tile or bundle."""
        folder = self.root / (full_relative + ".p")
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdecimal())


def _width(level: int, index: int, size: int) -> int:
    """Returns the width of tile (level, index) at size: 0 if absent, 256 if full."""
    try:
        width = partial_tile_size(level, index, size)
    except ValueError:
        return 0
    return width or ENTRY_BUNDLE_WIDTH


def _content_fingerprints(conn: sqlite3.Connection, log_id: int, size: int) -> dict[str, str]:
    """Returns, per content bundle with any content, a digest of which entries have content.

    A content bundle's bytes depend only on which of its entries still have content
    (the content of an entry is fixed by the log), so this tells exactly which
    bundles an erasure (or late-arriving content) changed. Same filter as
    :func:`hashfed.node.store.logstore.content_bundle`.
    """
    return {
        str(index): hashlib.blake2b(members.encode(), digest_size=12).hexdigest()
        for index, members in bank.content_members(conn, log_id, size)
    }


def _export_tiles(
    writer: _Writer, conn: sqlite3.Connection, log_id: int, old: int, new: int
) -> None:
    for level in range(MAX_TILE_LEVEL + 1):
        count = new >> (TILE_HEIGHT * level)
        if count == 0:
            break
        first = (old >> (TILE_HEIGHT * level)) >> TILE_HEIGHT
        for index in range(first, (count - 1) // ENTRY_BUNDLE_WIDTH + 1):
            width = _width(level, index, new)
            if width == _width(level, index, old):
                continue
            data = logstore.read_tile(conn, log_id, level, index, width % ENTRY_BUNDLE_WIDTH)
            writer.write(tile_path(level, index, width), data)
            if width == ENTRY_BUNDLE_WIDTH:
                writer.remove_partials(tile_path(level, index))


def _export_bundles(
    writer: _Writer, conn: sqlite3.Connection, log_id: int, old: int, new: int
) -> None:
    first, end = old // ENTRY_BUNDLE_WIDTH, (new - 1) // ENTRY_BUNDLE_WIDTH + 1
    for index, count, data in logstore.iter_bundles(conn, log_id, first, end):
        width = _width(0, index, new)
        if width == _width(0, index, old):
            continue
        if count < width:
            raise NodeError(f"entry bundle {index} is not stored at width {width}")
        body = data if count == width else encode_bundle(split_bundle(data, "bundle")[:width])
        writer.write(entries_path(index, width), body)
        if width == ENTRY_BUNDLE_WIDTH:
            writer.remove_partials(entries_path(index))


def _export_content(
    writer: _Writer,
    conn: sqlite3.Connection,
    log_id: int,
    sizes: tuple[int, int],
    old_prints: dict[str, str],
    new_prints: dict[str, str],
) -> int:
    """Writes the content bundles that grew or whose content changed (with every
    partial version of them still on disk); returns how many were rewritten only
    because content was erased (or arrived late)."""
    old, new = sizes
    keys = old_prints.keys() | new_prints.keys()
    changed = {int(i) for i in keys if old_prints.get(i) != new_prints.get(i)}
    first, end = old // ENTRY_BUNDLE_WIDTH, (new + ENTRY_BUNDLE_WIDTH - 1) // ENTRY_BUNDLE_WIDTH
    grown = {i for i in range(first, end) if _width(0, i, new) != _width(0, i, old)}
    for index in sorted(changed | grown):
        width = _width(0, index, new)
        if index in changed:
            for partial in writer.partial_widths(content_path(index)):
                if partial < width:
                    data = content_bundle(conn, log_id, index, partial)
                    writer.write(content_path(index, partial), data)
        writer.write(content_path(index, width), content_bundle(conn, log_id, index, width))
        if width == ENTRY_BUNDLE_WIDTH:
            writer.remove_partials(content_path(index))
    return len(changed - grown)


def _load_state(root: Path) -> dict[str, dict[str, object]]:
    path = root / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NodeError(
            f"{path} is not valid JSON ({exc}); delete it to export everything"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("logs"), dict):
        raise NodeError(f"{path} is not an export state file; delete it to export everything")
    logs: dict[str, dict[str, object]] = state["logs"]
    return logs


def _flush(root: Path) -> None:
    """Syncs the file system holding root (syncfs), so every file written so far is
    on disk before a checkpoint refers to it."""
    fd = os.open(root, os.O_RDONLY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def export_logs(conn: sqlite3.Connection, root: Path) -> ExportReport:
    """Brings the static tree at root up to date with every log in the database.

    Reads everything in one read transaction, so the tree matches one state of the
    database. Tiles and bundles are written first, synced to disk together, then
    each changed checkpoint, then the state. Raises NodeError if root's state file
    is damaged, OSError if root cannot hold the tree.
    """
    root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    state = _load_state(root)
    report = ExportReport()
    checkpoints: list[tuple[_Writer, LogExport, bytes]] = []
    rewritten: list[_Writer] = []
    with read_snapshot(conn):
        for log in logstore.list_logs(conn):
            if log.checkpoint is None:
                continue
            sub, done, full = _export_log(root, conn, log, state)
            report.logs.append(done)
            checkpoints.append((sub, done, log.checkpoint.encode()))
            if full:
                rewritten.append(sub)
    changed = [c for c in checkpoints if c[1].files or _stale(c[0], c[2])]
    if changed:
        _flush(root)
    for sub, done, checkpoint in changed:
        sub.write("checkpoint", checkpoint, durable=True)
        done.files = sub.count
    for sub in rewritten:
        _prune(sub)
    held = {done.origin for done in report.logs}
    for origin in [o for o in state if o not in held]:
        del state[origin]
    report.removed = _remove_forgotten(root, {done.prefix for done in report.logs})
    _Writer(root).write(STATE_FILE, json.dumps({"logs": state}, sort_keys=True).encode(), True)
    return report


def _prune(sub: _Writer) -> None:
    """Removes every file of a log written again in full that this export did not write
    (tiles, bundles and content of a larger, older version of the log)."""
    for dirpath, dirnames, filenames in os.walk(sub.root, topdown=False):
        folder = Path(dirpath)
        for name in filenames:
            relative = (folder / name).relative_to(sub.root).as_posix()
            if relative != "checkpoint" and relative not in sub.written:
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
        for name in dirnames:
            with contextlib.suppress(OSError):
                (folder / name).rmdir()  # only if empty


_LOG_FOLDER = re.compile(r"[0-9a-f]{64}")


def _remove_forgotten(root: Path, held: set[str]) -> list[str]:
    """Removes root/log/<hash>/ for every log hash not in held (prefixes); returns them.

    Each folder is first renamed to a hidden name (which web servers do not serve),
    so it disappears at once, then deleted."""
    removed: list[str] = []
    logs = root / "log"
    if not logs.is_dir():
        return removed
    for entry in sorted(logs.iterdir()):
        prefix = f"log/{entry.name}"
        if prefix in held or not _LOG_FOLDER.fullmatch(entry.name) or not entry.is_dir():
            continue
        gone = logs / f".tmp-forgotten-{entry.name}.{os.getpid()}"
        os.replace(entry, gone)
        shutil.rmtree(gone)
        removed.append(prefix)
        _log.info("removed %s from the export: the node no longer holds that log", prefix)
    return removed


def _stale(sub: _Writer, checkpoint: bytes) -> bool:
    """Reports whether the checkpoint on disk differs from checkpoint."""
    path = sub.root / "checkpoint"
    try:
        return path.read_bytes() != checkpoint
    except FileNotFoundError:
        return True


def _export_log(
    root: Path,
    conn: sqlite3.Connection,
    log: logstore.LogRow,
    state: dict[str, dict[str, object]],
) -> tuple[_Writer, LogExport, bool]:
    """Writes one log's new tiles and bundles (not its checkpoint) and updates state;
    reports whether it wrote the log again in full (its folder must then be pruned)."""
    prefix = log_prefix(log.origin)
    previous = state.get(log.origin, {})
    old = previous.get("size", 0)
    old_prints = previous.get("content", {})
    full = "size" not in previous
    if type(old) is not int or not isinstance(old_prints, dict) or old > log.size:
        old, old_prints = 0, {}  # unknown or shrunk (a new database): write it all again
        full = True
    sub = _Writer(root / prefix)
    if old == log.size and not full:
        # Content is erased only by a retraction, which is an entry of the same log:
        # a log that did not grow lost no content (its checkpoint may still have
        # gained cosignatures; the caller compares it).
        return sub, LogExport(log.origin, prefix, log.size), False
    new_prints = _content_fingerprints(conn, log.id, log.size)
    if log.size:
        _export_tiles(sub, conn, log.id, old, log.size)
        _export_bundles(sub, conn, log.id, old, log.size)
    rewritten = _export_content(sub, conn, log.id, (old, log.size), old_prints, new_prints)
    state[log.origin] = {"size": log.size, "content": new_prints}
    return sub, LogExport(log.origin, prefix, log.size, sub.count, rewritten), full


async def export_loop(
    database: Path,
    root: Path,
    poll: float = 1.0,
    on_export: Callable[[int], None] | None = None,
) -> None:
    """Keeps the tree at root current until cancelled: exports at once, then again within
    poll seconds of every commit to the database by any process (a publish, a sync, a
    withdrawal), on a connection of its own and in a worker thread.

    on_export, if given, is called with the number of files written after each export.
    """
    db = open_database(database)
    conn = db.conn
    try:
        seen: int | None = None
        while True:
            version = data_version(conn)
            if version != seen:
                seen = version
                try:
                    report = await asyncio.to_thread(export_logs, conn, root)
                except (OSError, NodeError, sqlite3.Error) as exc:
                    # A full disk or a locked file must not end the loop: try again.
                    _log.warning("export to %s failed: %s", root, exc)
                    seen = None
                else:
                    if on_export is not None:
                        on_export(report.files)
            await asyncio.sleep(poll)
    finally:
        conn.close()
