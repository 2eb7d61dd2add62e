"""Reading hash records for ``hashfed publish``: CSV or JSON lines.

The CSV is what ``hashfed hash --csv`` writes.

CSV: a header naming the columns, then one record a line.

    kind,hash,quality,labels
    pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,100,ncii;test
    md5,0a21c8f85a55a9e276ffc2c53f6887c4,,

JSON lines: one object a line, ``{"kind": "pdq", "hash": "...", "quality": 100,
"labels": ["ncii"]}``. The columns ``path`` and ``variant`` that ``hashfed hash``
prints are informational and ignored; any other column is refused.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

from hashfed.node.services.ownlog import NewHash
from hashfed.protocol.errors import InvalidRecord
from hashfed.protocol.kinds import kinds
from hashfed.protocol.records import check_labels
from hashfed.protocol.validation import Policy, check_hash

COLUMNS = {"kind", "hash", "quality", "labels"}
IGNORED_COLUMNS = {"path", "variant"}


def _parse(line: int, raw: dict[str, Any], policy: Policy, extra: tuple[str, ...]) -> NewHash:
    where = f"line {line}"
    unknown = set(raw) - COLUMNS - IGNORED_COLUMNS
    if unknown:
        raise InvalidRecord(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(COLUMNS))}"
        )
    registry = kinds()
    spec = registry.get(str(raw.get("kind", "")).strip().lower())
    if spec is None:
        choices = registry.names_text(" or ")
        raise InvalidRecord(f"{where}: kind must be {choices}, not {raw.get('kind')!r}")
    kind = spec.name
    text = str(raw.get("hash", "")).strip().lower()
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        raise InvalidRecord(f"{where}: hash {text!r} is not hexadecimal") from None
    quality_raw = raw.get("quality")
    quality: int | None = None
    if spec.has_quality:
        if isinstance(quality_raw, bool) or not str(quality_raw or "").strip().isdigit():
            raise InvalidRecord(f"{where}: a {kind} hash needs an integer quality 0..100")
        quality = int(str(quality_raw).strip())
    elif quality_raw not in (None, ""):
        raise InvalidRecord(f"{where}: an {kind} hash takes no quality")
    labels_raw = raw.get("labels") or []
    if isinstance(labels_raw, str):
        labels_raw = [item for item in labels_raw.split(";") if item.strip()]
    if not isinstance(labels_raw, list) or not all(isinstance(x, str) for x in labels_raw):
        raise InvalidRecord(f"{where}: labels must be a list of strings")
    labels = tuple(dict.fromkeys([x.strip() for x in labels_raw] + list(extra)))
    try:
        check_hash(kind, digest, quality, policy)
        check_labels(labels)
    except ValueError as exc:
        raise InvalidRecord(f"{where}: {exc}") from None
    return NewHash(kind, digest, quality, labels)


def _rows(source: IO[str], fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if fmt == "jsonl":
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRecord(f"line {number}: not JSON: {exc.msg}") from None
            except RecursionError:
                raise InvalidRecord(f"line {number}: JSON nested too deeply") from None
            if not isinstance(value, dict):
                raise InvalidRecord(f"line {number}: want a JSON object")
            yield number, value
        return
    reader = csv.DictReader(source)
    if not reader.fieldnames:
        raise InvalidRecord("the input is empty: no records to publish")
    if not {"kind", "hash"} <= set(reader.fieldnames):
        raise InvalidRecord("CSV input needs a header line with at least the columns kind,hash")
    for row in reader:
        if None in row:
            raise InvalidRecord(f"line {reader.line_num}: more fields than the header names")
        yield reader.line_num, {k: v for k, v in row.items() if v is not None}


def read_hashes(
    source: IO[str],
    fmt: str = "auto",
    policy: Policy | None = None,
    extra_labels: tuple[str, ...] = (),
) -> list[NewHash]:
    """Reads and validates every record in source, raising InvalidRecord on the first bad one."""
    policy = policy or Policy()
    if fmt == "auto":
        text = source.read()
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
        source = io.StringIO(text)
    hashes = [_parse(line, raw, policy, extra_labels) for line, raw in _rows(source, fmt)]
    if not hashes:
        raise InvalidRecord("no records to publish in the input")
    return hashes
