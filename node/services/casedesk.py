"""The publisher's case desk: a person's hashes, a case number and a PIN (specs/case-api.md).

A person opens a **case** by sending 1..20 hashes computed on their own device.
The desk answers with a **case number** and a **PIN**; with both they can check
the case and withdraw it. Nothing that identifies the person is stored: the
database keeps only a digest of the number and a slow hash of the PIN
(:mod:`~hashfed.node.services.casecrypto` makes, reads and checks both), and
every SQL statement of the desk is in :mod:`hashfed.node.store.cases`.

Hashes wait as **pending** until a batch (:meth:`CaseDesk.publish_pending`, run
every ``[cases] batch_interval`` by ``hashfed serve``) publishes the pending
hashes of every approved case in one shuffled append whose time is rounded
down to ``[cases] time_granularity``: neither an entry's position nor its time
ties it to a case. The periodic batch waits until ``[cases] min_batch_cases``
approved cases are pending, or until the oldest of them has waited ``[cases]
max_hold`` seconds (then it publishes anyway); ``hashfed cases publish``
publishes at once. From then on the bank holds the hash, and the case keeps
only each hash's log index (so a withdrawal erases the hash everywhere).

States: ``review`` (held for the operator, ``[cases] review = true``),
``pending`` (waiting for the next batch), ``active`` (published),
``withdrawn`` (retracted, or deleted before publication), ``rejected`` (by the
operator; nothing published).

Guessing is bounded per (case, client network) and per case by
:class:`~hashfed.node.services.pinguard.PinGuard`: ``max_failures`` wrong PINs lock that
network out of that case for ``lockout`` seconds, doubling up to a day, and a
case takes at most ``[cases] case_guess_budget`` wrong PINs a day, shared fairly
between networks, while a network that has not guessed wrong is never refused.
A wrong PIN and an unknown case number get the same answer
(:class:`CaseNotFound`, then :class:`CaseLocked` with the same retry time)
after the same work: an unknown number is checked against a decoy PIN hash and
guarded under the digest of its number exactly like a real case (never the
number; in memory, least recently guessed forgotten first beyond
``UNKNOWN_GUESS_ENTRIES``). The scrypt check runs outside the desk's lock, so
opening, batches and the operator never wait behind PIN checks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hashfed.node.config import CasesConfig, NodeConfig
from hashfed.node.errors import NodeError
from hashfed.node.services.casecrypto import (
    PIN_MAX_LENGTH,
    CaseError,
    InvalidCase,
    check_pin,
    format_case_number,
    generate_pin,
    hash_pin,
    new_case_number,
    number_digest,
    parse_case_number,
    verify_pin,
)
from hashfed.node.services.ownlog import AppendResult, Clock, NewHash, OwnLog, system_clock
from hashfed.node.services.pinguard import GuessRefused, PinGuard
from hashfed.node.store import cases as store
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database, transaction, truncate_wal
from hashfed.protocol.errors import InvalidRecord
from hashfed.protocol.kinds import kinds
from hashfed.protocol.records import STOPNCII_FEEDBACK, Reason, Verdict
from hashfed.protocol.validation import Policy, check_hash
from hashfed.signing.keys import Ed25519Signer

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger("hashfed.cases")

MAX_CASE_HASHES = 20
"""Most hashes one case may hold."""

CASE_LABELS = ("ncii",)
"""The labels every case hash is published with."""

UNKNOWN_GUESS_ENTRIES = 100_000
"""Most unknown case numbers whose wrong PINs are counted (in memory, by digest)."""

STATES = ("review", "pending", "active", "withdrawn", "rejected")


class CaseNotFound(CaseError):
    """No case has this number and PIN: the same answer whichever of the two is wrong."""

    def __init__(self) -> None:
        super().__init__("no case has this case number and PIN")


class CaseLocked(CaseError):
    """Too many wrong PINs: the case is locked for retry_after more seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong PINs for this case; try again in {retry_after} seconds")
        self.retry_after = retry_after


class CaseClosed(CaseError):
    """The case's state does not allow what was asked (e.g. withdrawing a rejected case)."""


class UnknownCaseId(CaseError):
    """The operator named a case id the desk does not have."""


