"""The node's match index: the active bank entries it applies, in memory, searchable.

A :class:`BankIndex` holds one index per hash kind of the registry
(:mod:`hashfed.protocol.kinds`; :func:`index_for` picks its class: a
:class:`~hashfed.node.match.index.PdqIndex` for PDQ, an
:class:`~hashfed.node.match.index.Md5Index` for MD5) over the bank rows of the *applied*
origins: the node's own log and every origin trusted with role ``publisher``
(partners' logs carry only feedback). A row is indexed while its status is
``active`` and its hash is present; its index id is ``log_id << 40 | idx``.

Keeping it current:

* :meth:`BankIndex.load` reads every applied row in bulk, in one read snapshot,
  and remembers the log size it read up to, per log (in two steps that may run
  apart: :func:`read_bank` needs only numpy, :meth:`BankIndex.from_rows` the kernels);
* :meth:`BankIndex.update_from_sync` applies one sync result: the active rows in
  ``[old_size, new_size)`` are added and ``retracted_indices`` removed;
* :meth:`BankIndex.update_own` does the same after this node's own publish or retract;
* :meth:`BankIndex.refresh` catches every applied log up to the size the database
  holds (changes made by another process, e.g. ``hashfed publish`` while
  ``hashfed serve`` runs) and follows trust changes.

A retracted hash stops matching at once: besides the index update, every hit is
checked against the bank when it is described, and a row that is no longer active
is dropped. Failed updates leave the index as it was (the hasher indexes validate
before they change anything, and this class adds only ids it does not hold).

Search (:meth:`BankIndex.search`) touches only the in-memory indexes and may run
in a worker thread; :meth:`BankIndex.describe` reads the bank and the feedback
table and must run where its connection is used (the event loop, in the server).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from hashfed.hasher import PDQ_MATCH_THRESHOLD
from hashfed.node.match.index import MAX_THRESHOLD, ExactIndex, Md5Index, PdqIndex
from hashfed.node.store import bank as bankstore
from hashfed.node.store import logstore
from hashfed.node.store.bank import applied_logs
from hashfed.node.store.db import read_snapshot
from hashfed.protocol.kinds import HashKind, Kind, KindRegistry, kinds
from hashfed.protocol.records import Verdict
from hashfed.sync.engine import SyncResult

ID_SHIFT = 40
"""An index id is ``log_id << ID_SHIFT | idx``: room for 2**40 entries per log."""

_IDX_MASK = (1 << ID_SHIFT) - 1

MatchIndex = PdqIndex | Md5Index | ExactIndex
"""The index a kind can have (each a :class:`~hashfed.node.match.index.KindIndex`)."""

INDEX_CLASSES: Mapping[str, Callable[[], MatchIndex]] = {Kind.PDQ: PdqIndex, Kind.MD5: Md5Index}
"""The index class of each kind that has its own (python-threatexchange's
``get_index_cls``, kept on the node's side so that the hasher imports nothing of it)."""


def index_for(kind: HashKind) -> MatchIndex:
    """index_for returns an empty index for kind: its own class from INDEX_CLASSES or,
    for a kind that matches only equal hashes, an :class:`ExactIndex` of its width.
    Raises ValueError for a near-matching kind without an index class."""
    make = INDEX_CLASSES.get(kind.name)
    if make is not None:
        return make()
    if kind.exact:
        return ExactIndex(kind.size, kind.name)
    raise ValueError(f"hash kind {kind.name!r} matches by distance but has no index class")


_CHUNK = 65_536  # rows fetched at a time while loading


class Hit(NamedTuple):
    """One index hit: the log and entry it came from and its distance (0 for MD5)."""

    log_id: int
    idx: int
    distance: int


@dataclass(frozen=True)
class MatchRow:
    """A match described from the bank: where it is, how near, and what partners said."""

    origin: str
    index: int
    kind: str
    hash: str
    distance: int
    labels: tuple[str, ...]
    added: int | None
    feedback: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Returns the match as the JSON object the CLI and the HTTP API print."""
        return {
            "origin": self.origin,
            "index": self.index,
            "kind": self.kind,
            "hash": self.hash,
            "distance": self.distance,
            "labels": list(self.labels),
            "added": self.added,
            "feedback": dict(self.feedback),
        }


def parse_hash(kind: str, text: str) -> bytes:
    """parse_hash returns the raw bytes of a hex hash of kind, or raises ValueError
    saying what is wrong (unknown kind, not hex, wrong length)."""
    return kinds().parse_hex(kind, text)


def _id(log_id: int, idx: int) -> int:
    if not 0 <= idx <= _IDX_MASK:
        raise AssertionError(f"bad math: entry index {idx} does not fit an index id")
    return log_id << ID_SHIFT | idx


Rows = tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.uint8]]]


@dataclass(frozen=True)
class BankRows:
    """The applied, active bank rows in one read snapshot: per kind, (ids, hashes);
    the applied logs by id, and the size each was read up to."""

    logs: dict[int, str]
    sizes: dict[int, int]
    arrays: dict[str, Rows]


def read_bank(conn: sqlite3.Connection) -> BankRows:
    """read_bank reads every applied, active row in one read snapshot (numpy only:
    no kernel runs)."""
    with read_snapshot(conn):
        logs = applied_logs(conn)
        sizes = _log_sizes(conn, logs)
        arrays = _read_rows(conn, list(logs))
    return BankRows(logs, sizes, arrays)


class BankIndex:
    """BankIndex answers "which applied, active bank entries match these hashes".

    thresholds maps an origin to its PDQ threshold (0..31); origins not in it use
    default_threshold (31, :data:`hashfed.hasher.PDQ_MATCH_THRESHOLD`).
    """

    def __init__(
        self,
        conn: sqlite3.Connection | None = None,
        *,
        thresholds: Mapping[str, int] | None = None,
        default_threshold: int = PDQ_MATCH_THRESHOLD,
    ) -> None:
        for origin, t in {**(thresholds or {}), "": default_threshold}.items():
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= MAX_THRESHOLD:
                what = f"the PDQ threshold of {origin!r}" if origin else "the default PDQ threshold"
                raise ValueError(f"{what} must be an integer 0..{MAX_THRESHOLD}, got {t!r}")
        self.conn = conn
        self.thresholds = dict(thresholds or {})
        self.default_threshold = default_threshold
        self.kinds = kinds()
        self.indexes: dict[str, MatchIndex] = {k.name: index_for(k) for k in self.kinds}
        self._logs: dict[int, str] = {}  # applied log id -> origin
        self._sizes: dict[int, int] = {}  # applied log id -> log size indexed up to
        self._lock = threading.Lock()
        self.load_seconds: float | None = None  # how long load() took (a metric)

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        conn: sqlite3.Connection,
        *,
        thresholds: Mapping[str, int] | None = None,
        default_threshold: int = PDQ_MATCH_THRESHOLD,
    ) -> BankIndex:
        """load builds the index from the bank, in one read snapshot. conn is kept for
        describing matches (:meth:`lookup`)."""
        return cls.from_rows(
            read_bank(conn), conn, thresholds=thresholds, default_threshold=default_threshold
        )

    @classmethod
    def from_rows(
        cls,
        rows: BankRows,
        conn: sqlite3.Connection | None = None,
        *,
        thresholds: Mapping[str, int] | None = None,
        default_threshold: int = PDQ_MATCH_THRESHOLD,
    ) -> BankIndex:
        """from_rows builds the index from rows :func:`read_bank` read. It runs the
        kernels (the C extension, without the GIL) but touches no database."""
        index = cls(conn, thresholds=thresholds, default_threshold=default_threshold)
        for kind, kind_index in index.indexes.items():
            kind_index.build(*rows.arrays[kind])
        index._logs, index._sizes = dict(rows.logs), dict(rows.sizes)
        return index

    @property
    def origins(self) -> dict[int, str]:
        """The applied logs, by log id."""
        return dict(self._logs)

    @property
    def pdq(self) -> PdqIndex:
        """The PDQ index."""
        index = self.indexes[Kind.PDQ]
        if not isinstance(index, PdqIndex):
            raise AssertionError("bad math: the PDQ index is not a PdqIndex")
        return index

    @property
    def md5(self) -> MatchIndex:
        """The MD5 index."""
        return self.indexes[Kind.MD5]

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes.values())

    def threshold(self, origin: str) -> int:
        """threshold returns the PDQ threshold for matches from origin."""
        return self.thresholds.get(origin, self.default_threshold)

    # -- updates ------------------------------------------------------------------------

    def update_from_sync(self, conn: sqlite3.Connection, result: SyncResult) -> None:
        """update_from_sync applies one :class:`hashfed.sync.engine.SyncResult`: adds the
        active rows of [old_size, new_size) and removes its retracted indices. Results of
        origins that are not applied (partners) change nothing; a result that does not
        start where the index stands falls back to :meth:`refresh`."""
        if result.refilled_indices:
            self._add_indices(conn, result.origin, result.refilled_indices)
        if result.status != "advanced":
            return
        retracted = list(result.retracted_indices)
        with self._lock:
            log_id = self._log_id(result.origin)
            if log_id is None:
                self._refresh_locked(conn)
                return
            if self._sizes.get(log_id) != result.old_size or (
                result.retracted and len(retracted) != result.retracted
            ):
                self._catch_up(conn, log_id)
                return
            self._apply_range(conn, log_id, result.old_size, result.new_size, retracted)

    def _add_indices(self, conn: sqlite3.Connection, origin: str, indices: list[int]) -> None:
        """Adds rows whose content arrived late (idempotent: held ids are skipped)."""
        with self._lock:
            log_id = self._log_id(origin)
            if log_id is None:
                return
            rows = _read_rows(conn, [log_id], min(indices), max(indices) + 1, self.kinds)
            for kind, index in self.indexes.items():
                _add_new(index, *rows[kind])

    def update_own(
        self,
        conn: sqlite3.Connection,
        first_index: int,
        count: int,
        retracted: Iterable[int] = (),
    ) -> None:
        """update_own applies an append to this node's own log (an
        :class:`hashfed.node.services.ownlog.AppendResult`'s first_index and count, and the
        indices it retracted)."""
        with self._lock:
            log_id = logstore.own_log_id(conn)
            if log_id is None:
                return
            if log_id not in self._logs or self._sizes.get(log_id) != first_index:
                self._refresh_locked(conn)
                return
            self._apply_range(conn, log_id, first_index, first_index + count, list(retracted))

    def refresh(self, conn: sqlite3.Connection) -> None:
        """refresh catches every applied log up to the size the database holds, adds logs
        newly trusted as publishers and drops logs no longer applied. Cheap when nothing
        changed (one query)."""
        with self._lock:
            self._refresh_locked(conn)

    def _log_id(self, origin: str) -> int | None:
        for log_id, o in self._logs.items():
            if o == origin:
                return log_id
        return None

    def _refresh_locked(self, conn: sqlite3.Connection) -> None:
        with read_snapshot(conn):
            logs = applied_logs(conn)
            sizes = _log_sizes(conn, logs)
            for log_id in [i for i in self._logs if i not in logs]:
                self._drop_log(conn, log_id)
            for log_id, origin in logs.items():
                if log_id not in self._logs:
                    self._add_log(conn, log_id, origin, sizes[log_id])
                elif self._sizes.get(log_id) != sizes[log_id]:
                    self._catch_up(conn, log_id, sizes[log_id])

    def _add_log(self, conn: sqlite3.Connection, log_id: int, origin: str, size: int) -> None:
        rows = _read_rows(conn, [log_id], registry=self.kinds)
        for kind, index in self.indexes.items():
            _add_new(index, *rows[kind])
        self._logs[log_id], self._sizes[log_id] = origin, size

    def _drop_log(self, conn: sqlite3.Connection, log_id: int) -> None:
        ids = [_id(log_id, idx) for idx in bankstore.entry_indices(conn, log_id)]
        for index in self.indexes.values():
            index.remove(ids)
        del self._logs[log_id]
        self._sizes.pop(log_id, None)

    def _catch_up(self, conn: sqlite3.Connection, log_id: int, size: int | None = None) -> None:
        """Brings one log from its indexed size to size (default: the database's)."""
        with read_snapshot(conn):
            if size is None:
                size = _log_sizes(conn, {log_id: ""})[log_id]
            old = self._sizes.get(log_id, 0)
            if size < old:  # never happens to a verified log; rebuild this log's rows
                self._drop_log(conn, log_id)
                self._add_log(conn, log_id, applied_logs(conn).get(log_id, ""), size)
                return
            retracted = bankstore.retracted_since(conn, log_id, old)
            self._apply_range(conn, log_id, old, size, retracted)

    def _apply_range(
        self, conn: sqlite3.Connection, log_id: int, old: int, new: int, retracted: list[int]
    ) -> None:
        gone = [_id(log_id, i) for i in retracted]
        for index in self.indexes.values():
            index.remove(gone)
        rows = _read_rows(conn, [log_id], old, new, self.kinds)
        for kind, index in self.indexes.items():
            _add_new(index, *rows[kind])
        self._sizes[log_id] = new

    # -- lookups ------------------------------------------------------------------------

    def search(self, kind: str, hashes: Sequence[bytes]) -> list[list[Hit]]:
        """search returns, for each raw hash of kind, the index hits within each
        origin's threshold (nearest first). Touches no database: may run in a thread."""
        index = self.indexes.get(kind)
        if index is None:
            raise ValueError(f"unknown kind {kind!r}: use one of {self.kinds.names_text()}")
        if isinstance(index, PdqIndex):
            logs = dict(self._logs)
            top = max([self.threshold(o) for o in logs.values()], default=self.default_threshold)
            found = index.search_batch(list(hashes), top)
            limits = {log_id: self.threshold(o) for log_id, o in logs.items()}
            found = [
                [m for m in ms if m.distance <= limits.get(m.id >> ID_SHIFT, -1)] for ms in found
            ]
        else:
            found = index.search_batch(list(hashes))
        return [[Hit(m.id >> ID_SHIFT, m.id & _IDX_MASK, m.distance) for m in ms] for ms in found]

    def describe(
        self,
        conn: sqlite3.Connection,
        kind: str,
        hits: list[list[Hit]],
        limit: int | None = None,
        allowed: Callable[[str], bool] | None = None,
    ) -> list[list[MatchRow]]:
        """describe returns the matches behind hits, read from the bank and the feedback
        table, keeping at most limit per query and only origins allowed (default: all).
        Hits whose row is no longer active (a retraction the index has not seen yet)
        are dropped."""
        logs = dict(self._logs)
        out: list[list[MatchRow]] = []
        for query_hits in hits:
            rows: list[MatchRow] = []
            for hit in query_hits:
                if limit is not None and len(rows) >= limit:
                    break
                origin = logs.get(hit.log_id)
                if origin is None or (allowed is not None and not allowed(origin)):
                    continue
                entry = bankstore.active_entry(conn, hit.log_id, hit.idx, kind)
                if entry is None:
                    continue
                rows.append(
                    MatchRow(
                        origin=origin,
                        index=hit.idx,
                        kind=kind,
                        hash=entry.hash.hex(),
                        distance=hit.distance,
                        labels=tuple(entry.labels.split(",")) if entry.labels else (),
                        added=entry.added,
                        feedback=feedback_counts(conn, origin, hit.idx),
                    )
                )
            out.append(rows)
        return out

    def lookup(
        self,
        kind: str,
        hashes: Sequence[bytes],
        conn: sqlite3.Connection | None = None,
        limit: int | None = None,
    ) -> list[list[MatchRow]]:
        """lookup returns, for each raw hash of kind, its matches (nearest first), described
        from conn (default: the connection the index was loaded from)."""
        conn = conn or self.conn
        if conn is None:
            raise ValueError("lookup needs a database connection to describe matches")
        return self.describe(conn, kind, self.search(kind, hashes), limit)


def feedback_counts(conn: sqlite3.Connection, origin: str, idx: int) -> dict[str, int]:
    """feedback_counts returns how many feedback records of each verdict the node holds
    about entry idx of origin, from every log it holds (zero for the others)."""
    counts = {v.value: 0 for v in Verdict}
    counts.update(bankstore.verdict_counts(conn, origin, idx))
    return counts


def _log_sizes(conn: sqlite3.Connection, logs: Mapping[int, str]) -> dict[int, int]:
    sizes = logstore.log_sizes(conn)
    return {log_id: sizes.get(log_id, 0) for log_id in logs}


def _read_rows(
    conn: sqlite3.Connection,
    log_ids: list[int],
    start: int = 0,
    end: int | None = None,
    registry: KindRegistry | None = None,
) -> dict[str, Rows]:
    """Returns, per kind of the registry (default: the one in force), (ids, hashes) of
    the active rows of log_ids with idx in [start, end), in one pass over the bank (a
    chunk holding one kind, the usual case, is converted without looking at each row's
    kind)."""
    specs = list(registry if registry is not None else kinds())
    by_width: dict[int, list[str]] = {}
    for spec in specs:
        by_width.setdefault(spec.size, []).append(spec.name)
    # When no two kinds share a width, a row's width says its kind.
    need_kind = len(by_width) < len(specs)
    # A chunk whose bytes add up to n rows of the narrowest or widest width holds
    # only rows of that width.
    one_kind_widths = {
        w: names[0]
        for w, names in by_width.items()
        if len(names) == 1 and w in (min(by_width), max(by_width))
    }
    kind_widths = [(str(spec.name), spec.size) for spec in specs]
    ids_parts: dict[str, list[np.ndarray[Any, np.dtype[np.int64]]]] = {k.name: [] for k in specs}
    hash_parts: dict[str, list[bytes]] = {k.name: [] for k in specs}
    for log_id in log_ids:
        stop = end if end is not None else 1 << ID_SHIFT
        for rows in bankstore.active_chunks(
            conn, log_id, start, stop, kind_widths, need_kind, _CHUNK
        ):
            joined = b"".join([r[1] for r in rows])
            groups: list[tuple[str, list[int], bytes]] = []
            for width, kind in one_kind_widths.items():
                if len(joined) == width * len(rows):
                    groups = [(kind, [r[0] for r in rows], joined)]
                    break
            else:
                for spec in specs:
                    if need_kind:
                        mine = [r for r in rows if r[2] == spec.name]
                    else:
                        mine = [r for r in rows if len(r[1]) == spec.size]
                    groups.append((spec.name, [r[0] for r in mine], b"".join([r[1] for r in mine])))
            for kind, idx, digests in groups:
                a = np.array(idx, dtype=np.int64)
                if len(a) and int(a.max()) > _IDX_MASK:
                    raise AssertionError("bad math: entry index does not fit an index id")
                ids_parts[kind].append(a | np.int64(log_id << ID_SHIFT))
                hash_parts[kind].append(digests)
    out: dict[str, Rows] = {}
    for spec in specs:
        kind, width = spec.name, spec.size
        if not ids_parts[kind]:
            out[kind] = (np.empty(0, dtype=np.int64), np.empty((0, width), dtype=np.uint8))
            continue
        hashes = np.frombuffer(b"".join(hash_parts[kind]), dtype=np.uint8).reshape(-1, width)
        out[kind] = (np.concatenate(ids_parts[kind]), hashes.copy())
    return out


def _add_new(
    index: MatchIndex,
    ids: np.ndarray[Any, np.dtype[np.int64]],
    hashes: np.ndarray[Any, np.dtype[np.uint8]],
) -> None:
    """Adds the rows whose ids the index does not hold yet, so re-applying an update is
    harmless. The index validates a batch before changing anything, so the common case
    (no id held) is one call."""
    if len(ids) == 0:
        return
    try:
        index.add(ids, hashes)
    except ValueError:
        keep = np.fromiter((int(i) not in index for i in ids.tolist()), dtype=bool, count=len(ids))
        index.add(ids[keep], hashes[keep])


__all__ = [
    "ID_SHIFT",
    "INDEX_CLASSES",
    "BankIndex",
    "BankRows",
    "Hit",
    "MatchRow",
    "applied_logs",
    "feedback_counts",
    "index_for",
    "parse_hash",
    "read_bank",
]
