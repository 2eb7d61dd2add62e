"""``hashfed witness``, ``hashfed policy`` and ``hashfed evidence``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click
from hashfed.node.cli.output import emit, iso_time, output_options
from hashfed.node.errors import NodeError
from hashfed.node.home import Node, open_node
from hashfed.node.policyfile import load_policy, policy_path
from hashfed.node.services.witnesspush import push_checkpoint
from hashfed.node.store import witness as witness_store
from hashfed.node.store.db import transaction
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.evidence import check_evidence, parse_evidence
from hashfed.protocol.policy import format_policy, parse_policy
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import ALG_ED25519, decode_vkey, parse_verifier
from hashfed.signing.note import VerifierList


@click.group("witness")
def witness_group() -> None:
    """Witness other nodes' logs: cosign their checkpoints (C2SP tlog-witness)."""


@witness_group.command("add")
@click.argument("origin_and_vkey", metavar="[ORIGIN] VKEY", nargs=-1, required=True)
@click.pass_obj
def witness_add(home: Path, origin_and_vkey: tuple[str, ...]) -> None:
    """Witness the log ORIGIN whose verifier key is VKEY.

    The origin must be the key's name (C2SP tlog-policy), so it may be left out.

    The log's operator then sends its checkpoints to this node's
    /witness/add-checkpoint, and gets them cosigned only if they are consistent
    with every checkpoint this node cosigned before.

    \b
    Example:
        hashfed witness add stopncii.example/bank 'stopncii.example/bank+1a2b3c4d+AUx...'
    """
    if len(origin_and_vkey) > 2:
        raise click.UsageError("witness add takes ORIGIN VKEY (or just VKEY)")
    vkey = origin_and_vkey[-1]
    name, _, alg, _ = decode_vkey(vkey)
    if len(origin_and_vkey) == 2 and origin_and_vkey[0] != name:
        raise click.BadParameter(
            f"the origin {origin_and_vkey[0]!r} is not the key's name {name!r}; a log's origin "
            "must equal its key's name"
        )
    if alg != ALG_ED25519:
        raise click.BadParameter("a log key must be an Ed25519 (signed-note type 1) key")
    parse_verifier(vkey)
    with open_node(home) as node, transaction(node.db) as conn:
        if witness_store.witnessed_vkey(conn, name) is not None:
            raise NodeError(f"this node already witnesses {name}")
        witness_store.add_witnessed(conn, name, vkey)
    click.echo(f"witnessing {name}")


@witness_group.command("list")
@output_options
@click.pass_obj
def witness_list(home: Path, fmt: str) -> None:
    """List the logs this node witnesses and the latest checkpoint it cosigned."""
    with open_node(home) as node:
        rows: list[dict[str, Any]] = [
            {"origin": r.origin, "size": r.size, "updated": r.updated, "vkey": r.vkey}
            for r in witness_store.list_witnessed(node.db.conn)
        ]
    if fmt != "json":  # people and spreadsheets read ISO 8601; scripts get Unix seconds
        rows = [{**row, "updated": iso_time(row["updated"])} for row in rows]
    emit(rows, fmt, ["origin", "size", "updated", "vkey"])


@witness_group.command("remove")
@click.argument("origin")
@click.pass_obj
def witness_remove(home: Path, origin: str) -> None:
    """Stop witnessing ORIGIN (its evidence is kept)."""
    with open_node(home) as node, transaction(node.db) as conn:
        if not witness_store.remove_witnessed(conn, origin):
            raise NodeError(f"this node does not witness {origin}")
    click.echo(f"no longer witnessing {origin}")


@witness_group.command("push")
@click.pass_obj
def witness_push(home: Path) -> None:
    """Send this node's latest checkpoint to the witnesses in its policy now.

    'hashfed publish' and 'retract' do this after appending, and 'hashfed serve'
    does it at a steady cadence so that an idle log stays provably fresh.
    """
    with open_node(home) as node:
        report = push_now(node)
    if report is None:
        raise NodeError(f"no witnesses with URLs in {policy_path(home)}")
    if report.errors:
        sys.exit(1)


def push_now(node: Node) -> Any:
    """Pushes the own checkpoint to the policy's witnesses, printing what they said."""
    policy = load_policy(node.config.home)
    if policy is None or not any(w.url for w in policy.witnesses):
        return None
    report = asyncio.run(push_checkpoint(node.db, node.config.origin, policy))
    for name in report.cosigned:
        click.echo(f"witness {name} cosigned size {report.size}", err=True)
    for name, error in report.errors.items():
        click.echo(f"witness {name} did not cosign: {error}", err=True)
    return report