@dataclass(frozen=True)
class CaseHash:
    """One hash of a case, as the person's device computed it."""

    kind: str
    hash: bytes
    quality: int | None


@dataclass(frozen=True)
class PreparedCase:
    """A case checked and its PIN hashed, not yet stored (:meth:`CaseDesk.prepare_case`)."""

    hashes: tuple[CaseHash, ...]
    raw: bytes = field(repr=False)
    stored_pin: str = field(repr=False)
    generated: str | None = field(repr=False)


@dataclass(frozen=True)
class OpenedCase:
    """What opening a case returns: the only time the number (and a generated PIN) exist."""

    id: str
    number: str
    pin: str | None
    """The generated PIN, or None when the person chose theirs."""
    state: str
    count: int
    opened: int


@dataclass(frozen=True)
class CaseStatus:
    """What the person may learn about their case."""

    state: str
    count: int
    opened: int
    published: int
    feedback: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns the status as the API's JSON object."""
        return {
            "state": self.state,
            "hashes": self.count,
            "published": self.published,
            "opened": day_text(self.opened),
            "feedback": self.feedback,
        }


@dataclass(frozen=True)
class BatchResult:
    """What one batch published: hashes, cases, where and with what time."""

    published: int
    cases: int
    first_index: int | None = None
    time: int | None = None
    held: int = 0
    """Cases left pending because the batch was smaller than min_batch_cases."""


# -- hashes ---------------------------------------------------------------------------


def parse_case_hashes(items: object, policy: Policy) -> list[CaseHash]:
    """Returns the hashes of an open request, validated as log entries are, or raises InvalidCase.

    items is the request's ``hashes`` list: objects with ``kind`` (pdq or md5),
    ``hash`` (hex) and ``quality`` (PDQ only). There must be 1..20, no two alike.
    """
    if not isinstance(items, list):
        raise InvalidCase("'hashes' must be a list of {kind, hash, quality} objects")
    if not items:
        raise InvalidCase("a case needs at least one hash")
    if len(items) > MAX_CASE_HASHES:
        raise InvalidCase(
            f"a case holds at most {MAX_CASE_HASHES} hashes, not {len(items)}; "
            "open several cases for more"
        )
    out: list[CaseHash] = []
    seen: set[tuple[str, bytes]] = set()
    registry = kinds()
    for n, item in enumerate(items, 1):
        where = f"hash {n}"
        if not isinstance(item, dict):
            raise InvalidCase(f"{where}: must be an object with kind, hash and quality")
        extra = set(item) - {"kind", "hash", "quality"}
        if extra:
            raise InvalidCase(f"{where}: unknown field(s) {', '.join(sorted(map(str, extra)))}")
        kind_text, hex_text, quality = item.get("kind"), item.get("hash"), item.get("quality")
        spec = registry.get(kind_text.lower()) if isinstance(kind_text, str) else None
        if spec is None:
            choices = " or ".join(
                f"'{k.name}' ({k.media})" if k.media else f"'{k.name}'" for k in registry
            )
            raise InvalidCase(f"{where}: kind must be {choices}")
        kind, want = spec.name, spec.hex_length
        if (
            not isinstance(hex_text, str)
            or len(hex_text) != want
            or any(c not in "0123456789abcdefABCDEF" for c in hex_text)
        ):
            raise InvalidCase(f"{where}: a {kind} hash is {want} hexadecimal characters")
        if quality is not None and (type(quality) is not int):
            raise InvalidCase(f"{where}: quality must be an integer from 0 to 100")
        digest = bytes.fromhex(hex_text)
        try:
            check_hash(kind, digest, quality, policy)
        except InvalidRecord as exc:
            raise InvalidCase(f"{where}: {exc}") from None
        if (kind, digest) in seen:
            raise InvalidCase(f"{where}: the same hash appears twice in this case")
        seen.add((kind, digest))
        out.append(CaseHash(kind, digest, quality))
    return out


RACE_RETRIES = 5
"""How often a batch or a withdrawal is redone when another process changed its cases."""

CHECKPOINT_TRIES = 5


class _Changed(Exception):
    """The cases changed between reading them and the write transaction: roll back, redo."""


