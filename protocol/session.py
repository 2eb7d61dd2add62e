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

Parsing is strict and canonical: :func:`parse_session_request` accepts exactly
the texts :meth:`SessionRequest.text` produces.  This module does no I/O.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hashfed.signing.keys import Signer, check_key_name, decode_base64, encode_base64
from hashfed.signing.note import sign_note

from .errors import MalformedSessionRequest

SESSION_HEADER = "hashfed-session/v1"
"""The first line of every session request."""

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
