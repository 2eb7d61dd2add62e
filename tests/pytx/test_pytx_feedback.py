"""report_opinion through the real pytx API and CLI into a real 'hashfed serve'.

Publisher P publishes a photo's hash in two cases and another hash; partner A
syncs P and runs the real 'hashfed serve'. The platform's pytx reports opinions
on a hash; A publishes one feedback record per active entry of P's log with it,
signed into A's own log. Without a feedback node the exchange says it cannot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hashfed.node.home import Node, ensure_admin_token
from hashfed.node.services.ownlog import NewHash
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database
from hashfed.protocol.records import Feedback, Kind, Verdict, decode_record
from hashfed.protocol.tiles import decode_bundle
from hashfed.sync.pytx import HashfedSignalExchangeAPI
from hashfed.sync.pytx.api import (
    HashfedConfigError,
    HashfedFeedbackFailed,
    HashfedNoFeedbackNode,
)
from hashfed.sync.pytx.config import HashfedCollabConfig, HashfedNodeToken
from pytxhelpers import platform
from servehelpers import start_serve, stop, wait_for_line
from synchelpers import allow, clock, make_node, origin_of, serve, sync, trust, use
from threatexchange.exchanges.auth import (
    SignalExchangeAPIInvalidAuthException,
    SignalExchangeAPIMissingAuthException,
)
from threatexchange.exchanges.fetch_state import SignalOpinion, SignalOpinionCategory
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.url import URLSignal

P, A = origin_of("p"), origin_of("a")
PHOTO = bytes(range(32))
OTHER = bytes(range(1, 33))
VIDEO = bytes(range(16))


def own_feedback(node: Node) -> list[tuple[str, int, Verdict, tuple[str, ...]]]:
    """Returns the feedback records of node's own log, read from its database."""
    db = open_database(node.config.database)
    try:
        log = logstore.get_log(db.conn, node.config.origin)
        assert log is not None
        stored = logstore.read_bundle(db.conn, log.id, 0)
    finally:
        db.conn.close()
    if stored is None:
        return []
    records = [decode_record(e) for e in decode_bundle(stored[1], stored[0])]
    assert all(isinstance(r, Feedback) for r in records)
    return [(r.origin, r.index, r.verdict, r.tags) for r in records if isinstance(r, Feedback)]


@dataclasses.dataclass
class Partner:
    node: Node
    url: str
    token: str
    collab: HashfedCollabConfig


@pytest.fixture
async def partner(tmp_path: Path) -> AsyncIterator[Partner]:
    """A, synced from P, served by the real 'hashfed serve'; a collab reading P's log
    with A as its feedback node."""
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    log = p.own_log(clock())
    log.publish([NewHash(Kind.PDQ, PHOTO, 100), NewHash(Kind.PDQ, OTHER, 100)])
    log.publish([NewHash(Kind.PDQ, PHOTO, 100), NewHash(Kind.MD5, VIDEO, None)])
    allow(p, a)
    trust(a, p)
    async with serve(p) as p_url:
        use(a, p, p_url)
        assert (await sync(a)).ok
        collab = HashfedCollabConfig(
            urls=[p_url], origin=P, log_key=p.signer.vkey(), name="stopncii"
        )
    token = ensure_admin_token(a.config.home)
    a.close()
    served = start_serve(a.config.home, "--port", "0", "--no-sync")
    try:
        url = wait_for_line(served, "serving ").rsplit(" ", 1)[1]
        yield Partner(a, url, token, dataclasses.replace(collab, feedback_node=url + "/"))
    finally:
        assert stop(served) == 0, served.output()


def opinion(category: SignalOpinionCategory, *tags: str) -> SignalOpinion:
    return SignalOpinion(True, category, set(tags))


