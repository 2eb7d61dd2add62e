"""Reading and writing one log's tiles, bundles and checkpoints in the node database.

The same code serves the node's own log and every log it mirrors: a log is a
row of ``logs`` and everything else is keyed by its ``log_id``. Tiles and
bundles are stored at their latest width; a narrower (older) partial tile or
bundle is a prefix of the stored blob, which is how tlog-tiles defines them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from hashfed.protocol.kinds import kinds
from hashfed.protocol.merkle import EMPTY_ROOT, HASH_SIZE
from hashfed.protocol.records import SALT_SIZE, ContentEncoder, HashContent
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TILE_WIDTH, decode_bundle, encode_bundle


@dataclass(frozen=True)
class LogRow:
    """One log the node holds, as of its latest stored checkpoint."""

    id: int
    origin: str
    vkey: str
    own: bool
    size: int
    root: bytes
    checkpoint: str | None


def get_log(conn: sqlite3.Connection, origin: str) -> LogRow | None:
    """Returns the log with this origin, or None if the node holds no such log."""
    row = conn.execute(
        "SELECT id, origin, vkey, own, size, root, checkpoint FROM logs WHERE origin = ?",
        (origin,),
    ).fetchone()
    return None if row is None else LogRow(row[0], row[1], row[2], bool(row[3]), *row[4:])


def list_logs(conn: sqlite3.Connection) -> list[LogRow]:
    """Returns every log the node holds, its own first."""
    rows = conn.execute(
        "SELECT id, origin, vkey, own, size, root, checkpoint FROM logs ORDER BY own DESC, origin"
    ).fetchall()
    return [LogRow(r[0], r[1], r[2], bool(r[3]), *r[4:]) for r in rows]


def create_log(conn: sqlite3.Connection, origin: str, vkey: str, own: bool) -> LogRow:
    """Adds an empty log for origin and returns it."""
    cursor = conn.execute(
        "INSERT INTO logs (origin, vkey, own, size, root) VALUES (?, ?, ?, 0, ?)",
        (origin, vkey, int(own), EMPTY_ROOT),
    )
    assert cursor.lastrowid is not None
    return LogRow(cursor.lastrowid, origin, vkey, own, 0, EMPTY_ROOT, None)


def read_tile(conn: sqlite3.Connection, log_id: int, level: int, index: int, width: int) -> bytes:
    """Returns the first width hashes of a stored tile (width 0 means a full tile).

    Raises LookupError if the node does not hold that many hashes of the tile.
    """
    want = (width or TILE_WIDTH) * HASH_SIZE
    row = conn.execute(
        "SELECT data FROM tiles WHERE log_id = ? AND level = ? AND idx = ?",
        (log_id, level, index),
    ).fetchone()
    if row is None or len(row[0]) < want:
        raise LookupError(f"tile level {level} index {index} width {width} is not stored")
    return bytes(row[0][:want])


def write_tiles(conn: sqlite3.Connection, log_id: int, tiles: dict[tuple[int, int], bytes]) -> None:
    """Stores tiles keyed by (level, index), replacing narrower versions."""
    conn.executemany(
        "INSERT OR REPLACE INTO tiles (log_id, level, idx, data) VALUES (?, ?, ?, ?)",
        [(log_id, level, index, data) for (level, index), data in tiles.items()],
    )


def read_bundle(conn: sqlite3.Connection, log_id: int, index: int) -> tuple[int, bytes] | None:
    """Returns (entry count, bytes) of a stored entry bundle, or None."""
    row = conn.execute(
        "SELECT count, data FROM bundles WHERE log_id = ? AND idx = ?", (log_id, index)
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))


def read_entries(conn: sqlite3.Connection, log_id: int, start: int, end: int) -> list[bytes]:
    """Returns the entries with indices start..end-1 of a log."""
    entries: list[bytes] = []
    first, last = start // ENTRY_BUNDLE_WIDTH, (end - 1) // ENTRY_BUNDLE_WIDTH
    for index, count, data in iter_bundles(conn, log_id, first, last + 1):
        base = index * ENTRY_BUNDLE_WIDTH
        for offset, entry in enumerate(decode_bundle(data, count)):
            if start <= base + offset < end:
                entries.append(entry)
    if len(entries) != end - start:
        raise LookupError(f"entries {start}..{end - 1} are not all stored")
    return entries


def iter_bundles(
    conn: sqlite3.Connection, log_id: int, first: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, bytes]]:
    """Yields (index, count, data) of stored bundles first..end-1 in order."""
    cursor = conn.execute(
        "SELECT idx, count, data FROM bundles WHERE log_id = ? AND idx >= ? AND idx < ?"
        " ORDER BY idx",
        (log_id, first, 2**62 if end is None else end),
    )
    for index, count, data in cursor:
        yield int(index), int(count), bytes(data)


def write_bundles(
    conn: sqlite3.Connection, log_id: int, bundles: dict[int, tuple[int, bytes]]
) -> None:
    """Stores bundles keyed by index as (count, data), replacing narrower versions."""
    conn.executemany(
        "INSERT OR REPLACE INTO bundles (log_id, idx, count, data) VALUES (?, ?, ?, ?)",
        [(log_id, index, count, data) for index, (count, data) in bundles.items()],
    )


def record_checkpoint(
    conn: sqlite3.Connection, log_id: int, size: int, root: bytes, note: str
) -> None:
    """Makes note the log's latest checkpoint and keeps it in the history."""
    conn.execute(
        "INSERT OR REPLACE INTO checkpoints (log_id, size, root, note, stored)"
        " VALUES (?, ?, ?, ?, ?)",
        (log_id, size, root, note, int(time.time())),
    )
    conn.execute(
        "UPDATE logs SET size = ?, root = ?, checkpoint = ? WHERE id = ?",
        (size, root, note, log_id),
    )


