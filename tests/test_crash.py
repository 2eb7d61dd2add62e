"""Crash atomicity with real processes: SIGKILL a publisher at various points, then recover.

A child process publishes batches in a loop and reports each commit on a pipe;
the parent kills it with SIGKILL once it has reported enough, so the kill lands
wherever the child happens to be (between batches, mid-encoding, mid-transaction,
while writing the signed head). One case holds the child inside the transaction,
after every table of the batch was written and before the commit, by making its
signer wait. After each kill the node must open, verify without problems, hold a
whole number of batches (at least every batch reported), and keep publishing.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hashfed.node.home import init_node, open_node
from hashfed.node.services.ownlog import NewHash
from hashfed.node.services.verify import VerifyReport, verify_bank, verify_log
from hashfed.node.store import logstore
from hashfed.protocol.checkpoint import open_checkpoint
from hashfed.protocol.records import Kind
from hashfed.signing.note import VerifierList

ORIGIN = "crash.example/log"

CHILD = r"""
import hashlib, sys
from pathlib import Path
from hashfed.node.home import open_node
from hashfed.node.services.ownlog import NewHash, OwnLog
from hashfed.protocol.records import Kind

home, batch, hold_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
node = open_node(home)


class HeldSigner:
    # The node's signer, except that when armed it reports and then waits
    # (inside the append transaction) until the parent kills the process.
    def __init__(self, signer):
        self._signer = signer
        self.name = signer.name
        self.key_hash = signer.key_hash
        self.armed = False

    def verifier(self):
        return self._signer.verifier()

    def sign(self, msg):
        if self.armed:
            print("holding", flush=True)
            sys.stdin.read()
        return self._signer.sign(msg)


signer = HeldSigner(node.signer)
log = OwnLog(node.db, signer, node.config.signed_head)
print("ready", flush=True)
for k in range(100_000):
    signer.armed = k + 1 == hold_at
    items = [
        NewHash(Kind.MD5, hashlib.md5(b"%d/%d" % (k, i)).digest(), None) for i in range(batch)
    ]
    log.publish(items)
    print("committed", k + 1, flush=True)
"""


def _kill_after(home: Path, batch: int, until: str, hold_at: int = 0) -> int:
    """Runs the child until it prints a line starting with until, SIGKILLs it and
    returns how many batches it reported committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(batch), str(hold_at)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("committed "):
                committed = int(line.split()[1])
            if line.startswith(until):
                break
        else:
            raise AssertionError(f"child ended early: {child.stderr.read()}")  # type: ignore[union-attr]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    return committed


def _check_recovered(home: Path, batch: int, committed: int) -> int:
    with open_node(home) as node:
        conn = node.db.conn
        log = logstore.get_log(conn, ORIGIN)
        assert log is not None
        report = VerifyReport(origin=ORIGIN)
        verify_log(conn, log, report)
        verify_bank(conn, log, report)
        assert report.problems == []
        assert log.size % batch == 0, f"a partial batch: size {log.size}, batch {batch}"
        assert log.size >= committed * batch, "a batch reported committed was lost"
        assert log.size <= (committed + 1) * batch
        assert conn.execute("SELECT count(*) FROM bank").fetchone()[0] == log.size
        head, _ = open_checkpoint(
            node.config.signed_head.read_text(), VerifierList(node.signer.verifier()), ORIGIN
        )
        assert head.size in (log.size, log.size - batch) or (log.size == 0 and head.size == 0)
        assert head.size >= committed * batch
        more = [NewHash(Kind.MD5, hashlib.md5(b"after %d" % i).digest(), None) for i in range(3)]
        result = node.own_log().publish(more)
        assert result.first_index == log.size
        log = logstore.get_log(conn, ORIGIN)
        assert log is not None
        report = VerifyReport(origin=ORIGIN)
        verify_log(conn, log, report)
        verify_bank(conn, log, report)
        assert report.problems == []
        return log.size


@pytest.mark.parametrize(
    ("batch", "batches"),
    [(50, 1), (50, 12), (500, 3), (20_000, 1)],
    ids=["small-after-1", "small-after-12", "medium-after-3", "large-after-1"],
)
def test_sigkill_while_publishing(tmp_path: Path, batch: int, batches: int) -> None:
    home = tmp_path / "node"
    init_node(home, ORIGIN).close()
    committed = _kill_after(home, batch, f"committed {batches}\n")
    assert committed == batches
    _check_recovered(home, batch, committed)


def test_sigkill_at_start_before_any_batch(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_node(home, ORIGIN).close()
    committed = _kill_after(home, 10_000, "ready")
    assert committed == 0
    _check_recovered(home, 10_000, 0)


@pytest.mark.parametrize(("batch", "hold_at"), [(20_000, 1), (300, 4)])
def test_sigkill_inside_the_transaction(tmp_path: Path, batch: int, hold_at: int) -> None:
    """Killed after the batch's bundles, tiles and bank rows were written, before commit."""
    home = tmp_path / "node"
    init_node(home, ORIGIN).close()
    committed = _kill_after(home, batch, "holding", hold_at=hold_at)
    assert committed == hold_at - 1
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        assert log.size == committed * batch  # the held batch left no trace
    _check_recovered(home, batch, committed)


def test_repeated_kills_on_one_node(tmp_path: Path) -> None:
    """Kill, recover and publish again several times on the same node."""
    home = tmp_path / "node"
    init_node(home, ORIGIN).close()
    batch = 200
    for batches in (1, 3, 2):
        before = _size(home)
        committed = _kill_after(home, batch, f"committed {batches}\n")
        with open_node(home) as node:
            log = logstore.get_log(node.db.conn, ORIGIN)
            assert log is not None
            assert (log.size - before) % batch == 0
            assert log.size >= before + committed * batch
        # Continue with a non-multiple so the next child starts mid-bundle.
        with open_node(home) as node:
            node.own_log().publish(
                [NewHash(Kind.MD5, hashlib.md5(b"%d x" % before).digest(), None)]
            )
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        report = VerifyReport(origin=ORIGIN)
        verify_log(node.db.conn, log, report)
        verify_bank(node.db.conn, log, report)
        assert report.problems == []


def _size(home: Path) -> int:
    with open_node(home) as node:
        log = logstore.get_log(node.db.conn, ORIGIN)
        assert log is not None
        return log.size
