"""The node as a C2SP tlog-witness: ``POST /witness/add-checkpoint``.

A partner that follows a log can witness it for others (``hashfed witness add
ORIGIN VKEY``). For each witnessed origin it keeps one record, the latest
checkpoint it cosigned, and it cosigns a new checkpoint only if:

* the origin is one it witnesses (else 404);
* a signature by the origin's key verifies (else 403);
* the body is well formed and the old size is not above the new size (else 400);
* the old size is exactly the size it holds (else 409, with that size);
* at equal sizes the roots are equal (else 409: that is a fork, kept as
  evidence) and the proof is empty (else 422), and at a larger size the
  consistency proof verifies (else 422; kept as evidence when the proof itself
  shows another prefix);
* if the node also mirrors the origin, the checkpoint agrees with the verified
  tree it holds (else 422, kept as evidence).

Checking and recording the new state happen in one database transaction, so
two concurrent requests cannot both advance from the same old size; the new
state is stored before the cosignature is returned. The endpoint needs no peer
authentication: the checkpoint's signature is its authentication. Cosignatures
are C2SP tlog-cosignature/v1 lines by the node's witness key, a key of its own.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from hashfed.node.store import logstore
from hashfed.node.store import witness as witness_store
from hashfed.node.store.db import transaction
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint
from hashfed.protocol.errors import (
    MalformedCheckpoint,
    OriginMismatch,
    ProofFailed,
    ProtocolError,
)
from hashfed.protocol.evidence import Evidence
from hashfed.protocol.merkle import (
    check_consistency,
    consistency_proof,
    consistency_roots,
    root_from_subtrees,
)
from hashfed.protocol.tiles import TileHashReader
from hashfed.protocol.witness import SIZE_CONTENT_TYPE, parse_add_checkpoint
from hashfed.signing.cosignature import CosignatureSigner
from hashfed.signing.errors import MalformedNote, SigningError, UnverifiedNote
from hashfed.signing.keys import parse_verifier
from hashfed.signing.note import VerifierList, open_note, signature_line

if TYPE_CHECKING:
    import sqlite_utils

WITNESS_PATH = "/witness/add-checkpoint"
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to an add-checkpoint request."""

    status: int
    body: str
    content_type: str = "text/plain"


log = logging.getLogger("hashfed.witness")


def _log_answer(body: bytes, answer: Answer) -> None:
    """Logs a cosignature (INFO) or a refusal (WARNING, with the one-line reason)."""
    note = body.partition(b"\n\n")[2]
    first = note.split(b"\n", 1)[0].decode("utf-8", "replace")[:200]
    origin = "".join(c if c.isprintable() else "?" for c in first) or "?"
    if answer.status == 200:
        log.info("cosigned %s", origin, extra={"event": "cosigned", "origin": origin})
        return
    reason = answer.body.strip().splitlines()[0] if answer.body.strip() else ""
    log.warning(
        "refused %s: %d %s",
        origin,
        answer.status,
        reason[:200],
        extra={"event": "witness_refused", "origin": origin, "status": answer.status},
    )


def _origin_of(note: str) -> str:
    return note.split("\n", 1)[0]