def checkpoint_wal(conn: sqlite3.Connection, tries: int = CHECKPOINT_TRIES) -> bool:
    """Moves the WAL file into the database and truncates it, so that deleted hashes
    survive only in the (secure-deleted) database file; retries while readers keep it busy.
    Returns whether it succeeded."""
    for attempt in range(tries):
        if truncate_wal(conn):
            return True
        if attempt + 1 < tries:
            time.sleep(0.05 * (attempt + 1))
    log.warning("case desk: the WAL file could not be truncated (busy); deleted hashes stay in it")
    return False


def day_text(day: int) -> str:
    """Returns the UTC date (YYYY-MM-DD) of a Unix time."""
    return datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")


def _case_id() -> str:
    return "c" + secrets.token_hex(6)


# -- the desk -------------------------------------------------------------------------


class CaseDesk:
    """Opens, checks, withdraws and publishes cases over one database connection.

    All methods are synchronous and safe to call from several threads (one lock
    serialises them); the HTTP API runs them in a worker thread because PIN
    hashing takes tens of milliseconds. db must be a connection of its own: the
    desk appends to the node's own log (through :class:`OwnLog`) in its
    transactions.
    """

    def __init__(
        self,
        db: sqlite_utils.Database,
        signer: Ed25519Signer,
        head_file: Any,
        policy: Policy,
        config: CasesConfig,
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.config = config
        self.policy = policy
        self.origin = signer.name
        self._clock = clock
        self._log_time = 0
        self._log = OwnLog(db, signer, head_file, policy, clock=lambda: self._log_time)
        self._lock = threading.Lock()
        # The decoy PIN hash an unknown number is checked against: scrypt, so it is
        # made in a thread of its own (hashlib releases the GIL) rather than hold up
        # 'hashfed serve' before it binds; every PIN check waits for it, so a check
        # never costs less for an unknown number, even the first. Not a daemon: the
        # interpreter's exit waits for it (a fraction of a second) rather than tear
        # down under a thread that is inside the C code of scrypt ('hashfed cases list'
        # died of SIGSEGV that way); 'hashfed serve' ends with os._exit, which does not.
        self._decoy = ""
        self._decoy_made = threading.Event()
        threading.Thread(target=self._make_decoy, name="hashfed-case-decoy").start()
        # Wrong-PIN state of every guessed number, known or not, by number digest.
        # Only the lock touches it.
        self._guard = PinGuard(
            config.max_failures, config.lockout, config.case_guess_budget, UNKNOWN_GUESS_ENTRIES
        )
        # When this desk first saw each pending case pending (for max_hold).
        self._pending_since: dict[str, int] = {}

    def close(self) -> None:
        self.db.conn.close()

    # -- the person's side ------------------------------------------------------------

    def open_case(self, hashes: Sequence[CaseHash], pin: str | None = None) -> OpenedCase:
        """Opens a case holding hashes (already parsed), protected by pin or a generated PIN."""
        return self.commit_case(self.prepare_case(hashes, pin))

    def prepare_case(self, hashes: Sequence[CaseHash], pin: str | None = None) -> PreparedCase:
        """Checks hashes and pin and hashes the PIN (scrypt): everything of opening a case
        but storing it. Nothing is written; a prepared case that is never committed is lost."""
        parse_case_hashes(
            [{"kind": str(h.kind), "hash": h.hash.hex(), "quality": h.quality} for h in hashes],
            self.policy,
        )
        generated = None
        if pin is None:
            pin = generated = generate_pin()
        else:
            check_pin(pin)
        return PreparedCase(tuple(hashes), new_case_number(), hash_pin(pin), generated)

    def commit_case(self, prepared: PreparedCase) -> OpenedCase:
        """Stores a prepared case (no scrypt: quick) and returns its number and PIN."""
        hashes, raw, stored_pin, generated = (
            prepared.hashes,
            prepared.raw,
            prepared.stored_pin,
            prepared.generated,
        )
        state = "review" if self.config.review else "pending"
        case_id = _case_id()
        now = self._clock()
        opened = now // 86400 * 86400
        with self._lock, transaction(self.db) as conn:
            store.insert_case(
                conn,
                case_id,
                number_digest(raw),
                stored_pin,
                state,
                opened,
                [(str(h.kind), h.hash, h.quality) for h in hashes],
            )
            if state == "pending":
                self._pending_since[case_id] = now
        log.info(
            "case desk: case %s opened with %d hashes (%s)",
            case_id,
            len(hashes),
            state,
            extra={"event": "case_opened", "hashes": len(hashes), "state": state},
        )
        return OpenedCase(case_id, format_case_number(raw), generated, state, len(hashes), opened)

    def status(self, number: str, pin: str, client: str = "") -> CaseStatus:
        """Returns the status of the case with this number and PIN.

        client names the caller's network (:func:`~hashfed.node.services.pinguard.client_net`)
        for the guessing bounds. Raises CaseNotFound (wrong PIN or unknown number,
        indistinguishably), CaseLocked or InvalidCase (not a case number).
        """
        case_id = self._authenticate(number, pin, client)
        with self._lock:
            return self._status(self.db.conn, case_id)

    def withdraw(self, number: str, pin: str, client: str = "") -> CaseStatus:
        """Withdraws the case irreversibly: retracts its published hashes (erasing their
        content) and deletes its pending ones. Withdrawing a withdrawn case changes nothing."""
        case_id = self._authenticate(number, pin, client)
        with self._lock:
            conn = self.db.conn
            state = self._state(conn, case_id)
            if state == "rejected":
                raise CaseClosed(
                    "this case was rejected and none of its hashes were published; "
                    "there is nothing to withdraw"
                )
            if state != "withdrawn":
                self._withdraw(case_id)
                log.info("case desk: case %s withdrawn", case_id, extra={"event": "case_withdrawn"})
            return self._status(conn, case_id)

    # -- the operator's side ----------------------------------------------------------

    def list_cases(self, state: str | None = None) -> list[dict[str, Any]]:
        """Returns every case (or those in state) for the operator: never a number or PIN."""
        return [
            {
                "id": c.id,
                "state": c.state,
                "opened": day_text(c.opened),
                "hashes": c.count,
                "published": c.published,
            }
            for c in store.list_cases(self.db.conn, state)
        ]

    def approve(self, case_id: str) -> None:
        """Moves a case held for review to pending: the next batch publishes it."""
        with self._lock, transaction(self.db) as conn:
            state = self._state(conn, case_id)
            if state != "review":
                raise CaseClosed(f"case {case_id} is {state}, not waiting for review")
            store.set_state(conn, case_id, "pending")
            self._pending_since[case_id] = self._clock()

    def reject(self, case_id: str) -> None:
        """Rejects a case not yet published: its hashes are deleted, never published."""
        with self._lock, transaction(self.db) as conn:
            state = self._state(conn, case_id)
            if state not in ("review", "pending"):
                raise CaseClosed(
                    f"case {case_id} is {state}; only cases not yet published can be rejected"
                    + (" (retract its entries with 'hashfed retract')" if state == "active" else "")
                )
            store.delete_hashes(conn, case_id)
            store.set_state(conn, case_id, "rejected")
        # Move the deleted hashes out of the WAL file into the (secure-deleted) database.
        checkpoint_wal(self.db.conn)
        log.info("case desk: case %s rejected", case_id)

    def publish_pending(self, respect_minimum: bool = False) -> BatchResult:
        """Publishes the pending hashes of every pending case in one shuffled batch.

        With respect_minimum (the periodic batch of ``hashfed serve``) nothing is
        published, and the result says how many cases were held, unless at
        least min_batch_cases cases are pending or the oldest of them has waited
        max_hold seconds; without it (``hashfed cases publish``) the batch is
        published at once, however small.

        The batch's time is the desk clock rounded down to time_granularity; the
        cases become active and remember their log indices, in the same
        transaction as the append. Another process (``hashfed cases reject``
        beside ``hashfed serve``) may change the pending cases between reading
        them and that transaction: inside it the batch is read again, and if any
        of its hashes is no longer pending the append is rolled back and redone.
        """
        with self._lock:
            for _ in range(RACE_RETRIES):
                try:
                    return self._publish_once(respect_minimum)
                except _Changed:
                    log.info("case desk: the pending cases changed while publishing; again")
        raise NodeError("case desk: the pending cases kept changing while publishing; try again")

    def _publish_once(self, respect_minimum: bool = False) -> BatchResult:
        items = []
        for row in self._pending_rows(self.db.conn):
            try:
                check_hash(kinds().lookup(row.kind).name, row.hash, row.quality, self.policy)
            except (InvalidRecord, ValueError):
                log.warning(
                    "case desk: a pending hash of case %s no longer meets this node's "
                    "policy (min_pdq_quality); left pending",
                    row.case_id,
                )
                continue
            name = kinds().lookup(row.kind).name
            items.append((row.case_id, row.position, NewHash(name, row.hash, row.quality)))
        if not items:
            return BatchResult(0, 0)
        cases = {case_id for case_id, _, _ in items}
        if respect_minimum and self._hold(self.db.conn, cases):
            return BatchResult(0, 0, held=len(cases))
        secrets.SystemRandom().shuffle(items)
        granularity = self.config.time_granularity
        self._log_time = self._clock() // granularity * granularity

        def record(conn: sqlite3.Connection, result: AppendResult) -> None:
            # Inside the append's transaction (BEGIN IMMEDIATE): every hash of the
            # batch must still be pending, or the whole append is rolled back.
            pending = {(r.case_id, r.position) for r in self._pending_rows(conn)}
            if any((c, p) not in pending for c, p, _ in items):
                raise _Changed()
            updated = store.mark_published(
                conn, [(result.first_index + n, c, p) for n, (c, p, _) in enumerate(items)]
            )
            if updated != len(items):
                raise _Changed()
            store.activate_cases(conn, cases)

        result = self._log.publish(
            [NewHash(h.kind, h.hash, h.quality, CASE_LABELS) for _, _, h in items],
            then=record,
        )
        log.info(
            "case desk: published %d hashes of %d cases from index %d",
            len(items),
            len(cases),
            result.first_index,
            extra={"event": "cases_published", "hashes": len(items), "cases": len(cases)},
        )
        return BatchResult(len(items), len(cases), result.first_index, self._log_time)

    def _hold(self, conn: sqlite3.Connection, cases: set[str]) -> bool:
        """Whether the periodic batch should wait: fewer than min_batch_cases cases and
        none of them has waited max_hold seconds.

        A case has waited since this desk first saw it pending (opened here,
        approved here, or found by an earlier batch), but never since later than
        the end of the day it was opened (all the database keeps), so a restart
        of ``hashfed serve`` cannot hold a case for ever.
        """
        now = self._clock()
        opened = store.pending_opened(conn)
        self._pending_since = {
            c: min(self._pending_since.get(c, now), day + 86400) for c, day in opened.items()
        }
        if len(cases) >= self.config.min_batch_cases:
            return False
        oldest = min(self._pending_since.get(c, now) for c in cases)
        if now - oldest >= self.config.max_hold:
            return False
        log.info(
            "case desk: holding %d pending cases until there are %d or one has waited %d s",
            len(cases),
            self.config.min_batch_cases,
            self.config.max_hold,
        )
        return True

    def _pending_rows(self, conn: sqlite3.Connection) -> list[store.PendingHash]:
        """Returns every unpublished hash of every pending case (a seam the race tests
        wrap to change the cases between reading and writing a batch)."""
        return store.pending_hashes(conn)

    # -- internals --------------------------------------------------------------------

    def _make_decoy(self) -> None:
        try:
            self._decoy = hash_pin(secrets.token_hex(16))
        finally:
            self._decoy_made.set()

    def _decoy_hash(self) -> str:
        self._decoy_made.wait()
        if not self._decoy:  # its thread failed: make it here
            self._decoy = hash_pin(secrets.token_hex(16))
        return self._decoy

    def _authenticate(self, number: str, pin: str, client: str = "") -> str:
        """Returns the id of the case with this number and PIN, checked from client's network.

        The guard is consulted and updated under the lock; scrypt runs outside it.
        """
        raw = parse_case_number(number)
        if not isinstance(pin, str) or not 0 < len(pin) <= PIN_MAX_LENGTH:
            pin = ""
        digest = number_digest(raw)
        # An unknown number goes through the same steps as a real case with a wrong
        # PIN: the same guard, the same scrypt work, the same counts.
        with self._lock:
            row = store.find_case(self.db.conn, digest)
            try:
                self._guard.check(digest, client, self._clock())
            except GuessRefused as refused:
                raise CaseLocked(refused.retry_after) from None
        decoy = self._decoy_hash()
        case_id, stored = (None, decoy) if row is None else (row.id, row.pin_hash)
        matched = verify_pin(pin, stored) if pin else verify_pin("", decoy) and False
        ok = matched and row is not None
        with self._lock:
            self._guard.record(digest, client, self._clock(), ok)
        if not ok:
            raise CaseNotFound()
        return str(case_id)

    @staticmethod
    def _state(conn: sqlite3.Connection, case_id: str) -> str:
        state = store.case_state(conn, case_id)
        if state is None:
            raise UnknownCaseId(f"no case with id {case_id!r}; see 'hashfed cases list'")
        return state

    def _published_indices(self, conn: sqlite3.Connection, case_id: str) -> list[int]:
        """Returns the log indices of the case's hashes that are published and not retracted."""
        own = logstore.get_log(conn, self.origin)
        assert own is not None, "the desk's database holds the node's own log"
        return store.active_log_indices(conn, own.id, case_id)

    def _withdraw(self, case_id: str) -> None:
        """Retracts the case's published hashes and deletes its pending ones.

        The indices are read before the retract's transaction (OwnLog takes them
        as arguments) and checked again inside it: if a batch of another
        process published a hash of the case meanwhile, one is still active
        after the retraction, and the transaction is rolled back and redone.
        """
        for _ in range(RACE_RETRIES):
            try:
                self._withdraw_once(case_id)
                return
            except _Changed:
                log.info("case desk: case %s was published while withdrawing it; again", case_id)
        raise NodeError("case desk: the case kept changing while withdrawing it; try again")

    def _withdraw_once(self, case_id: str) -> None:
        indices = self._published_indices(self.db.conn, case_id)

        def mark(tx: sqlite3.Connection, _result: AppendResult | None = None) -> None:
            if self._published_indices(tx, case_id):
                raise _Changed()
            store.withdraw_case(tx, case_id)

        if indices:
            granularity = self.config.time_granularity
            self._log_time = self._clock() // granularity * granularity
            self._log.retract(indices, Reason.WITHDRAWN, then=mark)
        else:
            with transaction(self.db) as tx:
                mark(tx)
            checkpoint_wal(self.db.conn)

    def _status(self, conn: sqlite3.Connection, case_id: str) -> CaseStatus:
        case = store.case_summary(conn, case_id)
        indices = store.case_log_indices(conn, case_id)
        return CaseStatus(
            case.state, case.count, case.opened, len(indices), self._feedback(conn, indices)
        )

    def _feedback(self, conn: sqlite3.Connection, indices: Iterable[int]) -> dict[str, int]:
        counts = dict.fromkeys(sorted(set(STOPNCII_FEEDBACK.values())), 0)
        for verdict, n in store.feedback_verdicts(conn, self.origin, indices).items():
            try:
                counts[STOPNCII_FEEDBACK[Verdict(verdict)]] += n
            except ValueError:
                continue
        return counts


def open_case_desk(
    config: NodeConfig, signer: Ed25519Signer, clock: Clock = system_clock
) -> CaseDesk:
    """Returns a case desk for the node, on a database connection of its own."""
    if config.role != "publisher":
        raise NodeError(
            "the case desk runs on a publisher node (this node's role is "
            f"{config.role!r}; see 'hashfed init --role publisher')"
        )
    db = open_database(config.database)
    policy = Policy(min_pdq_quality=config.min_pdq_quality)
    return CaseDesk(db, signer, config.signed_head, policy, config.cases, clock)


async def batch_loop(
    desk: CaseDesk,
    interval: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rounds: int | None = None,
) -> None:
    """Publishes pending case hashes every interval seconds until cancelled, holding
    them while fewer than [cases] min_batch_cases cases wait (up to max_hold)."""
    done = 0
    while rounds is None or done < rounds:
        await sleep(interval)
        try:
            await asyncio.to_thread(desk.publish_pending, respect_minimum=True)
        except Exception as exc:  # a failed batch is retried at the next interval
            log.error("case desk: the batch failed (%s); retrying next time", type(exc).__name__)
        done += 1
