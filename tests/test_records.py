"""Records: one canonical msgpack encoding, strict decoding, validation rules."""

from __future__ import annotations

import os
import random

import msgpack
import pytest
from hashfed.protocol.errors import InvalidRecord, MalformedRecord, UnknownRecord
from hashfed.protocol.kinds import kinds
from hashfed.protocol.records import (
    MAX_RECORD_SIZE,
    MAX_RETRACTION_INDICES,
    STOPNCII_FEEDBACK,
    Addition,
    ContentEncoder,
    Feedback,
    HashContent,
    Kind,
    Reason,
    Retraction,
    Verdict,
    decode_content,
    decode_record,
    encode_addition,
    encode_record,
)
from hashfed.protocol.validation import (
    EMPTY_FILE_MD5,
    Policy,
    check_commitment,
    check_feedback,
    check_hash,
    check_retraction,
)

PDQ = bytes.fromhex("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22")
MD5 = bytes.fromhex("0a21c8f85a55a9e276ffc2c53f6887c4")
SALT = bytes(range(16))


def _content(**changes: object) -> HashContent:
    fields: dict[str, object] = dict(
        kind=Kind.PDQ, hash=PDQ, quality=90, labels=("ncii",), time=1_700_000_000, salt=SALT
    )
    fields.update(changes)
    return HashContent(**fields)  # type: ignore[arg-type]