class Witness:
    """Cosigns checkpoints of the logs this node witnesses."""

    def __init__(
        self, db: sqlite_utils.Database, cosigner: CosignatureSigner, clock: Callable[[], int]
    ) -> None:
        self._db = db
        self._cosigner = cosigner
        self._clock = clock
        # Requests run in worker threads (so that waiting for the database never
        # blocks the event loop) and share one connection: one at a time.
        self._lock = threading.Lock()

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handles one add-checkpoint request body (safe to call from any thread)."""
        with self._lock:
            try:
                answer = self._add_checkpoint(body)
            except sqlite3.OperationalError:
                # The database stayed locked past busy_timeout (a long sync holds it):
                # nothing was recorded, and the log may simply try again.
                answer = Answer(503, "the witness is busy; retry shortly\n")
        _log_answer(body, answer)
        return answer

    def _add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = parse_add_checkpoint(body)
        except ProtocolError as exc:
            return Answer(400, f"{exc}\n")
        try:
            open_note(request.checkpoint, VerifierList())
        except UnverifiedNote:
            pass  # well formed; the origin's key is checked below
        except SigningError as exc:
            return Answer(400, f"malformed checkpoint: {exc}\n")
        origin = _origin_of(request.checkpoint)
        vkey = witness_store.witnessed_vkey(self._db.conn, origin)
        if vkey is None:
            return Answer(404, f"this node does not witness {origin!r}\n")
        try:
            checkpoint, _ = open_checkpoint(
                request.checkpoint, VerifierList(parse_verifier(vkey)), origin
            )
        except (MalformedCheckpoint, MalformedNote) as exc:
            return Answer(400, f"malformed checkpoint: {exc}\n")
        except (SigningError, OriginMismatch) as exc:
            return Answer(403, f"no valid signature by {origin}'s key: {exc}\n")
        if request.old_size > checkpoint.size:
            return Answer(400, "the old size is above the checkpoint's size\n")
        with transaction(self._db) as conn:
            answer = self._check_and_record(
                conn, origin, request.old_size, request.proof, checkpoint, request.checkpoint
            )
        if answer is not None:
            return answer
        return Answer(200, signature_line(checkpoint.body(), self._cosigner))

    def _check_and_record(
        self,
        conn: sqlite3.Connection,
        origin: str,
        old_size: int,
        proof: tuple[bytes, ...],
        checkpoint: Checkpoint,
        note: str,
    ) -> Answer | None:
        held = witness_store.witness_state(conn, origin)
        if held is None:  # removed since the request came in
            return Answer(404, f"this node does not witness {origin!r}\n")
        size, root, held_note = held.size, held.root, held.note
        if old_size != size:
            return Answer(409, f"{size}\n", SIZE_CONTENT_TYPE)
        if old_size == 0 and proof:  # after the 409 check, so a lost log learns the size
            # A proof from the empty tree cannot verify (C2SP tlog-witness: it MUST be
            # empty): 422, as for any proof that does not verify.
            return Answer(422, "a proof from old size 0 must be empty\n")
        if checkpoint.size == size and size > 0 and checkpoint.root != root:
            self._evidence(
                conn,
                origin,
                Evidence(held_note, note, checkpoint.root, ()),
                f"two checkpoints of size {size} with different roots",
            )
            return Answer(409, f"{size}\n", SIZE_CONTENT_TYPE)
        if checkpoint.size == size and proof:
            # A tree is consistent with itself by the empty proof only.
            return Answer(422, "a proof between two trees of the same size must be empty\n")
        if 0 < size < checkpoint.size:
            try:
                check_consistency(size, checkpoint.size, list(proof), root, checkpoint.root)
            except ProofFailed as exc:
                self._proof_evidence(conn, origin, size, held_note, proof, checkpoint, note)
                return Answer(422, f"consistency proof does not verify: {exc}\n")
        mirrored = self._mirror_disagrees(conn, origin, checkpoint, note)
        if mirrored is not None:
            return mirrored
        witness_store.advance_witness(
            conn, origin, checkpoint.size, checkpoint.root, note, self._clock()
        )
        return None

    def _proof_evidence(
        self,
        conn: sqlite3.Connection,
        origin: str,
        size: int,
        held_note: str,
        proof: tuple[bytes, ...],
        checkpoint: Checkpoint,
        note: str,
    ) -> None:
        """Keeps a failed proof as evidence when the proof itself shows a fork: it hashes
        to the new root from a prefix that is not the checkpoint this witness holds."""
        roots = consistency_roots(size, checkpoint.size, list(proof))
        if roots is not None and roots[1] == checkpoint.root:
            self._evidence(
                conn,
                origin,
                Evidence(held_note, note, roots[0], proof),
                f"checkpoint of size {checkpoint.size} does not extend the one of "
                f"size {size} this witness cosigned",
            )

    def _mirror_disagrees(
        self, conn: sqlite3.Connection, origin: str, checkpoint: Checkpoint, note: str
    ) -> Answer | None:
        log = logstore.get_log(conn, origin)
        if log is None or log.checkpoint is None or checkpoint.size == 0:
            return None
        if checkpoint.size > log.size:
            return None
        reader = TileHashReader(
            log.size, lambda lvl, idx, w: logstore.read_tile(conn, log.id, lvl, idx, w)
        )
        ours = root_from_subtrees(checkpoint.size, reader)
        if ours == checkpoint.root:
            return None
        proof = (
            consistency_proof(checkpoint.size, log.size, reader)
            if checkpoint.size < log.size
            else []
        )
        prefix = ours if checkpoint.size < log.size else log.root
        self._evidence(
            conn,
            origin,
            Evidence(note, log.checkpoint, prefix, tuple(proof)),
            f"checkpoint of size {checkpoint.size} disagrees with the mirrored log",
        )
        # Not 409: the client's old size is right, and a 409 would have it retry forever.
        return Answer(422, "the checkpoint is inconsistent with the log this node mirrors\n")

    def _evidence(
        self, conn: sqlite3.Connection, origin: str, evidence: Evidence, detail: str
    ) -> None:
        text = evidence.format()
        # A log that retries its push must not pile up copies.
        if witness_store.record_witness_evidence(conn, origin, self._clock(), detail, text):
            log.error(
                "evidence recorded against %s: %s",
                origin,
                detail,
                extra={"event": "evidence", "origin": origin, "detail": detail},
            )
        # A node that also follows the origin applies nothing more from it.
        witness_store.halt_followed_log(conn, origin)


WITNESS_KEY = web.AppKey("hashfed_witness", Witness)


async def add_checkpoint_handler(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return web.Response(status=413, text="request body too large\n")
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return web.Response(status=413, text="request body too large\n")
    answer = await asyncio.to_thread(request.app[WITNESS_KEY].add_checkpoint, body)
    # body, not text: aiohttp would add "; charset=utf-8", and tlog-witness clients
    # compare the 409 Content-Type with "text/x.tlog.size" exactly.
    return web.Response(
        status=answer.status,
        body=answer.body.encode(),
        content_type=answer.content_type,
        headers={"Cache-Control": "no-store"},
    )


def setup_witness(app: web.Application, witness: Witness) -> None:
    """Adds the add-checkpoint endpoint (no peer authentication: see the module docstring)."""
    app[WITNESS_KEY] = witness
    app.router.add_post(WITNESS_PATH, add_checkpoint_handler)
