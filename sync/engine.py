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

Steps 3 and 4 overlap (_catch_up): the transaction is opened first, each bundle
is applied inside it as soon as it is staged, and it commits only if the new
root equals the checkpoint's. Otherwise it rolls back, so nothing unverified
is ever committed, and the blame of step 3 runs as before. Catching up is
bound by this process's CPU, so applying as bundles arrive, rather than after
all have, saves most of the fetch time; applying in a thread instead measured
slower (the GIL).

An old size of 0 is trivially consistent with any checkpoint: no proof is
needed or checked (C2SP tlog-witness; hashfed.protocol.merkle rejects such
proofs).
"""

from __future__ import annotations

import asyncio
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
from hashfed.protocol.tiles import (
    ENTRY_BUNDLE_WIDTH,
    TileHashReader,
    TreeBuilder,
    encode_bundle,
    split_bundle,
)
from hashfed.protocol.validation import (
    DEFAULT_MIN_PDQ_QUALITY,
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
from hashfed.sync.fetch import Fetcher, fetch_bundle
from hashfed.sync.store import ApplyTx, BankAddition, LogState, Staged, SyncStore

ROLES = ("publisher", "partner")
# Which record types each role may author (the rest are kept, flagged, not applied).
AUTHORED = {"publisher": (Addition, Retraction), "partner": (Feedback,)}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ApplyPolicy:
    """How this node applies an origin's records."""

    role: str
    min_pdq_quality: int = DEFAULT_MIN_PDQ_QUALITY
    retention: int = 0  # seconds a retracted hash is kept; 0 erases it at once
    # The witness policy for this origin, if any: note -> (quorum met?, attested time).
    # A checkpoint without the quorum is not applied (C2SP tlog-policy).
    quorum: Callable[[str], tuple[bool, int | None]] | None = None


@dataclass
class SyncResult:
    """What one sync of one origin from one peer did."""

    origin: str
    peer: str
    old_size: int
    new_size: int
    status: str  # "advanced", "up-to-date", "refreshed", "peer-behind", "awaiting-quorum"
    applied: int = 0
    flagged: int = 0
    retracted: int = 0
    retracted_indices: list[int] = field(default_factory=list)  # the entries retracted
    refilled_indices: list[int] = field(default_factory=list)  # content found at last
    offered_size: int = 0  # the size of the checkpoint the peer served (verified)
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
        if result.status in ("advanced", "up-to-date", "refreshed"):
            await _refill(store, fetcher, origin, policy, result)
    except SyncError as exc:
        store.record_sync(origin, fetcher.name, str(exc))
        raise
    held = result.details[-1] if result.status == "awaiting-quorum" else None
    store.record_sync(origin, fetcher.name, held, result.offered_size)
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
    result.offered_size = checkpoint.size
    met, attested = policy.quorum(note) if policy.quorum else (True, None)
    if checkpoint.size <= state.size:
        _check_not_ahead(store, state, checkpoint, note)
        if checkpoint.size < state.size:
            result.status = "peer-behind"
            result.details.append(
                f"{peer} serves an older checkpoint ({checkpoint.size} < {state.size}); ignored"
            )
        elif (
            # The same tree, cosigned again: keep the note that proves it fresher.
            met
            and attested is not None
            and policy.quorum is not None
            and state.checkpoint is not None
            and attested > (policy.quorum(state.checkpoint)[1] or -1)
        ):
            store.refresh_checkpoint(origin, checkpoint.size, checkpoint.root, note)
            result.status = "refreshed"
        return result
    if not met:
        result.status = "awaiting-quorum"
        result.new_size = state.size
        result.details.append(
            f"checkpoint of size {checkpoint.size} from {peer} lacks the witness quorum; "
            "nothing applied"
        )
        return result
    await _catch_up(store, fetcher, state, checkpoint, note, policy, result, progress, window)
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