def test_report_opinion_publishes_on_every_entry_with_the_hash(partner: Partner) -> None:
    api = HashfedSignalExchangeAPI.for_collab(partner.collab)
    with HashfedNodeToken.set_default(HashfedNodeToken(partner.token), "the test"):
        api.report_opinion(
            PdqSignal, PHOTO.hex(), opinion(SignalOpinionCategory.POSITIVE_CLASS, "upload", "b")
        )
        api.report_opinion(
            VideoMD5Signal, VIDEO.hex(), opinion(SignalOpinionCategory.NEGATIVE_CLASS)
        )
        api.report_opinion(
            PdqSignal, OTHER.hex(), opinion(SignalOpinionCategory.INVESTIGATION_SEED)
        )
        assert own_feedback(partner.node) == [
            (P, 0, Verdict.BLOCKED, ("b", "upload")),
            (P, 2, Verdict.BLOCKED, ("b", "upload")),
            (P, 3, Verdict.FALSE_POSITIVE, ()),
            (P, 1, Verdict.PENDING_REVIEW, ()),
        ]
        # The node's refusals reach the caller in one line, and publish nothing.
        with pytest.raises(HashfedFeedbackFailed, match="404: no active entry"):
            api.report_opinion(PdqSignal, "00" * 32, opinion(SignalOpinionCategory.POSITIVE_CLASS))
        with pytest.raises(HashfedFeedbackFailed, match="400: at most 16 tags"):
            many = opinion(SignalOpinionCategory.POSITIVE_CLASS, *map(str, range(17)))
            api.report_opinion(PdqSignal, PHOTO.hex(), many)
        with pytest.raises(HashfedFeedbackFailed, match="not in hashfed logs"):
            api.report_opinion(URLSignal, "http://x", opinion(SignalOpinionCategory.POSITIVE_CLASS))
    wrong = HashfedNodeToken.set_default(HashfedNodeToken("wrong"), "the test")
    with wrong, pytest.raises(HashfedFeedbackFailed, match="401"):
        api.report_opinion(PdqSignal, PHOTO.hex(), opinion(SignalOpinionCategory.POSITIVE_CLASS))
    assert len(own_feedback(partner.node)) == 4


def test_pytx_label_reports_through_the_cli(tmp_path: Path, partner: Partner) -> None:
    """'threatexchange label' (pytx's CLI for opinions) with the token in the environment."""
    tx = platform(
        tmp_path, partner.collab.urls[0], partner.collab.log_key, None,
        "--feedback-node", partner.url,
    )  # fmt: skip
    label = ["label", "--as-hash", "pdq", "-l", "seen", "stopncii", "photo", "--", PHOTO.hex()]
    tx.env.pop("TX_HASHFED_ADMIN_TOKEN", None)
    missing = tx.tx(*label)
    assert missing.returncode != 0, missing.stderr
    assert "TX_HASHFED_ADMIN_TOKEN" in missing.stderr and "Traceback" not in missing.stderr
    assert own_feedback(partner.node) == []
    tx.env["TX_HASHFED_ADMIN_TOKEN"] = partner.token
    done = tx.tx(*label)
    assert done.returncode == 0, done.stderr
    assert own_feedback(partner.node) == [
        (P, 0, Verdict.BLOCKED, ("seen",)),
        (P, 2, Verdict.BLOCKED, ("seen",)),
    ]


def test_without_a_feedback_node_it_says_it_cannot(
    partner: Partner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TX_HASHFED_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.tx_hashfed_admin_token either
    api = HashfedSignalExchangeAPI(dataclasses.replace(partner.collab, feedback_node=None))
    with pytest.raises(HashfedNoFeedbackNode, match="no feedback_node configured") as raised:
        api.report_opinion(PdqSignal, PHOTO.hex(), opinion(SignalOpinionCategory.POSITIVE_CLASS))
    assert isinstance(raised.value, NotImplementedError)  # what pytx callers catch
    assert "TX_HASHFED_ADMIN_TOKEN" in str(raised.value)
    with pytest.raises(HashfedConfigError, match="not an http"):
        HashfedSignalExchangeAPI(dataclasses.replace(partner.collab, feedback_node="node:8470"))
    remote = "http://node.example:8470"  # the admin token must not cross a network in clear
    with pytest.raises(HashfedConfigError, match="clear text"):
        HashfedSignalExchangeAPI(dataclasses.replace(partner.collab, feedback_node=remote))
    HashfedNodeToken.clear_default()
    api = HashfedSignalExchangeAPI(partner.collab)
    with pytest.raises(SignalExchangeAPIMissingAuthException) as missing:
        api.report_opinion(PdqSignal, PHOTO.hex(), opinion(SignalOpinionCategory.POSITIVE_CLASS))
    assert "TX_HASHFED_ADMIN_TOKEN" in missing.value.pretty_str()
    (tmp_path / ".tx_hashfed_admin_token").write_text("two words\n")
    with pytest.raises(SignalExchangeAPIInvalidAuthException, match="tx_hashfed_admin_token"):
        api.report_opinion(PdqSignal, PHOTO.hex(), opinion(SignalOpinionCategory.POSITIVE_CLASS))
    assert own_feedback(partner.node) == []
