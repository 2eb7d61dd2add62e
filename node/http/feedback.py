"""The operator's feedback endpoint (specs/match-api.md, "Feedback"):

    POST /v1/feedback    publish feedback in this node's own log, on one entry
                         {"origin", "index", "verdict", "tags"?} or on every active
                         entry with a hash {"kind", "hash", "origin"?, "verdict", "tags"?}

For the admin token only (``Authorization: Bearer <keys/admin.token>``, compared in
constant time): anonymous callers and wrong tokens get 401, a peer's session 403.
Feedback is signed into the node's own log, so only the node's operator (or the tools
it runs, such as the python-threatexchange extension, hashfed.sync.pytx) may ask for
it. Every bad request gets a one-line ``{"error": ...}`` and writes nothing: 400 for a
malformed body or feedback that cannot be, 404 for a log, entry or hash this node does
not hold, 409 for a retracted entry, 413 for a body over MAX_FEEDBACK_BODY, 415 for a
body that is not JSON. A good one answers 201 with the records' own-log indices.

Served by the writer (``hashfed serve``), on its main port; never by a read replica.
node/services/feedback.py does the checking and publishing, on a database connection
of its own, one request at a time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from hashfed.node.errors import NodeError
from hashfed.node.http.accesslog import ACCESS_CALLER_KEY
from hashfed.node.http.auth import API_AUTH_KEY, bearer_matches
from hashfed.node.http.errors import json_error
from hashfed.node.http.reqtimeout import own_timeout, request_timeout
from hashfed.node.services.feedback import (
    FeedbackDesk,
    FeedbackRefused,
    InactiveTarget,
    InvalidFeedback,
    Published,
    UnknownTarget,
    check_tags,
    parse_verdict,
)

FEEDBACK_PATH = "/v1/feedback"
MAX_FEEDBACK_BODY = 8192
"""Largest request body accepted, in bytes (16 tags of 64 characters take ~1.2 KiB)."""
MAX_INDEX = 2**63 - 1

FEEDBACK_DESK = web.AppKey("hashfed_feedback_desk", FeedbackDesk)
FEEDBACK_TOKEN = web.AppKey("hashfed_feedback_token", str)

_FIELDS = {"origin", "index", "kind", "hash", "verdict", "tags"}
_ADMIN_ONLY = (
    "feedback is published by this node's operator: send the admin token "
    "(Authorization: Bearer <keys/admin.token>); a peer session may not"
)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _has_admin_token(request: web.Request) -> bool:
    ok = request.path == FEEDBACK_PATH and bearer_matches(request, request.app.get(FEEDBACK_TOKEN))
    if ok:
        request[ACCESS_CALLER_KEY] = "admin"  # the access log names the caller, as for /metrics
    return ok


async def _read_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _BadRequest(415, "send a JSON body (Content-Type: application/json)")
    too_large = f"the body is larger than {MAX_FEEDBACK_BODY} bytes"
    if request.content_length is not None and request.content_length > MAX_FEEDBACK_BODY:
        raise _BadRequest(413, too_large)
    chunks, total = [], 0
    while chunk := await request.content.read(MAX_FEEDBACK_BODY + 1 - total):
        total += len(chunk)
        if total > MAX_FEEDBACK_BODY:
            raise _BadRequest(413, too_large)
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest(400, "the body is not valid JSON") from None
    except RecursionError:
        raise _BadRequest(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, "the body must be a JSON object")
    extra = sorted(set(data) - _FIELDS)
    if extra:
        raise _BadRequest(
            400, f"unknown field {extra[0][:80]!r}; allowed: {', '.join(sorted(_FIELDS))}"
        )
    return data


def _string(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise _BadRequest(400, f"{key!r} must be a non-empty string")
    return value


def _publish_call(data: dict[str, Any], desk: FeedbackDesk) -> Any:
    """Returns a function that publishes what the body asks, or raises _BadRequest."""
    if "verdict" not in data:
        raise _BadRequest(400, "'verdict' is required")
    verdict = parse_verdict(data["verdict"])
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise _BadRequest(400, "'tags' must be a list of strings")
    tag_list = check_tags(tags)
    origin = _string(data, "origin") if "origin" in data else None
    if "index" in data:
        if "kind" in data or "hash" in data:
            raise _BadRequest(
                400, "name an entry (origin and index) or a hash (kind and hash), not both"
            )
        index = data["index"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
            raise _BadRequest(400, f"'index' must be an integer from 0 to {MAX_INDEX}")
        if origin is None:
            raise _BadRequest(400, "'origin' is required with 'index': the log the entry is in")
        return lambda: desk.on_entry(origin, index, verdict, tag_list)
    if "kind" in data and "hash" in data:
        kind, hash_hex = _string(data, "kind"), _string(data, "hash")
        return lambda: desk.on_hash(kind, hash_hex, verdict, tag_list, origin)
    raise _BadRequest(
        400, "name an entry (origin and index) or a hash (kind and hash, optionally origin)"
    )


def _answer(published: Published) -> dict[str, Any]:
    return {
        "log": published.log,
        "verdict": published.verdict.value,
        "tags": list(published.tags),
        "feedback": [
            {"origin": t.origin, "index": t.index, "entry": published.first_index + n}
            for n, t in enumerate(published.targets)
        ],
    }


_STATUS = {InvalidFeedback: 400, UnknownTarget: 404, InactiveTarget: 409}


@own_timeout
async def post_feedback(request: web.Request) -> web.Response:
    """Publishes feedback; bounds the body's arrival, never the append once begun
    (its answer must reach the caller)."""
    if not _has_admin_token(request):
        return json_error(403, _ADMIN_ONLY)
    try:
        async with asyncio.timeout(request_timeout(request)):
            data = await _read_body(request)
        call = _publish_call(data, request.app[FEEDBACK_DESK])
        published = await asyncio.to_thread(call)
    except TimeoutError:
        return json_error(503, "the request body did not arrive in time")
    except _BadRequest as exc:
        return json_error(exc.status, str(exc))
    except FeedbackRefused as exc:
        return json_error(_STATUS.get(type(exc), 400), str(exc))
    except NodeError as exc:  # the own log cannot be appended to (ForkRefused, ...)
        return json_error(503, f"this node cannot append to its own log: {exc}")
    except sqlite3.OperationalError:  # the database stayed locked (a long sync applying)
        return json_error(503, "the node's database is busy; retry shortly", {"Retry-After": "5"})
    return web.json_response(_answer(published), status=201, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True)
class FeedbackAccess:
    """What ``POST /v1/feedback`` needs: the desk that publishes (its owner closes it)
    and the admin token a request must carry."""

    desk: FeedbackDesk
    token: str


def setup_feedback(app: web.Application, access: FeedbackAccess) -> None:
    """Adds ``POST /v1/feedback`` to a node app, for requests carrying the admin token.

    The middleware (node/http/auth.py) lets such requests through without a peer
    session."""
    app[FEEDBACK_DESK] = access.desk
    app[FEEDBACK_TOKEN] = access.token
    app.router.add_post(FEEDBACK_PATH, post_feedback)
    previous = app.get(API_AUTH_KEY)

    def feedback_or_previous(request: web.Request) -> bool:
        return _has_admin_token(request) or (previous is not None and previous(request))

    app[API_AUTH_KEY] = feedback_or_previous