RECORDS = [
    Addition(bytes(range(32))),
    Retraction(1_700_000_000, Reason.WITHDRAWN, (0, 5, 70_000)),
    Feedback(1_700_000_001, "stopncii.example/bank", 42, Verdict.FALSE_POSITIVE, ("reviewed",)),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_records_round_trip_exactly(record: object) -> None:
    data = encode_record(record)  # type: ignore[arg-type]
    assert decode_record(data) == record
    assert encode_record(decode_record(data)) == data
    assert len(data) <= MAX_RECORD_SIZE


def test_addition_entry_is_the_canonical_msgpack_map() -> None:
    commit = bytes(range(32))
    want = msgpack.packb({"commit": commit, "type": "add", "v": 1}, use_bin_type=True)
    assert encode_addition(commit) == want


def test_content_round_trips_and_commits() -> None:
    content = _content()
    assert decode_content(content.encode()) == content
    check_commitment(content.encode(), content.commitment())
    other = _content(salt=bytes(16))
    with pytest.raises(InvalidRecord, match="commitment"):
        check_commitment(other.encode(), content.commitment())


def test_md5_content_has_no_quality_field() -> None:
    content = _content(kind=Kind.MD5, hash=MD5, quality=None)
    assert b"quality" not in content.encode()
    assert decode_content(content.encode()) == content


def test_content_encoder_matches_the_generic_encoding() -> None:
    rng = random.Random(7)
    for _ in range(500):
        kind = rng.choice(list(Kind))
        labels = tuple(rng.sample(["ncii", "test", "sextortion", "x.y"], rng.randint(0, 4)))
        time = rng.choice([0, 1, 127, 128, 65_536, 2**32 + 5, 2**40])
        quality = rng.randint(0, 100) if kind is Kind.PDQ else None
        content = HashContent(
            kind, os.urandom(kinds()[kind].size), quality, labels, time, os.urandom(16)
        )
        fast = ContentEncoder(kind, labels, time).encode(content.hash, quality, content.salt)
        assert fast == content.encode()


def _raw(fields: dict[str, object]) -> bytes:
    return msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"", MalformedRecord, "not one msgpack value"),
        (encode_addition(bytes(32))[:-1], MalformedRecord, "not one msgpack value"),
        (encode_addition(bytes(32)) + b"\x00", MalformedRecord, "not one msgpack value"),
        (msgpack.packb([1, 2]), MalformedRecord, "not a map"),
        # keys out of order: the same map, not canonically encoded
        (
            msgpack.packb({"v": 1, "type": "add", "commit": bytes(32)}, use_bin_type=True),
            MalformedRecord,
            "canonical",
        ),
        # an int in a wider form than needed
        (
            b"\x83\xa6commit\xc4\x20" + bytes(32) + b"\xa4type\xa3add\xa1v\xcd\x00\x01",
            MalformedRecord,
            "canonical",
        ),
        (_raw({"v": 1, "type": "add"}), MalformedRecord, "missing field"),
        (
            _raw({"v": 1, "type": "add", "commit": bytes(32), "x": 1}),
            MalformedRecord,
            "unknown field",
        ),
        (_raw({"v": 1, "type": "add", "commit": bytes(31)}), MalformedRecord, "32 bytes"),
        (_raw({"v": 1, "type": "add", "commit": "a" * 32}), MalformedRecord, "32 bytes"),
        (_raw({"v": 2, "type": "add", "commit": bytes(32)}), UnknownRecord, "version 2"),
        (_raw({"v": 1, "type": "vote", "x": 1}), UnknownRecord, "vote"),
        (_raw({"type": "add"}), MalformedRecord, "envelope"),
        (
            _raw({"v": 1, "type": "retract", "time": 1, "reason": "bored", "indices": [1]}),
            MalformedRecord,
            "reason",
        ),
        (
            _raw({"v": 1, "type": "retract", "time": 1, "reason": "error", "indices": [2, 1]}),
            MalformedRecord,
            "ascending",
        ),
        (
            _raw({"v": 1, "type": "retract", "time": 1, "reason": "error", "indices": []}),
            MalformedRecord,
            "indices",
        ),
        (
            _raw({"v": 1, "type": "retract", "time": -1, "reason": "error", "indices": [1]}),
            MalformedRecord,
            "time",
        ),
        (
            _raw({"v": 1, "type": "retract", "time": 1.5, "reason": "error", "indices": [1]}),
            MalformedRecord,
            "time",
        ),
        (
            _raw(
                {
                    "v": 1,
                    "type": "feedback",
                    "time": 1,
                    "origin": "a b",
                    "index": 1,
                    "verdict": "blocked",
                    "tags": [],
                }
            ),
            MalformedRecord,
            "origin",
        ),
        (
            _raw(
                {
                    "v": 1,
                    "type": "feedback",
                    "time": 1,
                    "origin": "a",
                    "index": 1,
                    "verdict": "blocked",
                    "tags": ["x", "x"],
                }
            ),
            MalformedRecord,
            "repeats",
        ),
        (
            _raw(
                {
                    "v": 1,
                    "type": "feedback",
                    "time": 1,
                    "origin": "a",
                    "index": 1,
                    "verdict": "blocked",
                    "tags": ["x" * 65],
                }
            ),
            MalformedRecord,
            "tags",
        ),
        (b"\xc4" + b"\xff" * 70_000, MalformedRecord, "limit"),
    ],
)
def test_bad_records_are_refused_with_a_reason(data: bytes, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        decode_record(data)


def test_unknown_record_is_not_a_malformed_one() -> None:
    # Receivers keep and skip UnknownRecord; it must not be confused with damage.
    assert not issubclass(UnknownRecord, MalformedRecord)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"kind": "sha1"}, "kind"),
        ({"salt": bytes(15)}, "salt"),
        ({"labels": ["Bad Label"]}, "label"),
        ({"labels": ["a"] * 9}, "labels"),
        ({"quality": 101}, "quality"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_bad_content_is_refused(fields: dict[str, object], match: str) -> None:
    base: dict[str, object] = {
        "kind": "pdq",
        "hash": PDQ,
        "quality": 90,
        "labels": [],
        "time": 1,
        "salt": SALT,
    }
    base.update(fields)
    with pytest.raises(MalformedRecord, match=match):
        decode_content(_raw(base))


def test_oversized_retraction_is_refused_by_the_encoder() -> None:
    record = Retraction(1, Reason.ERROR, tuple(range(2**40, 2**40 + 8000)))
    with pytest.raises(MalformedRecord, match="limit"):
        encode_record(record)
    # The largest retraction the node writes always fits.
    biggest = Retraction(2**62, Reason.ERROR, tuple(range(2**62, 2**62 + MAX_RETRACTION_INDICES)))
    assert len(encode_record(biggest)) <= MAX_RECORD_SIZE


@pytest.mark.parametrize(
    ("kind", "digest", "quality", "match"),
    [
        (Kind.PDQ, PDQ[:31], 90, "31 bytes"),
        (Kind.PDQ, bytes(32), 90, "all zeros"),
        (Kind.PDQ, b"\xff" * 32, 90, "all zeros or all ones"),
        (Kind.PDQ, PDQ, 49, "below"),
        (Kind.PDQ, PDQ, None, "quality"),
        (Kind.MD5, MD5 + b"\0", None, "17 bytes"),
        (Kind.MD5, EMPTY_FILE_MD5, None, "empty file"),
        (Kind.MD5, MD5, 100, "no quality"),
    ],
)
def test_invalid_hashes_are_refused(
    kind: Kind, digest: bytes, quality: int | None, match: str
) -> None:
    with pytest.raises(InvalidRecord, match=match):
        check_hash(kind, digest, quality, Policy())


def test_quality_threshold_is_configurable() -> None:
    check_hash(Kind.PDQ, PDQ, 49, Policy(min_pdq_quality=40))
    check_hash(Kind.PDQ, PDQ, 50, Policy())
    check_hash(Kind.MD5, MD5, None, Policy())


class _Log:
    def __init__(self, statuses: dict[int, str]) -> None:
        self.statuses = statuses

    def addition_status(self, index: int) -> str | None:
        return self.statuses.get(index)


@pytest.mark.parametrize(
    ("indices", "own", "match"),
    [
        ((0, 5), 5, "does not precede"),
        ((1,), 5, "not a hash addition"),
        ((2,), 5, "already retracted"),
    ],
)
def test_bad_retractions_are_refused(indices: tuple[int, ...], own: int, match: str) -> None:
    log = _Log({0: "active", 2: "retracted", 5: "active"})
    with pytest.raises(InvalidRecord, match=match):
        check_retraction(Retraction(1, Reason.WITHDRAWN, indices), own, log)
    check_retraction(Retraction(1, Reason.WITHDRAWN, (0,)), 6, log)


def test_feedback_must_be_about_another_log() -> None:
    record = Feedback(1, "me.example/log", 1, Verdict.BLOCKED, ())
    with pytest.raises(InvalidRecord, match="another log"):
        check_feedback(record, "me.example/log")
    check_feedback(record, "partner.example/log")


def test_every_verdict_maps_to_a_stopncii_value() -> None:
    assert set(STOPNCII_FEEDBACK) == set(Verdict)
    assert STOPNCII_FEEDBACK[Verdict.BLOCKED] == "Blocked"
    assert STOPNCII_FEEDBACK[Verdict.PENDING_REVIEW] == "PendingReview"
