"""The hash-kind registry: one definition per kind, read by every layer.

A toy kind (8 bytes, no quality, exact matching) is registered for the duration of a
test only; records, validation, the bank and its index accept it with no other change,
and once the test ends nothing of it is left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hashfed.node.match.bank import BankIndex, index_for, parse_hash
from hashfed.node.match.index import ExactIndex, Md5Index, PdqIndex
from hashfed.node.services.ownlog import NewHash
from hashfed.node.store.logstore import content_bundle
from hashfed.protocol.errors import InvalidRecord, MalformedRecord
from hashfed.protocol.kinds import MD5, PDQ, HashKind, Kind, KindRegistry, kinds, override_kinds
from hashfed.protocol.records import ContentEncoder, HashContent, decode_content
from hashfed.protocol.tiles import decode_bundle
from hashfed.protocol.validation import Policy, check_hash
from synchelpers import clock, make_node

TOY = HashKind(name="toy", size=8, has_quality=False, max_distance=0, media="toys")
TOY_HASH = bytes.fromhex("0123456789abcdef")


@pytest.fixture
def toy() -> KindRegistry:
    """Registers TOY beside the built-in kinds for one test."""
    with override_kinds(TOY) as registry:
        yield registry


def toy_content(digest: bytes = TOY_HASH) -> HashContent:
    return HashContent("toy", digest, None, ("ncii",), 1_700_000_000, os.urandom(16))


def test_builtin_kinds_hold_the_wire_facts() -> None:
    registry = kinds()
    assert registry.names == ("pdq", "md5")
    assert (PDQ.size, PDQ.hex_length, PDQ.has_quality, PDQ.max_distance) == (32, 64, True, 31)
    assert PDQ.default_quality_floor == 50
    assert (MD5.size, MD5.hex_length, MD5.has_quality, MD5.exact) == (16, 32, False, True)
    assert MD5.degenerate_reason(bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"))
    assert PDQ.degenerate_reason(b"\xff" * 32) == "all zeros or all ones"
    assert registry["pdq"].name is Kind.PDQ
    with pytest.raises(ValueError, match="registered twice"):
        registry.with_kinds(HashKind("md5", 16, False, 0))


def test_records_accept_a_registered_kind(toy: KindRegistry) -> None:
    content = toy_content()
    data = content.encode()
    assert decode_content(data) == content  # fast path
    assert decode_content(data) == content  # the template cached by the first call
    encoder = ContentEncoder("toy", content.labels, content.time)
    assert encoder.encode(content.hash, None, content.salt) == data
    assert toy.parse_hex("toy", TOY_HASH.hex()) == TOY_HASH
    with pytest.raises(ValueError, match="want 16"):
        parse_hash("toy", TOY_HASH.hex() * 2)


def test_validation_applies_the_registry_rules(toy: KindRegistry) -> None:
    check_hash("toy", TOY_HASH, None, Policy())
    with pytest.raises(InvalidRecord, match="toy hash is 9 bytes, want 8"):
        check_hash("toy", TOY_HASH + b"\0", None, Policy())
    with pytest.raises(InvalidRecord, match="carries no quality"):
        check_hash("toy", TOY_HASH, 90, Policy())
    with pytest.raises(InvalidRecord, match="all zeros or all ones"):
        check_hash("toy", bytes(8), None, Policy())


def test_bank_and_index_serve_a_registered_kind(tmp_path: Path, toy: KindRegistry) -> None:
    assert isinstance(index_for(toy["pdq"]), PdqIndex)
    assert isinstance(index_for(toy["md5"]), Md5Index)
    assert isinstance(index_for(TOY), ExactIndex)
    p = make_node(tmp_path, "p", "publisher")
    try:
        log = p.own_log(clock())
        other = bytes.fromhex("fedcba9876543210")
        result = log.publish(
            [NewHash("toy", TOY_HASH, None, ("ncii",)), NewHash("toy", other, None, ())]
        )
        own = int(p.db.conn.execute("SELECT id FROM logs WHERE own = 1").fetchone()[0])
        width = result.first_index + 2
        bundle = decode_bundle(content_bundle(p.db.conn, own, 0, width), width)
        assert decode_content(bundle[result.first_index]).hash == TOY_HASH
        index = BankIndex.load(p.db.conn)
        assert len(index.indexes["toy"]) == 2
        [[row]] = index.lookup("toy", [TOY_HASH])
        assert (row.kind, row.hash, row.index) == ("toy", TOY_HASH.hex(), result.first_index)
        log.retract([result.first_index])
        index.refresh(p.db.conn)
        assert index.lookup("toy", [TOY_HASH, other])[0] == []
        assert len(index.lookup("toy", [other])[0]) == 1
    finally:
        p.close()


def test_a_registered_kind_leaves_nothing_behind() -> None:
    with override_kinds(TOY):
        data = toy_content().encode()
        decode_content(data)
    assert "toy" not in kinds()
    with pytest.raises(MalformedRecord, match="not one of pdq, md5"):
        decode_content(data)
    with pytest.raises(InvalidRecord, match="unknown hash kind 'toy'"):
        check_hash("toy", TOY_HASH, None, Policy())
    with pytest.raises(ValueError, match="unknown kind 'toy'"):
        parse_hash("toy", TOY_HASH.hex())


def test_error_classes_join_their_package_tree() -> None:
    """Part of the same layout clean-up: no error class derives from bare Exception."""
    from hashfed.node.errors import NodeError
    from hashfed.node.http.auth import AuthError
    from hashfed.node.http.casepage import PageMissing
    from hashfed.node.http.match import BadRequest
    from hashfed.node.services.mailer import MailError
    from hashfed.node.services.pinguard import GuessRefused
    from hashfed.node.services.tokens import InvalidToken
    from hashfed.sync.auth import SessionRefused
    from hashfed.sync.errors import SyncError

    for cls in (AuthError, MailError, BadRequest, InvalidToken, PageMissing, GuessRefused):
        assert issubclass(cls, NodeError), cls
    assert issubclass(SessionRefused, SyncError)
    assert (AuthError(401, "no").status, SessionRefused(403, "no").status) == (401, 403)
