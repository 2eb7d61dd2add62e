"""The node's own log: publish, retract and feedback batches, atomicity and fork refusal."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hashfed.node.errors import DatabaseError, ForkRefused
from hashfed.node.home import Node, init_node, open_node
from hashfed.node.services.ownlog import NewHash, OwnLog
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database
from hashfed.protocol.checkpoint import open_checkpoint
from hashfed.protocol.errors import InvalidRecord
from hashfed.protocol.merkle import leaf_hash
from hashfed.protocol.records import (
    MAX_RETRACTION_INDICES,
    Addition,
    Feedback,
    HashContent,
    Kind,
    Reason,
    Retraction,
    Verdict,
    decode_record,
)
from hashfed.protocol.tiles import TreeBuilder
from hashfed.protocol.validation import EMPTY_FILE_MD5, Policy
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList

ORIGIN = "test.example/log"
OTHER = "other.example/log"
NOW = 1_700_000_000


def clock() -> int:
    return NOW


def pdq(i: int, quality: int = 90, labels: tuple[str, ...] = ()) -> NewHash:
    return NewHash(Kind.PDQ, hashlib.sha256(b"pdq %d" % i).digest(), quality, labels)


def md5(i: int) -> NewHash:
    return NewHash(Kind.MD5, hashlib.md5(b"md5 %d" % i).digest(), None)


def salts(start: int, n: int) -> list[bytes]:
    return [hashlib.sha256(b"salt %d" % i).digest()[:16] for i in range(start, start + n)]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "node"


@pytest.fixture
def node(home: Path) -> Iterator[Node]:
    n = init_node(home, ORIGIN)
    yield n
    n.close()


def log_row(node: Node) -> logstore.LogRow:
    row = logstore.get_log(node.db.conn, ORIGIN)
    assert row is not None
    return row


def entries(node: Node) -> list[bytes]:
    row = log_row(node)
    return logstore.read_entries(node.db.conn, row.id, 0, row.size) if row.size else []


def bank(node: Node) -> list[tuple[Any, ...]]:
    return node.db.conn.execute(
        "SELECT idx, kind, hash, quality, labels, added, salt, status, retracted_at,"
        " retract_reason, retracted_by FROM bank ORDER BY idx"
    ).fetchall()


def snapshot(node: Node) -> tuple[Any, ...]:
    """Everything a failed append must leave untouched."""
    conn = node.db.conn
    row = log_row(node)
    return (
        row.size,
        row.root,
        row.checkpoint,
        bank(node),
        conn.execute("SELECT * FROM feedback ORDER BY idx").fetchall(),
        conn.execute("SELECT * FROM tiles ORDER BY level, idx").fetchall(),
        conn.execute("SELECT * FROM bundles ORDER BY idx").fetchall(),
        conn.execute("SELECT log_id, size, root, note FROM checkpoints ORDER BY size").fetchall(),
        node.config.signed_head.read_bytes(),
    )


# -- publish ---------------------------------------------------------------------------


def test_publish_batch_indices_checkpoint_and_bank(node: Node) -> None:
    log = node.own_log(clock)
    batch = [pdq(0, 100, ("ncii",)), md5(1), pdq(2, 50, ("ncii", "test"))]
    first = log.publish(batch, salts=salts(0, 3))
    assert (first.first_index, first.count) == (0, 3)
    second = log.publish([md5(3), pdq(4)], salts=salts(3, 2))
    assert (second.first_index, second.count) == (3, 2)

    stored = entries(node)
    assert len(stored) == 5
    rebuilt = TreeBuilder()
    rebuilt.append([leaf_hash(e) for e in stored])
    assert second.checkpoint.size == 5
    assert second.checkpoint.root == rebuilt.root()
    row = log_row(node)
    assert (row.size, row.root, row.checkpoint) == (5, rebuilt.root(), second.note)

    verifiers = VerifierList(parse_verifier(node.signer.vkey()))
    cp, _ = open_checkpoint(second.note, verifiers, ORIGIN)
    assert (cp.size, cp.root) == (5, rebuilt.root())
    assert node.config.signed_head.read_text() == second.note

    rows = bank(node)
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    items = [*batch, md5(3), pdq(4)]
    for r, item, salt, entry in zip(rows, items, salts(0, 5), stored, strict=True):
        _, kind, digest, quality, labels, added, salt_col, status, rat, reason, by = r
        assert (kind, bytes(digest), quality) == (item.kind.value, item.hash, item.quality)
        assert labels == ",".join(item.labels)
        assert (added, bytes(salt_col), status) == (NOW, salt, "active")
        assert (rat, reason, by) == (None, None, None)
        content = HashContent(item.kind, item.hash, item.quality, item.labels, NOW, salt)
        record = decode_record(entry)
        assert isinstance(record, Addition)
        assert record.commit == content.commitment()


def test_same_hash_twice_retract_one_leaves_other(node: Node) -> None:
    log = node.own_log(clock)
    log.publish([pdq(7), md5(1)])
    log.publish([pdq(7)])
    result = log.retract([0], Reason.ERROR)
    assert result.first_index == 3
    rows = {r[0]: r for r in bank(node)}
    assert rows[0][7] == "retracted"
    assert rows[2][7] == "active"
    assert bytes(rows[2][2]) == pdq(7).hash
    active = node.db.conn.execute(
        "SELECT idx FROM bank WHERE hash = ? AND status = 'active'", (pdq(7).hash,)
    ).fetchall()
    assert active == [(2,)]


def test_retraction_erases_content_and_records_why(node: Node) -> None:
    log = node.own_log(clock)
    log.publish([pdq(i) for i in range(5)])
    result = log.retract([1, 3], Reason.DELETED)
    assert (result.first_index, result.count) == (5, 1)
    record = decode_record(entries(node)[5])
    assert record == Retraction(NOW, Reason.DELETED, (1, 3))
    rows = {r[0]: r for r in bank(node)}
    for idx in (1, 3):
        _, _, digest, _, _, _, salt, status, rat, reason, by = rows[idx]
        assert (digest, salt) == (None, None)
        assert (status, rat, reason, by) == ("retracted", NOW, "deleted", 5)
    for idx in (0, 2, 4):
        assert rows[idx][2] is not None and rows[idx][6] is not None
        assert rows[idx][7] == "active"
    assert sorted(rows) == [0, 1, 2, 3, 4]  # the retraction has no bank row


@pytest.mark.parametrize(
    "indices",
    [
        [5],  # the retraction entry itself is not an addition
        [6],  # the feedback entry
        [99],  # beyond the log
        [0],  # already retracted
        [1, 2, 99],  # a mix with one bad index
        [1, 6],
        [],  # nothing at all
    ],
)
def test_bad_retraction_changes_nothing(node: Node, indices: list[int]) -> None:
    log = node.own_log(clock)
    log.publish([pdq(i) for i in range(5)])
    log.retract([0])  # entry 5
    log.feedback(OTHER, 3, Verdict.BLOCKED)  # entry 6
    before = snapshot(node)
    with pytest.raises(InvalidRecord):
        log.retract(indices)
    assert snapshot(node) == before
    # The instance is still usable after a refused batch.
    assert log.retract([1]).first_index == 7


def test_retract_same_index_twice_in_one_call_is_one_retraction(node: Node) -> None:
    log = node.own_log(clock)
    log.publish([pdq(i) for i in range(3)])
    log.retract([2, 1, 2])
    assert decode_record(entries(node)[3]) == Retraction(NOW, Reason.WITHDRAWN, (1, 2))


@pytest.mark.parametrize(
    "bad",
    [
        pdq(100, quality=49),
        pdq(100, quality=101),
        NewHash(Kind.PDQ, hashlib.sha256(b"q").digest(), None),
        NewHash(Kind.PDQ, bytes(32), 100),
        NewHash(Kind.PDQ, b"\xff" * 32, 100),
        NewHash(Kind.PDQ, bytes(range(1, 17)), 100),  # md5-sized pdq
        NewHash(Kind.MD5, bytes(16), None),
        NewHash(Kind.MD5, EMPTY_FILE_MD5, None),
        NewHash(Kind.MD5, hashlib.md5(b"x").digest(), 90),  # md5 with a quality
        pdq(100, labels=("UPPER",)),
        pdq(100, labels=("has space",)),
        pdq(100, labels=("x" * 33,)),
    ],
    ids=lambda h: f"{h.kind}-{h.hash[:2].hex()}-{h.quality}-{','.join(h.labels)}",
)
def test_invalid_record_in_batch_changes_nothing(node: Node, bad: NewHash) -> None:
    log = node.own_log(clock)
    log.publish([pdq(0), md5(1)])
    before = snapshot(node)
    with pytest.raises(InvalidRecord):
        log.publish([pdq(2), bad, md5(3)])
    assert snapshot(node) == before
    assert log.publish([pdq(2)]).first_index == 2


def test_empty_publish_is_refused(node: Node) -> None:
    before = snapshot(node)
    with pytest.raises(InvalidRecord):
        node.own_log(clock).publish([])
    assert snapshot(node) == before


def test_quality_threshold_follows_the_policy(home: Path) -> None:
    from hashfed.protocol.validation import Policy

    with init_node(home, ORIGIN) as n:
        strict = OwnLog(n.db, n.signer, n.config.signed_head, Policy(min_pdq_quality=80))
        with pytest.raises(InvalidRecord, match="threshold 80"):
            strict.publish([pdq(0, quality=79)])
        lax = OwnLog(n.db, n.signer, n.config.signed_head, Policy(min_pdq_quality=10))
        assert lax.publish([pdq(0, quality=10)]).checkpoint.size == 1


def test_long_retraction_lists_split_into_records(node: Node) -> None:
    log = node.own_log(clock)
    n = MAX_RETRACTION_INDICES + 10
    log.publish([md5(i) for i in range(n)])
    result = log.retract(range(n))
    assert (result.first_index, result.count) == (n, 2)
    first, second = (decode_record(e) for e in entries(node)[n:])
    assert isinstance(first, Retraction) and isinstance(second, Retraction)
    assert first.indices == tuple(range(MAX_RETRACTION_INDICES))
    assert second.indices == tuple(range(MAX_RETRACTION_INDICES, n))
    by = dict(node.db.conn.execute("SELECT idx, retracted_by FROM bank").fetchall())
    assert by[0] == n and by[MAX_RETRACTION_INDICES - 1] == n
    assert by[MAX_RETRACTION_INDICES] == n + 1 and by[n - 1] == n + 1
    assert node.db.conn.execute("SELECT count(*) FROM bank WHERE hash IS NOT NULL").fetchone() == (
        0,
    )


# -- feedback --------------------------------------------------------------------------


def test_feedback_about_another_log(node: Node) -> None:
    log = node.own_log(clock)
    log.publish([pdq(0)])
    result = log.feedback(OTHER, 41, Verdict.FALSE_POSITIVE, ["reviewed", "ui"])
    assert (result.first_index, result.count) == (1, 1)
    assert decode_record(entries(node)[1]) == Feedback(
        NOW, OTHER, 41, Verdict.FALSE_POSITIVE, ("reviewed", "ui")
    )
    rows = node.db.conn.execute(
        "SELECT idx, target_origin, target_idx, verdict, tags, time FROM feedback"
    ).fetchall()
    assert rows == [(1, OTHER, 41, "false_positive", "reviewed,ui", NOW)]
    assert [r[0] for r in bank(node)] == [0]


@pytest.mark.parametrize("origin", [ORIGIN, "bad origin", "a+b"])
def test_feedback_refused_changes_nothing(node: Node, origin: str) -> None:
    log = node.own_log(clock)
    log.publish([pdq(0)])
    before = snapshot(node)
    with pytest.raises(InvalidRecord if origin == ORIGIN else ValueError):
        log.feedback(origin, 0, Verdict.BLOCKED)
    assert snapshot(node) == before


# -- fork refusal and damage --------------------------------------------------------------


def _restore_database(backup: Path, home: Path) -> None:
    for stale in home.glob("hashfed.db*"):
        stale.unlink()
    for f in backup.glob("hashfed.db*"):
        shutil.copy2(f, home / f.name)


def test_restored_old_backup_refuses_to_fork(home: Path, tmp_path: Path) -> None:
    with init_node(home, ORIGIN) as n:
        n.own_log(clock).publish([pdq(i) for i in range(3)])
    backup = tmp_path / "backup"
    shutil.copytree(home, backup)
    with open_node(home) as n:
        n.own_log(clock).publish([pdq(i) for i in range(3, 6)])
    newer_head = (home / "signed-head").read_bytes()
    newer = tmp_path / "newer"
    shutil.copytree(home, newer)

    _restore_database(backup, home)
    with open_node(home) as n:
        before = snapshot(n)
        assert before[0] == 3
        with pytest.raises(ForkRefused) as info:
            n.own_log(clock).publish([pdq(100)])
        message = str(info.value)
        assert "size 6" in message and "size 3" in message
        assert "backup" in message and "re-sync" in message
        with pytest.raises(ForkRefused):
            n.own_log(clock).retract([0])
        with pytest.raises(ForkRefused):
            n.own_log(clock).feedback(OTHER, 1, Verdict.BLOCKED)
        assert snapshot(n) == before
    assert (home / "signed-head").read_bytes() == newer_head

    # The recovery the message names: put the newest database back, and signing resumes.
    _restore_database(newer, home)
    with open_node(home) as n:
        assert n.own_log(clock).publish([pdq(100)]).first_index == 6


def test_same_size_different_root_refuses_to_fork(home: Path, tmp_path: Path) -> None:
    """A backup that diverged (same size, other entries) is a fork too."""
    with init_node(home, ORIGIN) as n:
        n.own_log(clock).publish([pdq(0)])
    backup = tmp_path / "backup"
    shutil.copytree(home, backup)
    with open_node(home) as n:
        n.own_log(clock).publish([pdq(1)])
    head = (home / "signed-head").read_bytes()
    with open_node(backup) as n:  # the backup appends something else on its own
        n.own_log(clock).publish([pdq(2)])
    (backup / "signed-head").write_bytes(head)
    with open_node(backup) as n:
        before = snapshot(n)
        with pytest.raises(ForkRefused):
            n.own_log(clock).publish([pdq(3)])
        assert snapshot(n) == before


def test_signed_head_one_batch_behind_is_accepted(node: Node) -> None:
    """A crash between commit and writing signed-head leaves it behind: that is safe."""
    log = node.own_log(clock)
    log.publish([pdq(0)])
    old = node.config.signed_head.read_bytes()
    log.publish([pdq(1)])
    node.config.signed_head.write_bytes(old)
    result = node.own_log(clock).publish([pdq(2)])
    assert result.checkpoint.size == 3
    assert node.config.signed_head.read_text() == result.note


def test_missing_signed_head_refuses(node: Node) -> None:
    node.own_log(clock).publish([pdq(0)])
    node.config.signed_head.unlink()
    before = snapshot_without_head(node)
    with pytest.raises(ForkRefused, match="signed-head is missing"):
        node.own_log(clock).publish([pdq(1)])
    assert snapshot_without_head(node) == before
    assert not node.config.signed_head.exists()


def snapshot_without_head(node: Node) -> tuple[Any, ...]:
    conn = node.db.conn
    return (
        log_row(node),
        bank(node),
        conn.execute("SELECT * FROM tiles").fetchall(),
        conn.execute("SELECT * FROM bundles").fetchall(),
    )


def test_tampered_tiles_refuse_next_publish(home: Path) -> None:
    with init_node(home, ORIGIN) as n:
        n.own_log(clock).publish([pdq(i) for i in range(10)])
    with open_node(home) as n:
        data = bytearray(n.db.conn.execute("SELECT data FROM tiles WHERE level = 0").fetchone()[0])
        data[40] ^= 1
        n.db.conn.execute("UPDATE tiles SET data = ? WHERE level = 0", (bytes(data),))
    with open_node(home) as n:
        before = snapshot(n)
        with pytest.raises(DatabaseError, match="log verify"):
            n.own_log(clock).publish([pdq(100)])
        assert snapshot(n) == before


def test_missing_edge_bundle_refuses_next_publish(home: Path) -> None:
    with init_node(home, ORIGIN) as n:
        n.own_log(clock).publish([pdq(i) for i in range(10)])
        n.db.conn.execute("DELETE FROM bundles")
    with open_node(home) as n:
        before = snapshot(n)
        with pytest.raises(DatabaseError, match="bundle"):
            n.own_log(clock).publish([pdq(100)])
        assert snapshot(n) == before


# -- continuing the tree across batches and reopens ------------------------------------------

# Batch sizes whose running totals cross 256 (and its multiples) and 65536.
BATCHES = [1, 254, 1, 1, 3, 252, 257, 65536 - 769 - 2, 1, 1, 1, 300, 5]


def _tables(node: Node) -> tuple[Any, ...]:
    conn = node.db.conn
    return (
        conn.execute("SELECT level, idx, data FROM tiles ORDER BY level, idx").fetchall(),
        conn.execute("SELECT idx, count, data FROM bundles ORDER BY idx").fetchall(),
    )


def test_batches_across_reopen_continue_the_same_tree(tmp_path: Path) -> None:
    cached_home, resumed_home = tmp_path / "cached", tmp_path / "resumed"
    cached = init_node(cached_home, ORIGIN)
    init_node(resumed_home, ORIGIN).close()
    cached_log = cached.own_log(clock)
    start = 0
    sizes = []
    for count in BATCHES:
        items = [md5(i) for i in range(start, start + count)]
        a = cached_log.publish(items, salts=salts(start, count))
        with open_node(resumed_home) as resumed:
            b = resumed.own_log(clock).publish(items, salts=salts(start, count))
        start += count
        assert a.first_index == b.first_index == start - count
        assert a.checkpoint.size == b.checkpoint.size == start
        assert a.checkpoint.root == b.checkpoint.root
        sizes.append(start)
    assert 256 in sizes and 257 in sizes and 512 in sizes and 65536 in sizes and 65537 in sizes
    with open_node(resumed_home) as resumed:
        assert _tables(cached) == _tables(resumed)
        all_entries = entries(resumed)
    builder = TreeBuilder()
    builder.append([leaf_hash(e) for e in all_entries])
    assert builder.root() == log_row(cached).root
    # Level-2 tile exists once the tree passes 65536 leaves.
    levels = {r[0] for r in cached.db.conn.execute("SELECT DISTINCT level FROM tiles")}
    assert levels == {0, 1, 2}
    cached.close()


@pytest.mark.parametrize(
    ("index", "tags"),
    [(-1, ()), (1, ("a" * 65,)), (1, ("a", "a")), (1, tuple(map(str, range(17)))), (1, ("",))],
)
def test_bad_feedback_record_changes_nothing(node: Node, index: int, tags: tuple[str, ...]) -> None:
    log = node.own_log(clock)
    log.publish([pdq(0)])
    before = snapshot(node)
    with pytest.raises(ValueError):
        log.feedback(OTHER, index, Verdict.BLOCKED, tags)
    assert snapshot(node) == before


def test_writers_on_their_own_connections_keep_signed_head_in_step(node: Node) -> None:
    """The case desk, the feedback desk (each an OwnLog on a connection of its own) and
    'hashfed publish' may append at once: the append lock keeps signed-head at the
    newest checkpoint, never an older one, and no append fails on the head file."""
    databases = [open_database(node.config.database) for _ in range(3)]
    writers = [OwnLog(db, node.signer, node.config.signed_head, Policy()) for db in databases]
    errors: list[BaseException] = []
    rounds = 40

    def append(log: OwnLog, seed: int) -> None:
        try:
            for n in range(rounds):
                log.publish([md5(1000 * seed + n)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=append, args=(log, seed)) for seed, log in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in databases:
        db.conn.close()
    assert not errors, errors
    held = logstore.get_log(node.db.conn, node.config.origin)
    assert held is not None and held.size == rounds * len(writers)
    assert node.config.signed_head.read_text() == held.checkpoint
