"""The node's SQLite database: schema, migrations and transactions.

One file holds every log the node knows (its own and, later, the logs it mirrors)
and the bank derived from them. Logs are told apart by ``log_id``; the same
tables hold an own log and a mirrored one.

    logs         one row per origin: its verifier key, size, root, latest checkpoint
    checkpoints  every checkpoint the node signed or accepted, by (log, size)
    bundles      tlog-tiles entry bundles, one blob per bundle (the latest width)
    tiles        tlog-tiles hash tiles, one blob per tile (the latest width)
    bank         one row per hash addition: kind, hash, quality, labels, status
    feedback     one row per feedback record
    flags        entries that are signed and included but failed a record check
    peers        nodes this node talks to: name, base URL, peer-authentication key, read list
    trust        origins whose logs this node syncs, with their log key and role
    staged       fetched entry bundles not yet verified against a checkpoint
    evidence     proof that an origin signed inconsistent checkpoints (halts it)
    sync_state   the outcome of the latest sync attempts, per origin
    cases        the publisher's case desk: hashed case numbers and PINs, state
    case_hashes  each case's hashes until published, then their log indices

Entry bundles and tiles are stored as blobs, not a row per entry: a partial
tile or bundle of any smaller width is a prefix of the stored one.

The database runs in WAL mode with synchronous=FULL, so a transaction that
committed survives a crash or power loss, and one that did not leaves no trace.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from hashfed.node.errors import DatabaseError


def _import_without_numpy(name: str) -> ModuleType:
    """Imports module name as if numpy and pandas were not installed (unless already imported).

    sqlite_utils imports both, when installed, only to map their scalar types to
    column types for tables it creates from Python values. The node creates its
    tables with SQL and stores no such values, and numpy's import would cost every
    command, and ``hashfed serve`` before it binds its port, a tenth of a second or
    more. Called on the first import of this module, which runs before any thread
    of ours that might import numpy (the match index's loader) is started.
    """
    hidden = [m for m in ("numpy", "pandas") if m not in sys.modules]
    for module in hidden:
        sys.modules[module] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        return importlib.import_module(name)
    finally:
        for module in hidden:
            if module in sys.modules and sys.modules[module] is None:
                del sys.modules[module]


if TYPE_CHECKING:
    import sqlite_utils
else:
    sqlite_utils = _import_without_numpy("sqlite_utils")

SCHEMA_VERSION = 6


_SCHEMA_1 = """
        CREATE TABLE logs (
            id INTEGER PRIMARY KEY,
            origin TEXT NOT NULL UNIQUE,
            vkey TEXT NOT NULL,
            own INTEGER NOT NULL DEFAULT 0,
            size INTEGER NOT NULL DEFAULT 0,
            root BLOB NOT NULL,
            checkpoint TEXT
        );
        CREATE TABLE checkpoints (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            size INTEGER NOT NULL,
            root BLOB NOT NULL,
            note TEXT NOT NULL,
            stored INTEGER NOT NULL,
            PRIMARY KEY (log_id, size)
        );
        CREATE TABLE bundles (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            idx INTEGER NOT NULL,
            count INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (log_id, idx)
        );
        CREATE TABLE tiles (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (log_id, level, idx)
        );
        CREATE TABLE bank (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            idx INTEGER NOT NULL,
            kind TEXT,
            hash BLOB,
            quality INTEGER,
            labels TEXT NOT NULL,
            added INTEGER,
            salt BLOB,
            status TEXT NOT NULL DEFAULT 'active',
            retracted_at INTEGER,
            retract_reason TEXT,
            retracted_by INTEGER,
            PRIMARY KEY (log_id, idx)
        ) WITHOUT ROWID;
        CREATE TABLE feedback (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            idx INTEGER NOT NULL,
            target_origin TEXT NOT NULL,
            target_idx INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            tags TEXT NOT NULL,
            time INTEGER NOT NULL,
            PRIMARY KEY (log_id, idx)
        ) WITHOUT ROWID;
        CREATE INDEX feedback_target ON feedback (target_origin, target_idx);
        CREATE TABLE flags (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            idx INTEGER NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (log_id, idx)
        ) WITHOUT ROWID;
        """

# Schema 2: peers (read NULL: every log the node holds; else a comma list of
# origins) and trusted origins with their role (see node/store/peers.py).
_SCHEMA_2 = """
        CREATE TABLE peers (
            name TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            vkey TEXT NOT NULL,
            read TEXT
        );
        CREATE TABLE trust (
            origin TEXT PRIMARY KEY,
            vkey TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('publisher', 'partner'))
        );
        """

# Schema 3: sync. Bundles fetched but not yet verified against a checkpoint are
# staged (so an interrupted sync resumes); equivocation evidence halts an origin;
# sync_state keeps the outcome of the last attempts for status.
_SCHEMA_3 = """
        CREATE TABLE staged (
            log_id INTEGER NOT NULL REFERENCES logs(id),
            idx INTEGER NOT NULL,
            count INTEGER NOT NULL,
            entries BLOB NOT NULL,
            content BLOB NOT NULL,
            PRIMARY KEY (log_id, idx)
        );
        CREATE TABLE evidence (
            id INTEGER PRIMARY KEY,
            log_id INTEGER NOT NULL REFERENCES logs(id),
            found INTEGER NOT NULL,
            detail TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE TABLE sync_state (
            log_id INTEGER PRIMARY KEY REFERENCES logs(id),
            last_attempt INTEGER,
            last_success INTEGER,
            last_peer TEXT,
            last_error TEXT,
            failures INTEGER NOT NULL DEFAULT 0
        );
        ALTER TABLE logs ADD COLUMN halted INTEGER NOT NULL DEFAULT 0;
        """

# Schema 4: the publisher's case desk (node/services/casedesk.py, specs/case-api.md). A case
# is known by SHA-256 of its number and a scrypt hash of its PIN, never either in
# clear; case_hashes.hash is held only until the batch publishes it (the bank has
# it from then on, and erases it on withdrawal). case_decoy takes the failed-guess
# write of an unknown case number, so it costs what a wrong PIN costs.
_SCHEMA_4 = """
        CREATE TABLE cases (
            id TEXT PRIMARY KEY,
            number_hash BLOB NOT NULL UNIQUE,
            pin_hash TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('review', 'pending', 'active', 'withdrawn', 'rejected')),
            opened INTEGER NOT NULL,
            count INTEGER NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            lockouts INTEGER NOT NULL DEFAULT 0,
            locked_until INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE case_hashes (
            case_id TEXT NOT NULL REFERENCES cases(id),
            position INTEGER NOT NULL,
            kind TEXT NOT NULL,
            hash BLOB,
            quality INTEGER,
            log_index INTEGER,
            PRIMARY KEY (case_id, position)
        );
        CREATE TABLE case_decoy (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            failures INTEGER NOT NULL
        );
        INSERT INTO case_decoy (id, failures) VALUES (0, 0);
        """

# MIGRATIONS[n] is the SQL that takes a database at schema version n to n + 1.
# Each runs in one transaction together with the user_version bump.
# Schema 5: witnessing (C2SP tlog-witness). witnessed holds, per log this node
# witnesses, the latest checkpoint it cosigned; witness_evidence what it caught;
# witness_push, on a publisher, the size each of its witnesses last cosigned.
_SCHEMA_5 = """
        CREATE TABLE witnessed (
            origin TEXT PRIMARY KEY,
            vkey TEXT NOT NULL,
            size INTEGER NOT NULL,
            root BLOB NOT NULL,
            note TEXT NOT NULL,
            updated INTEGER NOT NULL
        );
        CREATE TABLE witness_evidence (
            id INTEGER PRIMARY KEY,
            origin TEXT NOT NULL,
            found INTEGER NOT NULL,
            detail TEXT NOT NULL,
            text TEXT NOT NULL
        );
        CREATE TABLE witness_push (
            name TEXT PRIMARY KEY,
            size INTEGER NOT NULL
        );
        """

# Schema 6: the largest checkpoint size a peer offered, so status can tell how
# many entries behind an origin is (not only how long ago it last synced).
_SCHEMA_6 = """
        ALTER TABLE sync_state ADD COLUMN peer_size INTEGER;
        """

MIGRATIONS: list[str] = [_SCHEMA_1, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4, _SCHEMA_5, _SCHEMA_6]


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def open_database(path: Path | str) -> sqlite_utils.Database:
    """Opens (creating or migrating as needed) the node database at path."""
    path = Path(path)
    if not path.exists():
        # Bank data is private: create the file (and so its WAL files) 0600.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # No sqlite-utils plugins: none may change the node's connection (and looking
    # for them reads the metadata of every installed package).
    db = sqlite_utils.Database(conn, execute_plugins=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # Erased hashes must not linger in free pages (specs/protocol.md, erasure).
    conn.execute("PRAGMA secure_delete=ON")
    # After each checkpoint the WAL file is cut back to this size, so that a long
    # transaction's page images (which may hold erased hashes) do not linger in it.
    conn.execute("PRAGMA journal_size_limit=67108864")
    conn.execute("PRAGMA foreign_keys=ON")
    # A catch-up holds the write lock while it fetches: other writers (a publish in
    # another process) wait for it rather than fail.
    conn.execute("PRAGMA busy_timeout=60000")
    version = _schema_version(conn)
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database {path} has schema version {version}, newer than this hashfed "
            f"({SCHEMA_VERSION}); upgrade hashfed"
        )
    while version < SCHEMA_VERSION:
        # executescript commits before it runs, so the transaction is in the script.
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\nPRAGMA user_version={version + 1};\nCOMMIT;"
        )
        version += 1
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """Runs the block in one write transaction: all of it commits, or none of it."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def data_version(conn: sqlite3.Connection) -> int:
    """Returns SQLite's data_version: it changes whenever another connection commits."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version)


def database_file(conn: sqlite3.Connection) -> str:
    """Returns the file of the connection's main database ("" for an in-memory one);
    raises sqlite3.Error if the connection is not open."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""


def open_read_only(path: Path | str) -> sqlite3.Connection:
    """Opens the database at path for reading only, on a connection of its own (the
    match index loads the bank on it, off the event loop). Like open_database's, it
    waits up to a minute for a writer's lock rather than fail."""
    conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        conn.execute("PRAGMA busy_timeout=60000")
    except BaseException:
        conn.close()
        raise
    return conn


def change_marker(conn: sqlite3.Connection) -> tuple[int, int]:
    """Returns a pair that changes whenever the database may have changed since last asked.

    ``PRAGMA data_version`` changes when any other connection commits; the
    connection's own writes show in ``total_changes``. Together they let a server
    keep peers and logs in memory and still see a removed peer or a grown log on the
    very next request, for the price of one tiny query."""
    (version,) = conn.execute("PRAGMA data_version").fetchone()
    return int(version), conn.total_changes


def open_replica(path: Path) -> sqlite3.Connection:
    """Returns a connection that reads the node database at path and can never write it
    (a read replica's, node/replica.py).

    Raises DatabaseError if there is no database, it is not in WAL mode, or its schema
    is not the one this hashfed reads (a reader never migrates: upgrade the writer).
    """
    if not path.is_file():
        raise DatabaseError(f"no node database at {path}; start the writer ('hashfed serve') first")
    # Read-write open (without writing) so SQLite can use the WAL index beside the file.
    conn = sqlite3.connect(
        f"file:{path}?mode=rw", uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA busy_timeout=60000")
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseError(f"cannot read the node database {path}: {exc}") from None
    if str(mode).lower() != "wal" or version != SCHEMA_VERSION:
        conn.close()
        raise DatabaseError(
            f"the node database {path} has schema {version} in {mode} mode; a read replica "
            f"of this hashfed needs schema {SCHEMA_VERSION} in WAL mode (upgrade and start "
            "the writer first)"
        )
    return conn


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Runs the block in one read transaction, a consistent snapshot in WAL mode (inside
    a transaction already open, the block simply joins it)."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def truncate_wal(conn: sqlite3.Connection) -> bool:
    """Checkpoints the WAL file into the database and truncates it, so that erased
    content does not linger in the WAL (the database's free pages are secure-deleted).
    Reports whether it did: False while readers keep the WAL busy."""
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return not busy


@contextmanager
def plain_connection(path: Path | str) -> Iterator[sqlite3.Connection]:
    """Yields a plain connection to the database at path (no PRAGMAs, no migration: a
    quick look from beside the node that owns it, as the demo takes) and closes it."""
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()
