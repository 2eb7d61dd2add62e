"""The case desk's storage on its own (node/store/cases.py) and the stored PIN format
(node/services/casecrypto.py); the desk's behaviour is in test_case_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils
from hashfed.node.services.casecrypto import hash_pin, verify_pin
from hashfed.node.store import cases
from hashfed.node.store.db import open_database, transaction

# A PIN stored by this version (scrypt N=2^15, r=8, p=1, this salt): databases in the
# field hold such strings, so any change to hashing must still verify them.
# The key was checked against the scrypt of the cryptography package.
STORED_PIN = (
    "scrypt$32768$8$1$000102030405060708090a0b0c0d0e0f$"
    "7b5ee04ee118ad3a5fa5247e220acabc3613833d5fe9981ed3f480d5ac9623f5"
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    db = open_database(tmp_path / "node.db")
    yield db
    db.conn.close()


def test_stored_pins_of_this_version_still_verify() -> None:
    assert hash_pin("correct-horse-42", bytes(range(16))) == STORED_PIN
    assert verify_pin("correct-horse-42", STORED_PIN)
    assert not verify_pin("correct-horse-4", STORED_PIN)


def test_a_case_from_insert_to_publication(db: sqlite_utils.Database) -> None:
    conn = db.conn
    hashes = [("pdq", b"\x01" * 32, 90), ("md5", b"\x02" * 16, None)]
    cases.insert_case(conn, "c1", b"n" * 32, "stored-pin", "pending", 86400, hashes)
    cases.insert_case(conn, "c2", b"m" * 32, "stored-pin", "review", 86400, hashes[:1])
    assert cases.find_case(conn, b"n" * 32) == cases.CaseLogin("c1", "stored-pin")
    assert cases.find_case(conn, b"x" * 32) is None
    assert cases.case_state(conn, "nope") is None
    assert cases.case_summary(conn, "c1") == cases.CaseSummary("pending", 86400, 2)
    assert cases.pending_opened(conn) == {"c1": 86400}
    pending = cases.pending_hashes(conn)
    assert sorted((p.case_id, p.position, p.kind, p.hash, p.quality) for p in pending) == [
        ("c1", 0, "pdq", b"\x01" * 32, 90),
        ("c1", 1, "md5", b"\x02" * 16, None),
    ]
    with transaction(db):
        # c2 is held for review: the short count tells the batch another process moved it.
        assert cases.mark_published(conn, [(7, "c1", 0), (8, "c1", 1), (9, "c2", 0)]) == 2
        cases.activate_cases(conn, ["c1", "c2"])
    assert cases.pending_hashes(conn) == []
    assert (cases.case_state(conn, "c1"), cases.case_state(conn, "c2")) == ("active", "review")
    assert sorted(cases.case_log_indices(conn, "c1")) == [7, 8]
    assert conn.execute("SELECT count(*) FROM case_hashes WHERE hash IS NOT NULL").fetchone() == (
        1,
    )
    assert [(c.id, c.state, c.count, c.published) for c in cases.list_cases(conn)] == [
        ("c1", "active", 2, 2),
        ("c2", "review", 1, 0),
    ]
    assert [c.id for c in cases.list_cases(conn, "review")] == ["c2"]


def test_feedback_is_counted_across_query_chunks(db: sqlite_utils.Database) -> None:
    conn = db.conn
    targets = range(cases.FEEDBACK_CHUNK * 2 + 1)
    with transaction(db) as tx:
        tx.execute("INSERT INTO logs (id, origin, vkey, root) VALUES (1, 'partner', 'k', x'')")
        tx.executemany(
            "INSERT INTO feedback (log_id, idx, target_origin, target_idx, verdict, tags, time)"
            " VALUES (1, ?, 'publisher', ?, ?, '', 0)",
            [(i, i, "blocked" if i % 3 else "not_blocked") for i in targets],
        )
    counts = cases.feedback_verdicts(conn, "publisher", targets)
    assert counts == {"blocked": 667, "not_blocked": 334}
    assert sum(counts.values()) == len(targets)
    assert cases.feedback_verdicts(conn, "elsewhere", targets) == {}
