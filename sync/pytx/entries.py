"""What a verified bundle means to python-threatexchange: updates keyed by log index.

A hash addition becomes a ``HashfedEntry`` under its log index; a retraction
becomes a delete (None) of each index it names. Keying by index, not by
(signal type, hash), is what makes withdrawal work: the content of a retracted
addition is erased everywhere, so a delete could not name the hash, and one
hash published under two cases stays matchable until both are withdrawn.

The checks are hashfed's own (hashfed.protocol.records and .validation), as a
node applies them to a publisher's log. An entry that is signed and included
but fails one is skipped with a warning and never stops the entries behind it;
content that does not match its entry's commitment is the peer's fault and
raises PeerFault.
"""

# ruff: noqa: UP006, UP045  (pytx's dataclasses are read with typing introspection)

import logging
import typing as t
from dataclasses import dataclass, field

from hashfed.protocol.errors import InvalidRecord, MalformedRecord, ProtocolError, UnknownRecord
from hashfed.protocol.kinds import Kind
from hashfed.protocol.records import (
    Addition,
    Feedback,
    Retraction,
    addition_commit,
    decode_content,
    decode_record,
)
from hashfed.protocol.validation import Policy, check_commitment, check_content
from hashfed.sync.errors import PeerFault
from hashfed.sync.follow import VerifiedBundle
from threatexchange.exchanges import fetch_state as state
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

log = logging.getLogger(__name__)

SIGNAL_TYPES: t.Dict[str, t.Type[SignalType]] = {Kind.PDQ: PdqSignal, Kind.MD5: VideoMD5Signal}
"""The pytx signal type of each hashfed hash kind (hashfed.protocol.kinds)."""

TEST_LABEL = "test"  # KNOWN_LABELS: "a test record; partners must not act on it"


@dataclass(slots=True)
class HashfedEntry:
    """One active hash addition of the log (the update record, keyed by index).

    Slotted: pytx's CLI keeps every record of the log in memory.
    """

    index: int
    kind: str  # a kind of hashfed.protocol.kinds: "pdq" | "md5"
    hash: str  # lowercase hex, as pytx writes signals
    labels: t.List[str]
    time: int  # when the publisher added it
    quality: t.Optional[int] = None  # PDQ only


@dataclass
class HashfedSignalMetadata(state.FetchedSignalMetadata):
    """What is known about one hash: the log entries that carry it and their labels.

    Labels become tags. An entry labelled "test" is a negative opinion (test
    data that must not be acted on); every other entry a positive one.
    """

    entries: t.Dict[int, t.FrozenSet[str]] = field(default_factory=dict)

    def get_as_opinions(self) -> t.Sequence[state.SignalOpinion]:
        return [
            state.SignalOpinion(
                False,
                state.SignalOpinionCategory.NEGATIVE_CLASS
                if TEST_LABEL in labels
                else state.SignalOpinionCategory.POSITIVE_CLASS,
                set(labels),
            )
            for _, labels in sorted(self.entries.items())
        ]


Updates = t.Dict[int, t.Optional[HashfedEntry]]


Missing = t.Dict[int, bytes]
"""Additions that arrived without content: log index -> the entry's commitment."""


def bundle_updates(bundle: VerifiedBundle, rules: Policy) -> t.Tuple[Updates, int, Missing]:
    """Returns the updates of a verified bundle, the newest author time in it, and
    the additions in it that came without content."""
    updates: Updates = {}
    missing: Missing = {}
    newest = 0
    for offset, entry in enumerate(bundle.entries):
        index, content = bundle.start + offset, bundle.contents[offset]
        commit = addition_commit(entry)
        if commit is None:
            newest = max(newest, _other_record(index, entry, content, rules, updates))
            continue
        if not content:
            # Erased at the source (a retraction follows), or withheld by the peer:
            # asked again later (refill_updates), so a relay cannot keep it out.
            log.warning("hashfed entry %d: no content; skipped for now", index)
            missing[index] = commit
            continue
        added = _addition(index, commit, content, rules)
        if added is not None:
            updates[index] = added
            newest = max(newest, added.time)
    return updates, newest, missing


