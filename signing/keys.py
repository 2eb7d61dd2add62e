"""Ed25519 keys in C2SP signed-note form, and secret key files.

A key is named; the name is shown in every signature line, so it must be
non-empty valid UTF-8 with no Unicode space and no ``+``.  It is recommended to
be a schema-less URL such as ``example.com/log``.

A key is identified by its name and a 32-bit key hash::

    key hash = big-endian uint32 of SHA-256(name || 0x0A || type || public key)[:4]

where ``type`` is one signature type byte: ``0x01`` for plain Ed25519 note
signatures (this module) and ``0x04`` for timestamped Ed25519 cosignatures
(c2sp.org/tlog-cosignature, see :mod:`.cosignature`).

A verifier key (vkey) is the public half, as one line::

    <name>+<key hash, 8 lowercase hex digits>+<base64(type || 32-byte public key)>

A signer key (skey) is the secret half; it keeps the ``PRIVATE+KEY`` prefix so
it is never mistaken for a vkey::

    PRIVATE+KEY+<name>+<key hash hex>+<base64(type || 32-byte Ed25519 seed)>

Example (the test key of the Go reference, golang.org/x/mod/sumdb/note)::

    PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW
    PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz

Parsing is strict and canonical: the key hash must be exactly 8 lowercase hex
digits and match the key, the base64 must be canonical standard base64, and the
key material must be exactly 32 bytes.

Secret key files hold one skey.  :func:`write_key_file` creates them with mode
0600 and never overwrites; :func:`read_key_file` refuses a file that anyone but
its owner can read or write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
import struct
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import InsecureKeyFile, MalformedKey

ALG_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (C2SP signed-note)."""

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of Ed25519 cosignatures (C2SP tlog-cosignature v1)."""

ED25519_KEY_SIZE = 32
"""Length in bytes of an Ed25519 public key and of an Ed25519 seed."""

SKEY_PREFIX = "PRIVATE+KEY+"
"""Prefix every signer key (skey) string starts with."""

_HEX8 = re.compile(r"[0-9a-f]{8}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@runtime_checkable
class Signer(Protocol):
    """Something that signs note texts under a named key."""

    @property
    def name(self) -> str:
        """The key name written in signature lines."""
        ...

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash written before the signature bytes."""
        ...

    def sign(self, msg: bytes) -> bytes:
        """Sign returns the signature of msg (the note text), without the key hash."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Something that checks signatures made under a named key."""

    @property
    def name(self) -> str:
        """The key name expected in signature lines."""
        ...

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash expected before the signature bytes."""
        ...

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Verify reports whether sig (without the key hash) is a valid signature of msg."""
        ...


