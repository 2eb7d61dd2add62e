"""Sync one origin from one peer: verify everything, then apply it in one transaction.

For an origin this node follows, ``sync_origin``:

1. fetches the peer's latest checkpoint and verifies its signature with the
   origin's key (a relay cannot forge one);
2. compares it with the checkpoint the node holds. A smaller one is ignored,
   after checking that it is a prefix of ours; one of the same size must have
   the same root. Either disagreement is equivocation: both signed notes and a
   consistency proof are kept as evidence and the origin is halted;
3. fetches the entry bundles (and content bundles) it lacks, staging each as it
   arrives so that an interrupted sync resumes where it stopped, and rebuilds
   the tree from the node's verified tiles plus the new leaves. The new root
   must equal the checkpoint's: that proves at once that the new checkpoint is
   consistent with the old one and that every entry is in the tree. If it does
   not, the peer's tiles tell whether the origin forked (evidence, halt) or the
   peer served bad entries (the peer is at fault, nothing changes);
4. applies the entries in one transaction: each record is validated (the rules
   of hashfed.protocol.validation, and the origin's role); content is checked
   against its commitment; records that fail a check are kept and flagged and
   never stop the entries behind them; the bank, tiles, bundles and the new
   checkpoint move together.

An old size of 0 is trivially consistent with any checkpoint: no proof is
needed or checked (C2SP tlog-witness; hashfed.protocol.merkle rejects such
proofs).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint
from hashfed.protocol.errors import (
    InvalidRecord,
    MalformedBundle,
    MalformedRecord,
    ProofFailed,
    ProtocolError,
    UnknownRecord,
)
from hashfed.protocol.evidence import Evidence
from hashfed.protocol.merkle import (
    check_consistency,
    consistency_proof,
    leaf_hashes,
    root_from_subtrees,
)
from hashfed.protocol.records import (
    Addition,
    Feedback,
    Retraction,
    addition_commit,
    decode_content,
    decode_record,
)
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, TileHashReader, TreeBuilder, encode_bundle
from hashfed.protocol.validation import (
    Policy,
    check_commitment,
    check_content,
    check_feedback,
    check_retraction,
)
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import Verifier
from hashfed.signing.note import VerifierList
from hashfed.sync.errors import Equivocation, Halted, NotFollowed, PeerFault, SyncError
from hashfed.sync.fetch import Fetcher
from hashfed.sync.store import ApplyTx, BankAddition, LogState, Staged, SyncStore

ROLES = ("publisher", "partner")
# Which record types each role may author (the rest are kept, flagged, not applied).
AUTHORED = {"publisher": (Addition, Retraction), "partner": (Feedback,)}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ApplyPolicy:
    """How this node applies an origin's records."""

    role: str
    min_pdq_quality: int = 50
    retention: int = 0  # seconds a retracted hash is kept; 0 erases it at once


@dataclass
class SyncResult:
    """What one sync of one origin from one peer did."""

    origin: str
    peer: str
    old_size: int
    new_size: int
    status: str  # "advanced", "up-to-date" or "peer-behind"
    applied: int = 0
    flagged: int = 0
    retracted: int = 0
    retracted_indices: list[int] = field(default_factory=list)  # the entries retracted
    details: list[str] = field(default_factory=list)


async def sync_origin(
    store: SyncStore,
    fetcher: Fetcher,
    origin: str,
    verifier: Verifier,
    policy: ApplyPolicy,
    progress: Progress | None = None,
    window: int = 8,
) -> SyncResult:
    """Brings origin up to the peer's latest checkpoint, or raises SyncError saying why."""
    state = store.state(origin)
    if state is None:
        raise NotFollowed(f"this node does not follow {origin}; add it with 'hashfed trust add'")
    if state.halted:
        raise Halted(f"{origin} is halted by evidence of equivocation; see 'hashfed status'")
    try:
        result = await _sync(store, fetcher, state, verifier, policy, progress, window)
    except SyncError as exc:
        store.record_sync(origin, fetcher.name, str(exc))
        raise
    store.record_sync(origin, fetcher.name, None)
    return result


