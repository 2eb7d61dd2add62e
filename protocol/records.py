"""Log records: what one entry of a hashfed log says, in one canonical encoding.

Every entry of a hashfed log is exactly one msgpack map, at most 65,535 bytes long
(the tlog-tiles entry bundle prefixes each entry with a uint16 length). Every map
carries two envelope keys that no later version may change:

    "v"     int  record format version; this module writes and reads 1
    "type"  str  "add", "retract" or "feedback"

and then exactly the fields of its type:

    add       "commit"  bin 32   SHA-256 commitment to the hash content (below)
    retract   "time"    int      seconds since the Unix epoch, UTC, author's clock
              "reason"  str      "withdrawn" | "deleted" | "error"
              "indices" [int]    1..4096 earlier additions of the same log, ascending
    feedback  "time"    int
              "origin"  str      the log the feedback is about
              "index"   int      the entry of that log
              "verdict" str      see Verdict
              "tags"    [str]    0..16 free-form tags, 1..64 characters each

A hash addition does not carry the hash itself: the log commits to it, so that
the content can be erased after a withdrawal while every tile, root and proof
stays verifiable. The content travels beside the entry, as its own msgpack map:

    "kind"    str      a kind of hashfed.protocol.kinds: "pdq" | "md5"
    "hash"    bin      the kind's size: 32 bytes (PDQ) or 16 bytes (MD5)
    "quality" int      quality 0..100, for kinds with a quality only (PDQ;
                       absent for MD5)
    "labels"  [str]    0..8 labels, 1..32 of [a-z0-9._:-], no repeats
    "time"    int      when the author added it
    "salt"    bin 16   random, so that nobody can test a guessed hash
                       against the commitment

    commit = SHA-256("hashfed/content/v1\\n" || content bytes)

Canonical encoding: map keys sorted by their UTF-8 bytes, every value in its
shortest msgpack form, strings as str and bytes as bin, no floats, no extension
types, nothing after the map. Decoding re-encodes what it read and refuses the
input unless the bytes are identical, so every record has exactly one encoding
and a relay cannot re-encode an entry without changing its leaf hash.

A record whose "v" or "type" this module does not know raises UnknownRecord:
receivers keep it and skip it (a newer node may have written it). A record of a
known type with a missing, extra or mistyped field raises MalformedRecord.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import msgpack
from hashfed.protocol.errors import MalformedRecord, UnknownRecord
from hashfed.protocol.kinds import HashKind, KindRegistry, kinds
from hashfed.protocol.kinds import Kind as Kind  # re-exported: records name their kind

FORMAT_VERSION = 1
MAX_RECORD_SIZE = 65535
CONTENT_DOMAIN = b"hashfed/content/v1\n"
SALT_SIZE = 16
COMMIT_SIZE = 32
MAX_RETRACTION_INDICES = 4096
MAX_LABELS = 8
MAX_LABEL_LENGTH = 32
MAX_TAGS = 16
MAX_TAG_LENGTH = 64
MAX_ORIGIN_LENGTH = 255
MAX_TIME = 2**63 - 1

E = TypeVar("E", bound=StrEnum)

_LABEL_RE = re.compile(r"[a-z0-9._:-]{1,32}")


class Reason(StrEnum):
    """Why an addition was retracted."""

    WITHDRAWN = "withdrawn"  # the person withdrew their case
    DELETED = "deleted"  # the operator deleted it (policy, legal)
    ERROR = "error"  # it was published by mistake


class Verdict(StrEnum):
    """What a partner found when an upload matched a hash (see specs/protocol.md)."""

    PENDING_REVIEW = "pending_review"
    BLOCKED = "blocked"
    NOT_BLOCKED = "not_blocked"
    QUALITY_UNKNOWN = "quality_unknown"
    FALSE_POSITIVE = "false_positive"


# The value StopNCII's partner API uses today for each verdict. StopNCII has no
# false-positive value: it is reported as NotBlocked with the tag "false_positive".
STOPNCII_FEEDBACK = {
    Verdict.PENDING_REVIEW: "PendingReview",
    Verdict.BLOCKED: "Blocked",
    Verdict.NOT_BLOCKED: "NotBlocked",
    Verdict.QUALITY_UNKNOWN: "QualityUnknown",
    Verdict.FALSE_POSITIVE: "NotBlocked",
}

# The documented label vocabulary. Labels outside it are kept, not refused, so a
# newer publisher can add one without breaking older partners.
KNOWN_LABELS = {
    "ncii": "non-consensual intimate imagery (the default for StopNCII cases)",
    "sextortion": "used to extort the person shown",
    "synthetic": "AI-generated or manipulated imagery of a real person",
    "test": "a test record; partners must not act on it",
}


@dataclass(frozen=True, slots=True)
class HashContent:
    """The erasable content of a hash addition (kind names a registered kind: a
    :class:`~hashfed.protocol.kinds.Kind` member for the built-in ones)."""

    kind: str
    hash: bytes
    quality: int | None
    labels: tuple[str, ...]
    time: int
    salt: bytes

    def encode(self) -> bytes:
        """Returns the canonical encoding of the content."""
        fields: dict[str, Any] = {
            "hash": self.hash,
            "kind": str(self.kind),
            "labels": list(self.labels),
            "salt": self.salt,
            "time": self.time,
        }
        if self.quality is not None:
            fields["quality"] = self.quality
        return _pack(fields)

    def commitment(self) -> bytes:
        """Returns the commitment an addition entry carries for this content."""
        return content_commitment(self.encode())


class ContentEncoder:
    """Encodes the content of many additions that share kind, labels and time, fast.

    Publishing a batch encodes one content map per record; the bytes around the
    hash, quality and salt are the same for the whole batch, so they are packed
    once. The result is byte for byte HashContent.encode() (a test holds it so).
    """

    __slots__ = ("_head", "_middle", "_tail")

    def __init__(self, kind: str | HashKind, labels: tuple[str, ...], time: int) -> None:
        spec = kind if isinstance(kind, HashKind) else kinds()[kind]
        packed_kind = msgpack.packb(str(spec.name))
        packed_labels = msgpack.packb(list(labels))
        fields = 6 if spec.has_quality else 5
        self._head = bytes([0x80 | fields]) + b"\xa4hash" + bytes([0xC4, spec.size])
        self._middle = b"\xa4kind" + packed_kind + b"\xa6labels" + packed_labels
        if spec.has_quality:
            self._middle += b"\xa7quality"
        self._tail = b"\xa4time" + msgpack.packb(time)

    def encode(self, digest: bytes, quality: int | None, salt: bytes) -> bytes:
        """Returns the canonical content bytes (digest and salt of the right sizes)."""
        q = b"" if quality is None else bytes((quality,))  # 0..100 is a positive fixint
        return b"".join(
            (self._head, digest, self._middle, q, b"\xa4salt\xc4\x10", salt, self._tail)
        )


@dataclass(frozen=True, slots=True)
class Addition:
    """A hash addition: the log commits to content carried beside it."""

    commit: bytes


@dataclass(frozen=True, slots=True)
class Retraction:
    """Withdraws earlier additions of the same log."""

    time: int
    reason: Reason
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Feedback:
    """A partner's verdict on an entry of another log."""

    time: int
    origin: str
    index: int
    verdict: Verdict
    tags: tuple[str, ...]


