"""Client-side peer authentication: session tokens from the nodes this node syncs from.

A :class:`SessionClient` holds this node's peer-authentication signer and the
serving node's key name (the audience). On first use of a base URL it POSTs a
signed session request (:mod:`hashfed.protocol.session`) to
``<base URL>/v1/auth/session`` and keeps the bearer token it gets back **for
that base URL only**: a token is never sent to a URL that did not itself open
(and, with a server key, prove) the session. It opens a new session a minute
before the token expires, or at once after :meth:`SessionClient.invalidate`,
which a fetcher calls when the server answers 401 (the server may have
restarted and forgotten its sessions). See specs/peer-auth.md, "Clients".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable

import aiohttp
from hashfed.protocol.errors import MalformedSessionRequest
from hashfed.protocol.session import (
    NONCE_SIZE,
    parse_session_reply,
    sign_session_request,
    token_hash,
)
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import Signer, Verifier
from hashfed.signing.note import VerifierList, open_note
from hashfed.sync.errors import SyncError

SESSION_PATH = "/v1/auth/session"
"""Where session requests are POSTed, relative to a peer's base URL."""

RENEW_BEFORE = 60
"""Seconds before a token's expiry at which a new session is opened."""

MAX_RESPONSE = 4096
"""Largest session response read, in bytes."""

_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def _key(base_url: str) -> str:
    """Returns the form of base_url under which its token is kept."""
    return base_url.rstrip("/")


def system_clock() -> int:
    """Returns whole seconds since the Unix epoch, UTC."""
    return int(time.time())


class SessionRefused(SyncError):
    """The peer refused to open a session (or answered nonsense); status is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SessionClient:
    """SessionClient gets and renews session tokens for one peer, one per base URL.

    signer is this node's peer-authentication signer, audience the peer's
    key name (its origin), clock returns Unix seconds. With server_key (the
    peer key configured for the server), the server's signed session reply is
    required and checked: a server that cannot sign with that key gets no
    requests. Tokens are kept per base URL: each URL (the node's own, each
    ``--mirror``) does its own session handshake, and a token obtained at one
    URL is never sent to another, so a mirror that only serves files never
    sees a credential valid at the publisher. One instance serves concurrent
    callers: they share one session request per base URL.
    """

    def __init__(
        self,
        signer: Signer,
        audience: str,
        clock: Callable[[], int] = system_clock,
        server_key: Verifier | None = None,
    ) -> None:
        self._signer = signer
        self.audience = audience
        self._server_key = server_key
        self._clock = clock
        self._tokens: dict[str, tuple[str, int]] = {}  # base URL -> (token, expires)
        self._locks: dict[str, asyncio.Lock] = {}

    def invalidate(self, base_url: str | None = None) -> None:
        """Forgets base_url's token (every token if None): its next use opens a new session."""
        if base_url is None:
            self._tokens.clear()
        else:
            self._tokens.pop(_key(base_url), None)

    async def authorization(self, session: aiohttp.ClientSession, base_url: str) -> str:
        """Returns the Authorization header value ``Bearer <token>`` for requests to base_url.

        Raises SessionRefused if the peer refuses the session request, and
        aiohttp.ClientError for transport failures.
        """
        key = _key(base_url)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._tokens.get(key)
            if held is None or self._clock() >= held[1] - RENEW_BEFORE:
                held = self._tokens[key] = await self._open(session, key)
            return "Bearer " + held[0]

    async def _open(self, session: aiohttp.ClientSession, base_url: str) -> tuple[str, int]:
        nonce = os.urandom(NONCE_SIZE)
        body = sign_session_request(self.audience, self._clock(), self._signer, nonce)
        url = base_url.rstrip("/") + SESSION_PATH
        async with session.post(
            url, data=body.encode("utf-8"), headers={"Content-Type": "text/plain; charset=utf-8"}
        ) as resp:
            data = await resp.content.read(MAX_RESPONSE + 1)
            status = resp.status
        if len(data) > MAX_RESPONSE:
            raise SessionRefused(status, f"{url}: session response is larger than {MAX_RESPONSE}")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = None
        if status != 200:
            reason = doc.get("error") if isinstance(doc, dict) else None
            text = str(reason)[:200] if reason else f"HTTP {status}"
            raise SessionRefused(status, f"{url} refused the session: {text}")
        if not isinstance(doc, dict):
            raise SessionRefused(status, f"{url}: session response is not a JSON object")
        token, expires = doc.get("token"), doc.get("expires")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token) or type(expires) is not int:
            raise SessionRefused(status, f"{url}: session response lacks a valid token or expiry")
        if self._server_key is not None:
            self._check_reply(url, status, doc.get("reply"), nonce, token, expires)
        return token, expires

    def _check_reply(
        self, url: str, status: int, reply: object, nonce: bytes, token: str, expires: int
    ) -> None:
        """Raises SessionRefused unless reply is the server's signed reply to this request."""
        key = self._server_key
        assert key is not None
        why = None
        if not isinstance(reply, str):
            why = "its answer carries no signed session reply"
        else:
            try:
                parsed = parse_session_reply(open_note(reply, VerifierList(key)).text)
            except (SigningError, MalformedSessionRequest) as exc:
                why = f"its session reply does not verify ({exc})"
            else:
                if (parsed.client, parsed.nonce, parsed.token_hash, parsed.expires) != (
                    self._signer.name,
                    nonce,
                    token_hash(token),
                    expires,
                ):
                    why = "its session reply is for another request"
        if why is not None:
            raise SessionRefused(
                status,
                f"{url} did not prove that it holds the peer key configured for it ({key.name}): "
                f"{why}; check the key given to 'hashfed peers add' (a peer key, "
                "'peer' in the other node's 'hashfed keys show')",
            )
