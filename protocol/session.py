"""Peer-authentication session requests (hashfed-session/v1).

A node that wants to read another node's private logs first asks it for a
short-lived session token.  It does so by POSTing a signed note (C2SP
signed-note v1, see :mod:`hashfed.signing.note`) to ``/v1/auth/session``,
signed with its *peer-authentication* key, whose text is exactly four lines::

    hashfed-session/v1       the format and version
    <audience>               the serving node's peer-key name (its origin)
    <unix time>              ASCII decimal seconds, no sign, no leading zeros
    <nonce>                  standard base64 (with padding) of 16 random bytes

Worked example (a request to ``stopncii.example/bank`` signed by the peer key
of ``partner-a.example/hashfed``)::

    hashfed-session/v1
    stopncii.example/bank
    1700000000
    AAECAwQFBgcICQoLDA0ODw==

    — partner-a.example/hashfed <base64 of key hash and Ed25519 signature>

The audience binds the request to one server, so a server cannot replay a
request it received against another node; the time and the nonce let the
server refuse stale and replayed requests (see specs/peer-auth.md).

The server proves who it is in return: its answer carries a **session reply**,
a signed note by the server's own peer key whose text is exactly five lines::

    hashfed-session-reply/v1  the format and version
    <client>                  the key name that signed the request
    <nonce>                   the request's nonce, as in the request
    <token hash>              standard base64 of SHA-256 of the token
    <expires>                 the token's expiry, ASCII decimal Unix seconds

The client checks it against the peer key it was configured with, so a client
given the wrong key for a server (its log key, say) fails at once and says so,
and a server that does not hold the key cannot hand out tokens in its name.

Peer keys are named ``peer:<origin>`` (:func:`peer_key_name`), log keys
``<origin>``: the two kinds of public key cannot be mistaken for each other.

Parsing is strict and canonical: :func:`parse_session_request` accepts exactly
the texts :meth:`SessionRequest.text` produces, :func:`parse_session_reply`
those of :meth:`SessionReply.text`.  This module does no I/O.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from hashfed.signing.keys import Signer, check_key_name, decode_base64, encode_base64
from hashfed.signing.note import sign_note

from .errors import MalformedSessionRequest

SESSION_HEADER = "hashfed-session/v1"
"""The first line of every session request."""

REPLY_HEADER = "hashfed-session-reply/v1"
"""The first line of every session reply."""

PEER_KEY_PREFIX = "peer:"
"""What every peer-authentication key's name starts with; a log key's name is its origin."""


def peer_key_name(origin: str) -> str:
    """Returns the name of the peer-authentication key of the node whose origin is origin."""
    return PEER_KEY_PREFIX + origin


def is_peer_key_name(name: str) -> bool:
    """Reports whether name is a peer-authentication key's name (``peer:<origin>``)."""
    return name.startswith(PEER_KEY_PREFIX) and len(name) > len(PEER_KEY_PREFIX)


NONCE_SIZE = 16
"""Length in bytes of a session request's random nonce."""

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class SessionRequest:
    """SessionRequest is the text of a session request: who it is for, when, and a nonce."""

    audience: str
    time: int
    nonce: bytes

    def text(self) -> str:
        """Text returns the note text of the request, ending in a newline."""
        check_key_name(self.audience)
        if len(self.nonce) != NONCE_SIZE or self.time < 0:
            raise AssertionError("bad session request: nonce must be 16 bytes, time >= 0")
        return f"{SESSION_HEADER}\n{self.audience}\n{self.time}\n{encode_base64(self.nonce)}\n"


def parse_session_request(text: str) -> SessionRequest:
    """Parse_session_request returns the request in a note text, or raises MalformedSessionRequest.

    It accepts only the canonical form written by :meth:`SessionRequest.text`.
    """
    lines = text.split("\n")
    if len(lines) != 5 or lines[4] != "":
        raise MalformedSessionRequest("a session request is exactly four lines")
    header, audience, time_text, nonce_text, _ = lines
    if header != SESSION_HEADER:
        raise MalformedSessionRequest(f"a session request starts with {SESSION_HEADER!r}")
    try:
        check_key_name(audience)
    except ValueError:
        raise MalformedSessionRequest("the session request's audience is not a key name") from None
    if not _DECIMAL.fullmatch(time_text):
        raise MalformedSessionRequest("the session request's time is not a canonical decimal")
    try:
        nonce = decode_base64(nonce_text)
    except ValueError:
        raise MalformedSessionRequest("the session request's nonce is not base64") from None
    if len(nonce) != NONCE_SIZE:
        raise MalformedSessionRequest(f"the session request's nonce is not {NONCE_SIZE} bytes")
    return SessionRequest(audience, int(time_text), nonce)


def sign_session_request(
    audience: str, now: int, signer: Signer, nonce: bytes | None = None
) -> str:
    """Sign_session_request returns a signed session request for audience at time now.

    nonce defaults to 16 fresh random bytes; pass one only in tests.
    """
    request = SessionRequest(audience, now, os.urandom(NONCE_SIZE) if nonce is None else nonce)
    return sign_note(request.text(), signer)


@dataclass(frozen=True)
class SessionReply:
    """SessionReply is what the server signs when it opens a session: for whom, which
    request, which token (by its hash) and until when."""

    client: str
    nonce: bytes
    token_hash: bytes
    expires: int

    def text(self) -> str:
        """Text returns the note text of the reply, ending in a newline."""
        check_key_name(self.client)
        if len(self.nonce) != NONCE_SIZE or len(self.token_hash) != 32 or self.expires < 0:
            raise AssertionError("bad session reply: nonce 16 bytes, hash 32 bytes, expires >= 0")
        lines = [
            REPLY_HEADER,
            self.client,
            encode_base64(self.nonce),
            encode_base64(self.token_hash),
            str(self.expires),
        ]
        return "".join(line + "\n" for line in lines)


def token_hash(token: str) -> bytes:
    """Returns SHA-256 of a session token, as a session reply names it."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def sign_session_reply(client: str, nonce: bytes, token: str, expires: int, signer: Signer) -> str:
    """Sign_session_reply returns the server's signed reply to client's request with nonce."""
    return sign_note(SessionReply(client, nonce, token_hash(token), expires).text(), signer)


def parse_session_reply(text: str) -> SessionReply:
    """Parse_session_reply returns the reply in a note text, or raises MalformedSessionRequest."""
    lines = text.split("\n")
    if len(lines) != 6 or lines[5] != "" or lines[0] != REPLY_HEADER:
        raise MalformedSessionRequest(f"a session reply is exactly five lines from {REPLY_HEADER}")
    _, client, nonce_text, hash_text, expires_text, _ = lines
    try:
        check_key_name(client)
        nonce, digest = decode_base64(nonce_text), decode_base64(hash_text)
    except ValueError:
        raise MalformedSessionRequest("the session reply is not canonical") from None
    if len(nonce) != NONCE_SIZE or len(digest) != 32 or not _DECIMAL.fullmatch(expires_text):
        raise MalformedSessionRequest("the session reply is not canonical")
    return SessionReply(client, nonce, digest, int(expires_text))