def checkpoint_root(conn: sqlite3.Connection, log_id: int, size: int) -> bytes | None:
    """Returns the root of the stored checkpoint of that size, if there is one."""
    row = conn.execute(
        "SELECT root FROM checkpoints WHERE log_id = ? AND size = ?", (log_id, size)
    ).fetchone()
    return None if row is None else bytes(row[0])


def bank_content(
    kind: str, digest: bytes, quality: int | None, labels: str, added: int, salt: bytes
) -> HashContent:
    """Returns the content of a bank row (labels are stored comma-joined). The encoding
    is canonical, so its bytes are the ones the author committed to."""
    return HashContent(
        kinds().lookup(kind).name,
        bytes(digest),
        quality,
        tuple(labels.split(",")) if labels else (),
        int(added),
        bytes(salt),
    )


def content_bundle(conn: sqlite3.Connection, log_id: int, index: int, width: int) -> bytes:
    """Returns content bundle index: each entry's content, empty where there is none.

    Content is re-encoded from the bank row (the encoding is canonical, so the
    bytes are the ones the author committed to). Retracted and erased entries,
    and entries that are not hash additions, have empty content.
    """
    start = index * ENTRY_BUNDLE_WIDTH
    items = [b""] * width
    rows = conn.execute(
        "SELECT idx, kind, hash, quality, labels, added, salt FROM bank WHERE log_id = ?"
        " AND idx >= ? AND idx < ? AND status != 'retracted' AND hash IS NOT NULL"
        " AND salt IS NOT NULL",
        (log_id, start, start + width),
    )
    encoders: dict[tuple[str, str, int], ContentEncoder] = {}
    registry = kinds()
    for idx, kind, digest, quality, labels, added, salt in rows:
        digest, salt = bytes(digest), bytes(salt)
        spec = registry.get(kind)
        # ContentEncoder is HashContent.encode() for well-formed fields, much faster;
        # anything else (a mirrored row kept but not applied) takes the generic path.
        if (
            len(salt) == SALT_SIZE
            and type(added) is int
            and added >= 0
            and spec is not None
            and len(digest) == spec.size
            and (
                type(quality) is int and 0 <= quality <= 100
                if spec.has_quality
                else quality is None
            )
        ):
            key = (kind, labels, added)
            encoder = encoders.get(key)
            if encoder is None:
                label_tuple = tuple(labels.split(",")) if labels else ()
                encoder = encoders[key] = ContentEncoder(spec, label_tuple, added)
            items[idx - start] = encoder.encode(digest, quality, salt)
            continue
        items[idx - start] = bank_content(kind, digest, quality, labels, added, salt).encode()
    return encode_bundle(items)


def _log_tables(conn: sqlite3.Connection) -> list[str]:
    """Returns the tables that hold rows of a log (those with a log_id column)."""
    tables = [
        row[0]
        for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    return [
        table
        for table in tables
        if any(col[1] == "log_id" for col in conn.execute(f'PRAGMA table_info("{table}")'))
    ]


def log_rows(conn: sqlite3.Connection, log: LogRow) -> dict[str, int]:
    """Returns how many rows each table holds for log (tables holding none left out)."""
    counts = {}
    for table in _log_tables(conn):
        (n,) = conn.execute(
            f'SELECT count(*) FROM "{table}" WHERE log_id = ?', (log.id,)
        ).fetchone()
        if n:
            counts[table] = int(n)
    return counts


def forget_log(conn: sqlite3.Connection, log: LogRow) -> None:
    """Deletes a mirrored log and everything the node holds of it (run it in a transaction).

    The node's own log is never forgotten: its signed head outlives the database.
    """
    if log.own:
        raise AssertionError("bad math: forget_log called on the node's own log")
    for table in _log_tables(conn):
        conn.execute(f'DELETE FROM "{table}" WHERE log_id = ?', (log.id,))
    conn.execute("DELETE FROM logs WHERE id = ?", (log.id,))


def flagged_count(conn: sqlite3.Connection, origin: str) -> int:
    """Returns how many entries of origin's log are flagged now (0 if the node holds none)."""
    row = conn.execute(
        "SELECT count(*) FROM flags JOIN logs ON logs.id = flags.log_id WHERE logs.origin = ?",
        (origin,),
    ).fetchone()
    return int(row[0])


def set_own(conn: sqlite3.Connection, origin: str, own: bool) -> None:
    """Marks origin's log as the node's own (or, during a recovery's catch-up, as a
    mirrored one); making it own drops its sync bookkeeping, which describes a mirror."""
    conn.execute("UPDATE logs SET own = ? WHERE origin = ?", (int(own), origin))
    if own:
        conn.execute(
            "DELETE FROM sync_state WHERE log_id = (SELECT id FROM logs WHERE origin = ?)",
            (origin,),
        )


def log_sizes(conn: sqlite3.Connection) -> dict[int, int]:
    """log_sizes returns the size of every log the node holds, by log id."""
    return {int(i): int(s) for i, s in conn.execute("SELECT id, size FROM logs")}


def own_log_id(conn: sqlite3.Connection) -> int | None:
    """own_log_id returns the id of the node's own log, or None before it has one."""
    row = conn.execute("SELECT id FROM logs WHERE own = 1").fetchone()
    return None if row is None else int(row[0])


def flagged_indices(conn: sqlite3.Connection, log_id: int) -> set[int]:
    """flagged_indices returns the indices of log_id's entries that are flagged now."""
    return {int(r[0]) for r in conn.execute("SELECT idx FROM flags WHERE log_id = ?", (log_id,))}
