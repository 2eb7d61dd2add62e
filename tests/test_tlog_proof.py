"""Tests for hashfed.protocol.tlog_proof (C2SP tlog-proof v1)."""

from __future__ import annotations

import base64
import doctest
from pathlib import Path

import pytest
from hashfed.protocol import merkle, tlog_proof
from hashfed.protocol.errors import MalformedTlogProof, ProofFailed
from hashfed.protocol.merkle import leaf_hash
from hashfed.protocol.tiles import TileHashReader, TreeBuilder
from hashfed.protocol.tlog_proof import TlogProof, format_tlog_proof, parse_tlog_proof

TESSERA = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "tlog-tiles"
CHECKPOINT = (TESSERA / "checkpoint.15").read_text()
H = [leaf_hash(bytes([i])) for i in range(4)]


def test_doctests() -> None:
    assert doctest.testmod(tlog_proof).failed == 0


def test_format_exact() -> None:
    text = format_tlog_proof(73894, H[:2], CHECKPOINT, extra=b"age-v1.2.1")
    b64 = [base64.b64encode(h).decode() for h in H[:2]]
    assert text == (
        "c2sp.org/tlog-proof@v1\n"
        f"extra {base64.b64encode(b'age-v1.2.1').decode()}\n"
        "index 73894\n"
        f"{b64[0]}\n{b64[1]}\n"
        "\n" + CHECKPOINT
    )
    assert format_tlog_proof(0, [], CHECKPOINT) == (
        "c2sp.org/tlog-proof@v1\nindex 0\n\n" + CHECKPOINT
    )


@pytest.mark.parametrize(
    ("index", "proof", "extra"),
    [(0, [], None), (5, H, None), (2**64 - 1, H[:1], b"\x00"), (7, H[:3], bytes(range(256)))],
)
def test_round_trip(index: int, proof: list[bytes], extra: bytes | None) -> None:
    text = format_tlog_proof(index, proof, CHECKPOINT, extra)
    parsed = parse_tlog_proof(text)
    assert parsed == TlogProof(index, tuple(proof), CHECKPOINT, extra)
    assert format_tlog_proof(parsed.index, parsed.proof, parsed.checkpoint_note, parsed.extra) == (
        text
    )


def test_proofs_from_built_tree_verify() -> None:
    entries = [f"entry {i}".encode() for i in range(1000)]
    b = TreeBuilder()
    b.append(merkle.leaf_hashes(entries))
    tiles = b.changed_tiles()
    size, root = b.size, b.root()
    reader = TileHashReader(size, lambda lv, ix, w: tiles[(lv, ix)])
    note = f"example.com/hashfed\n{size}\n{base64.b64encode(root).decode()}\n\n— sig\n"
    for index in (0, 1, 255, 256, 511, 999):
        text = format_tlog_proof(index, merkle.inclusion_proof(index, size, reader), note)
        p = parse_tlog_proof(text)
        lines = p.checkpoint_note.split("\n")
        got_size, got_root = int(lines[1]), base64.b64decode(lines[2])
        merkle.check_inclusion(leaf_hash(entries[p.index]), p.index, got_size, p.proof, got_root)
        with pytest.raises(ProofFailed):
            merkle.check_inclusion(leaf_hash(b"other"), p.index, got_size, p.proof, got_root)


GOOD = format_tlog_proof(3, H[:2], CHECKPOINT)
HASH0 = base64.b64encode(H[0]).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        GOOD.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        GOOD.replace("c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v1 \n"),
        GOOD.replace("c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v1\r\n"),
        " " + GOOD,
        "\n" + GOOD,
        GOOD.replace("index 3", "index 03"),
        GOOD.replace("index 3", "index +3"),
        GOOD.replace("index 3", "index 3 "),
        GOOD.replace("index 3", "index  3"),
        GOOD.replace("index 3", "index -1"),
        GOOD.replace("index 3", "index 1_0"),
        GOOD.replace("index 3", "index ٣"),
        GOOD.replace("index 3", "index 18446744073709551616"),
        GOOD.replace("index 3", "Index 3"),
        GOOD.replace("index 3\n", ""),
        GOOD.replace("index 3\n", "extra AAAA\n"),
        GOOD.replace("index 3\n", "index 3\nextra AAAA\n"),
        GOOD.replace("index 3\n", "extra \nindex 3\n"),
        GOOD.replace("index 3\n", "extra AAA\nindex 3\n"),
        GOOD.replace("index 3\n", "extra AB==\nindex 3\n"),  # non-canonical padding bits
        GOOD.replace(HASH0, HASH0.rstrip("=")),
        GOOD.replace(HASH0, HASH0[:-2] + "B="),  # non-canonical
        GOOD.replace(HASH0, base64.b64encode(H[0][:31]).decode()),
        GOOD.replace(HASH0, base64.b64encode(H[0] + b"\x00").decode()),
        GOOD.replace(HASH0, HASH0.replace("/", "_").replace("+", "-")),
        GOOD.replace("\n\n" + CHECKPOINT, "\n" + CHECKPOINT),  # no blank line
        GOOD.replace("\n\n" + CHECKPOINT, "\n\n"),  # no checkpoint
        GOOD[:-1],  # checkpoint without its final newline
        "c2sp.org/tlog-proof@v1\nindex 3\n" + HASH0,
        "c2sp.org/tlog-proof@v1\nindex 3\n" + (HASH0 + "\n") * 65 + "\n" + CHECKPOINT,
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MalformedTlogProof):
        parse_tlog_proof(text)


def test_blank_line_inside_proof_shifts_into_checkpoint() -> None:
    # The first empty line ends the proof; what follows is the checkpoint, which this
    # module does not parse (the checkpoint parser rejects a hash as its origin line).
    p = parse_tlog_proof(GOOD.replace(HASH0 + "\n", HASH0 + "\n\n"))
    assert p.proof == (H[0],) and p.checkpoint_note != CHECKPOINT


def test_parse_accepts_good() -> None:
    p = parse_tlog_proof(GOOD)
    assert p.index == 3 and p.proof == tuple(H[:2]) and p.extra is None
    assert p.checkpoint_note == CHECKPOINT


def test_format_rejects() -> None:
    with pytest.raises(ValueError):
        format_tlog_proof(-1, [], CHECKPOINT)
    with pytest.raises(ValueError):
        format_tlog_proof(2**64, [], CHECKPOINT)
    with pytest.raises(ValueError):
        format_tlog_proof(0, [b"\x00" * 31], CHECKPOINT)
    with pytest.raises(ValueError):
        format_tlog_proof(0, [], CHECKPOINT, extra=b"")
    with pytest.raises(ValueError):
        format_tlog_proof(0, [], CHECKPOINT.rstrip("\n"))
    with pytest.raises(ValueError):
        format_tlog_proof(0, [], "")
    with pytest.raises(ValueError):
        format_tlog_proof(0, [H[0]] * 65, CHECKPOINT)
