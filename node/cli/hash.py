"""``hashfed hash``: hash photos (PDQ) and videos (MD5) on this device."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from hashfed.hasher import (
    DIHEDRAL_NAMES,
    PDQ_QUALITY_THRESHOLD,
    FileError,
    Result,
    hash_paths,
    iter_files,
)
from hashfed.node.cli.output import emit, output_options

TABLE_COLUMNS = ["kind", "hash", "quality", "variant", "path"]
CSV_COLUMNS = ["kind", "hash", "quality", "path", "variant"]
"""The columns ``hashfed publish`` reads (kind, hash, quality; path and variant are notes)."""

PROGRESS_MIN_FILES = 10
"""Show a progress bar (unless --silent) from this many files on."""


def _table_rows(result: Result, dihedral: bool) -> list[dict[str, Any]]:
    row = result.to_dict()
    if not result.publishable:
        row["variant"] = f"{result.variant} (low quality)"
    rows = [row]
    if dihedral and result.dihedral is not None:
        for name, h in zip(DIHEDRAL_NAMES[1:], result.dihedral[1:], strict=True):
            rows.append({**row, "hash": h, "variant": f"{result.variant}/{name}"})
    return rows


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=False))
@output_options
@click.option(
    "--jsonl",
    "fmt",
    flag_value="jsonl",
    help="Print JSON lines (kind, hash, quality, path, variant), which `hashfed publish` reads.",
)
@click.option(
    "--dihedral", is_flag=True, help="Also print the 8 rotation/flip PDQ hashes of each photo."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes to hash with (default: every core).",
)
@click.option("-s", "--silent", is_flag=True, help="Don't show a progress bar.")
def hash_command(
    paths: tuple[Path, ...], fmt: str, dihedral: bool, workers: int | None, silent: bool
) -> None:
    """Hash photos (PDQ) and videos (MD5) on this device; directories are recursed.

    Photos: jpeg jpg png gif psd tiff xcf tga miff ico dcm xpm pcx bmp heic heif avif
    webp. Videos: mp4 mov avi qt wmv 3gp (MD5 of the file; only files with a video
    track). A photo with an EXIF orientation also gets an
    "exif-rotated" hash of what a viewer shows. PDQ quality below 50 is shown but left
    out of --csv and --jsonl, the formats `hashfed publish` reads. Exit status 1 if
    any file could not be hashed.

    \b
    Example:
        hashfed hash ~/Pictures/case-42 --csv > case-42.csv
        hashfed hash ~/Pictures/case-42 --jsonl | hashfed publish -
        hashfed hash photo.jpg --dihedral --json
    """
    if dihedral and fmt in ("csv", "jsonl"):
        raise click.UsageError(
            f"--dihedral is for matching, --{fmt} is a publish format: use one or the other"
        )
    total = sum(1 for _ in iter_files(paths))
    results: list[Result] = []
    errors: list[FileError] = []
    show_bar = not silent and total >= PROGRESS_MIN_FILES
    with click.progressbar(
        length=total, label="hashing", file=sys.stderr, hidden=not show_bar
    ) as bar:
        for outcome in hash_paths(
            paths, workers=workers, progress=lambda _path: bar.update(1), dihedral=dihedral
        ):
            if isinstance(outcome, FileError):
                errors.append(outcome)
            else:
                results.append(outcome)
    for err in errors:
        click.echo(f"error: {err.path}: {err.error}", err=True)
    low = [r for r in results if not r.publishable]
    if fmt == "json":
        document = [r.to_dict() for r in results] + [e.to_dict() for e in errors]
        emit([], fmt, [], document=document)
    elif fmt == "csv":
        emit([r.to_dict() for r in results if r.publishable], fmt, CSV_COLUMNS)
    elif fmt == "jsonl":
        for r in results:
            if r.publishable:
                row = {k: v for k, v in r.to_dict().items() if k in CSV_COLUMNS}
                if row.get("quality") is None:
                    row.pop("quality", None)
                click.echo(json.dumps(row, separators=(",", ":")))
    else:
        emit([row for r in results for row in _table_rows(r, dihedral)], fmt, TABLE_COLUMNS)
    if low:
        where = f"left out of the {fmt.upper()}" if fmt in ("csv", "jsonl") else "not publishable"
        click.echo(
            f"note: {len(low)} hash(es) below PDQ quality {PDQ_QUALITY_THRESHOLD} {where}: "
            "the photo has too little detail to match reliably",
            err=True,
        )
    if errors:
        click.echo(f"{len(errors)} of {total} file(s) could not be hashed", err=True)
        sys.exit(1)
