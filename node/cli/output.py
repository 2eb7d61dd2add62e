"""Shared output formats for read commands: a table for people, JSON and CSV for scripts.

Every read command takes the same ``--json`` (and, where it lists rows, ``--csv``)
flags through :func:`output_options`, and prints through :func:`emit`, so all of
them look and parse alike (the sqlite-utils convention).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def output_options(fn: F) -> F:
    """Add ``--json`` and ``--csv`` to a command; the command receives ``fmt``."""
    fn = click.option(
        "--csv", "fmt", flag_value="csv", help="Print rows as CSV with a header line."
    )(fn)
    fn = click.option("--json", "fmt", flag_value="json", help="Print JSON for scripts.")(fn)
    fn = click.option("--table", "fmt", flag_value="table", default=True, hidden=True)(fn)
    return fn


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Render rows as a left-aligned text table with a header and a rule."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def emit(
    rows: Iterable[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[str],
    *,
    document: Any = None,
) -> None:
    """Print ``rows`` in ``fmt``; with ``--json``, print ``document`` instead if given."""
    rows = list(rows)
    if fmt == "json":
        click.echo(json.dumps(rows if document is None else document, indent=2, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _cell(row.get(c)) for c in columns})
    else:
        click.echo(render_table(rows, columns))


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Returns "1 hash", "2 hashes": count and the noun that agrees with it."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural_form or singular + 's'}"


def iso_time(seconds: int | float | None) -> str | None:
    """Returns Unix seconds as ISO 8601 UTC (``2026-01-31T12:00:00Z``), None as None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