@click.group("policy")
def policy_group() -> None:
    """The witness policy (C2SP tlog-policy): which witnesses, and the quorum."""


@policy_group.command("set")
@click.argument("source", type=click.File("rb"))
@click.pass_obj
def policy_set(home: Path, source: Any) -> None:
    """Install the tlog-policy file SOURCE (- for stdin) after checking it.

    A partner applies a log's checkpoints only once the policy's quorum of
    witnesses has cosigned them; a publisher pushes its checkpoints to the
    witnesses listed with a URL.

    \b
    Example policy:
        log stopncii.example/bank+1a2b3c4d+AUx...
        witness a partner-a.example/hashfed/witness+…+BF… https://a.example/witness
        witness b partner-b.example/hashfed/witness+…+BG… https://b.example/witness
        group both all a b
        quorum both
    """
    data = source.read()
    try:
        policy = parse_policy(data)
    except ProtocolError as exc:
        raise NodeError(str(exc)) from None
    with open_node(home):
        path = policy_path(home)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    click.echo(
        f"policy installed: {len(policy.logs)} log(s), {len(policy.witnesses)} witness(es), "
        f"quorum {policy.quorum}"
    )


@policy_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the policy as JSON.")
@click.pass_obj
def policy_show(home: Path, as_json: bool) -> None:
    """Print the node's witness policy."""
    policy = load_policy(home)
    if policy is None:
        raise NodeError(f"no policy in {policy_path(home)}; install one with 'hashfed policy set'")
    if as_json:
        emit(
            [],
            "json",
            [],
            document={
                "logs": [
                    {"origin": log.origin, "vkey": log.vkey, "url": log.url} for log in policy.logs
                ],
                "witnesses": [
                    {"name": w.name, "vkey": w.vkey, "url": w.url} for w in policy.witnesses
                ],
                "quorum": policy.quorum,
            },
        )
    else:
        click.echo(format_policy(policy), nl=False)


@click.group("evidence")
def evidence_group() -> None:
    """Evidence that a log signed two inconsistent checkpoints."""


def _evidence_rows(node: Node) -> list[dict[str, Any]]:
    conn = node.db.conn
    sources = [
        ("sync", witness_store.list_sync_evidence(conn)),
        ("witness", witness_store.list_witness_evidence(conn)),
    ]
    return [
        {
            "id": f"{kind}-{r.id}",
            "origin": r.origin,
            "found": r.found,
            "detail": r.detail,
            "text": r.text,
        }
        for kind, rows in sources
        for r in rows
    ]


@evidence_group.command("list")
@output_options
@click.pass_obj
def evidence_list(home: Path, fmt: str) -> None:
    """List the evidence this node holds (from syncing and from witnessing)."""
    with open_node(home) as node:
        rows = _evidence_rows(node)
    emit(rows, fmt, ["id", "origin", "found", "detail"])


@evidence_group.command("export")
@click.argument("evidence_id")
@click.argument("target", type=click.File("w"), default="-")
@click.pass_obj
def evidence_export(home: Path, evidence_id: str, target: Any) -> None:
    """Write evidence EVIDENCE_ID (see 'evidence list') to TARGET, checkable offline.

    \b
    Example:
        hashfed evidence export sync-1 fork.evidence
        hashfed evidence verify fork.evidence --vkey 'stopncii.example/bank+…'
    """
    with open_node(home) as node:
        rows = {row["id"]: row for row in _evidence_rows(node)}
    if evidence_id not in rows:
        raise NodeError(f"no evidence {evidence_id!r}; see 'hashfed evidence list'")
    target.write(rows[evidence_id]["text"])


@evidence_group.command("verify")
@click.argument("source", type=click.File("r"))
@click.option("--vkey", required=True, help="The log's verifier key (trusted, from its operator).")
def evidence_verify(source: Any, vkey: str) -> None:
    """Check evidence offline, without any node's database: exit 0 if it proves that
    the log signed two inconsistent checkpoints, 1 if it does not."""
    try:
        evidence = parse_evidence(source.read())
        verifier = parse_verifier(vkey)
        a, b = check_evidence(evidence, VerifierList(verifier), verifier.name)
    except (ProtocolError, SigningError) as exc:
        click.echo(f"not valid evidence: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"valid evidence: {verifier.name} signed checkpoint {a.size} ({a.root.hex()[:16]}…) "
        f"and checkpoint {b.size} ({b.root.hex()[:16]}…), which are inconsistent"
    )