async def _sync(
    store: SyncStore,
    fetcher: Fetcher,
    state: LogState,
    verifier: Verifier,
    policy: ApplyPolicy,
    progress: Progress | None,
    window: int,
) -> SyncResult:
    origin, peer = state.origin, fetcher.name
    raw = await fetcher.checkpoint(origin)
    try:
        note = raw.decode("utf-8")
        checkpoint, _ = open_checkpoint(note, VerifierList(verifier), origin)
    except (UnicodeDecodeError, ProtocolError, SigningError) as exc:
        raise PeerFault(
            f"{peer}: the checkpoint it serves for {origin} does not verify: {exc}"
        ) from None
    result = SyncResult(origin, peer, state.size, checkpoint.size, "up-to-date")
    if checkpoint.size <= state.size:
        _check_not_ahead(store, state, checkpoint, note)
        if checkpoint.size < state.size:
            result.status = "peer-behind"
            result.details.append(
                f"{peer} serves an older checkpoint ({checkpoint.size} < {state.size}); ignored"
            )
        return result
    await _fetch_and_verify(store, fetcher, state, checkpoint, note, progress, window)
    # Applying is local CPU and disk work: keep it off the event loop.
    await asyncio.to_thread(_apply, store, state, checkpoint, note, policy, result)
    result.status = "advanced"
    return result


def _our_tiles(store: SyncStore, origin: str) -> Callable[[int, int, int], bytes]:
    return lambda level, index, width: store.read_tile(origin, level, index, width)


def _check_not_ahead(store: SyncStore, state: LogState, cp: Checkpoint, note: str) -> None:
    """Checks that a checkpoint no larger than ours is a prefix of our verified tree."""
    assert state.checkpoint is not None or state.size == 0
    if cp.size == 0:
        return
    reader = TileHashReader(state.size, _our_tiles(store, state.origin))
    ours = root_from_subtrees(cp.size, reader)
    if ours == cp.root:
        return
    assert state.checkpoint is not None
    proof = consistency_proof(cp.size, state.size, reader) if cp.size < state.size else []
    prefix = ours if cp.size < state.size else state.root
    evidence = Evidence(note, state.checkpoint, prefix, tuple(proof))
    detail = (
        f"checkpoint of size {cp.size} is not a prefix of the verified tree of size {state.size}"
    )
    store.record_evidence(state.origin, evidence, detail)
    raise Equivocation(f"{state.origin} signed two inconsistent checkpoints: {detail}")


def split_bundle(data: bytes, what: str) -> list[bytes]:
    """Returns the uint16-length-prefixed items of a bundle (MalformedBundle if truncated)."""
    end = len(data)
    if end >= 2:
        # Fast path: every item has the first one's length (a batch of additions,
        # or of contents with the same labels), checked for all prefixes at once.
        length = (data[0] << 8) | data[1]
        step = length + 2
        count, rest = divmod(end, step)
        if (
            rest == 0
            and data[0::step] == bytes((data[0],)) * count
            and data[1::step] == bytes((data[1],)) * count
        ):
            return [data[pos : pos + length] for pos in range(2, end - length + 1, step)]
    items, pos = [], 0
    while pos < end:
        if pos + 2 > end:
            raise MalformedBundle(f"{what} ends inside an item length")
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + length > end:
            raise MalformedBundle(f"{what} ends inside an item")
        items.append(data[pos : pos + length])
        pos += length
    return items