def check_key_name(name: str) -> None:
    """Check_key_name raises MalformedKey unless name is a valid signed-note key name.

    A key name is non-empty, valid UTF-8 (no lone surrogates), and contains no
    Unicode whitespace and no ``+``.  Control characters are refused too, since a
    signed note may not contain them.
    """
    if not name:
        raise MalformedKey("key name is empty")
    if "+" in name:
        raise MalformedKey(f"key name {name!r} contains '+'")
    if any(ch.isspace() for ch in name):
        raise MalformedKey(f"key name {name!r} contains a space character")
    if any(ch < " " for ch in name):
        raise MalformedKey(f"key name {name!r} contains a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedKey(f"key name {name!r} is not valid UTF-8") from e


def compute_key_hash(name: str, alg: int, public_key: bytes) -> int:
    """Compute_key_hash returns the signed-note key hash of a named public key.

    It is the big-endian uint32 of SHA-256(name || "\\n" || alg || public_key)[:4].
    """
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    hash_value: int = struct.unpack(">I", digest[:4])[0]
    return hash_value


def decode_base64(text: str) -> bytes:
    """Decode_base64 returns the bytes of canonical standard base64 text.

    It raises ValueError for any other text: characters outside the standard
    alphabet, wrong padding, or non-zero padding bits (which would let one value
    have several encodings).
    """
    if not _BASE64.fullmatch(text) or len(text) % 4 != 0:
        raise ValueError(f"not canonical standard base64: {text!r}")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not canonical standard base64: {text!r}") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"not canonical standard base64: {text!r}")
    return raw


def encode_base64(raw: bytes) -> str:
    """Encode_base64 returns raw as standard base64 text with padding."""
    return base64.b64encode(raw).decode("ascii")


def _public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def decode_vkey(vkey: str) -> tuple[str, int, int, bytes]:
    """Decode_vkey splits a verifier key into (name, key hash, type byte, key material).

    It checks the syntax and that the key hash matches the key, but not the
    type byte or the key material length: that is up to the caller.
    Errors raise MalformedKey naming the key.
    """
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise MalformedKey(
            f"verifier key {vkey!r} is not of the form <name>+<hash hex>+<base64 key>"
        )
    name, hash_hex, key64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(hash_hex):
        raise MalformedKey(
            f"verifier key for {name!r}: key hash {hash_hex!r} is not 8 lowercase hex digits"
        )
    try:
        key = decode_base64(key64)
    except ValueError as e:
        raise MalformedKey(f"verifier key for {name!r}: key is not canonical base64") from e
    if not key:
        raise MalformedKey(f"verifier key for {name!r}: key is empty")
    key_hash = int(hash_hex, 16)
    if compute_key_hash(name, key[0], key[1:]) != key_hash:
        raise MalformedKey(f"verifier key for {name!r}: key hash {hash_hex} does not match the key")
    return name, key_hash, key[0], key[1:]


def decode_skey(skey: str) -> tuple[str, int, int, bytes]:
    """Decode_skey splits a signer key into (name, key hash, type byte, seed).

    It checks the syntax only; the caller derives the public key and checks the
    key hash.  Messages never include the secret part.
    """
    if not skey.startswith(SKEY_PREFIX):
        raise MalformedKey(f"signer key does not start with {SKEY_PREFIX!r}")
    parts = skey[len(SKEY_PREFIX) :].split("+", 2)
    if len(parts) != 3:
        raise MalformedKey(
            "signer key is not of the form PRIVATE+KEY+<name>+<hash hex>+<base64 key>"
        )
    name, hash_hex, key64 = parts
    check_key_name(name)
    if not _HEX8.fullmatch(hash_hex):
        raise MalformedKey(
            f"signer key for {name!r}: key hash {hash_hex!r} is not 8 lowercase hex digits"
        )
    try:
        key = decode_base64(key64)
    except ValueError:
        # Do not chain: the underlying message would quote the secret.
        raise MalformedKey(f"signer key for {name!r}: key is not canonical base64") from None
    if not key:
        raise MalformedKey(f"signer key for {name!r}: key is empty")
    return name, int(hash_hex, 16), key[0], key[1:]


def ed25519_private_key(name: str, key_hash: int, alg: int, seed: bytes) -> Ed25519PrivateKey:
    """Ed25519_private_key returns the private key for a decoded skey of an Ed25519 type.

    It raises MalformedKey if the seed is not 32 bytes or the key hash does not
    match the public key derived from it under type byte alg.
    """
    if len(seed) != ED25519_KEY_SIZE:
        raise MalformedKey(
            f"signer key for {name!r}: Ed25519 seed is {len(seed)} bytes, want {ED25519_KEY_SIZE}"
        )
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    public = _public_bytes(private_key.public_key())
    if compute_key_hash(name, alg, public) != key_hash:
        raise MalformedKey(
            f"signer key for {name!r}: key hash {key_hash:08x} does not match the key"
        )
    return private_key


def ed25519_verify(public_key: Ed25519PublicKey, msg: bytes, sig: bytes) -> bool:
    """Ed25519_verify reports whether sig is a valid RFC 8032 signature of msg."""
    if len(sig) != 64:
        return False
    try:
        public_key.verify(sig, msg)
    except _CryptoInvalidSignature:
        return False
    return True


class Ed25519Signer:
    """Ed25519Signer signs note texts with a plain Ed25519 key (type 0x01).

    The private key is never shown by repr or str.
    """

    __slots__ = ("_key", "_key_hash", "_name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = private_key
        self._key_hash = compute_key_hash(
            name, ALG_ED25519, _public_bytes(private_key.public_key())
        )

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash."""
        return self._key_hash

    def sign(self, msg: bytes) -> bytes:
        """Sign returns the 64-byte Ed25519 signature of msg."""
        return self._key.sign(msg)

    def verifier(self) -> Ed25519Verifier:
        """Verifier returns the matching verifier."""
        return Ed25519Verifier(self._name, self._key.public_key())

    def vkey(self) -> str:
        """Vkey returns the verifier key string of this signer."""
        return self.verifier().vkey()

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self._name!r}, key_hash=0x{self._key_hash:08x})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("refusing to pickle a secret signing key")


class Ed25519Verifier:
    """Ed25519Verifier checks plain Ed25519 note signatures (type 0x01)."""

    __slots__ = ("_key", "_key_hash", "_name", "_public")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = public_key
        self._public = _public_bytes(public_key)
        self._key_hash = compute_key_hash(name, ALG_ED25519, self._public)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash."""
        return self._key_hash

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Verify reports whether sig is a valid Ed25519 signature of msg."""
        return ed25519_verify(self._key, msg, sig)

    def vkey(self) -> str:
        """Vkey returns the verifier key string ``name+hash+base64(0x01||pub)``."""
        key64 = encode_base64(bytes([ALG_ED25519]) + self._public)
        return f"{self._name}+{self._key_hash:08x}+{key64}"

    def __repr__(self) -> str:
        return f"Ed25519Verifier({self.vkey()!r})"


def generate_key(name: str, alg: int = ALG_ED25519) -> tuple[str, str]:
    """Generate_key returns a new random key pair as (skey, vkey) strings.

    alg is the signature type byte: ALG_ED25519 (0x01) for a log or publisher
    key, ALG_COSIGNATURE_V1 (0x04) for a witness cosigner key.
    """
    check_key_name(name)
    if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
        raise MalformedKey(f"cannot generate keys of signature type 0x{alg:02x}")
    seed = os.urandom(ED25519_KEY_SIZE)
    public = _public_bytes(Ed25519PrivateKey.from_private_bytes(seed).public_key())
    key_hash = compute_key_hash(name, alg, public)
    skey = f"{SKEY_PREFIX}{name}+{key_hash:08x}+{encode_base64(bytes([alg]) + seed)}"
    vkey = f"{name}+{key_hash:08x}+{encode_base64(bytes([alg]) + public)}"
    return skey, vkey


def parse_signer(skey: str) -> Ed25519Signer:
    """Parse_signer returns the Ed25519 signer for an skey of type 0x01.

    Cosigner skeys (type 0x04) are parsed by
    :func:`hashfed.signing.cosignature.parse_cosignature_signer`.
    """
    name, key_hash, alg, seed = decode_skey(skey)
    if alg != ALG_ED25519:
        hint = " (a cosigner key: use parse_cosignature_signer)" if alg == 0x04 else ""
        raise MalformedKey(
            f"signer key for {name!r} has signature type 0x{alg:02x}, want 0x01{hint}"
        )
    return Ed25519Signer(name, ed25519_private_key(name, key_hash, alg, seed))


def parse_verifier(vkey: str) -> Verifier:
    """Parse_verifier returns the verifier for a vkey string.

    It accepts signature type 0x01 (an :class:`Ed25519Verifier`) and 0x04 (a
    :class:`~hashfed.signing.cosignature.CosignatureVerifier`); any other type,
    or a malformed key, raises MalformedKey naming the key.
    """
    name, key_hash, alg, key = decode_vkey(vkey)
    if alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
        raise MalformedKey(
            f"verifier key for {name!r} has unsupported signature type 0x{alg:02x}"
            " (supported: 0x01 Ed25519, 0x04 cosignature/v1)"
        )
    if len(key) != ED25519_KEY_SIZE:
        raise MalformedKey(
            f"verifier key for {name!r}: Ed25519 key is {len(key)} bytes, want {ED25519_KEY_SIZE}"
        )
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key)
    except ValueError as e:
        raise MalformedKey(f"verifier key for {name!r}: not an Ed25519 public key") from e
    if alg == ALG_COSIGNATURE_V1:
        # Imported here: cosignature.py builds on this module.
        from .cosignature import CosignatureVerifier

        verifier: Verifier = CosignatureVerifier(name, public_key)
    else:
        verifier = Ed25519Verifier(name, public_key)
    if verifier.key_hash != key_hash:
        raise AssertionError("bad math: key hash changed between decode and construction")
    return verifier


def write_key_file(path: str | os.PathLike[str], text: str) -> None:
    """Write_key_file creates a new file at path holding text, readable only by its owner.

    The file is created with O_CREAT|O_EXCL and mode 0600, so an existing file
    is never overwritten (FileExistsError) and the secret is never briefly
    readable by others.  A trailing newline is added if text lacks one.
    """
    data = text if text.endswith("\n") else text + "\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as e:
        raise FileExistsError(
            e.errno,
            f"refusing to overwrite existing key file {os.fspath(path)}; "
            "move it away first if you really mean to replace it",
        ) from None
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits; never adds any
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if fd != -1:
            os.close(fd)
        os.unlink(path)
        raise


def read_key_file(path: str | os.PathLike[str]) -> str:
    """Read_key_file returns the key text in a key file, without surrounding whitespace.

    It raises InsecureKeyFile if the file grants any permission to its group or
    to others, saying which mode it has and how to fix it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if mode & 0o077:
            raise InsecureKeyFile(
                f"key file {os.fspath(path)} has mode {mode:04o}, so users other than its "
                f"owner can access it; fix with: chmod 600 {os.fspath(path)}"
            )
        return f.read().strip()
