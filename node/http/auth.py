"""Server-side peer authentication: session tokens for configured peers (specs/peer-auth.md).

A peer proves who it is once per session, by POSTing to ``/v1/auth/session`` a
session request (:mod:`hashfed.protocol.session`) signed with its
peer-authentication key. The :class:`SessionStore` checks the signature
against the configured peers' keys, that the request is addressed to this node,
fresh (within ``window`` seconds of the server's clock) and not replayed, and
hands back a bearer token valid for ``ttl`` seconds. Every other request
carries ``Authorization: Bearer <token>``, which costs one HMAC and one dict
lookup: no signature check per tile.

Tokens are stateless (hashfed-token/v1, :mod:`hashfed.node.services.tokens`): MACed with
the node's session secret and bound to its origin, so every ``serve`` process
of the node (the writer and its read replicas) verifies a token any of them
issued, with no shared memory. The peer is looked up by the token's key id
among the peers configured *now*, so removing or re-keying a peer ends its
tokens at once. Tokens and keys are never logged (the access log,
node/http/accesslog.py, records no request header).

The server wires it in with::

    store = SessionStore(node_origin, lambda: peers_by_name, clock)
    setup_auth(app, store, is_public=lambda path: ...)
    ...
    check_read(request, origin, public=origin in config.server.public_logs)

Only the replay cache of session-request nonces is in memory (per process);
a process without the secret file mints tokens only it accepts, and peers
simply open new sessions (the client renews on a 401).
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from hashfed.node.errors import NodeError
from hashfed.node.services.ownlog import Clock, system_clock
from hashfed.node.services.tokens import InvalidToken, check_token, key_id, mint_token
from hashfed.node.store.peers import Peer
from hashfed.protocol.errors import MalformedSessionRequest
from hashfed.protocol.session import parse_session_request, peer_key_name, sign_session_reply
from hashfed.signing.errors import (
    InvalidSignature,
    MalformedNote,
    SigningError,
    UnknownKey,
    UnverifiedNote,
)
from hashfed.signing.keys import Signer, Verifier
from hashfed.signing.note import open_note

SESSION_PATH = "/v1/auth/session"
"""Where peers POST session requests."""

HEALTH_PATHS = ("/healthz", "/readyz")
"""Liveness and readiness checks (node/http/readiness.py), served without authentication."""

# Paths that need no peer session: the case desk (people use it, with their PIN)
# the witness endpoint (a checkpoint's signature is its authentication), the proxy's
# authorisation check (node/http/authcheck.py, which checks the token itself) and the
# person's page (node/http/casepage.py).
OPEN_PREFIXES = ("/v1/cases", "/case", "/witness/add-checkpoint", "/v1/auth/check")
"""Paths served without a session: for people rather than peers (the case desk,
node/http/cases.py, and its page, node/http/casepage.py) or authenticated otherwise."""

MAX_SESSION_BODY = 8192
"""Largest session request body accepted, in bytes (a note with one signature is ~200)."""

DEFAULT_TTL = 600
"""Seconds a session token is valid."""

DEFAULT_WINDOW = 60
"""Seconds a session request's time may differ from the server's clock."""

MAX_NONCES = 100_000
"""Most nonces remembered at once; beyond it new sessions are refused (503) until some expire."""

MAX_TOKEN_LENGTH = 128
"""Longest bearer token looked up (ours are 43 characters)."""


class AuthError(NodeError):
    """A request is refused: status is 400, 401, 403, 413 or 503, message says why.

    The message never contains a token or a key.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        """Returns the JSON error response, with ``WWW-Authenticate: Bearer`` for a 401."""
        headers = {"Cache-Control": "no-store"}
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="hashfed"'
        return web.json_response({"error": self.message}, status=self.status, headers=headers)


class _PeerKeys:
    """The configured peers' verifiers, looked up by (key name, key hash) for open_note."""

    def __init__(self, peers: Mapping[str, Peer]) -> None:
        self.by_id: dict[tuple[str, int], tuple[Peer, Verifier]] = {}
        for peer in peers.values():
            try:
                verifier = peer.verifier()
            except SigningError:
                continue  # refused by peers.add_peer; never configured in practice
            self.by_id[(verifier.name, verifier.key_hash)] = (peer, verifier)

    def verifier(self, name: str, key_hash: int) -> Verifier:
        try:
            return self.by_id[(name, key_hash)][1]
        except KeyError:
            raise UnknownKey(name, key_hash) from None


