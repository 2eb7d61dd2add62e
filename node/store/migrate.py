"""What ``hashfed migrate`` reports: the schema migrations a database is waiting for.

``open_database`` (node/store/db.py) runs pending migrations whenever any command opens the
database, each in one transaction. Before an upgrade an operator can ask what will
run and whether it will take long: creating a table or adding a column is instant;
a statement that rewrites or indexes an existing table takes time in proportion to
its rows, and such steps are flagged with the row count.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hashfed.node.errors import DatabaseError
from hashfed.node.store.db import MIGRATIONS, SCHEMA_VERSION

SLOW_ROWS = 1_000_000
"""Rows beyond which a rewriting step is flagged as long."""

_REWRITES = re.compile(
    r"\b(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+\w+\s+ON|UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+(\w+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Step:
    """One pending migration: the version it leads to, its SQL, and the rows it rewrites."""

    version: int
    sql: str
    rewrites: dict[str, int]

    @property
    def slow(self) -> bool:
        return any(rows >= SLOW_ROWS for rows in self.rewrites.values())


def plan(database: Path) -> tuple[int, list[Step]]:
    """Returns the database's schema version and the migrations it is waiting for,
    reading it without changing anything."""
    if not database.exists():
        raise DatabaseError(f"no database at {database}")
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {database} has schema version {version}, newer than this hashfed "
                f"({SCHEMA_VERSION}); upgrade hashfed"
            )
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        steps = []
        for n in range(version, SCHEMA_VERSION):
            sql = MIGRATIONS[n]
            rewrites = {}
            for table in _REWRITES.findall(sql):
                if table in tables:
                    (rows,) = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                    rewrites[table] = int(rows)
            steps.append(
                Step(n + 1, "\n".join(line.strip() for line in sql.strip().splitlines()), rewrites)
            )
        return version, steps
    finally:
        conn.close()
