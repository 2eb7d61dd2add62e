"""The witness endpoint (C2SP tlog-witness): every status code, on a real loopback server.

Also the add-checkpoint body parser, consistency_roots, the cosignature vectors
through the endpoint, and the ``hashfed witness`` / ``policy`` / ``evidence``
commands that need no network. (tests/test_cosignature.py checks the cosigner
itself against the vectors; here a Witness reproduces them as HTTP answers.)
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from hashfed.node.cli.main import main
from hashfed.node.http.witness import Witness
from hashfed.node.store import logstore
from hashfed.node.store.db import transaction
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from hashfed.protocol.evidence import check_evidence, parse_evidence
from hashfed.protocol.merkle import (
    check_consistency,
    consistency_proof,
    consistency_roots,
    leaf_hash,
    root_of,
)
from hashfed.protocol.witness import (
    MAX_PROOF_LINES,
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    MalformedWitnessRequest,
    parse_add_checkpoint,
)
from hashfed.signing.cosignature import CosignatureSigner, CosignatureVerifier
from hashfed.signing.keys import generate_key, parse_signer, parse_verifier
from hashfed.signing.note import VerifierList, open_note, sign_note
from synchelpers import NOW, allow, make_node, publish, serve, sync, trust, use
from witnesshelpers import (
    Clock,
    body,
    own_note,
    post,
    proof_of,
    serve_witness,
    witness_log,
)

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
COSIG: dict[str, Any] = json.loads((VECTORS / "note" / "cosignature-vectors.json").read_text())


def witnessed_row(node, origin: str) -> tuple[int, bytes, str]:
    return node.db.conn.execute(
        "SELECT size, root, note FROM witnessed WHERE origin = ?", (origin,)
    ).fetchone()


def evidence_rows(node) -> list[tuple[str, str]]:
    return node.db.conn.execute("SELECT origin, text FROM witness_evidence ORDER BY id").fetchall()


@pytest.fixture
def pair(tmp_path: Path):
    """A publisher p with 5 entries, and a node w that witnesses p's log."""
    p = make_node(tmp_path, "p", "publisher")
    w = make_node(tmp_path, "w")
    publish(p, 5)
    witness_log(w, p)
    yield p, w
    p.close()
    w.close()


# -- 200 ----------------------------------------------------------------------------------


async def test_200_cosigns_with_the_witness_key_and_the_clock(pair) -> None:
    p, w = pair
    clock = Clock(NOW + 17)
    async with serve_witness(w, clock) as served, aiohttp.ClientSession() as s:
        note = own_note(p)
        status, text, _ = await post(s, served.endpoint, body(0, note))
        assert status == 200, text
        verifier = parse_verifier(served.vkey)
        assert isinstance(verifier, CosignatureVerifier)
        assert verifier.name == w.config.origin + "/witness"
        opened = open_note(note + text, VerifierList(verifier))
        assert [sig.name for sig in opened.sigs] == [verifier.name]
        assert verifier.timestamp_of(opened.sigs[0]) == NOW + 17
        assert text.count("\n") == 1 and text.startswith("— ")
        assert witnessed_row(w, p.config.origin)[:2] == (
            5,
            logstore.get_log(p.db.conn, p.config.origin).root,
        )

        # The log grows: old 5 with a proof to 8.
        publish(p, 3, seed=2)
        clock.now += 10
        status, text, _ = await post(s, served.endpoint, body(5, own_note(p), proof_of(p, 5)))
        assert status == 200, text
        assert (
            verifier.timestamp_of(open_note(own_note(p) + text, VerifierList(verifier)).sigs[0])
            == NOW + 27
        )
        assert witnessed_row(w, p.config.origin)[0] == 8

        # The same tree again: cosigned again, later (this keeps an idle log fresh).
        clock.now += 10
        status, text, _ = await post(s, served.endpoint, body(8, own_note(p)))
        assert status == 200, text
        assert (
            verifier.timestamp_of(open_note(own_note(p) + text, VerifierList(verifier)).sigs[0])
            == NOW + 37
        )
    assert evidence_rows(w) == []


