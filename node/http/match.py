"""The node's match API: ``POST /v1/match`` (specs/match-api.md).

A platform checks uploads against the bank by posting a batch of hashes::

    POST /v1/match
    Authorization: Bearer <local API token, or a peer session token>
    Content-Type: application/json

    {"hashes": [{"kind": "pdq", "hash": "f8f8f0ce...9b22"}, {"kind": "md5", "hash": "0a21..."}]}

and gets, in the same order, every applied bank entry that matches each hash::

    {"results": [{"kind": "pdq", "hash": "f8f8f0ce...9b22", "truncated": false,
                  "matches": [{"origin": "stopncii.example/bank", "index": 17, "distance": 4,
                               "labels": ["ncii"], "added": 1700000000,
                               "feedback": {"blocked": 2, "false_positive": 0, ...}}]},
                 {"kind": "md5", "hash": "0a21...", "truncated": false, "matches": []}]}

A batch holds 1..:data:`MAX_BATCH` hashes and the body at most :data:`MAX_BODY` bytes.
Any malformed input is refused as a whole with 400 and ``{"error": ..., "item": n}``
naming the first bad item (``item`` is null when the body itself is bad).

Two kinds of caller are accepted: holders of the node's local API token
(``keys/api.token``, compared in constant time), who see matches from every applied
origin, and configured peers with a session token (node/http/auth.py), who see matches
only from the origins their read list allows.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from hashfed.node.errors import NodeError
from hashfed.node.http.auth import API_AUTH_KEY, bearer_matches, request_peer
from hashfed.node.http.metrics import app_metrics
from hashfed.node.http.readiness import RETRY_AFTER
from hashfed.protocol.kinds import kinds

if TYPE_CHECKING:  # numpy and the index: loaded after the port is bound
    from hashfed.node.match.bank import BankIndex

MATCH_PATH = "/v1/match"
"""Where platforms POST batches of hashes to match."""

MAX_BATCH = 1000
"""Most hashes in one request."""

MAX_BODY = 262_144
"""Largest request body accepted, in bytes (1,000 PDQ items take about 90 KB)."""

MAX_MATCHES = 100
"""Most matches returned per hash, nearest first (``truncated`` says when more matched)."""

IndexProvider = Callable[[], "BankIndex | None"]
"""Returns the node's current BankIndex, or None while it is not loaded yet (503)."""

INDEX_PROVIDER_KEY: web.AppKey[IndexProvider] = web.AppKey("hashfed_match_index")
API_TOKEN_KEY = web.AppKey("hashfed_api_token", str)
CONN_KEY = web.AppKey("hashfed_match_conn", sqlite3.Connection)
API_CLIENT_KEY = web.RequestKey("hashfed_api_client", bool)
"""Set on a request authenticated with the local API token."""