class SessionStore:
    """SessionStore opens sessions for configured peers and authenticates their tokens.

    server_name is this node's origin: the audience every session request must
    name (its peer key's name, ``peer:<origin>``, is accepted too). peers
    returns the configured peers by name; it is called on every authenticated
    request, so it must be cheap (an in-memory dict the server refreshes), and a
    peer removed from it loses its sessions at once. clock returns Unix seconds.
    signer, the node's peer key, signs each session reply so that the client
    can check whom it is talking to.
    """

    def __init__(
        self,
        server_name: str,
        peers: Callable[[], Mapping[str, Peer]],
        clock: Clock = system_clock,
        ttl: int = DEFAULT_TTL,
        window: int = DEFAULT_WINDOW,
        secret: bytes | None = None,
        signer: Signer | None = None,
    ) -> None:
        if ttl <= 0 or window <= 0:
            raise ValueError("ttl and window must be positive")
        self.server_name = server_name
        self.signer = signer
        self._audiences = (server_name, peer_key_name(server_name))
        self._peers = peers
        self._clock = clock
        self.ttl = ttl
        self.window = window
        # Tokens are stateless (node/services/tokens.py): any process holding the secret
        # verifies them. Without one, this process's tokens are its own.
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._by_key: tuple[Mapping[str, Peer], dict[bytes, Peer]] | None = None
        self._nonces: dict[bytes, int] = {}  # nonce -> last second it could be accepted

    def open_session(self, body: bytes) -> tuple[str, int]:
        """Returns a new (token, expiry time) for the peer that signed the session request body.

        Raises AuthError: 400 for a body that is not a session request, 401 for
        an unknown key, a bad signature, another audience, a stale time or a
        replayed nonce, 503 when too many nonces are outstanding.
        """
        token, expires, _reply = self.open_signed_session(body)
        return token, expires

    def open_signed_session(self, body: bytes) -> tuple[str, int, str | None]:
        """Returns what :meth:`open_session` does, and the signed session reply
        (protocol/session.py), or None if the store has no signer."""
        keys = _PeerKeys(self._peers())
        try:
            note = open_note(body, keys)
        except UnverifiedNote:
            raise AuthError(401, "session request is not signed by a configured peer") from None
        except InvalidSignature:
            raise AuthError(401, "session request has an invalid signature") from None
        except (MalformedNote, SigningError) as exc:
            raise AuthError(400, f"session request is not a signed note: {exc}") from None
        signers = {keys.by_id[(s.name, s.key_hash)][0] for s in note.sigs}
        if len(signers) != 1:
            raise AuthError(401, "session request is signed by more than one peer")
        (peer,) = signers
        try:
            request = parse_session_request(note.text)
        except MalformedSessionRequest as exc:
            raise AuthError(400, str(exc)) from None
        if request.audience not in self._audiences:
            raise AuthError(
                401, f"session request is for {request.audience!r}, not {self.server_name!r}"
            )
        now = self._clock()
        if abs(request.time - now) > self.window:
            raise AuthError(
                401,
                f"session request is stale: its time is {request.time - now:+d} s from the "
                f"server's (at most ±{self.window} s; check the clocks)",
            )
        self._purge(now)
        if request.nonce in self._nonces:
            raise AuthError(401, "session request replayed: its nonce was already used")
        if len(self._nonces) >= MAX_NONCES:
            raise AuthError(503, "too many session requests; try again in a minute")
        self._nonces[request.nonce] = request.time + self.window
        expires = now + self.ttl
        token = mint_token(self._secret, self.server_name, peer.vkey, expires)
        if self.signer is None:
            return token, expires, None
        client = note.sigs[0].name
        return (
            token,
            expires,
            sign_session_reply(client, request.nonce, token, expires, self.signer),
        )

    def authenticate(self, authorization_header: str | None) -> Peer:
        """Returns the peer whose live session token the Authorization header carries.

        Raises AuthError(401) for a missing, malformed, forged or expired
        token, or one whose peer is no longer configured (or has a new key).
        """
        return self.authenticate_until(authorization_header)[0]

    def authenticate_until(self, authorization_header: str | None) -> tuple[Peer, int]:
        """Returns (peer, token expiry) for the Authorization header; see authenticate."""
        if authorization_header is None:
            raise AuthError(401, "authentication required: open a session at " + SESSION_PATH)
        scheme, _, token = authorization_header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(401, "the Authorization header must be 'Bearer <session token>'")
        try:
            claims = check_token(self._secret, self.server_name, token, self._clock())
        except InvalidToken as exc:
            raise AuthError(401, str(exc)) from None
        current = self._peers()
        peer = self._peer_by_key(current, claims.key_id, rebuild=False)
        if peer is None or current.get(peer.name) != peer:
            peer = self._peer_by_key(current, claims.key_id, rebuild=True)
        if peer is None or current.get(peer.name) != peer:
            raise AuthError(401, "the session's peer is no longer configured")
        return peer, claims.expires

    def _peer_by_key(self, current: Mapping[str, Peer], kid: bytes, rebuild: bool) -> Peer | None:
        """Looks a key id up among the peers, indexing them anew for a new mapping or
        when asked (the caller re-checks the answer against the current mapping)."""
        if rebuild or self._by_key is None or self._by_key[0] is not current:
            self._by_key = (current, {key_id(p.vkey): p for p in current.values()})
        return self._by_key[1].get(kid)

    def _purge(self, now: int) -> None:
        self._nonces = {n: t for n, t in self._nonces.items() if t >= now}