def _widths(old: int, new: int) -> Iterator[tuple[int, int]]:
    """Yields (bundle index, entries in it at size new) for the bundles holding old..new-1."""
    for index in range(old // ENTRY_BUNDLE_WIDTH, (new - 1) // ENTRY_BUNDLE_WIDTH + 1):
        yield index, min(ENTRY_BUNDLE_WIDTH, new - index * ENTRY_BUNDLE_WIDTH)


async def _fetch_pair(
    fetcher: Fetcher, origin: str, index: int, width: int
) -> tuple[Staged, list[bytes], list[bytes]]:
    """Fetches bundle index and its content; returns them staged, with the entries split."""
    items, contents, entries, content = await fetch_bundle(fetcher, origin, index, width)
    return Staged(index, width, entries, content), items, contents


class _RootMismatch(Exception):
    """The fetched entries do not rebuild the checkpoint's root (rolls the apply back)."""


async def _catch_up(
    store: SyncStore,
    fetcher: Fetcher,
    state: LogState,
    cp: Checkpoint,
    note: str,
    policy: ApplyPolicy,
    result: SyncResult,
    progress: Progress | None,
    window: int,
    fresh: bool = False,
) -> None:
    """Fetches, stages, verifies and applies entries state.size..cp.size-1, all or nothing.

    Fetching and applying overlap: one apply transaction is open throughout, each
    bundle is staged (committed apart from it, for resume) and applied inside it
    as it arrives, and the transaction commits only if the entries rebuild cp's
    root. Anything else rolls it back, so nothing unverified is ever committed.
    """
    origin, old = state.origin, state.size
    wanted = list(_widths(old, cp.size))
    staged = {} if fresh else store.staged_counts(origin)
    reused = False
    applier = _Applier(store, state, policy, result)
    # Snapshot of the counters: a rolled-back attempt must not leave its counts.
    before = replace(result, retracted_indices=list(result.retracted_indices))
    tasks: dict[int, asyncio.Task[tuple[Staged, list[bytes], list[bytes]]]] = {}
    try:
        with store.apply(origin, old, state.root) as tx:
            try:
                builder = TreeBuilder.resume(old, _our_tiles(store, origin), root=state.root)
            except (ProtocolError, LookupError) as exc:
                raise SyncError(
                    f"the stored tiles of {origin} do not match its checkpoint: {exc}"
                ) from None
            for position, (index, width) in enumerate(wanted):
                for ahead_index, ahead_width in wanted[position : position + window]:
                    if staged.get(ahead_index, 0) < ahead_width and ahead_index not in tasks:
                        tasks[ahead_index] = asyncio.create_task(
                            _fetch_pair(fetcher, origin, ahead_index, ahead_width)
                        )
                if index in tasks:
                    bundle, entries, contents = await tasks.pop(index)
                    store.stage(origin, bundle)
                else:
                    have = store.read_staged(origin, index)
                    assert have is not None
                    bundle, reused = have, True
                    entries = split_bundle(bundle.entries, "staged bundle")[:width]
                    contents = []  # split by the applier, which handles a malformed one
                applier.bundle(tx, builder, bundle, width, entries, contents)
                if progress is not None:
                    progress(builder.size - old, cp.size - old)
            if builder.root() != cp.root:
                raise _RootMismatch
            if applier.fault is not None:
                raise applier.fault
            tx.set_checkpoint(cp.size, cp.root, note)
            tx.clear_staged()
    except _RootMismatch:
        pass
    except PeerFault as exc:
        if exc is applier.fault:  # bad content: drop it (a fetch failure keeps what is staged)
            store.clear_staged(origin)
        raise
    else:
        return
    finally:
        for task in tasks.values():
            task.cancel()
    # The entries do not rebuild the root: the transaction rolled back, nothing moved.
    for name in ("applied", "flagged", "retracted", "retracted_indices"):
        setattr(result, name, getattr(before, name))
    store.clear_staged(origin)
    if reused:  # staged data from an earlier attempt: fetch it all again once
        await _catch_up(
            store, fetcher, state, cp, note, policy, result, progress, window, fresh=True
        )
        return
    await _blame(store, fetcher, state, cp, note)


MAX_REFILL = 4096  # content-missing entries looked up again per sync, at most


async def _refill(
    store: SyncStore, fetcher: Fetcher, origin: str, policy: ApplyPolicy, result: SyncResult
) -> None:
    """Asks the peer again for the content of additions that arrived without it and
    have not been retracted since (specs/protocol.md §8.4 rule 5): a relay that
    blanked content cannot keep a hash out of the bank once an honest peer serves it.

    Best effort: the entries are already verified, and each content item is checked
    against its entry's commitment, so a peer can only fail to help, never harm.
    """
    missing = store.content_missing(origin, MAX_REFILL)
    state = store.state(origin)
    if not missing or state is None:
        return
    rules = Policy(min_pdq_quality=policy.min_pdq_quality)
    rows: list[BankAddition] = []
    by_bundle: dict[int, list[int]] = {}
    for index in missing:
        by_bundle.setdefault(index // ENTRY_BUNDLE_WIDTH, []).append(index)
    for bundle, indices in by_bundle.items():
        width = min(ENTRY_BUNDLE_WIDTH, state.size - bundle * ENTRY_BUNDLE_WIDTH)
        stored = store.read_bundle(origin, bundle)
        try:
            items = split_bundle(await fetcher.content(origin, bundle, width), "content")
        except (SyncError, MalformedBundle):
            return
        if stored is None or len(items) < width:
            continue
        entries = split_bundle(stored[1], "stored bundle")
        for index in indices:
            offset = index - bundle * ENTRY_BUNDLE_WIDTH
            content, commit = items[offset], addition_commit(entries[offset])
            if not content or commit is None:
                continue
            try:
                check_commitment(content, commit)
                item = decode_content(content)
            except ProtocolError:
                continue  # not this entry's content: ignore it, the entry stays flagged
            try:
                check_content(item, rules)
                status = "active"
            except InvalidRecord:
                status = "skipped"
            labels = ",".join(item.labels)
            row = (index, str(item.kind), item.hash, item.quality, labels, item.time)
            rows.append((*row, item.salt, status))
    if rows:
        store.fill_content(origin, rows)
        result.refilled_indices = [row[0] for row in rows if row[7] == "active"]
        result.details.append(f"content of {len(rows)} entries received at last")


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
    """Addition statuses during one apply: this batch's changes over the stored ones.

    changed holds only the changes not yet flushed: flushed ones are in the open
    transaction, which addition_status reads (keeping them all would cost memory
    in proportion to the sync).
    """

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


class _Applier:
    """Applies verified-as-fetched bundles, one at a time, inside the apply transaction.

    A record check that blames the peer (content that does not match its
    commitment) is kept in fault rather than raised at once: the caller finishes
    checking the root first, since entries that do not rebuild it are blamed on
    the origin or the peer by the tiles (_blame), as before applying overlapped
    fetching. Once a fault is found nothing more is applied.
    """

    def __init__(
        self, store: SyncStore, state: LogState, policy: ApplyPolicy, result: SyncResult
    ) -> None:
        self.store, self.origin, self.old = store, state.origin, state.size
        self.policy, self.result = policy, result
        self.rules = Policy(min_pdq_quality=policy.min_pdq_quality)
        self.allowed = AUTHORED[policy.role]
        self.statuses: _Statuses | None = None
        self.changes = _Changes()
        self.fault: PeerFault | None = None

    def bundle(
        self,
        tx: ApplyTx,
        builder: TreeBuilder,
        bundle: Staged,
        width: int,
        entries: list[bytes],
        contents: list[bytes],
    ) -> None:
        """Applies entries (the first width of bundle) and grows the tree by them.

        contents is the bundle's content split (as fetched), or empty to split it here.
        """
        old, index = self.old, bundle.index
        base = index * ENTRY_BUNDLE_WIDTH
        skip = max(old - base, 0)
        builder.append(leaf_hashes(entries[skip:]))
        if self.fault is not None:
            return
        if self.statuses is None:
            self.statuses = _Statuses(tx)
        try:
            contents = contents or split_bundle(bundle.content, "staged content")[:width]
        except MalformedBundle as exc:
            self.fault = PeerFault(str(exc))
            return
        if skip:
            stored = self.store.read_bundle(self.origin, index)
            assert stored is not None and stored[0] >= skip
            entries = split_bundle(stored[1], "stored bundle")[:skip] + entries[skip:]
        try:
            self._entries(base, skip, width, entries, contents)
        except PeerFault as exc:
            self.fault = exc
            return
        self.changes.flush(tx)
        self.statuses.changed.clear()  # now in the transaction
        tx.write_tiles(builder.changed_tiles())
        # The staged bytes are the bundle when they hold exactly these entries.
        whole = not skip and len(bundle.entries) == 2 * width + sum(map(len, entries))
        tx.write_bundle(index, width, bundle.entries if whole else encode_bundle(entries))

    def _entries(
        self, base: int, skip: int, width: int, entries: list[bytes], contents: list[bytes]
    ) -> None:
        result, rules, changes = self.result, self.rules, self.changes
        statuses = self.statuses
        assert statuses is not None
        additions = Addition in self.allowed
        rows, changed = changes.additions, statuses.changed
        for offset in range(skip, width):
            content = contents[offset]
            commit = addition_commit(entries[offset]) if additions and content else None
            position = base + offset
            if commit is not None:
                # What _apply_addition does, inlined for an addition with valid
                # content: the hot path, as almost every entry is one. The same
                # checks run in the same order; anything else takes the full path.
                try:
                    check_commitment(content, commit)
                    item = decode_content(content)
                    check_content(item, rules)
                except ProtocolError:
                    flag = _flagger(position, changes, result)
                    _apply_addition(
                        position, Addition(commit), content, rules, statuses, changes, flag
                    )
                else:
                    rows.append(
                        (
                            position,
                            str(item.kind),
                            item.hash,
                            item.quality,
                            ",".join(item.labels),
                            item.time,
                            item.salt,
                            "active",
                        )
                    )
                    changed[position] = "active"
                result.applied += 1
                continue
            _apply_entry(
                position,
                entries[offset],
                content,
                self.origin,
                self.allowed,
                rules,
                self.policy,
                statuses,
                changes,
                result,
            )


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
        changes.additions.append((index, None, None, None, "", None, None, "active"))
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
    row: BankAddition = (
        index,
        str(item.kind),
        item.hash,
        item.quality,
        ",".join(item.labels),
        item.time,
        item.salt,
        "active",
    )
    try:
        check_content(item, rules)
    except InvalidRecord as exc:
        changes.additions.append((*row[:7], "skipped"))
        statuses.changed[index] = "skipped"
        return flag(f"not applied: {exc}")
    changes.additions.append(row)
    statuses.changed[index] = "active"
    return None
