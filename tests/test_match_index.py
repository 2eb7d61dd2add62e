"""BankIndex over a real node database: exactness against brute force, thresholds, updates."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hashfed.node.home import API_TOKEN_FILE, open_node
from hashfed.node.match.bank import BankIndex, parse_hash
from hashfed.node.services.ownlog import NewHash
from hashfed.protocol.records import Kind
from synchelpers import clock, make_node, origin_of

P = origin_of("p")


def flip(h: bytes, bits: int, rng: np.random.Generator) -> bytes:
    """Returns h with `bits` distinct bits flipped."""
    a = np.frombuffer(h, dtype=np.uint8).copy()
    for b in rng.choice(256, size=bits, replace=False):
        a[b // 8] ^= 1 << (b % 8)
    return a.tobytes()


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def pdq(h: bytes) -> NewHash:
    return NewHash(Kind.PDQ, h, 100, ("ncii",))


@pytest.fixture
def bank(tmp_path: Path):
    """A publisher with 400 PDQ hashes in clusters of near-duplicates and 20 MD5 hashes."""
    rng = np.random.default_rng(7)
    p = make_node(tmp_path, "p", "publisher")
    hashes: list[bytes] = []
    for _ in range(100):
        centre = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        hashes += [centre] + [flip(centre, int(rng.integers(1, 40)), rng) for _ in range(3)]
    md5s = [rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for _ in range(20)]
    log = p.own_log(clock())
    log.publish([pdq(h) for h in hashes])
    log.publish([NewHash(Kind.MD5, h, None, ("ncii",)) for h in md5s])
    log.retract(range(0, 400, 9))
    yield p, hashes, md5s, rng
    p.close()


def active(p, kind: str) -> dict[int, bytes]:
    rows = p.db.conn.execute(
        "SELECT idx, hash FROM bank WHERE kind = ? AND status = 'active' AND hash IS NOT NULL",
        (kind,),
    )
    return {int(i): bytes(h) for i, h in rows}


def brute(p, q: bytes, threshold: int) -> list[tuple[int, int]]:
    found = [(distance(q, h), i) for i, h in active(p, "pdq").items()]
    return sorted((d, i) for d, i in found if d <= threshold)


def test_pdq_lookup_equals_brute_force(bank) -> None:
    p, hashes, _, rng = bank
    index = BankIndex.load(p.db.conn)
    assert len(index.pdq) == len(active(p, "pdq")) == 400 - len(range(0, 400, 9))
    queries = [flip(hashes[int(rng.integers(len(hashes)))], d, rng) for d in range(0, 45)]
    queries += [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(20)]
    results = index.lookup("pdq", queries)
    total = 0
    for q, rows in zip(queries, results, strict=True):
        want = brute(p, q, 31)
        assert [(m.distance, m.index) for m in rows] == want
        total += len(want)
        for m in rows:
            assert m.origin == P and m.kind == "pdq" and m.labels == ("ncii",)
            assert m.hash == active(p, "pdq")[m.index].hex() and m.added == 1_700_000_000
            assert m.feedback == dict.fromkeys(m.feedback, 0) and "blocked" in m.feedback
    assert total > 40  # the planted queries do match


def test_per_origin_threshold(bank) -> None:
    p, hashes, _, rng = bank
    index = BankIndex.load(p.db.conn, thresholds={P: 10})
    queries = [flip(hashes[1], d, rng) for d in range(0, 32)]
    for q, rows in zip(queries, index.lookup("pdq", queries), strict=True):
        assert [(m.distance, m.index) for m in rows] == brute(p, q, 10)
    with pytest.raises(ValueError, match="threshold"):
        BankIndex(thresholds={P: 32})


def test_threshold_edge_31_matches_32_does_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    p = make_node(tmp_path, "p", "publisher")
    h = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    p.own_log(clock()).publish([pdq(h)])
    index = BankIndex.load(p.db.conn)
    q31, q32 = flip(h, 31, rng), flip(h, 32, rng)
    near, far = index.lookup("pdq", [q31, q32])
    assert [(m.index, m.distance) for m in near] == [(0, 31)]
    assert far == []


def test_md5_is_exact(bank) -> None:
    p, _, md5s, _ = bank
    index = BankIndex.load(p.db.conn)
    first_md5 = 400
    other = bytes([md5s[0][0] ^ 1]) + md5s[0][1:]
    hit, miss = index.lookup("md5", [md5s[0], other])
    assert [(m.index, m.distance, m.kind) for m in hit] == [(first_md5, 0, "md5")]
    assert miss == []
    # A PDQ query never sees MD5 rows and vice versa.
    assert index.lookup("pdq", [md5s[0] * 2]) == [[]]


def test_update_own_and_refresh(bank) -> None:
    p, hashes, _, rng = bank
    conn = p.db.conn
    index = BankIndex.load(conn)
    log = p.own_log(clock())
    new = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    assert index.lookup("pdq", [new]) == [[]]
    added = log.publish([pdq(new)])
    index.update_own(conn, added.first_index, added.count)
    assert [m.index for m in index.lookup("pdq", [new])[0]] == [added.first_index]
    gone = log.retract([added.first_index, 1])
    index.update_own(conn, gone.first_index, gone.count, retracted=[added.first_index, 1])
    assert index.lookup("pdq", [new]) == [[]]
    assert 1 not in [m.index for m in index.lookup("pdq", [hashes[1]])[0]]
    # Changes the index was not told about (another process) are found by refresh.
    again = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    r = log.publish([pdq(again)])
    log.retract([2])
    index.refresh(conn)
    assert [m.index for m in index.lookup("pdq", [again])[0]] == [r.first_index]
    assert 2 not in [m.index for m in index.lookup("pdq", [hashes[2]])[0]]
    # Re-applying an update already applied changes nothing and does not fail.
    before = len(index)
    index.update_own(conn, r.first_index, r.count)
    index.refresh(conn)
    assert len(index) == before


def test_retracted_row_is_dropped_even_before_the_index_hears(bank) -> None:
    p, hashes, _, _ = bank
    index = BankIndex.load(p.db.conn)
    assert [m.index for m in index.lookup("pdq", [hashes[5]])[0]][:1] == [5]
    p.own_log(clock()).retract([5])
    assert 5 not in [m.index for m in index.lookup("pdq", [hashes[5]])[0]]


def test_parse_hash_errors() -> None:
    assert parse_hash("md5", "AB" * 16) == bytes([0xAB]) * 16
    with pytest.raises(ValueError, match="unknown kind"):
        parse_hash("sha1", "ab" * 20)
    with pytest.raises(ValueError, match="not hexadecimal"):
        parse_hash("pdq", "zz" * 32)
    with pytest.raises(ValueError, match="has 62 hex characters, want 64"):
        parse_hash("pdq", "ab" * 31)


def test_api_token_file(tmp_path: Path) -> None:
    p = make_node(tmp_path, "p", "publisher")
    path = tmp_path / "p" / API_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = p.api_token()
    assert len(token) == 43
    p.close()
    os.remove(path)  # an older node: open_node creates one
    with open_node(tmp_path / "p") as node:
        assert len(node.api_token()) == 43 and node.api_token() != token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