async def test_200_ignores_cosignatures_and_unknown_keys_on_the_submitted_note(pair) -> None:
    p, w = pair
    other, _ = generate_key("someone.else/key")
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        note = own_note(p)
        from hashfed.signing.note import add_signatures

        status, text, _ = await post(
            s, served.endpoint, body(0, add_signatures(note, parse_signer(other)))
        )
        assert status == 200, text


# -- 400 ----------------------------------------------------------------------------------


async def test_400_malformed_bodies(pair) -> None:
    p, w = pair
    note = own_note(p)
    proof_line = base64.b64encode(bytes(32)).decode()
    bad = [
        b"\xff\xfe" + note.encode(),  # not UTF-8
        note.encode(),  # no old line
        b"old 0\n" + note.encode(),  # no empty line after the header
        b"old 0\n\n",  # no note
        b"old 00\n\n" + note.encode(),  # leading zero
        b"old -1\n\n" + note.encode(),
        b"old 1e3\n\n" + note.encode(),
        b"Old 0\n\n" + note.encode(),
        b"old  0\n\n" + note.encode(),
        "old ٣\n\n".encode() + note.encode(),  # a non-ASCII digit
        b"old 0\nnot base64!\n\n" + note.encode(),
        b"old 0\n" + base64.b64encode(bytes(31)) + b"\n\n" + note.encode(),  # 31 bytes
        ("old 1\n" + (proof_line + "\n") * (MAX_PROOF_LINES + 1) + "\n").encode() + note.encode(),
        b"old 0\n\nnot a signed note\n",
    ]
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        for data in bad:
            status, text, _ = await post(s, served.endpoint, data)
            assert status == 400, (data[:40], status, text)
        # Old size above the checkpoint's size (even though the witness holds 0).
        status, text, _ = await post(s, served.endpoint, body(6, note, (bytes(32),)))
        assert (status, text) == (400, "the old size is above the checkpoint's size\n")
        # A non-empty proof from old size 0 cannot verify: 422, as the reference
        # witnesses answer.
        status, text, _ = await post(s, served.endpoint, body(0, note, (bytes(32),)))
        assert status == 422 and "empty" in text
    assert witnessed_row(w, p.config.origin)[0] == 0  # nothing recorded


async def test_400_signed_note_that_is_not_a_checkpoint(pair) -> None:
    p, w = pair
    note = sign_note(f"{p.config.origin}\nnot a size\nxyz\n", p.signer)
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        status, text, _ = await post(s, served.endpoint, body(0, note))
    assert status == 400, text


async def test_413_oversized_body(pair) -> None:
    _, w = pair
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        status, _, _ = await post(s, served.endpoint, b"old 0\n\n" + b"x" * 70_000)
    assert status == 413


# -- 403 / 404 ----------------------------------------------------------------------------


async def test_403_bad_signature_or_another_key(pair, tmp_path: Path) -> None:
    p, w = pair
    note = own_note(p)
    log = logstore.get_log(p.db.conn, p.config.origin)
    # Another key with the same name (the origin): no signature by the known key.
    impostor = parse_signer(generate_key(p.config.origin)[0])
    forged = sign_checkpoint(Checkpoint(p.config.origin, log.size, log.root), impostor)
    # The known key's line, with the signature bytes changed.
    prefix, sig = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    tampered = f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    # The right key, the wrong text.
    other_text = sign_checkpoint(Checkpoint(p.config.origin, log.size, bytes(32)), impostor)
    swapped = other_text.split("\n\n")[0] + "\n\n" + note.split("\n\n")[1]
    # A note signed only by the witness's own cosigning key.
    cosigned_only = sign_note(note.split("\n\n")[0] + "\n", w.witness_signer())
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        for bad in (forged, tampered, swapped, cosigned_only):
            status, text, _ = await post(s, served.endpoint, body(0, bad))
            assert status == 403, (bad, status, text)
    assert witnessed_row(w, p.config.origin)[0] == 0


async def test_404_unknown_origin(pair, tmp_path: Path) -> None:
    p, w = pair
    q = make_node(tmp_path, "q", "publisher")
    publish(q, 2)
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        status, text, _ = await post(s, served.endpoint, body(0, own_note(q)))
        assert status == 404, text
        # witness remove: the origin becomes unknown.
        result = CliRunner().invoke(
            main, ["-d", str(w.config.home), "witness", "remove", p.config.origin]
        )
        assert result.exit_code == 0, result.output
        status, text, _ = await post(s, served.endpoint, body(0, own_note(p)))
        assert status == 404, text
    q.close()


