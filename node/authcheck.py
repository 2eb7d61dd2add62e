"""``GET /v1/auth/check``: the authorisation answer for a web server in front of a static tree.

nginx (``auth_request``) or any proxy that serves the exported tree
(node/export.py) asks this endpoint, for every request it serves, whether the
request may read the log it names. The proxy forwards the client's
``Authorization`` header and the original path in ``X-Original-URI``; the answer
is

* **200** (empty) when the path is in a public log (anyone may read it), or the
  bearer token is a live session of a configured peer whose read list covers
  the log, or that names a log this node does not hold (the tree has no such
  files, so the web server answers 404, as ``hashfed serve`` does);
* **401** (with ``WWW-Authenticate: Bearer``) for a private log and no token, or
  one that is unknown, expired, or of a peer no longer configured; anonymous
  callers get 401 for any private path, held or not, as from ``hashfed serve``;
* **403** for a peer that may not read that log, and for a path that is not
  under a log prefix.

nginx's ``auth_request`` lets a request through on any 2xx and passes 401 and
403 on; it turns anything else into 500, so this endpoint answers nothing else.

Every answer carries ``X-Hashfed-Scope: public`` or ``private`` (the proxy puts
it in ``Cache-Control``) and ``X-Accel-Expires``: how many seconds the proxy may
reuse the answer (nginx ``proxy_cache``): at most :data:`MAX_ANSWER_AGE`, and
never beyond the token's expiry, so a removed peer is refused within seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from hashfed.node.auth import SESSION_STORE_KEY, AuthError

CHECK_PATH = "/v1/auth/check"
"""Where a proxy asks whether a request may be served."""

MAX_ANSWER_AGE = 10
"""Seconds a proxy may reuse one answer (also bounded by the token's expiry)."""

ORIGINAL_URI = "X-Original-URI"


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
        uri = request.headers.get(ORIGINAL_URI, "")
        parts = uri.split("?", 1)[0].split("/", 3)
        if len(parts) < 4 or parts[0] != "" or parts[1] != "log" or len(parts[2]) != 64:
            return _answer(403, "private", MAX_ANSWER_AGE, "not a log path\n")
        found = find_origin(parts[2])
        if found is not None and found[1]:
            return _answer(200, "public", MAX_ANSWER_AGE)
        header = request.headers.get("Authorization")
        store = request.app[SESSION_STORE_KEY]
        try:
            peer, expires = store.authenticate_until(header)
        except AuthError as exc:
            return _answer(exc.status, "private", 0, exc.message + "\n")
        age = min(MAX_ANSWER_AGE, int(expires - clock()))
        if found is not None and not peer.may_read(found[0]):
            return _answer(403, "private", age, f"peer {peer.name!r} may not read this log\n")
        return _answer(200, "private", age)

    return check


def setup_auth_check(
    app: web.Application, find_origin: Callable[[str], tuple[str, bool] | None]
) -> None:
    """Adds ``GET /v1/auth/check`` to app (the auth middleware lets it through)."""
    app.router.add_get(CHECK_PATH, make_check_handler(find_origin))  # type: ignore[arg-type]
