"""``log verify``: a clean log passes, and every kind of tampering is found and named."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashfed.node.home import Node, init_node, open_node
from hashfed.node.services.ownlog import NewHash
from hashfed.node.services.verify import VerifyReport, verify_bank, verify_log
from hashfed.node.store import logstore
from hashfed.protocol.checkpoint import Checkpoint, sign_checkpoint
from hashfed.protocol.records import Kind, Reason, Verdict
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, decode_bundle
from hashfed.signing.keys import generate_key, parse_signer

ORIGIN = "test.example/log"
OTHER = "other.example/log"
NOW = 1_700_000_000

# Layout of the template log (size 364: bundles 0 (full) and 1 (108 entries)).
RETRACT_1 = 300  # retracts 3, 150, 250
FEEDBACK_1 = 301  # about OTHER#7
RETRACT_2 = 352  # retracts 310
FEEDBACK_2 = 353  # about OTHER#8
SIZE = 364


def pdq(i: int) -> NewHash:
    return NewHash(Kind.PDQ, hashlib.sha256(b"pdq %d" % i).digest(), 60 + i % 40, ("ncii",))


def md5(i: int) -> NewHash:
    return NewHash(Kind.MD5, hashlib.md5(b"md5 %d" % i).digest(), None, ("test", "ncii"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("verify") / "node"
    with init_node(home, ORIGIN) as node:
        log = node.own_log(lambda: NOW)
        log.publish([pdq(i) for i in range(200)])
        log.publish([md5(i) for i in range(200, 300)])
        assert log.retract([3, 150, 250], Reason.WITHDRAWN).first_index == RETRACT_1
        assert log.feedback(OTHER, 7, Verdict.BLOCKED, ["a"]).first_index == FEEDBACK_1
        log.publish([pdq(i) for i in range(302, 352)])
        assert log.retract([310], Reason.ERROR).first_index == RETRACT_2
        assert log.feedback(OTHER, 8, Verdict.NOT_BLOCKED).first_index == FEEDBACK_2
        assert log.publish([md5(i) for i in range(354, 364)]).checkpoint.size == SIZE
    return home


@pytest.fixture
def node(template: Path, tmp_path: Path) -> Iterator[Node]:
    home = tmp_path / "node"
    shutil.copytree(template, home)
    with open_node(home) as n:
        yield n


def verify(node: Node) -> VerifyReport:
    conn = node.db.conn
    log = logstore.get_log(conn, ORIGIN)
    assert log is not None
    report = VerifyReport(origin=ORIGIN)
    verify_log(conn, log, report)
    verify_bank(conn, log, report)
    return report


def problems(node: Node) -> list[tuple[str, str]]:
    return [(p.where, p.message) for p in verify(node).problems]


def has(found: list[tuple[str, str]], where: str, *words: str) -> bool:
    return any(w == where and all(x in m for x in words) for w, m in found)


def bundle(node: Node, index: int) -> tuple[int, bytearray]:
    row = node.db.conn.execute("SELECT count, data FROM bundles WHERE idx = ?", (index,)).fetchone()
    return int(row[0]), bytearray(row[1])


def set_bundle(node: Node, index: int, data: bytes) -> None:
    node.db.conn.execute("UPDATE bundles SET data = ? WHERE idx = ?", (data, index))


def entry_offset(data: bytes | bytearray, count: int, n: int) -> int:
    """Returns the offset of entry n's bytes (after its length prefix) in a bundle."""
    pos = 0
    for entry in decode_bundle(bytes(data), count)[:n]:
        pos += 2 + len(entry)
    return pos + 2


def test_clean_log_verifies(node: Node) -> None:
    report = verify(node)
    assert report.problems == []
    assert report.ok
    assert (report.size, report.entries) == (SIZE, SIZE)
    assert report.bank_rows == SIZE - 4  # every entry but two retractions and two feedbacks
    assert report.tiles >= 3  # 0/0, 0/1 and 1/0