def _widths(old: int, new: int) -> Iterator[tuple[int, int]]:
    """Yields (bundle index, entries in it at size new) for the bundles holding old..new-1."""
    for index in range(old // ENTRY_BUNDLE_WIDTH, (new - 1) // ENTRY_BUNDLE_WIDTH + 1):
        yield index, min(ENTRY_BUNDLE_WIDTH, new - index * ENTRY_BUNDLE_WIDTH)


async def _fetch_pair(
    fetcher: Fetcher, origin: str, index: int, width: int
) -> tuple[Staged, list[bytes]]:
    """Fetches bundle index and its content; returns them staged, with the entries split."""
    entries, content = await asyncio.gather(
        fetcher.bundle(origin, index, width), fetcher.content(origin, index, width)
    )
    what = f"{fetcher.name}: bundle {index}"
    try:
        items = split_bundle(entries, what)
        contents = split_bundle(content, what + " content")
    except MalformedBundle as exc:
        raise PeerFault(str(exc)) from None
    if len(items) < width or len(contents) < width or len(items) > ENTRY_BUNDLE_WIDTH:
        raise PeerFault(
            f"{what} holds {len(items)} entries and {len(contents)} contents, want {width}"
        )
    # A bundle of exactly width items is its own prefix: no need to re-encode it.
    staged = Staged(
        index,
        width,
        entries if len(items) == width else encode_bundle(items[:width]),
        content if len(contents) == width else encode_bundle(contents[:width]),
    )
    return staged, items[:width]


async def _fetch_and_verify(
    store: SyncStore,
    fetcher: Fetcher,
    state: LogState,
    cp: Checkpoint,
    note: str,
    progress: Progress | None,
    window: int,
    fresh: bool = False,
) -> None:
    """Stages the bundles of state.size..cp.size-1 and checks they rebuild cp's root."""
    origin, old = state.origin, state.size
    try:
        builder = TreeBuilder.resume(old, _our_tiles(store, origin), root=state.root)
    except (ProtocolError, LookupError) as exc:
        raise SyncError(
            f"the stored tiles of {origin} do not match its checkpoint: {exc}"
        ) from None
    wanted = list(_widths(old, cp.size))
    staged = {} if fresh else store.staged_counts(origin)
    reused = False
    tasks: dict[int, asyncio.Task[tuple[Staged, list[bytes]]]] = {}
    try:
        for position, (index, width) in enumerate(wanted):
            for ahead_index, ahead_width in wanted[position : position + window]:
                if staged.get(ahead_index, 0) < ahead_width and ahead_index not in tasks:
                    tasks[ahead_index] = asyncio.create_task(
                        _fetch_pair(fetcher, origin, ahead_index, ahead_width)
                    )
            if index in tasks:
                bundle, entries = await tasks.pop(index)
                store.stage(origin, bundle)
            else:
                have = store.read_staged(origin, index)
                assert have is not None
                bundle, reused = have, True
                entries = split_bundle(bundle.entries, "staged bundle")[:width]
            skip = max(old - index * ENTRY_BUNDLE_WIDTH, 0)
            builder.append(leaf_hashes(entries[skip:]))
            if progress is not None:
                progress(builder.size - old, cp.size - old)
    finally:
        for task in tasks.values():
            task.cancel()
    if builder.root() == cp.root:
        return
    store.clear_staged(origin)
    if reused:  # staged data from an earlier attempt: fetch it all again once
        await _fetch_and_verify(store, fetcher, state, cp, note, progress, window, fresh=True)
        return
    await _blame(store, fetcher, state, cp, note)


class _MissingTile(Exception):
    def __init__(self, key: tuple[int, int, int]) -> None:
        self.key = key


async def _blame(
    store: SyncStore, fetcher: Fetcher, state: LogState, cp: Checkpoint, note: str
) -> None:
    """Decides, from the peer's tiles, whether the origin forked or the peer lied; raises."""
    peer = fetcher.name
    if state.size == 0:
        raise PeerFault(f"{peer}: the entries it serves do not hash to the signed root")
    tiles: dict[tuple[int, int, int], bytes] = {}

    def read(level: int, index: int, width: int) -> bytes:
        key = (level, index, width)
        if key not in tiles:
            raise _MissingTile(key)
        return tiles[key]

    while True:
        try:
            reader = TileHashReader(cp.size, read)
            prefix = root_from_subtrees(state.size, reader)
            proof = consistency_proof(state.size, cp.size, reader)
            break
        except _MissingTile as missing:
            tiles[missing.key] = await fetcher.tile(state.origin, *missing.key)
        except ProtocolError as exc:
            raise PeerFault(f"{peer}: its tiles are malformed: {exc}") from None
    try:
        check_consistency(state.size, cp.size, proof, prefix, cp.root)
    except ProofFailed:
        raise PeerFault(
            f"{peer}: its entries and tiles do not match the signed checkpoint"
        ) from None
    if prefix == state.root:
        raise PeerFault(f"{peer}: the entries it serves are not the ones in the signed tree")
    assert state.checkpoint is not None
    evidence = Evidence(state.checkpoint, note, prefix, tuple(proof))
    detail = (
        f"checkpoint of size {cp.size} does not extend the verified checkpoint of size {state.size}"
    )
    store.record_evidence(state.origin, evidence, detail)
    raise Equivocation(f"{state.origin} signed two inconsistent checkpoints: {detail}")


class _Statuses:
    """Addition statuses during one apply: this batch's changes over the stored ones."""

    def __init__(self, tx: ApplyTx) -> None:
        self._tx = tx
        self.changed: dict[int, str] = {}

    def addition_status(self, index: int) -> str | None:
        status = self.changed.get(index) or self._tx.addition_status(index)
        return "active" if status == "skipped" else status


@dataclass
class _Changes:
    additions: list[BankAddition] = field(default_factory=list)
    retractions: list[tuple[int, int, str, int]] = field(default_factory=list)
    feedback: list[tuple[int, str, int, str, str, int]] = field(default_factory=list)
    flags: list[tuple[int, str]] = field(default_factory=list)

    def flush(self, tx: ApplyTx) -> None:
        tx.add_hashes(self.additions)
        # Flags before retractions: a retraction drops the "content unavailable"
        # flag of its target, which may be in this same batch.
        tx.flag(self.flags)
        tx.retract(self.retractions)
        tx.add_feedback(self.feedback)
        self.additions, self.retractions, self.feedback, self.flags = [], [], [], []


def _apply(
    store: SyncStore,
    state: LogState,
    cp: Checkpoint,
    note: str,
    policy: ApplyPolicy,
    result: SyncResult,
) -> None:
    origin, old = state.origin, state.size
    rules = Policy(min_pdq_quality=policy.min_pdq_quality)
    allowed = AUTHORED[policy.role]
    additions = Addition in allowed
    try:
        with store.apply(origin) as tx:
            builder = TreeBuilder.resume(old, _our_tiles(store, origin))
            statuses = _Statuses(tx)
            changes = _Changes()
            for index, width in _widths(old, cp.size):
                bundle = store.read_staged(origin, index)
                assert bundle is not None and bundle.count >= width
                entries = split_bundle(bundle.entries, "staged bundle")[:width]
                contents = split_bundle(bundle.content, "staged content")[:width]
                base = index * ENTRY_BUNDLE_WIDTH
                skip = max(old - base, 0)
                if skip:
                    stored = store.read_bundle(origin, index)
                    assert stored is not None and stored[0] >= skip
                    entries[:skip] = split_bundle(stored[1], "stored bundle")[:skip]
                for offset in range(skip, width):
                    content = contents[offset]
                    commit = addition_commit(entries[offset]) if additions and content else None
                    if commit is not None:
                        # What _apply_entry does for an addition with content, minus the
                        # dispatch: the hot path, as almost every entry is one.
                        position = base + offset
                        flag = _flagger(position, changes, result)
                        _apply_addition(
                            position, Addition(commit), content, rules, statuses, changes, flag
                        )
                        result.applied += 1
                        continue
                    _apply_entry(
                        base + offset,
                        entries[offset],
                        contents[offset],
                        origin,
                        allowed,
                        rules,
                        policy,
                        statuses,
                        changes,
                        result,
                    )
                changes.flush(tx)
                builder.append(leaf_hashes(entries[skip:]))
                tx.write_tiles(builder.changed_tiles())
                # The staged bytes are the bundle when they hold exactly these entries.
                whole = not skip and len(bundle.entries) == 2 * width + sum(map(len, entries))
                tx.write_bundle(index, width, bundle.entries if whole else encode_bundle(entries))
            if builder.root() != cp.root:
                raise AssertionError("bad math: verified entries no longer rebuild the root")
            tx.set_checkpoint(cp.size, cp.root, note)
            tx.clear_staged()
    except PeerFault:
        store.clear_staged(origin)
        raise


def _flagger(index: int, changes: _Changes, result: SyncResult) -> Callable[[str], None]:
    def flag(reason: str) -> None:
        changes.flags.append((index, reason))
        result.flagged += 1

    return flag


def _apply_entry(
    index: int,
    entry: bytes,
    content: bytes,
    origin: str,
    allowed: tuple[type, ...],
    rules: Policy,
    policy: ApplyPolicy,
    statuses: _Statuses,
    changes: _Changes,
    result: SyncResult,
) -> None:
    def flag(reason: str) -> None:
        changes.flags.append((index, reason))
        result.flagged += 1

    try:
        record = decode_record(entry)
    except (UnknownRecord, MalformedRecord) as exc:
        if content:
            raise PeerFault(f"entry {index} is not a hash addition but has content") from None
        kind = "unknown" if isinstance(exc, UnknownRecord) else "malformed"
        return flag(f"{kind} record: {exc}")
    if content and not isinstance(record, Addition):
        raise PeerFault(f"entry {index} is not a hash addition but has content")
    if not isinstance(record, allowed):
        return flag(f"{type(record).__name__.lower()} records from a {policy.role} are not applied")
    if isinstance(record, Addition):
        _apply_addition(index, record, content, rules, statuses, changes, flag)
        result.applied += 1
    elif isinstance(record, Retraction):
        try:
            check_retraction(record, index, statuses)
        except InvalidRecord as exc:
            return flag(f"invalid retraction: {exc}")
        for target in record.indices:
            changes.retractions.append((target, index, record.reason.value, record.time))
            statuses.changed[target] = "retracted"
        result.retracted += len(record.indices)
        result.retracted_indices.extend(record.indices)
        result.applied += 1
    else:
        try:
            check_feedback(record, origin)
        except InvalidRecord as exc:
            return flag(f"invalid feedback: {exc}")
        changes.feedback.append(
            (
                index,
                record.origin,
                record.index,
                record.verdict.value,
                ",".join(record.tags),
                record.time,
            )
        )
        result.applied += 1
    return None


def _apply_addition(
    index: int,
    record: Addition,
    content: bytes,
    rules: Policy,
    statuses: _Statuses,
    changes: _Changes,
    flag: Callable[[str], None],
) -> None:
    if not content:
        # Erased at the source: only a retraction (later in the log) explains that.
        changes.additions.append(BankAddition(index, None, None, None, "", None, None))
        statuses.changed[index] = "active"
        flag("content unavailable: erased at the source before this node synced it")
        return
    try:
        check_commitment(content, record.commit)
    except InvalidRecord:
        raise PeerFault(f"content of entry {index} does not match its commitment") from None
    try:
        item = decode_content(content)
    except ProtocolError as exc:
        return flag(f"malformed content: {exc}")
    row = BankAddition(
        index,
        item.kind.value,
        item.hash,
        item.quality,
        ",".join(item.labels),
        item.time,
        item.salt,
    )
    try:
        check_content(item, rules)
    except InvalidRecord as exc:
        changes.additions.append(replace(row, status="skipped"))
        statuses.changed[index] = "skipped"
        return flag(f"not applied: {exc}")
    changes.additions.append(row)
    statuses.changed[index] = "active"
    return None