# -- 409 ----------------------------------------------------------------------------------


async def test_409_old_size_mismatch_says_the_size_held(pair) -> None:
    p, w = pair
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        assert (await post(s, served.endpoint, body(0, own_note(p))))[0] == 200
        publish(p, 3, seed=2)
        note = own_note(p)
        for old in (0, 3, 7):
            status, text, ctype = await post(s, served.endpoint, body(old, note, proof_of(p, old)))
            assert (status, text, ctype) == (409, "5\n", SIZE_CONTENT_TYPE), old
        assert witnessed_row(w, p.config.origin)[0] == 5
        # Never an older checkpoint: old 5 is above 3 (400), old 3 is not what it holds (409).
        older = sign_checkpoint(Checkpoint(p.config.origin, 3, bytes(32)), p.signer)
        assert (await post(s, served.endpoint, body(5, older)))[0] == 400
        assert (await post(s, served.endpoint, body(3, older)))[:2] == (409, "5\n")
    assert evidence_rows(w) == []


async def test_409_equal_size_other_root_keeps_evidence(pair) -> None:
    p, w = pair
    log = logstore.get_log(p.db.conn, p.config.origin)
    fork = sign_checkpoint(Checkpoint(p.config.origin, 5, leaf_hash(b"fork")), p.signer)
    async with serve_witness(w, Clock(NOW + 5)) as served, aiohttp.ClientSession() as s:
        assert (await post(s, served.endpoint, body(0, own_note(p))))[0] == 200
        status, text, ctype = await post(s, served.endpoint, body(5, fork))
        assert (status, text, ctype) == (409, "5\n", SIZE_CONTENT_TYPE)
    assert witnessed_row(w, p.config.origin)[1] == log.root  # still the honest one
    [(origin, text)] = evidence_rows(w)
    assert origin == p.config.origin
    a, b = check_evidence(parse_evidence(text), VerifierList(p.signer.verifier()), origin)
    assert (a.size, b.size) == (5, 5) and {a.root, b.root} == {log.root, leaf_hash(b"fork")}


async def test_422_checkpoint_that_disagrees_with_the_mirrored_log(tmp_path: Path) -> None:
    """A witness that also follows the origin checks checkpoints against the tree it holds.

    The answer is 422, not 409: the client's old size is right, and a 409 carrying
    that same size would send a compliant log into an endless retry."""
    p = make_node(tmp_path, "p", "publisher")
    w = make_node(tmp_path, "w")
    publish(p, 8)
    allow(p, w)
    trust(w, p)
    async with serve(p) as p_url:
        use(w, p, p_url)
        assert (await sync(w)).result.status == "advanced"
    witness_log(w, p)  # it witnesses from size 0 on
    fork = sign_checkpoint(Checkpoint(p.config.origin, 5, leaf_hash(b"fork")), p.signer)
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        status, text, _ = await post(s, served.endpoint, body(0, fork))
        assert status == 422 and "mirrors" in text
        # The honest prefix of size 5 is fine.
        honest = logstore.get_log(p.db.conn, p.config.origin)
    [(_, text)] = evidence_rows(w)
    check_evidence(parse_evidence(text), VerifierList(p.signer.verifier()), p.config.origin)
    halted = w.db.conn.execute("SELECT halted FROM logs WHERE origin = ?", (p.config.origin,))
    assert halted.fetchone()[0] == 1
    assert honest is not None
    p.close()
    w.close()


# -- 422 ----------------------------------------------------------------------------------


async def test_422_bad_proof(pair) -> None:
    p, w = pair
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        assert (await post(s, served.endpoint, body(0, own_note(p))))[0] == 200
        publish(p, 3, seed=2)
        note, proof = own_note(p), proof_of(p, 5)
        corrupt = (proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:])
        for bad in (corrupt, proof[:-1], (*proof, bytes(32)), ()):
            status, text, _ = await post(s, served.endpoint, body(5, note, bad))
            assert status == 422, (bad, status, text)
        # Equal sizes take an empty proof, and only that.
        assert (await post(s, served.endpoint, body(5, own_note_at(p, 5), (bytes(32),))))[0] == 422
        assert witnessed_row(w, p.config.origin)[0] == 5
        assert (await post(s, served.endpoint, body(5, note, proof)))[0] == 200