def refill_updates(
    missing: Missing, contents: t.Mapping[int, bytes], rules: Policy
) -> t.Tuple[Updates, t.List[int]]:
    """Returns the additions found in contents (content items by log index, fetched
    again for missing entries) and the indices resolved, found or invalid.

    An item that does not match its entry's commitment is ignored: a peer can only
    fail to help, never harm.
    """
    updates: Updates = {}
    resolved = []
    for index, content in contents.items():
        commit = missing.get(index)
        if commit is None or not content:
            continue
        try:
            check_commitment(content, commit)
        except InvalidRecord:
            continue
        resolved.append(index)
        added = _addition(index, commit, content, rules)
        if added is not None:
            updates[index] = added
    return updates, resolved


def _addition(index: int, commit: bytes, content: bytes, rules: Policy) -> t.Optional[HashfedEntry]:
    if not content:
        log.warning("hashfed entry %d: no content; skipped", index)
        return None
    try:
        check_commitment(content, commit)
    except InvalidRecord:
        raise PeerFault(f"content of entry {index} does not match its commitment") from None
    try:
        item = decode_content(content)
        check_content(item, rules)
    except ProtocolError as exc:
        log.warning("hashfed entry %d: skipped: %s", index, exc)
        return None
    return HashfedEntry(
        index, str(item.kind), item.hash.hex(), list(item.labels), item.time, item.quality
    )


def _other_record(index: int, entry: bytes, content: bytes, rules: Policy, updates: Updates) -> int:
    """Applies a record that is not a canonical addition; returns its author time (or 0)."""
    try:
        record = decode_record(entry)
    except (UnknownRecord, MalformedRecord) as exc:
        if content:
            raise PeerFault(f"entry {index} is not a hash addition but has content") from None
        log.warning("hashfed entry %d: skipped: %s", index, exc)
        return 0
    if content and not isinstance(record, Addition):
        raise PeerFault(f"entry {index} is not a hash addition but has content")
    if isinstance(record, Retraction):
        later = [i for i in record.indices if i >= index]
        if later:
            log.warning(
                "hashfed entry %d: invalid retraction skipped: it names entry %d, "
                "which does not precede it",
                index,
                later[0],
            )
            return 0
        for target in record.indices:
            updates[target] = None
        return record.time
    if isinstance(record, Feedback):
        log.warning("hashfed entry %d: feedback in a publisher's log is not applied", index)
        return 0
    added = _addition(index, record.commit, content, rules)
    if added is None:
        return 0
    updates[index] = added
    return added.time


def convert(
    signal_types: t.Sequence[t.Type[SignalType]], fetched: t.Mapping[int, HashfedEntry]
) -> t.Dict[t.Type[SignalType], t.Dict[str, HashfedSignalMetadata]]:
    """Returns the fetched entries as pytx's index input: signal type -> hash -> metadata."""
    wanted = set(signal_types)
    out: t.Dict[t.Type[SignalType], t.Dict[str, HashfedSignalMetadata]] = {}
    label_sets: t.Dict[t.Tuple[str, ...], t.FrozenSet[str]] = {}  # one object per label list
    for index, entry in fetched.items():
        signal_type = SIGNAL_TYPES.get(entry.kind)
        if signal_type is None or signal_type not in wanted:
            continue
        try:
            signal = signal_type.validate_signal_str(entry.hash)
        except ValueError:
            log.warning("hashfed entry %d: not a valid %s signal; skipped", index, entry.kind)
            continue
        metadata = out.setdefault(signal_type, {}).setdefault(signal, HashfedSignalMetadata())
        labels = tuple(entry.labels)
        metadata.entries[index] = label_sets.setdefault(labels, frozenset(labels))
    return out
