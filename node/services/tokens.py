"""Stateless session tokens (hashfed-token/v1, specs/peer-auth.md): any replica verifies them.

A token is 65 bytes, written in unpadded base64url (87 characters)::

    version   1 byte   0x01
    expires   8 bytes  big-endian Unix seconds
    key id    8 bytes  the first 8 bytes of SHA-256(the peer's verifier key string)
    nonce    16 bytes  random (two tokens are never equal)
    mac      32 bytes  HMAC-SHA256(secret, "hashfed-token/v1\\n" + audience + "\\n" + head)

where head is the 33 bytes above it.

The secret is the node's session secret, ``keys/session.key`` (32 random bytes,
mode 0600), shared by every ``hashfed serve`` process of the node (its writer
and its read replicas); the audience is the node's origin, so a token minted
for one node is worthless at another even if they shared a secret. Verifying
costs one HMAC: no signature check, no shared memory, no database write. The
key id binds a token to the peer's key: a peer removed or re-keyed loses every
token at once, because the verifier looks the key id up among the peers
configured *now*.

    >>> secret = bytes(32)
    >>> token = mint_token(secret, "node.example", "a.example/hashfed+12345678+AAAA", 1700000600)
    >>> len(token)
    87
    >>> check_token(secret, "node.example", token, now=1700000000)
    TokenClaims(key_id=b'...', expires=1700000600)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hashfed.node.errors import NodeError

SESSION_SECRET_FILE = Path("keys") / "session.key"
"""The node's session secret, relative to the node directory (beside the other keys)."""

VERSION = 1
SECRET_SIZE = 32
TOKEN_CHARS = 87
_DOMAIN = b"hashfed-token/v1\n"
_HEAD = struct.Struct(">BQ8s16s")  # version, expires, key id, nonce: 33 bytes
_MAC_SIZE = 32


class InvalidToken(NodeError):
    """A bearer token is malformed, forged, for another node, or expired."""


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: whose key it was issued to, and until when."""

    key_id: bytes
    expires: int

    def __repr__(self) -> str:
        return f"TokenClaims(key_id=b'...', expires={self.expires})"


def key_id(vkey: str) -> bytes:
    """Returns the 8-byte key id of a peer's verifier key string."""
    return hashlib.sha256(vkey.encode()).digest()[:8]


def _mac(secret: bytes, audience: str, head: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + audience.encode() + b"\n" + head, hashlib.sha256).digest()


def mint_token(secret: bytes, audience: str, vkey: str, expires: int) -> str:
    """Returns a new token for the peer with verifier key vkey, valid until expires."""
    head = _HEAD.pack(VERSION, expires, key_id(vkey), secrets.token_bytes(16))
    raw = head + _mac(secret, audience, head)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_token(secret: bytes, audience: str, token: str, now: int) -> TokenClaims:
    """Returns the claims of token, raising InvalidToken unless it is well formed,
    carries this node's MAC for audience, and has not expired at now."""
    if len(token) != TOKEN_CHARS:
        raise InvalidToken("unknown or expired session token")
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        raise InvalidToken("unknown or expired session token") from None
    head, mac = raw[: _HEAD.size], raw[_HEAD.size :]
    if len(mac) != _MAC_SIZE or not hmac.compare_digest(mac, _mac(secret, audience, head)):
        raise InvalidToken("unknown or expired session token")
    version, expires, kid, _nonce = _HEAD.unpack(head)
    if version != VERSION or expires <= now:
        raise InvalidToken("unknown or expired session token")
    return TokenClaims(kid, expires)


def load_session_secret(path: Path) -> bytes:
    """Returns the session secret at path, creating it (0600, 32 random bytes) if absent.

    Every serve process of one node must read the same file; copy it (like the
    other keys) to replicas on other hosts.
    """
    if not path.exists():
        # Write it whole under a temporary name, then link it into place: a
        # concurrent process sees no file or the whole file, and one of two racing
        # creators wins.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".session-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(SECRET_SIZE))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    secret = path.read_bytes()
    if len(secret) != SECRET_SIZE:
        raise NodeError(f"{path} must hold exactly {SECRET_SIZE} bytes; delete it to make anew")
    return secret