def own_note_at(p, size: int) -> str:
    row = p.db.conn.execute(
        "SELECT note FROM checkpoints c JOIN logs l ON l.id = c.log_id"
        " WHERE l.origin = ? AND c.size = ?",
        (p.config.origin, size),
    ).fetchone()
    return row[0]


async def test_422_proof_of_a_forked_tree_is_kept_as_evidence(tmp_path: Path) -> None:
    """The proof hashes to the new root from another prefix: a fork, provably."""
    import shutil

    from hashfed.node.home import open_node

    p = make_node(tmp_path, "p", "publisher")
    w = make_node(tmp_path, "w")
    witness_log(w, p)
    publish(p, 3)
    p.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copytree(p.config.home, tmp_path / "fork")
    fork = open_node(tmp_path / "fork")
    publish(p, 3, seed=2)  # honest: 6 entries
    publish(fork, 5, seed=3)  # fork: 8 entries, a different 4th to 6th
    async with serve_witness(w, Clock()) as served, aiohttp.ClientSession() as s:
        assert (await post(s, served.endpoint, body(0, own_note(p))))[0] == 200
        status, text, _ = await post(s, served.endpoint, body(6, own_note(fork), proof_of(fork, 6)))
        assert status == 422, text
    [(_, text)] = evidence_rows(w)
    a, b = check_evidence(parse_evidence(text), VerifierList(p.signer.verifier()), p.config.origin)
    assert (a.size, b.size) == (6, 8)
    for n in (p, w, fork):
        n.close()


# -- the body format, and consistency_roots -----------------------------------------------


def test_add_checkpoint_round_trip() -> None:
    note = (
        "example.com/log\n7\n"
        + base64.b64encode(bytes(32)).decode()
        + "\n\n— example.com/log AAAA\n"
    )
    for old, proof in [
        (0, ()),
        (4, (bytes(32),)),
        (10**18, tuple(bytes([i]) * 32 for i in range(63))),
    ]:
        request = AddCheckpoint(old, proof, note)
        raw = request.format().encode()
        assert parse_add_checkpoint(raw) == request
        assert parse_add_checkpoint(raw).format().encode() == raw
    assert AddCheckpoint(4, (bytes(32),), note).format() == (
        "old 4\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n" + note
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"old 0",
        b"old 0\n\n",
        b"old\n\nx\n",
        b"old 01\n\nx\n",
        b"old +1\n\nx\n",
        b"old 1 \n\nx\n",
        b"old 0\nAAAA\n\nx\n",
        b"old 0\n" + base64.b64encode(bytes(32)).rstrip(b"=") + b"\n\nx\n",  # not canonical
        b"old 0\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n\nx\n",
        b"\x80old 0\n\nx\n",
    ],
)
def test_add_checkpoint_refusals(raw: bytes) -> None:
    with pytest.raises(MalformedWitnessRequest):
        parse_add_checkpoint(raw)


def test_add_checkpoint_proof_line_limit() -> None:
    line = base64.b64encode(bytes(32)) + b"\n"
    assert len(parse_add_checkpoint(b"old 1\n" + line * 63 + b"\nx\n").proof) == 63
    with pytest.raises(MalformedWitnessRequest, match="63"):
        parse_add_checkpoint(b"old 1\n" + line * 64 + b"\nx\n")


def _tree(leaves: list[bytes]):
    def subtree(level: int, index: int) -> bytes:
        return root_of(leaves[index << level : (index + 1) << level])

    return subtree