Record = Addition | Retraction | Feedback


def content_commitment(content: bytes) -> bytes:
    """Returns SHA-256(CONTENT_DOMAIN || content), the commitment to content bytes."""
    return hashlib.sha256(CONTENT_DOMAIN + content).digest()


def _pack(fields: dict[str, Any]) -> bytes:
    return msgpack.packb(dict(sorted(fields.items())), use_bin_type=True)  # type: ignore[no-any-return]


def encode_record(record: Record) -> bytes:
    """Returns the canonical entry bytes of a record."""
    if isinstance(record, Addition):
        return encode_addition(record.commit)
    if isinstance(record, Retraction):
        fields: dict[str, Any] = {
            "indices": list(record.indices),
            "reason": str(record.reason),
            "time": record.time,
        }
        kind = "retract"
    else:
        fields = {
            "index": record.index,
            "origin": record.origin,
            "tags": list(record.tags),
            "time": record.time,
            "verdict": str(record.verdict),
        }
        kind = "feedback"
    data = _pack({"v": FORMAT_VERSION, "type": kind, **fields})
    if len(data) > MAX_RECORD_SIZE:
        raise MalformedRecord(f"record is {len(data)} bytes, over the {MAX_RECORD_SIZE} limit")
    return data


# Every addition entry is the same bytes around its 32-byte commitment (the keys
# sort as "commit", "type", "v"), so the publisher's hot path is a concatenation.
_ADDITION_PREFIX, _, _ADDITION_SUFFIX = _pack(
    {"commit": b"\xff" * COMMIT_SIZE, "type": "add", "v": FORMAT_VERSION}
).partition(b"\xff" * COMMIT_SIZE)


