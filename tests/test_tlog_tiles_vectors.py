"""End to end against the tessera tlog-tiles log: rebuild it from its 15 entries and re-sign.

Every checkpoint, hash tile and entry bundle the reference wrote must come out
byte for byte, using only the protocol APIs a node uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from hashfed.protocol.merkle import leaf_hash
from hashfed.protocol.tiles import TreeBuilder, encode_bundle, entries_path, tile_path
from hashfed.signing.keys import parse_signer, parse_verifier
from hashfed.signing.note import VerifierList

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"
LOG_DIR = VECTORS / "tlog-tiles"
LOG = json.loads((VECTORS / "note" / "vectors.json").read_text())["tessera_testdata_log"]
ENTRIES = [e.encode("ascii") for e in LOG["entries"]]
ORIGIN = "example.com/log/testdata"


def _rebuild(n: int) -> tuple[TreeBuilder, dict[tuple[int, int], bytes]]:
    builder = TreeBuilder()
    builder.append([leaf_hash(e) for e in ENTRIES[:n]])
    return builder, builder.changed_tiles()


def test_fifteen_entries() -> None:
    assert len(ENTRIES) == 15


@pytest.mark.parametrize("n", range(16))
def test_rebuild_reproduces_checkpoint_tiles_and_bundles(n: int) -> None:
    signer = parse_signer(LOG["skey"])
    builder, tiles = _rebuild(n)
    assert builder.size == n
    note = sign_checkpoint(Checkpoint(ORIGIN, n, builder.root()), signer)
    want = (LOG_DIR / f"checkpoint.{n}").read_text()
    assert note == want
    # The reference checkpoint also verifies with the published vkey.
    cp, _ = open_checkpoint(want, VerifierList(parse_verifier(LOG["vkey"])), ORIGIN)
    assert (cp.size, cp.root) == (n, builder.root())
    if n == 0:
        assert tiles == {}
        assert not (LOG_DIR / "tile" / "0" / "000.p" / "0").exists()
        return
    assert list(tiles) == [(0, 0)]
    assert tile_path(0, 0, n) == f"tile/0/000.p/{n}"
    assert tiles[(0, 0)] == (LOG_DIR / tile_path(0, 0, n)).read_bytes()
    assert entries_path(0, n) == f"tile/entries/000.p/{n}"
    assert encode_bundle(ENTRIES[:n]) == (LOG_DIR / entries_path(0, n)).read_bytes()


def test_incremental_rebuild_matches_each_size() -> None:
    """Appending one entry at a time gives the same tiles as building from scratch."""
    signer = parse_signer(LOG["skey"])
    builder = TreeBuilder()
    for n, entry in enumerate(ENTRIES, 1):
        builder.append([leaf_hash(entry)])
        tiles = builder.changed_tiles()
        assert tiles == {(0, 0): (LOG_DIR / tile_path(0, 0, n)).read_bytes()}
        note = sign_checkpoint(Checkpoint(ORIGIN, n, builder.root()), signer)
        assert note == (LOG_DIR / f"checkpoint.{n}").read_text()


def test_latest_checkpoint_is_fifteen() -> None:
    signer = parse_signer(LOG["skey"])
    builder, _ = _rebuild(15)
    latest = (LOG_DIR / "checkpoint").read_bytes()
    assert latest == (LOG_DIR / "checkpoint.15").read_bytes()
    assert sign_checkpoint(Checkpoint(ORIGIN, 15, builder.root()), signer).encode() == latest