def test_consistency_roots() -> None:
    rng = random.Random(7)
    leaves = [leaf_hash(rng.randbytes(8)) for _ in range(70)]
    tree = _tree(leaves)
    for size1 in range(1, 70):
        for size2 in range(size1 + 1, 71):
            proof = consistency_proof(size1, size2, tree)
            roots = consistency_roots(size1, size2, proof)
            if size1 & (size1 - 1) == 0:
                assert roots is None  # the proof omits the old root: it cannot tell
                continue
            assert roots == (root_of(leaves[:size1]), root_of(leaves[:size2])), (size1, size2)
            check_consistency(size1, size2, proof, *roots)
            assert consistency_roots(size1, size2, proof[:-1]) is None
            assert consistency_roots(size1, size2, [*proof, proof[0]]) is None
            assert consistency_roots(size1, size2, [proof[0][:31], *proof[1:]]) is None
    # A forked tree: the proof's old root is the fork's, not the honest one.
    fork = [*leaves[:3], leaf_hash(b"x"), *leaves[4:]]
    roots = consistency_roots(6, 9, consistency_proof(6, 9, _tree(fork)))
    assert roots == (root_of(fork[:6]), root_of(fork[:9])) and roots[0] != root_of(leaves[:6])
    for size1, size2 in [(0, 5), (5, 5), (6, 5), (4, 9)]:
        assert consistency_roots(size1, size2, [bytes(32)] * 3) is None


# -- the cosignature vectors, through the endpoint ----------------------------------------


@pytest.mark.parametrize("case", COSIG["cases"], ids=lambda c: f"{c['witness']}-{c['timestamp']}")
async def test_vector_cosignature_from_the_endpoint(case: dict[str, Any], tmp_path: Path) -> None:
    node = make_node(tmp_path, "w")
    log_vkey = COSIG["log_vkey"]
    origin = parse_verifier(log_vkey).name
    with transaction(node.db) as conn:
        conn.execute(
            "INSERT INTO witnessed (origin, vkey, size, root, note, updated)"
            " VALUES (?, ?, 0, x'', '', 0)",
            (origin, log_vkey),
        )
    timestamp = case["timestamp"]
    cosigner = CosignatureSigner(
        case["witness"], bytes.fromhex(case["seed_hex"]), clock=lambda: timestamp
    )
    witness = Witness(node.db, cosigner, lambda: timestamp)
    from hashfed.node.config import ServerConfig
    from hashfed.node.http.app import NodeServices, create_app
    from synchelpers import run_app

    app = create_app(
        NodeServices(node.db.conn, node.config.origin, ServerConfig(), witness=witness)
    )
    async with run_app(app) as url, aiohttp.ClientSession() as s:
        status, text, _ = await post(
            s, url + "/witness/add-checkpoint", body(0, case["checkpoint"])
        )
    assert status == 200, text
    assert text == case["cosignature_line"]
    assert case["checkpoint"] + text == case["cosigned_checkpoint"]
    cp, _ = open_checkpoint(
        case["cosigned_checkpoint"], VerifierList(parse_verifier(log_vkey)), origin
    )
    opened = open_note(
        case["cosigned_checkpoint"],
        VerifierList(parse_verifier(log_vkey), parse_verifier(case["vkey"])),
    )
    assert not opened.unverified_sigs and len(opened.sigs) == 2
    assert witnessed_row(node, origin)[:2] == (cp.size, cp.root)
    node.close()


# -- CLI: keys, witness add/list/remove, policy -------------------------------------------


def cli(home: Path, *args: str):
    return CliRunner().invoke(main, ["-d", str(home), *args])


def test_witness_add_list_remove_and_refusals(tmp_path: Path) -> None:
    home = tmp_path / "w"
    assert cli(home, "init", "--origin", "w.test/hashfed").exit_code == 0
    _, log_vkey = generate_key("p.test/hashfed")
    result = cli(home, "witness", "add", log_vkey)
    assert result.exit_code == 0 and "witnessing p.test/hashfed" in result.output
    # Twice: refused.
    result = cli(home, "witness", "add", log_vkey)
    assert result.exit_code == 1 and "already witnesses" in result.output
    # A cosignature key is not a log key.
    from hashfed.signing.keys import ALG_COSIGNATURE_V1

    result = cli(home, "witness", "add", generate_key("c.test/w", ALG_COSIGNATURE_V1)[1])
    assert result.exit_code == 2 and "Ed25519" in result.output
    # Not a key at all.
    for junk in ("nonsense", "p.test/hashfed+00000000+AAAA"):
        result = cli(home, "witness", "add", junk)
        assert result.exit_code == 1, result.output
        assert ("Traceback" not in result.output and result.exception is None) or isinstance(
            result.exception, SystemExit
        )
    rows = json.loads(cli(home, "witness", "list", "--json").output)
    assert rows == [{"origin": "p.test/hashfed", "size": 0, "updated": 0, "vkey": log_vkey}]
    result = cli(home, "witness", "remove", "q.test/hashfed")
    assert result.exit_code == 1 and "does not witness" in result.output
    result = cli(home, "witness", "remove", "p.test/hashfed")
    assert result.exit_code == 0
    assert json.loads(cli(home, "witness", "list", "--json").output) == []


