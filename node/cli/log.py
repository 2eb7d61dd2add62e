"""``hashfed publish``, ``retract`` and ``log show | checkpoint | proof | verify``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Any

import click
from hashfed.node.cli.inputs import read_hashes
from hashfed.node.cli.output import emit, output_options, plural
from hashfed.node.cli.witness import push_now
from hashfed.node.home import open_node
from hashfed.node.services.verify import VerifyReport, verify_bank, verify_log
from hashfed.node.store import bank as bankstore
from hashfed.node.store import logstore, peers
from hashfed.node.store.db import transaction
from hashfed.protocol.checkpoint import parse_checkpoint_body
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.merkle import check_inclusion, inclusion_proof, leaf_hash
from hashfed.protocol.records import Addition, Feedback, Reason, Retraction, decode_record
from hashfed.protocol.tiles import TileHashReader
from hashfed.protocol.tlog_proof import check_tlog_proof, format_tlog_proof, parse_tlog_proof
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList

PUBLISH_BATCH = 10_000


@click.command("publish")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto: JSON lines if the first character is '{', else CSV.",
)
@click.option("--label", "labels", multiple=True, help="Add this label to every record.")
@click.option("-s", "--silent", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def publish_command(
    home: Path, source: IO[str], fmt: str, labels: tuple[str, ...], silent: bool, as_json: bool
) -> None:
    """Append hash records from SOURCE (a file, or - for stdin) to this node's log.

    CSV has a header line naming the columns kind, hash, quality (PDQ only) and,
    optionally, labels (separated by ';'); the columns path and variant written by
    'hashfed hash --csv' are ignored. JSON lines hold objects with the same keys,
    labels as a list. Every line is validated before anything is appended, so a
    bad line changes nothing. Records are appended in batches of 10,000, each
    ending in a signed checkpoint.

    \b
    Example:
        hashfed hash ~/photos --csv | hashfed publish -
        hashfed publish hashes.jsonl --label ncii
    """
    with open_node(home) as node:
        log = node.own_log()
        hashes = read_hashes(source, fmt, log.policy, extra_labels=labels)
        first = None
        show = not silent and len(hashes) > PUBLISH_BATCH
        with click.progressbar(
            length=len(hashes), label="publishing", file=sys.stderr, hidden=not show
        ) as bar:
            for start in range(0, len(hashes), PUBLISH_BATCH):
                batch = hashes[start : start + PUBLISH_BATCH]
                result = log.publish(batch)
                first = result.first_index if first is None else first
                bar.update(len(batch))
        push_now(node)  # to the witnesses in the node's policy, if it names any
    summary = {
        "published": len(hashes),
        "first_index": first,
        "size": result.checkpoint.size,
        "root": result.checkpoint.root.hex(),
    }
    if as_json:
        emit([], "json", [], document=summary)
    else:
        click.echo(
            f"published {plural(len(hashes), 'record')} at indices "
            f"{first}..{result.checkpoint.size - 1};"
            f" log size {result.checkpoint.size}"
        )


@click.command("retract")
@click.argument("indices", nargs=-1, type=click.IntRange(min=0), required=True)
@click.option(
    "--reason",
    type=click.Choice([r.value for r in Reason]),
    default=Reason.WITHDRAWN.value,
    show_default=True,
    help="withdrawn: the person withdrew; deleted: operator policy; error: published by mistake.",
)
@click.pass_obj
def retract_command(home: Path, indices: tuple[int, ...], reason: str) -> None:
    """Retract earlier hash additions of this node's log by INDEX.

    The retraction is appended to the log and the hashes' content is erased from
    this node; partners that sync it stop matching them. It cannot be undone.

    \b
    Example:
        hashfed retract 17 18 --reason withdrawn
    """
    with open_node(home) as node:
        result = node.own_log().retract(indices, Reason(reason))
        push_now(node)
    click.echo(
        f"retracted {plural(len(set(indices)), 'record')} in entries "
        f"{result.first_index}..{result.first_index + result.count - 1}"
    )


@click.group("log")
def log_group() -> None:
    """Inspect, prove and verify this node's own log."""


