"""``GET /v1/auth/check``: the authorisation answer for a web server in front of a static tree.

nginx (``auth_request``) or any proxy that serves the exported tree
(node/services/export.py) asks this endpoint, for every request it serves, whether the
request may read the log it names. The proxy forwards the client's
``Authorization`` header and, in ``X-Original-URI``, the *normalised* path it
will serve the file from (nginx ``$uri``, never the raw ``$request_uri``: nginx
resolves ``..``, ``%2e`` and ``//`` before it opens a file, so the raw path can
name one log while the file served is in another). The path must be exactly a
tlog-tiles path of the exported layout, ``/log/<64 lowercase hex>/`` and then
``checkpoint``, a canonical tile or entry-bundle path, or a canonical content
bundle path (the parsers of :mod:`hashfed.protocol.tiles`); anything else
(``..``, ``//``, ``%``, a query, a trailing slash, uppercase hex, ...) is
refused with 403 and never cached. The answer is

* **200** (empty) when the path is in a public log (anyone may read it), or the
  bearer token is a live session of a configured peer whose read list covers
  the log;
* **401** (with ``WWW-Authenticate: Bearer``) for a private log and no token, or
  one that is unknown, expired, or of a peer no longer configured; anonymous
  callers get 401 for any non-public log, held or not, so that they cannot
  learn which logs this node holds;
* **403** for a peer that may not read that log, for a log this node does not
  hold, and for a path that is not exactly a path of the exported layout.

nginx's ``auth_request`` lets a request through on any 2xx and passes 401 and
403 on; it turns anything else into 500, so this endpoint answers nothing else.

Every answer carries ``X-Hashfed-Scope: public`` or ``private`` (the proxy puts
it in ``Cache-Control``) and ``X-Accel-Expires``: how many seconds the proxy may
reuse the answer (nginx ``proxy_cache``): at most :data:`MAX_ANSWER_AGE`, and
never beyond the token's expiry, so a removed peer is refused within seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from aiohttp import web
from hashfed.node.http.auth import SESSION_STORE_KEY, AuthError
from hashfed.protocol.errors import MalformedTile
from hashfed.protocol.tiles import parse_content_path, parse_tile_path

CHECK_PATH = "/v1/auth/check"
"""Where a proxy asks whether a request may be served."""

MAX_ANSWER_AGE = 10
"""Seconds a proxy may reuse one answer (also bounded by the token's expiry)."""

ORIGINAL_URI = "X-Original-URI"

_LOG_PATH = re.compile(r"/log/([0-9a-f]{64})/([a-z0-9./]{1,200})")


def log_of_path(uri: str) -> str | None:
    """Returns the log hash of uri if it is exactly a path of the exported tree, else None.

    Accepts ``/log/<hash>/checkpoint``, ``/log/<hash>/<tile path>`` and
    ``/log/<hash>/<content path>`` in their canonical forms only, so no ``..``,
    ``.``, ``//``, ``%``, ``?`` or other spelling of a path can reach a file of
    another log.

    >>> log_of_path("/log/" + "a" * 64 + "/tile/0/000.p/3") == "a" * 64
    True
    >>> log_of_path("/log/" + "a" * 64 + "/../" + "b" * 64 + "/checkpoint") is None
    True
    """
    m = _LOG_PATH.fullmatch(uri)
    if m is None:
        return None
    rest = m.group(2)
    if rest != "checkpoint":
        try:
            if rest.startswith("content/"):
                parse_content_path(rest)
            else:
                parse_tile_path(rest)
        except MalformedTile:
            return None
    return m.group(1)


def _answer(status: int, scope: str, age: int, message: str = "") -> web.Response:
    # X-Accel-Expires alone tells nginx's proxy_cache how long to keep the answer.
    headers = {"X-Hashfed-Scope": scope, "X-Accel-Expires": str(max(0, age))}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hashfed"'
    return web.Response(status=status, text=message, headers=headers)


def make_check_handler(
    find_origin: Callable[[str], tuple[str, bool] | None],
    clock: Callable[[], float] = time.time,
) -> Callable[[web.Request], object]:
    """Returns the handler; find_origin maps an origin hash to (origin, public) or None."""

    async def check(request: web.Request) -> web.Response:
        log_hash = log_of_path(request.headers.get(ORIGINAL_URI, ""))
        if log_hash is None:
            # Never cached: the proxy keys answers on (token, log), and one odd path
            # must not decide for the log's real paths.
            return _answer(403, "private", 0, "not a path of the exported tree\n")
        found = find_origin(log_hash)
        if found is not None and found[1]:
            return _answer(200, "public", MAX_ANSWER_AGE)
        header = request.headers.get("Authorization")
        store = request.app[SESSION_STORE_KEY]
        try:
            peer, expires = store.authenticate_until(header)
        except AuthError as exc:
            return _answer(exc.status, "private", 0, exc.message + "\n")
        age = min(MAX_ANSWER_AGE, int(expires - clock()))
        if found is None:
            return _answer(403, "private", age, "this node does not hold that log\n")
        if not peer.may_read(found[0]):
            return _answer(403, "private", age, f"peer {peer.name!r} may not read this log\n")
        return _answer(200, "private", age)

    return check


def setup_auth_check(
    app: web.Application, find_origin: Callable[[str], tuple[str, bool] | None]
) -> None:
    """Adds ``GET /v1/auth/check`` to app (the auth middleware lets it through)."""
    app.router.add_get(CHECK_PATH, make_check_handler(find_origin))  # type: ignore[arg-type]