def test_policy_set_show_and_refusal(tmp_path: Path) -> None:
    home = tmp_path / "c"
    assert cli(home, "init", "--origin", "c.test/hashfed").exit_code == 0
    result = cli(home, "policy", "show")
    assert result.exit_code == 1 and "no policy" in result.output
    from hashfed.signing.keys import ALG_COSIGNATURE_V1

    wa = generate_key("a.test/hashfed/witness", ALG_COSIGNATURE_V1)[1]
    wb = generate_key("b.test/hashfed/witness", ALG_COSIGNATURE_V1)[1]
    text = (
        f"# two partners\nwitness A {wa} http://127.0.0.1:1/witness\nwitness B {wb}\n"
        "group both all A B\nquorum both\n"
    )
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(text)
    result = cli(home, "policy", "set", str(policy_file))
    assert result.exit_code == 0 and "2 witness(es), quorum both" in result.output
    shown = cli(home, "policy", "show").output
    assert shown == (
        f"witness A {wa} http://127.0.0.1:1/witness\nwitness B {wb}\n"
        "group both all A B\nquorum both\n"
    )
    doc = json.loads(cli(home, "policy", "show", "--json").output)
    assert doc["quorum"] == "both" and [w["name"] for w in doc["witnesses"]] == ["A", "B"]
    # A broken policy is refused and the installed one is kept.
    policy_file.write_text(f"witness A {wa}\nquorum C\n")
    result = cli(home, "policy", "set", str(policy_file))
    assert result.exit_code == 1 and "line 2" in result.output
    assert cli(home, "policy", "show").output == shown
    # status prints the policy.
    status = cli(home, "status")
    assert "witness policy: quorum both (witnesses: A, B)" in status.output


def test_keys_show_prints_three_keys(tmp_path: Path) -> None:
    """(tests/test_cli_peers.py checks the key types; here: the witness key cosigns.)"""
    home = tmp_path / "n"
    assert cli(home, "init", "--origin", "n.test/hashfed").exit_code == 0
    rows = json.loads(cli(home, "keys", "show", "--json").output)
    assert [r["key"] for r in rows] == ["log", "peer", "witness"]
    from hashfed.node.home import open_node

    with open_node(home) as node:
        assert node.witness_signer().vkey() == rows[2]["vkey"]
        assert node.signer.vkey() == rows[0]["vkey"]


def test_witness_add_takes_origin_and_vkey_and_checks_they_agree(tmp_path: Path) -> None:
    home = tmp_path / "w"
    assert cli(home, "init", "--origin", "w.test/hashfed").exit_code == 0
    _, log_vkey = generate_key("p.test/hashfed")
    result = cli(home, "witness", "add", "q.test/hashfed", log_vkey)
    assert result.exit_code == 2 and "is not the key's name" in result.output
    assert json.loads(cli(home, "witness", "list", "--json").output) == []
    result = cli(home, "witness", "add", "p.test/hashfed", log_vkey)
    assert result.exit_code == 0 and "witnessing p.test/hashfed" in result.output


def test_own_log_is_not_stale_without_witnesses_to_push_to(tmp_path: Path) -> None:
    # A partner's policy with no log lines covers every origin it follows, but its
    # own log never carries cosignatures unless it pushes to witnesses.
    from hashfed.signing.keys import ALG_COSIGNATURE_V1

    home = tmp_path / "c"
    assert cli(home, "init", "--origin", "c.test/hashfed").exit_code == 0
    wa = generate_key("a.test/hashfed/witness", ALG_COSIGNATURE_V1)[1]
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(f"witness A {wa}\nquorum A\n")
    assert cli(home, "policy", "set", str(policy_file)).exit_code == 0
    result = cli(home, "status", "--check", "--json")
    assert result.exit_code == 0, result.output
    own = json.loads(result.stdout)[0]
    assert own["role"] == "own" and own["stale"] is False and own["witnessed"] is None