def _describe(idx: int, entry: bytes, bank: dict[int, tuple[Any, ...]]) -> dict[str, Any]:
    try:
        record = decode_record(entry)
    except ProtocolError as exc:
        return {"index": idx, "type": "unreadable", "detail": str(exc)}
    if isinstance(record, Addition):
        kind, digest, quality, labels, status = bank.get(idx, (None,) * 5)
        return {
            "index": idx,
            "type": "add",
            "kind": kind,
            "hash": digest.hex() if digest else None,
            "quality": quality,
            "labels": labels.split(",") if labels else [],
            "status": status,
            "commit": record.commit.hex(),
        }
    if isinstance(record, Retraction):
        return {
            "index": idx,
            "type": "retract",
            "reason": record.reason.value,
            "indices": list(record.indices),
            "time": record.time,
        }
    assert isinstance(record, Feedback)
    return {
        "index": idx,
        "type": "feedback",
        "origin": record.origin,
        "target": record.index,
        "verdict": record.verdict.value,
        "tags": list(record.tags),
        "time": record.time,
    }


@log_group.command("show")
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@output_options
@click.pass_obj
def log_show(home: Path, start: int, limit: int, fmt: str) -> None:
    """List entries of the log, with what the bank holds for each addition.

    \b
    Example:
        hashfed log show --start 100 --limit 20 --json
    """
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, node.config.origin)
        assert log is not None
        end = min(log.size, start + limit)
        entries = logstore.read_entries(node.db.conn, log.id, start, end) if end > start else []
        bank = bankstore.rows_between(node.db.conn, log.id, start, end)
    rows = [_describe(start + n, e, bank) for n, e in enumerate(entries)]
    for row in rows:
        if fmt == "table" and row["type"] == "retract":
            row["hash"] = "retracts " + ",".join(map(str, row["indices"]))
        if fmt == "table" and row["type"] == "feedback":
            row["hash"] = f"{row['verdict']} on {row['origin']}#{row['target']}"
    emit(rows, fmt, ["index", "type", "kind", "hash", "quality", "labels", "status"])


@log_group.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="Print origin, size and root as JSON.")
@click.pass_obj
def log_checkpoint(home: Path, as_json: bool) -> None:
    """Print the log's latest signed checkpoint (a C2SP tlog-checkpoint note)."""
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, node.config.origin)
        assert log is not None and log.checkpoint is not None
    if as_json:
        body = parse_checkpoint_body(log.checkpoint.split("\n\n", 1)[0] + "\n")
        doc = {
            "origin": body.origin,
            "size": body.size,
            "root": body.root.hex(),
            "note": log.checkpoint,
        }
        emit([], "json", [], document=doc)
    else:
        click.echo(log.checkpoint, nl=False)


@log_group.command("proof")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print the proof's parts as JSON.")
@click.pass_obj
def log_proof(home: Path, index: int, as_json: bool) -> None:
    """Print a C2SP tlog-proof that entry INDEX is in the latest checkpoint.

    Anyone holding the log's verifier key can check it offline.

    \b
    Example:
        hashfed log proof 42 > entry-42.tlog-proof
        hashfed log proof 42 --json
    """
    with open_node(home) as node:
        conn = node.db.conn
        log = logstore.get_log(conn, node.config.origin)
        assert log is not None and log.checkpoint is not None
        if index >= log.size:
            raise click.ClickException(
                f"entry {index} does not exist: the log has {plural(log.size, 'entry', 'entries')}"
            )
        reader = TileHashReader(
            log.size, lambda lvl, idx, w: logstore.read_tile(conn, log.id, lvl, idx, w)
        )
        proof = inclusion_proof(index, log.size, reader)
        entry = logstore.read_entries(conn, log.id, index, index + 1)[0]
    check_inclusion(leaf_hash(entry), index, log.size, proof, log.root)
    if as_json:
        doc = {
            "index": index,
            "size": log.size,
            "root": log.root.hex(),
            "leaf_hash": leaf_hash(entry).hex(),
            "proof": [h.hex() for h in proof],
            "checkpoint": log.checkpoint,
            "entry": entry.hex(),
            "tlog_proof": format_tlog_proof(index, proof, log.checkpoint, entry),
        }
        emit([], "json", [], document=doc)
        return
    click.echo(format_tlog_proof(index, proof, log.checkpoint, entry), nl=False)