class BadRequest(NodeError):
    """The request body is not a valid match batch; item is the bad item's position."""

    def __init__(self, message: str, item: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.item = item


def setup_match_api(
    app: web.Application,
    index_provider: IndexProvider,
    api_token: str | None = None,
    conn: sqlite3.Connection | None = None,
) -> None:
    """setup_match_api adds ``POST /v1/match`` to app. index_provider returns the index
    to search; api_token, if given, is the local API token accepted besides peer
    sessions (the auth middleware of node/http/auth.py must be installed); conn is the
    connection matches are described from (default: the index's own)."""
    app[INDEX_PROVIDER_KEY] = index_provider
    if conn is not None:
        app[CONN_KEY] = conn
    if api_token:
        app[API_TOKEN_KEY] = api_token
        app[API_AUTH_KEY] = _has_api_token
    app.router.add_post(MATCH_PATH, match_handler)


def _has_api_token(request: web.Request) -> bool:
    """Reports whether request is for the match API and carries the local API token."""
    if request.path != MATCH_PATH:
        return False
    ok = bearer_matches(request, request.app.get(API_TOKEN_KEY))
    if ok:
        request[API_CLIENT_KEY] = True
    return ok


def _error(status: int, message: str, item: int | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if status == 400:
        body["item"] = item
    headers = {"Cache-Control": "no-store"}
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER)
    return web.json_response(body, status=status, headers=headers)


async def _read_body(request: web.Request) -> bytes | None:
    """Returns the body, or None if it is longer than MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(MAX_BODY + 1 - total):
        total += len(chunk)
        if total > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_batch(body: bytes) -> list[tuple[str, str, bytes]]:
    """parse_batch returns the (kind, canonical hex, raw hash) of each item of a match
    request body, or raises BadRequest naming the first bad item."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is not a match batch: JSON nested too deeply") from None
    if not isinstance(doc, dict) or set(doc) != {"hashes"}:
        raise BadRequest('the body must be a JSON object with exactly one key, "hashes"')
    items = doc["hashes"]
    if not isinstance(items, list):
        raise BadRequest('"hashes" must be a list')
    if not items:
        raise BadRequest('"hashes" is empty: send 1 to 1000 hashes')
    if len(items) > MAX_BATCH:
        raise BadRequest(f'"hashes" holds {len(items)} items, more than {MAX_BATCH}')
    out = []
    registry = kinds()
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"kind", "hash"}:
            raise BadRequest(f'hashes[{n}]: must be an object with exactly "kind" and "hash"', n)
        kind, text = item["kind"], item["hash"]
        if not isinstance(kind, str) or kind not in registry:
            raise BadRequest(
                f"hashes[{n}]: unknown kind {kind!r}: use one of {registry.names_text()}", n
            )
        if not isinstance(text, str):
            raise BadRequest(f"hashes[{n}]: the hash must be a hex string", n)
        try:
            raw = registry.parse_hex(kind, text)
        except ValueError as exc:
            raise BadRequest(f"hashes[{n}]: {exc}", n) from None
        out.append((kind, raw.hex(), raw))
    return out


MATCH_HIT_KEY = web.RequestKey("hashfed_match_hit", bool)


async def match_handler(request: web.Request) -> web.Response:
    """Answers ``POST /v1/match`` (see the module docstring), timed for the metrics."""
    started = time.perf_counter()
    response = await _match(request)
    metrics = app_metrics(request.app)
    if metrics is not None:
        hit = request.get(MATCH_HIT_KEY, False)
        result = "error" if response.status >= 400 else "hit" if hit else "miss"
        metrics.observe_match(result, time.perf_counter() - started)
    return response


async def _match(request: web.Request) -> web.Response:
    peer = request_peer(request)
    if peer is None and not request.get(API_CLIENT_KEY, False):
        return _error(401, "authentication required: the local API token or a peer session")
    index = request.app[INDEX_PROVIDER_KEY]()
    if index is None:
        return _error(503, "the match index is still loading: try again shortly (see GET /readyz)")
    body = await _read_body(request)
    if body is None:
        return _error(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        items = parse_batch(body)
    except BadRequest as exc:
        return _error(400, exc.message, exc.item)
    conn = request.app.get(CONN_KEY) or index.conn
    if conn is None:
        raise AssertionError("bad math: a match index without a database connection")
    allowed = None if peer is None else peer.may_read
    results: list[dict[str, Any]] = [{} for _ in items]
    for kind in kinds().names:
        positions = [n for n, item in enumerate(items) if item[0] == kind]
        if not positions:
            continue
        # The search is CPU work on in-memory arrays: off the event loop. Describing
        # the hits reads the database through the server's connection: on it.
        hits = await asyncio.to_thread(index.search, kind, [items[n][2] for n in positions])
        described = index.describe(conn, kind, hits, limit=MAX_MATCHES + 1, allowed=allowed)
        for n, rows in zip(positions, described, strict=True):
            results[n] = {
                "kind": kind,
                "hash": items[n][1],
                "truncated": len(rows) > MAX_MATCHES,
                "matches": [
                    {k: v for k, v in r.to_dict().items() if k not in ("kind", "hash")}
                    for r in rows[:MAX_MATCHES]
                ],
            }
    request[MATCH_HIT_KEY] = any(r["matches"] for r in results)
    return web.json_response({"results": results}, headers={"Cache-Control": "no-store"})


__all__ = [
    "MATCH_PATH",
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_MATCHES",
    "BadRequest",
    "parse_batch",
    "setup_match_api",
]