SESSION_STORE_KEY = web.AppKey("hashfed_session_store", SessionStore)
"""Where setup_auth keeps the SessionStore on the app."""

PUBLIC_PATH_KEY: web.AppKey[Callable[[str], bool]] = web.AppKey("hashfed_public_path")
"""Where setup_auth keeps the predicate telling public log paths."""

API_AUTH_KEY: web.AppKey[Callable[[web.Request], bool]] = web.AppKey("hashfed_api_auth")
"""Optional: reports whether a request carries a valid local API token for its path
(node/http/match.py sets it); such a request is let through without a peer session."""

PEER_KEY = web.RequestKey("hashfed_peer", Peer)
"""Where the middleware keeps the authenticated peer on a request (absent if anonymous)."""


def _never_public(path: str) -> bool:
    return False


def setup_auth(
    app: web.Application,
    store: SessionStore,
    *,
    is_public: Callable[[str], bool] = _never_public,
) -> None:
    """Adds the session route and the authenticating middleware to app.

    Every request needs a session token except ``POST /v1/auth/session``,
    ``/healthz``, ``/readyz`` and paths for which is_public(path) is true (the paths of
    logs in ``[server] public_logs``); on a public path a Bearer token is still
    checked if one is sent, so the handler knows the peer. The peer is stored
    on the request under :data:`PEER_KEY`; see :func:`request_peer`.
    """
    app[SESSION_STORE_KEY] = store
    app[PUBLIC_PATH_KEY] = is_public
    app.router.add_post(SESSION_PATH, _session_handler)
    app.middlewares.append(_auth_middleware)


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """Returns the request body, or None if it is longer than limit bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(limit + 1 - total):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _session_handler(request: web.Request) -> web.Response:
    body = await _read_bounded(request, MAX_SESSION_BODY)
    if body is None:
        return AuthError(413, f"session request is larger than {MAX_SESSION_BODY} bytes").response()
    try:
        token, expires, reply = request.app[SESSION_STORE_KEY].open_signed_session(body)
    except AuthError as exc:
        return exc.response()
    answer: dict[str, str | int] = {"token": token, "expires": expires}
    if reply is not None:
        answer["reply"] = reply
    return web.json_response(answer, headers={"Cache-Control": "no-store"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path in (SESSION_PATH, *HEALTH_PATHS) or any(
        path == p or path.startswith(p + "/") for p in OPEN_PREFIXES
    ):
        return await handler(request)
    header = request.headers.get("Authorization")
    if request.app[PUBLIC_PATH_KEY](path) and (
        header is None or not header.lower().startswith("bearer ")
    ):
        return await handler(request)
    api_auth = request.app.get(API_AUTH_KEY)
    if api_auth is not None and api_auth(request):
        return await handler(request)
    try:
        request[PEER_KEY] = request.app[SESSION_STORE_KEY].authenticate(header)
    except AuthError as exc:
        return exc.response()
    return await handler(request)


def bearer_matches(request: web.Request, expected: str | None) -> bool:
    """Reports whether request's Authorization header is ``Bearer <expected>``, compared
    in constant time (a local secret such as keys/api.token or keys/admin.token)."""
    header = request.headers.get("Authorization")
    if not expected or header is None:
        return False
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return False
    return hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected.encode())


def request_peer(request: web.Request) -> Peer | None:
    """Returns the authenticated peer of request, or None for an anonymous request."""
    return request.get(PEER_KEY)


def check_read(request: web.Request, origin: str, public: bool) -> None:
    """Raises a JSON HTTP error unless this request may read the log of origin.

    A public log is open to anyone. Otherwise an anonymous request gets 401
    and a peer whose read list lacks origin gets 403.
    """
    if public:
        return
    peer = request.get(PEER_KEY)
    if peer is None:
        raise _http_error(AuthError(401, "authentication required to read " + repr(origin)))
    if not peer.may_read(origin):
        raise _http_error(AuthError(403, f"peer {peer.name!r} may not read {origin!r}"))


def _http_error(exc: AuthError) -> web.HTTPException:
    headers = {"Cache-Control": "no-store"}
    cls: type[web.HTTPException] = web.HTTPForbidden
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hashfed"'
        cls = web.HTTPUnauthorized
    return cls(
        text=json.dumps({"error": exc.message}), content_type="application/json", headers=headers
    )