def test_verify_changes_nothing(template: Path, tmp_path: Path) -> None:
    home = tmp_path / "node"
    shutil.copytree(template, home)
    before = {p.name: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    with open_node(home) as n:
        assert verify(n).ok
    after = {p.name: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert after == before


# -- the log --------------------------------------------------------------------------------


def test_entry_byte_flipped_in_bundle(node: Node) -> None:
    count, data = bundle(node, 0)
    data[entry_offset(data, count, 5) + 10] ^= 0x01  # inside entry 5's commitment
    set_bundle(node, 0, bytes(data))
    found = problems(node)
    assert has(found, "tile 0/0", "differs", "entry 5")
    assert has(found, "root", "do not hash to the checkpoint's root")
    assert has(found, "bank row 5", "does not match the commitment")


def test_entry_byte_flipped_in_partial_bundle(node: Node) -> None:
    count, data = bundle(node, 1)
    n = 360 - ENTRY_BUNDLE_WIDTH
    data[entry_offset(data, count, n) + 20] ^= 0x80
    set_bundle(node, 1, bytes(data))
    found = problems(node)
    assert has(found, "tile 0/1", "entry 360")
    assert has(found, "bank row 360", "commitment")


def test_entry_made_undecodable(node: Node) -> None:
    count, data = bundle(node, 0)
    data[entry_offset(data, count, 9)] ^= 0xFF  # the msgpack map header
    set_bundle(node, 0, bytes(data))
    found = problems(node)
    assert has(found, "tile 0/0", "entry 9")
    assert has(found, "entry 9", "cannot be decoded")


@pytest.mark.parametrize(("level", "index", "hash_no"), [(0, 0, 7), (0, 1, 100), (1, 0, 0)])
def test_tile_byte_flipped(node: Node, level: int, index: int, hash_no: int) -> None:
    conn = node.db.conn
    data = bytearray(
        conn.execute(
            "SELECT data FROM tiles WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()[0]
    )
    data[hash_no * 32 + 3] ^= 0x04
    conn.execute(
        "UPDATE tiles SET data = ? WHERE level = ? AND idx = ?", (bytes(data), level, index)
    )
    found = problems(node)
    where = f"entry {index * 256 + hash_no}" if level == 0 else f"hash {hash_no}"
    assert has(found, f"tile {level}/{index}", "differs", where), found
    assert len(found) == 1, found  # the entries and the root are fine


def test_tile_deleted(node: Node) -> None:
    node.db.conn.execute("DELETE FROM tiles WHERE level = 1")
    assert has(problems(node), "tile 1/0", "is missing")


@pytest.mark.parametrize("index", [0, 1])
def test_bundle_deleted(node: Node, index: int) -> None:
    node.db.conn.execute("DELETE FROM bundles WHERE idx = ?", (index,))
    found = problems(node)
    assert has(found, f"bundle {index}", "is missing"), found


@pytest.mark.parametrize("index", [0, 1])
def test_truncated_bundle(node: Node, index: int) -> None:
    _, data = bundle(node, index)
    set_bundle(node, index, bytes(data[:-5]))
    found = problems(node)
    assert has(found, f"bundle {index}", "truncated"), found


def test_bundle_with_trailing_bytes(node: Node) -> None:
    _, data = bundle(node, 1)
    set_bundle(node, 1, bytes(data) + b"\x00\x01x")
    assert has(problems(node), "bundle 1", "after its"), problems(node)


def test_bundle_count_lowered(node: Node) -> None:
    node.db.conn.execute("UPDATE bundles SET count = count - 1 WHERE idx = 1")
    assert has(problems(node), "bundle 1"), problems(node)


# -- the checkpoint -----------------------------------------------------------------------


def _set_checkpoint(node: Node, note: str) -> None:
    node.db.conn.execute("UPDATE logs SET checkpoint = ?", (note,))


def test_checkpoint_signature_altered(node: Node) -> None:
    note = logstore.get_log(node.db.conn, ORIGIN).checkpoint  # type: ignore[union-attr]
    assert note is not None
    body, sig = note.rsplit(" ", 1)
    sig = ("A" if sig[5] != "A" else "B").join([sig[:5], sig[6:]])
    _set_checkpoint(node, f"{body} {sig}")
    assert has(problems(node), "checkpoint", "does not verify"), problems(node)


def test_checkpoint_body_altered(node: Node) -> None:
    note = logstore.get_log(node.db.conn, ORIGIN).checkpoint  # type: ignore[union-attr]
    assert note is not None
    _set_checkpoint(node, note.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n", 1))
    assert has(problems(node), "checkpoint", "does not verify"), problems(node)


def test_checkpoint_signed_by_another_key(node: Node) -> None:
    log = logstore.get_log(node.db.conn, ORIGIN)
    assert log is not None
    skey, _ = generate_key(ORIGIN)
    forged = sign_checkpoint(Checkpoint(ORIGIN, SIZE, log.root), parse_signer(skey))
    _set_checkpoint(node, forged)
    assert has(problems(node), "checkpoint", "does not verify"), problems(node)


def test_checkpoint_and_log_size_disagree(node: Node) -> None:
    node.db.conn.execute("UPDATE logs SET size = size - 1")
    assert has(problems(node), "checkpoint", "disagrees"), problems(node)


# -- the bank ----------------------------------------------------------------------------


def _update(node: Node, sql: str, *args: object) -> None:
    cursor = node.db.conn.execute(sql, args)
    assert cursor.rowcount == 1


def test_bank_hash_altered(node: Node) -> None:
    _update(node, "UPDATE bank SET hash = ? WHERE idx = 17", hashlib.sha256(b"other").digest())
    assert problems(node) == [("bank row 17", "does not match the commitment in the log's entry")]


@pytest.mark.parametrize(
    ("idx", "column", "value"),
    [
        (17, "quality", 99),
        (17, "labels", "ncii,test"),
        (17, "labels", ""),
        (220, "labels", "ncii,test"),  # the same labels, another order
        (17, "kind", "md5"),
        (17, "added", NOW + 1),
        (17, "salt", bytes(16)),
        (220, "quality", 50),  # an md5 given a quality
    ],
)
def test_bank_content_altered(node: Node, idx: int, column: str, value: object) -> None:
    _update(node, f"UPDATE bank SET {column} = ? WHERE idx = ?", value, idx)
    assert problems(node) == [
        (f"bank row {idx}", "does not match the commitment in the log's entry")
    ]


def test_bank_row_deleted(node: Node) -> None:
    _update(node, "DELETE FROM bank WHERE idx = 42")
    assert problems(node) == [("entry 42", "is a hash addition with no bank row")]


@pytest.mark.parametrize("idx", [RETRACT_1, FEEDBACK_1, SIZE, SIZE + 1000])
def test_extra_bank_row(node: Node, idx: int) -> None:
    _update(
        node,
        "INSERT INTO bank (log_id, idx, kind, hash, quality, labels, added, salt)"
        " SELECT log_id, ?, kind, hash, quality, labels, added, salt FROM bank WHERE idx = 17",
        idx,
    )
    found = problems(node)
    assert (f"bank row {idx}", "is not a hash addition in the log") in found, found


def test_retracted_row_set_back_to_active(node: Node) -> None:
    _update(
        node,
        "UPDATE bank SET status = 'active', retracted_at = NULL, retract_reason = NULL,"
        " retracted_by = NULL WHERE idx = 150",
    )
    found = problems(node)
    assert ("bank row 150", f"should be retracted by entry {RETRACT_1}, but is active") in found


def test_retracted_row_status_only_set_back(node: Node) -> None:
    _update(node, "UPDATE bank SET status = 'active' WHERE idx = 310")
    assert has(problems(node), "bank row 310", f"entry {RETRACT_2}", "is active")


def test_retracted_by_wrong_entry(node: Node) -> None:
    _update(node, f"UPDATE bank SET retracted_by = {RETRACT_2} WHERE idx = 3")
    assert has(problems(node), "bank row 3", f"should be retracted by entry {RETRACT_1}")


def test_active_row_retracted_without_retraction(node: Node) -> None:
    _update(node, "UPDATE bank SET status = 'retracted', hash = NULL, salt = NULL WHERE idx = 20")
    found = problems(node)
    assert ("bank row 20", "is retracted, but no retraction in the log names it") in found
    assert ("bank row 20", "has its content erased, but it was never retracted") in found


def test_active_row_erased_without_retraction(node: Node) -> None:
    _update(node, "UPDATE bank SET hash = NULL WHERE idx = 21")
    assert problems(node) == [("bank row 21", "has its content erased, but it was never retracted")]


def test_retracted_row_content_restored(node: Node) -> None:
    """Putting a hash back into a retracted row is named: it no longer matches what was erased."""
    _update(node, "UPDATE bank SET hash = ?, salt = ? WHERE idx = 3", pdq(3).hash, bytes(16))
    assert has(problems(node), "bank row 3", "commitment")


@pytest.mark.parametrize(
    ("sql", "where"),
    [
        (f"UPDATE feedback SET verdict = 'blocked' WHERE idx = {FEEDBACK_2}", FEEDBACK_2),
        (f"UPDATE feedback SET target_idx = 9 WHERE idx = {FEEDBACK_1}", FEEDBACK_1),
        (f"UPDATE feedback SET tags = '' WHERE idx = {FEEDBACK_1}", FEEDBACK_1),
        (
            f"UPDATE feedback SET target_origin = 'x.example/log' WHERE idx = {FEEDBACK_1}",
            FEEDBACK_1,
        ),
        (f"UPDATE feedback SET time = 1 WHERE idx = {FEEDBACK_2}", FEEDBACK_2),
    ],
)
def test_feedback_row_altered(node: Node, sql: str, where: int) -> None:
    _update(node, sql)
    assert problems(node) == [
        (f"feedback row {where}", "differs from the feedback record in the log")
    ]


def test_feedback_row_deleted(node: Node) -> None:
    _update(node, f"DELETE FROM feedback WHERE idx = {FEEDBACK_1}")
    assert problems(node) == [(f"entry {FEEDBACK_1}", "is a feedback record with no feedback row")]


def test_extra_feedback_row(node: Node) -> None:
    _update(
        node,
        "INSERT INTO feedback SELECT log_id, 5, target_origin, target_idx, verdict, tags, time"
        f" FROM feedback WHERE idx = {FEEDBACK_1}",
    )
    assert ("feedback row 5", "is not a feedback record in the log") in problems(node)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE bank SET retract_reason = 'error' WHERE idx = 150",
        "UPDATE bank SET retracted_at = 1 WHERE idx = 250",
        "UPDATE bank SET retracted_at = NULL WHERE idx = 3",
    ],
)
def test_retraction_time_or_reason_altered(node: Node, sql: str) -> None:
    _update(node, sql)
    found = problems(node)
    assert len(found) == 1, found
    assert has(found, found[0][0], f"retraction entry {RETRACT_1}", "time or reason")


def test_active_row_given_a_retraction_reason(node: Node) -> None:
    _update(node, "UPDATE bank SET retract_reason = 'withdrawn' WHERE idx = 30")
    assert has(problems(node), "bank row 30", "no retraction in the log names it")


def test_missing_bundle_named_even_with_a_bad_checkpoint(node: Node) -> None:
    note = logstore.get_log(node.db.conn, ORIGIN).checkpoint  # type: ignore[union-attr]
    assert note is not None
    _set_checkpoint(node, note.replace(f"\n{SIZE}\n", f"\n{SIZE - 1}\n", 1))
    node.db.conn.execute("DELETE FROM bundles WHERE idx = 1")
    found = problems(node)
    assert has(found, "checkpoint", "does not verify")
    assert has(found, "bundle 1", "is missing"), found


def test_missing_bundle_does_not_blame_the_bank(node: Node) -> None:
    """Rows of entries that could not be read are not reported as strays or unretracted."""
    node.db.conn.execute("DELETE FROM bundles WHERE idx = 1")
    assert problems(node) == [("bundle 1", "is missing")]


def test_undecodable_bundle_does_not_blame_the_bank(node: Node) -> None:
    _, data = bundle(node, 0)
    set_bundle(node, 0, bytes(data[:100]))
    found = problems(node)
    assert len(found) == 1 and found[0][0] == "bundle 0", found