@log_group.command("check-proof")
@click.argument("source", metavar="FILE", type=click.File("r", encoding="utf-8"))
@click.argument("entry_file", metavar="[ENTRY]", type=click.File("rb"), required=False)
@click.option("--vkey", required=True, help="The log's verifier key (trusted, from its operator).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def log_check_proof(
    source: IO[str], entry_file: IO[bytes] | None, vkey: str, as_json: bool
) -> None:
    """Check a C2SP tlog-proof offline: the checkpoint's signature and the entry's inclusion.

    Needs no node. The entry is the one the proof carries ('hashfed log proof'
    puts it there); ENTRY, a file holding the entry's bytes, checks that the
    proof is for exactly those bytes (and is needed for a proof without one).
    Exits 0 if the proof holds, 1 saying why if it does not.

    \b
    Example:
        hashfed log proof 42 > entry-42.tlog-proof
        hashfed log check-proof entry-42.tlog-proof --vkey 'stopncii.example/bank+…'
    """
    try:
        verifier = parse_verifier(vkey)
        proof = parse_tlog_proof(source.read())
        entry = None if entry_file is None else entry_file.read()
        cp = check_tlog_proof(proof, VerifierList(verifier), verifier.name, entry)
    except (ProtocolError, SigningError) as exc:
        raise click.ClickException(f"the proof does not hold: {exc}") from None
    checked = proof.extra if entry is None else entry
    assert checked is not None
    if as_json:
        doc = {
            "ok": True,
            "origin": cp.origin,
            "index": proof.index,
            "size": cp.size,
            "root": cp.root.hex(),
            "leaf_hash": leaf_hash(checked).hex(),
        }
        emit([], "json", [], document=doc)
        return
    click.echo(
        f"ok: entry {proof.index} is in {cp.origin} at size {cp.size} "
        f"(root {cp.root.hex()[:16]}…), signed by {verifier.name}"
    )


@log_group.command("forget")
@click.argument("origin")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def log_forget(home: Path, origin: str, yes: bool) -> None:
    """Drop the mirrored log of ORIGIN and everything the node holds of it.

    Its entries, tiles, checkpoints, bank rows, evidence and sync state go, and
    the node stops trusting ORIGIN. The node's own log is never dropped. A later
    'hashfed trust add' starts the log again from nothing.

    \b
    Example:
        hashfed log forget partner-b.example/hashfed --yes
    """
    with open_node(home) as node, transaction(node.db) as conn:
        log = logstore.get_log(conn, origin)
        if log is None:
            raise click.ClickException(f"this node holds no log {origin!r} (see 'hashfed status')")
        if log.own:
            raise click.ClickException(f"{origin!r} is this node's own log; it is never forgotten")
        noun = "entry" if log.size == 1 else "entries"
        if not yes:
            click.confirm(
                f"Forget {origin} ({log.size} {noun}, its bank rows and evidence) and stop "
                "trusting it?",
                abort=True,
            )
        peers.forget_mirror(conn, log)
    click.echo(f"forgot {origin} ({log.size} {noun})")


@log_group.command("verify")
@click.option("--origin", help="Verify this mirrored log instead of the node's own.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def log_verify(home: Path, origin: str | None, as_json: bool) -> None:
    """Re-derive every tile, the root and the bank from the entries, and check the signature.

    Exits 1 and names each discrepancy (a tampered entry, tile, checkpoint or
    bank row) if there is any. With --origin, checks a log this node mirrors.

    \b
    Example:
        hashfed log verify --origin stopncii.example/bank --json
    """
    with open_node(home) as node:
        conn = node.db.conn
        log = logstore.get_log(conn, origin or node.config.origin)
        if log is None:
            raise click.ClickException(f"this node holds no log {origin!r}")
        report = VerifyReport(origin=log.origin)
        verify_log(conn, log, report)
        verify_bank(conn, log, report)
    if as_json:
        emit(
            [],
            "json",
            [],
            document={
                "origin": report.origin,
                "size": report.size,
                "entries": report.entries,
                "tiles": report.tiles,
                "bank_rows": report.bank_rows,
                "ok": report.ok,
                "problems": [{"where": p.where, "message": p.message} for p in report.problems],
            },
        )
    else:
        click.echo(
            f"{report.origin}: {plural(report.entries, 'entry', 'entries')}, "
            f"{plural(report.tiles, 'tile')}, {plural(report.bank_rows, 'bank row')} checked in "
            f"{report.log_seconds + report.bank_seconds:.2f}s"
        )
        for problem in report.problems:
            click.echo(f"PROBLEM {problem}", err=True)
        click.echo("ok" if report.ok else f"{len(report.problems)} problem(s) found")
    if not report.ok:
        sys.exit(1)