_ADDITION_SIZE = len(_ADDITION_PREFIX) + COMMIT_SIZE + len(_ADDITION_SUFFIX)


def encode_addition(commit: bytes) -> bytes:
    """Returns the canonical entry of an addition (the publisher's hot path)."""
    if len(commit) != COMMIT_SIZE:
        raise MalformedRecord(f"commitment is {len(commit)} bytes, want {COMMIT_SIZE}")
    return _ADDITION_PREFIX + commit + _ADDITION_SUFFIX


def addition_commit(data: bytes) -> bytes | None:
    """Returns the commitment if data is a canonical addition entry, else None.

    decode_record(data) returns Addition(addition_commit(data)) whenever this is
    not None (the hot path of sync, which sees little else).
    """
    if (
        len(data) == _ADDITION_SIZE
        and data.startswith(_ADDITION_PREFIX)
        and data.endswith(_ADDITION_SUFFIX)
    ):
        return data[len(_ADDITION_PREFIX) : len(_ADDITION_PREFIX) + COMMIT_SIZE]
    return None


def _unpack_map(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_RECORD_SIZE:
        raise MalformedRecord(f"{what} is {len(data)} bytes, over the {MAX_RECORD_SIZE} limit")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedRecord(f"{what} is not one msgpack value: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRecord(f"{what} is a msgpack {type(value).__name__}, not a map")
    try:
        canonical = _pack(value)
    except Exception as exc:
        raise MalformedRecord(f"{what} holds a value that cannot be re-encoded: {exc}") from None
    if canonical != data:
        raise MalformedRecord(
            f"{what} is not canonically encoded (keys must be sorted and every value "
            "in its shortest form)"
        )
    return value


def _require_fields(fields: dict[str, Any], want: set[str], what: str) -> None:
    have = set(fields)
    if missing := sorted(want - have):
        raise MalformedRecord(f"{what} is missing field(s) {', '.join(missing)}")
    if extra := sorted(have - want):
        raise MalformedRecord(f"{what} has unknown field(s) {', '.join(extra)}")


def _int(fields: dict[str, Any], key: str, what: str, low: int = 0, high: int = MAX_TIME) -> int:
    value = fields[key]
    if type(value) is not int or not low <= value <= high:
        raise MalformedRecord(f"{what}: {key!r} must be an integer in {low}..{high}")
    return value


def _str(fields: dict[str, Any], key: str, what: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise MalformedRecord(f"{what}: {key!r} must be a string")
    return value


def _enum(cls: type[E], fields: dict[str, Any], key: str, what: str) -> E:
    value = _str(fields, key, what)
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise MalformedRecord(f"{what}: {key!r} is {value!r}, not one of {allowed}") from None


def _kind(fields: dict[str, Any], what: str) -> HashKind:
    value = _str(fields, "kind", what)
    registry = kinds()
    kind = registry.get(value)
    if kind is None:
        raise MalformedRecord(f"{what}: 'kind' is {value!r}, not one of {registry.names_text()}")
    return kind


def _strings(value: Any, key: str, what: str, limit: int, max_len: int) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise MalformedRecord(f"{what}: {key!r} must be a list of at most {limit} strings")
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item) <= max_len or not item.isprintable():
            raise MalformedRecord(
                f"{what}: each of {key!r} must be 1..{max_len} printable characters"
            )
    if len(set(value)) != len(value):
        raise MalformedRecord(f"{what}: {key!r} repeats a value")
    return tuple(value)


def check_labels(labels: tuple[str, ...]) -> None:
    """Raises MalformedRecord unless labels fit: at most 8, no repeats, each check_label."""
    if len(labels) > MAX_LABELS or len(set(labels)) != len(labels):
        raise MalformedRecord(f"labels must be at most {MAX_LABELS} distinct labels")
    for label in labels:
        check_label(label)


def check_label(label: str) -> None:
    """Raises MalformedRecord unless label fits the label syntax."""
    if not _LABEL_RE.fullmatch(label):
        raise MalformedRecord(f"label {label!r} must be 1..32 characters of [a-z0-9._:-]")


def check_origin(origin: str, what: str = "origin") -> None:
    """Raises MalformedRecord unless origin can name a log (a signed-note key name)."""
    if (
        not 1 <= len(origin) <= MAX_ORIGIN_LENGTH
        or "+" in origin
        or any(c.isspace() or not c.isprintable() for c in origin)
    ):
        raise MalformedRecord(
            f"{what} {origin!r} must be 1..{MAX_ORIGIN_LENGTH} printable characters "
            "without spaces or '+'"
        )


def decode_record(data: bytes) -> Record:
    """Decodes one log entry, refusing anything that is not a canonical record.

    Raises UnknownRecord for a well-formed envelope of an unknown version or type,
    and MalformedRecord for everything else that is wrong.
    """
    if (
        len(data) == _ADDITION_SIZE
        and data.startswith(_ADDITION_PREFIX)
        and data.endswith(_ADDITION_SUFFIX)
    ):  # the canonical addition, by far the most common entry: no need to unpack
        return Addition(data[len(_ADDITION_PREFIX) : len(_ADDITION_PREFIX) + COMMIT_SIZE])
    fields = _unpack_map(data, "record")
    version, kind = fields.get("v"), fields.get("type")
    if type(version) is not int or not isinstance(kind, str):
        raise MalformedRecord("record lacks the envelope fields 'v' (int) and 'type' (str)")
    if version != FORMAT_VERSION or kind not in ("add", "retract", "feedback"):
        raise UnknownRecord(f"record type {kind!r} version {version} is not known to this node")
    if kind == "add":
        _require_fields(fields, {"v", "type", "commit"}, "addition")
        commit = fields["commit"]
        if not isinstance(commit, bytes) or len(commit) != COMMIT_SIZE:
            raise MalformedRecord(f"addition: 'commit' must be {COMMIT_SIZE} bytes")
        return Addition(commit)
    if kind == "retract":
        what = "retraction"
        _require_fields(fields, {"v", "type", "time", "reason", "indices"}, what)
        indices = fields["indices"]
        if (
            not isinstance(indices, list)
            or not 1 <= len(indices) <= MAX_RETRACTION_INDICES
            or any(type(i) is not int or i < 0 for i in indices)
        ):
            raise MalformedRecord(
                f"{what}: 'indices' must list 1..{MAX_RETRACTION_INDICES} entry indices"
            )
        if any(a >= b for a, b in itertools.pairwise(indices)):
            raise MalformedRecord(f"{what}: 'indices' must be strictly ascending")
        return Retraction(
            time=_int(fields, "time", what),
            reason=_enum(Reason, fields, "reason", what),
            indices=tuple(indices),
        )
    what = "feedback"
    _require_fields(fields, {"v", "type", "time", "origin", "index", "verdict", "tags"}, what)
    origin = _str(fields, "origin", what)
    check_origin(origin, "feedback origin")
    return Feedback(
        time=_int(fields, "time", what),
        origin=origin,
        index=_int(fields, "index", what),
        verdict=_enum(Verdict, fields, "verdict", what),
        tags=_strings(fields["tags"], "tags", what, MAX_TAGS, MAX_TAG_LENGTH),
    )


class _ContentTemplate:
    """The canonical content of one (kind, labels, time), for decode_content's fast path."""

    __slots__ = ("_digest_at", "_q_at", "_salt_at", "encoder", "kind", "labels", "size", "time")

    def __init__(self, kind: HashKind, labels: tuple[str, ...], time: int) -> None:
        self.kind, self.labels, self.time = kind, labels, time
        self.encoder = encoder = ContentEncoder(kind, labels, time)
        self._digest_at = len(encoder._head)
        self._q_at = self._digest_at + kind.size + len(encoder._middle)
        self._salt_at = self._q_at + (1 if kind.has_quality else 0) + 7  # b"\xa4salt\xc4\x10"
        self.size = self._salt_at + SALT_SIZE + len(encoder._tail)

    def match(self, data: bytes) -> HashContent | None:
        """Returns the content if data is this template's encoding of some digest,
        quality (0..100) and salt, else None."""
        if len(data) != self.size:
            return None
        quality = None
        if self.kind.has_quality:
            quality = data[self._q_at]
            if quality > 100:
                return None
        digest = data[self._digest_at : self._digest_at + self.kind.size]
        salt = data[self._salt_at : self._salt_at + SALT_SIZE]
        if self.encoder.encode(digest, quality, salt) != data:
            return None
        return HashContent(self.kind.name, digest, quality, self.labels, self.time, salt)


# Caches for decode_content's fast path: label lists already found valid, the
# templates by (kind, labels, time) (a publisher's batch shares all three), and
# the template that matched last with the kind registry it was found under (a
# template is only reused while that registry is in force).
_VALID_LABELS: set[tuple[str, ...]] = set()
_TEMPLATES: dict[tuple[HashKind, tuple[str, ...], int], _ContentTemplate] = {}
_LAST_TEMPLATE: list[tuple[KindRegistry, _ContentTemplate]] = []
_CACHE_LIMIT = 4096


def _decode_content_fast(data: bytes) -> HashContent | None:
    """Returns the content if data is canonical valid content, else None (decide slowly).

    Re-encodes with ContentEncoder, which is byte for byte HashContent.encode(),
    so a match proves what decode_content's generic path would: the bytes are
    the canonical encoding of exactly these valid fields.
    """
    registry = kinds()
    if _LAST_TEMPLATE and _LAST_TEMPLATE[0][0] is registry:
        found = _LAST_TEMPLATE[0][1].match(data)
        if found is not None:
            return found
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception:
        return None
    if type(value) is not dict:
        return None
    kind = registry.get(value.get("kind"))
    if kind is None or len(value) != (6 if kind.has_quality else 5):
        return None
    if kind.has_quality:
        quality = value.get("quality")
        if type(quality) is not int or not 0 <= quality <= 100:
            return None
    salt, labels, time = value.get("salt"), value.get("labels"), value.get("time")
    if (
        type(salt) is not bytes
        or type(time) is not int
        or not 0 <= time <= MAX_TIME
        or type(labels) is not list
        or any(type(label) is not str for label in labels)
    ):
        return None
    label_tuple = tuple(labels)
    if label_tuple not in _VALID_LABELS:
        try:
            _strings(labels, "labels", "", MAX_LABELS, MAX_LABEL_LENGTH)
            for label in label_tuple:
                check_label(label)
        except MalformedRecord:
            return None
        if len(_VALID_LABELS) >= _CACHE_LIMIT:
            _VALID_LABELS.clear()
        _VALID_LABELS.add(label_tuple)
    key = (kind, label_tuple, time)
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) >= _CACHE_LIMIT:
            _TEMPLATES.clear()
        template = _TEMPLATES[key] = _ContentTemplate(kind, label_tuple, time)
    found = template.match(data)
    if found is not None:
        _LAST_TEMPLATE[:] = [(registry, template)]
    return found


def decode_content(data: bytes) -> HashContent:
    """Decodes the content of a hash addition, refusing any non-canonical encoding."""
    if len(data) <= MAX_RECORD_SIZE:
        fast = _decode_content_fast(data)
        if fast is not None:
            return fast
    what = "hash content"
    fields = _unpack_map(data, what)
    kind = _kind(fields, what)
    want = {"kind", "hash", "labels", "time", "salt"} | ({"quality"} if kind.has_quality else set())
    _require_fields(fields, want, what)
    digest, salt = fields["hash"], fields["salt"]
    if not isinstance(digest, bytes):
        raise MalformedRecord(f"{what}: 'hash' must be bytes")
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise MalformedRecord(f"{what}: 'salt' must be {SALT_SIZE} bytes")
    labels = _strings(fields["labels"], "labels", what, MAX_LABELS, MAX_LABEL_LENGTH)
    for label in labels:
        check_label(label)
    return HashContent(
        kind=kind.name,
        hash=digest,
        quality=_int(fields, "quality", what, 0, 100) if kind.has_quality else None,
        labels=labels,
        time=_int(fields, "time", what),
        salt=salt,
    )
