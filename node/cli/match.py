"""``hashfed match`` (look hashes and files up in the bank) and ``hashfed feedback``."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from hashfed.hasher import DIHEDRAL_NAMES, STORED, FileError, hash_paths
from hashfed.node.cli.output import emit, iso_time, output_options
from hashfed.node.home import open_node
from hashfed.node.services import feedback
from hashfed.protocol.kinds import kinds
from hashfed.protocol.records import Verdict

_HEX = re.compile(r"[0-9a-fA-F]+")
KINDS = kinds().names
"""The kinds the match index answers (the registry's, read here without importing the
index: 'hashfed --help' lists this command without numpy's index)."""

TABLE_COLUMNS = ["query", "kind", "origin", "index", "distance", "labels", "added", "feedback"]


@dataclass(frozen=True)
class Query:
    """One hash to look up: what the user named (a hash, or a file and its variant)."""

    label: str
    kind: str
    hash: bytes


def _hex_lengths_text() -> str:
    """Returns "a PDQ hash is 64 hex characters, an MD5 hash 32" for the registry's kinds."""
    parts = []
    for n, spec in enumerate(kinds()):
        name = spec.name.upper()
        article = "an" if name[:1] in "AEFHILMNORSX" else "a"  # spelt letter by letter
        tail = " is {} hex characters" if n == 0 else " {}"
        parts.append(f"{article} {name} hash" + tail.format(spec.hex_length))
    return ", ".join(parts)


def _hash_query(arg: str, kind: str | None) -> Query:
    registry = kinds()
    k = kind or next((s.name for s in registry if s.hex_length == len(arg)), None)
    if k is None:
        raise click.BadParameter(
            f"{arg!r} is {len(arg)} hex characters and no such file exists: " + _hex_lengths_text(),
            param_hint="HASH|FILE",
        )
    from hashfed.node.match.bank import parse_hash

    try:
        return Query(arg.lower(), k, parse_hash(k, arg))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="HASH|FILE") from None


def _file_queries(paths: list[Path], dihedral: bool) -> tuple[list[Query], list[FileError]]:
    queries: list[Query] = []
    errors: list[FileError] = []
    for outcome in hash_paths(paths, dihedral=dihedral):
        if isinstance(outcome, FileError):
            errors.append(outcome)
            continue
        label = outcome.path if outcome.variant == STORED else f"{outcome.path} ({outcome.variant})"
        if outcome.dihedral is None:
            queries.append(Query(label, outcome.kind, bytes.fromhex(outcome.hash)))
            continue
        for name, h in zip(DIHEDRAL_NAMES, outcome.dihedral, strict=True):
            variant = label if name == DIHEDRAL_NAMES[0] else f"{label} [{name}]"
            queries.append(Query(variant, outcome.kind, bytes.fromhex(h)))
    return queries, errors


def _when(t: int | None) -> str:
    return iso_time(t) or ""


def _feedback_cell(counts: dict[str, int]) -> str:
    return " ".join(f"{v}:{n}" for v, n in counts.items() if n) or "-"


@click.command("match")
@click.argument("items", metavar="HASH|FILE...", nargs=-1, required=True)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="The kind of the hex hashes given (default: 64 hex characters is pdq, 32 md5).",
)
@click.option(
    "--dihedral", is_flag=True, help="Also look up the 8 rotations and flips of each photo."
)
@output_options
@click.pass_obj
def match_command(
    home: Path, items: tuple[str, ...], kind: str | None, dihedral: bool, fmt: str
) -> None:
    """Look hashes and files up in the bank: this node's own log and its publishers'.

    A 64-hex argument is a PDQ hash, a 32-hex one an MD5 hash; anything else is a
    file (or directory), hashed here: photos with PDQ (matches within each origin's
    threshold, 31 bits by default), videos with MD5 (exact). Each match shows its
    origin, log index, distance, labels, when it was added and the feedback partners
    published about it. Exits 0 whether or not anything matched, 1 if a file could
    not be hashed.

    \b
    Example:
        hashfed match f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22
        hashfed match upload.jpg --dihedral --json
    """
    queries: list[Query] = []
    files: list[Path] = []
    for arg in items:
        if _HEX.fullmatch(arg) and not Path(arg).exists():
            queries.append(_hash_query(arg, kind))
        else:
            files.append(Path(arg))
    errors: list[FileError] = []
    if files:
        found, errors = _file_queries(files, dihedral)
        queries += found
    for err in errors:
        click.echo(f"error: {err.path}: {err.error}", err=True)
    from hashfed.node.match.bank import BankIndex, MatchRow

    with open_node(home) as node:
        index = BankIndex.load(
            node.db.conn,
            thresholds=node.config.match.thresholds,
            default_threshold=node.config.match.threshold,
        )
        matches: list[list[MatchRow]] = [[] for _ in queries]
        for k in kinds().names:
            positions = [n for n, q in enumerate(queries) if q.kind == k]
            if positions:
                found_rows = index.lookup(k, [queries[n].hash for n in positions])
                for n, rows in zip(positions, found_rows, strict=True):
                    matches[n] = rows
    document = [
        {
            "query": q.label,
            "kind": q.kind,
            "hash": q.hash.hex(),
            "matches": [m.to_dict() for m in rows],
        }
        for q, rows in zip(queries, matches, strict=True)
    ]
    table: list[dict[str, Any]] = [
        {
            "query": q.label,
            "kind": q.kind,
            "origin": m.origin,
            "index": m.index,
            "distance": m.distance,
            "labels": list(m.labels),
            "added": _when(m.added) if fmt == "table" else m.added,
            "feedback": _feedback_cell(m.feedback),
        }
        for q, rows in zip(queries, matches, strict=True)
        for m in rows
    ]
    if fmt == "json":
        emit([], fmt, [], document=document)
    elif fmt == "csv":
        emit(table, fmt, TABLE_COLUMNS)
    else:
        if table:
            emit(table, fmt, TABLE_COLUMNS)
        for q, rows in zip(queries, matches, strict=True):
            if not rows:
                click.echo(f"{q.label}: no match")
    if errors:
        sys.exit(1)


@click.command("feedback")
@click.argument("origin")
@click.argument("index", type=click.IntRange(min=0))
@click.option(
    "--verdict",
    type=click.Choice([v.value for v in Verdict]),
    required=True,
    help="What this platform found when an upload matched the entry.",
)
@click.option("--tag", "tags", multiple=True, help="A free-form tag (repeatable, at most 16).")
@click.pass_obj
def feedback_command(
    home: Path, origin: str, index: int, verdict: str, tags: tuple[str, ...]
) -> None:
    """Publish feedback on entry INDEX of ORIGIN's log in this node's own log.

    The publisher and other partners who sync this node's log see it beside the
    entry in their match output and status. The entry must be an active hash
    addition this node holds (synced from ORIGIN, not retracted). 'hashfed serve'
    takes the same feedback over HTTP, by entry or by hash: POST /v1/feedback
    (specs/match-api.md).

    \b
    Example:
        hashfed feedback stopncii.example/bank 17 --verdict blocked
        hashfed feedback stopncii.example/bank 18 --verdict false_positive --tag cartoon
    """
    with open_node(home) as node:
        try:
            target = feedback.entry_target(node.db.conn, origin, index)
            tag_list = feedback.check_tags(tags)
            result = feedback.publish(node.own_log(), [target], Verdict(verdict), tag_list)
        except feedback.FeedbackRefused as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"published {verdict} feedback on {origin} entry {index} as {result.log} entry "
        f"{result.first_index}"
    )
