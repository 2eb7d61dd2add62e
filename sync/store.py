"""What sync needs from storage: the smallest interface the algorithm uses.

Sync never writes anything it has not verified into the applied log. It works in
two stages, with storage in between:

1. Fetch and verify. Entry bundles (with their content bundles) are fetched from
   a peer and *staged* as they arrive, so an interrupted sync resumes without
   fetching them again; staged data is not part of the log or the bank.
2. Apply. One transaction (an ``ApplyTx``) writes the tiles, the bundles, the
   bank changes and the new checkpoint together: the bank and the node's
   checkpoint for an origin only ever move together. Sync opens it before
   fetching and applies each bundle as it is staged, and it commits only if the
   entries rebuild the new checkpoint's root; otherwise it is rolled back. So
   ``stage`` must commit on its own while that transaction is open (the SQLite
   store keeps staged bundles in a separate file), and ``clear_staged`` inside
   the transaction takes effect only if it commits.

The node implements this with SQLite (``hashfed.node.store.syncstore``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from hashfed.protocol.evidence import Evidence


@dataclass(frozen=True)
class LogState:
    """The applied state of one origin: its latest verified checkpoint."""

    origin: str
    vkey: str
    size: int
    root: bytes
    checkpoint: str | None
    halted: bool


@dataclass(frozen=True)
class Staged:
    """One staged entry bundle: entries start..start+count-1 and their content."""

    index: int
    count: int
    entries: bytes
    content: bytes


BankAddition = tuple[int, str | None, bytes | None, int | None, str, int | None, bytes | None, str]
"""A hash addition to apply: (index, kind, hash, quality, labels, added, salt, status).

kind, hash, quality, added and salt are None when the content was erased at the
source; status is "active", or "skipped" for one kept (and served onward) but
not applied. A plain tuple, not a dataclass: sync builds one per entry, and
catching up builds millions.
"""


class ApplyTx(Protocol):
    """One atomic application of verified entries to an origin's log and bank."""

    def addition_status(self, index: int) -> str | None:
        """Returns "active"/"retracted" for an addition of this origin, else None."""

    def write_tiles(self, tiles: dict[tuple[int, int], bytes]) -> None: ...

    def write_bundle(self, index: int, count: int, data: bytes) -> None: ...

    def add_hashes(self, rows: list[BankAddition]) -> None: ...

    def retract(self, rows: list[tuple[int, int, str, int]]) -> None:
        """Marks additions retracted: (index, retracted_by, reason, time) each."""

    def add_feedback(self, rows: list[tuple[int, str, int, str, str, int]]) -> None:
        """Stores feedback: (index, target origin, target index, verdict, tags, time)."""

    def flag(self, rows: list[tuple[int, str]]) -> None:
        """Keeps entries that failed a record check: (index, reason) each."""

    def set_checkpoint(self, size: int, root: bytes, note: str) -> None: ...

    def clear_staged(self) -> None:
        """Drops the staged bundles, now applied, once (and only if) the transaction commits."""


class SyncStore(Protocol):
    """Storage for the logs a node mirrors."""

    def state(self, origin: str) -> LogState | None:
        """Returns the applied state of origin, or None if the node does not follow it."""

    def read_tile(self, origin: str, level: int, index: int, width: int) -> bytes:
        """Returns a verified tile of the applied log (LookupError if not stored)."""

    def read_bundle(self, origin: str, index: int) -> tuple[int, bytes] | None:
        """Returns (count, data) of an applied entry bundle."""

    def stage(self, origin: str, bundle: Staged) -> None:
        """Persists a fetched bundle before it is verified against a checkpoint."""

    def staged_counts(self, origin: str) -> dict[int, int]:
        """Returns {bundle index: entry count} of every staged bundle of origin."""

    def read_staged(self, origin: str, index: int) -> Staged | None: ...

    def clear_staged(self, origin: str) -> None: ...

    def apply(self, origin: str, size: int, root: bytes) -> AbstractContextManager[ApplyTx]:
        """Opens the transaction that applies entries on top of the tree (size, root)
        (all or nothing; rolled back if the block raises). It raises SyncError at once
        if the stored log is no longer that tree (another sync moved it) or the origin
        was halted meanwhile. The other methods stay usable while it is open."""

    def refresh_checkpoint(self, origin: str, size: int, root: bytes, note: str) -> None:
        """Replaces the stored note of the tree (size, root) by one with newer
        cosignatures; does nothing if the stored log is no longer that tree."""

    def content_missing(self, origin: str, limit: int) -> list[int]:
        """Returns (up to limit) additions received without content and not retracted."""

    def fill_content(self, origin: str, rows: list[BankAddition]) -> None:
        """Stores content found at last for additions still missing it (verified by the
        caller against their commitments), and clears their flags."""

    def record_evidence(self, origin: str, evidence: Evidence, detail: str) -> None:
        """Keeps proof that origin signed inconsistent checkpoints; halts the origin."""

    def record_sync(
        self, origin: str, peer: str, error: str | None, offered: int | None = None
    ) -> None:
        """Records the outcome of a sync attempt, for status."""
