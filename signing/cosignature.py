"""Timestamped Ed25519 witness cosignatures (C2SP tlog-cosignature, v1).

A cosignature is an ordinary signed-note signature line added to a checkpoint
by a witness (cosigner).  Its key uses signature type byte ``0x04``::

    key hash = SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key)[:4]
    vkey     = <name>+<key hash hex>+base64(0x04 || public key)

The signed message is two header lines followed by the whole checkpoint note
text (the body, with its final newline, without any signature lines)::

    cosignature/v1
    time <POSIX seconds, ASCII decimal, no leading zeros>
    <checkpoint body>

The signature line carries 4 + 8 + 64 bytes::

    — <name> base64(key hash (4) || timestamp uint64 big-endian (8) || Ed25519 sig (64))

The timestamp must not exceed 2^63 - 1.  Semantically the cosigner states that,
as of that time, this is the largest consistent tree it has seen for the log.

Worked example (witness ``witness.example/w1`` with seed bytes 00 01 .. 1f,
time 1700000000) cosigning checkpoint size 1 of the tessera test log::

    example.com/log/testdata
    1
    0Nc2CrefWKseHj/mStd+LqC8B+NrX0btIiPt2SmN+ek=

    — example.com/log/testdata M9e0lhr9kuLxGdAtaUrhm84TQffVsLdcy808sN0a3WyniNlfcr9+bywoiIke1YYciCNjJGkCgIlQ8b16jhsmg/SChAM=
    — witness.example/w1 519lMgAAAABlU/EAl+NF60N8XDS/3bxQs9CO6u9HEri/OBAVQ2jR/hXVPR4bhJCnF3FbF9DE7aRE729jxot4QvYsSDE1qA3BN8OeDg==

with vkey ``witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4``.
"""  # noqa: E501

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import MalformedKey, MalformedNote
from .keys import (
    ALG_COSIGNATURE_V1,
    ED25519_KEY_SIZE,
    check_key_name,
    compute_key_hash,
    decode_base64,
    decode_skey,
    ed25519_private_key,
    ed25519_verify,
    encode_base64,
)
from .note import Signature

COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
"""First line of every v1 cosigned message."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest timestamp a v1 cosignature may carry."""

TIMESTAMPED_SIGNATURE_SIZE = 8 + 64
"""Length of a v1 ``timestamped_signature``: uint64 timestamp then Ed25519 signature."""


def _system_clock() -> int:
    return int(time.time())


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """Cosigned_message returns the bytes a v1 cosigner signs for body at timestamp."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return COSIGNATURE_V1_HEADER + b"time %d\n" % timestamp + body


def cosignature_timestamp(timestamped_signature: bytes) -> int:
    """Cosignature_timestamp returns the timestamp in a 72-byte v1 timestamped_signature.

    The argument is the signature bytes after the 4-byte key hash, as passed to
    :meth:`CosignatureVerifier.verify`.  Raises MalformedNote on a wrong length
    or a timestamp above 2^63 - 1.
    """
    if len(timestamped_signature) != TIMESTAMPED_SIGNATURE_SIZE:
        raise MalformedNote(
            f"cosignature is {len(timestamped_signature)} bytes after the key hash, "
            f"want {TIMESTAMPED_SIGNATURE_SIZE}"
        )
    timestamp: int = struct.unpack(">Q", timestamped_signature[:8])[0]
    if timestamp > MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature timestamp {timestamp} exceeds 2^63-1")
    return timestamp


class CosignatureSigner:
    """CosignatureSigner makes v1 cosignatures of checkpoint bodies.

    key is the 32-byte Ed25519 seed or an Ed25519PrivateKey.  clock returns the
    current POSIX time in seconds; it is called once per signature.  The private
    key is never shown by repr or str.
    """

    __slots__ = ("_clock", "_key", "_key_hash", "_name")

    def __init__(
        self,
        name: str,
        key: bytes | Ed25519PrivateKey,
        clock: Callable[[], int] = _system_clock,
    ) -> None:
        check_key_name(name)
        if isinstance(key, bytes):
            if len(key) != ED25519_KEY_SIZE:
                raise MalformedKey(
                    f"cosigner key for {name!r}: seed is {len(key)} bytes, want {ED25519_KEY_SIZE}"
                )
            key = Ed25519PrivateKey.from_private_bytes(key)
        self._name = name
        self._key = key
        self._clock = clock
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_hash = compute_key_hash(name, ALG_COSIGNATURE_V1, public)

    @property
    def name(self) -> str:
        """The cosigner (witness) name."""
        return self._name

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash (computed with type byte 0x04)."""
        return self._key_hash

    def sign(self, msg: bytes) -> bytes:
        """Sign returns timestamp (uint64 big-endian) || Ed25519 signature for body msg.

        msg is the checkpoint note text; the current clock time is the timestamp.
        """
        timestamp = self._clock()
        sig = self._key.sign(cosigned_message(msg, timestamp))
        return struct.pack(">Q", timestamp) + sig

    def verifier(self) -> CosignatureVerifier:
        """Verifier returns the matching verifier."""
        return CosignatureVerifier(self._name, self._key.public_key())

    def vkey(self) -> str:
        """Vkey returns the verifier key string of this cosigner."""
        return self.verifier().vkey()

    def __repr__(self) -> str:
        return f"CosignatureSigner(name={self._name!r}, key_hash=0x{self._key_hash:08x})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("refusing to pickle a secret signing key")


class CosignatureVerifier:
    """CosignatureVerifier checks v1 cosignatures and reads their timestamps."""

    __slots__ = ("_key", "_key_hash", "_name", "_public")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        check_key_name(name)
        self._name = name
        self._key = public_key
        self._public = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_hash = compute_key_hash(name, ALG_COSIGNATURE_V1, self._public)

    @property
    def name(self) -> str:
        """The cosigner (witness) name."""
        return self._name

    @property
    def key_hash(self) -> int:
        """The 32-bit key hash (computed with type byte 0x04)."""
        return self._key_hash

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Verify reports whether sig (timestamp || Ed25519 sig) cosigns body msg."""
        if len(sig) != TIMESTAMPED_SIGNATURE_SIZE:
            return False
        timestamp: int = struct.unpack(">Q", sig[:8])[0]
        if timestamp > MAX_TIMESTAMP:
            return False
        return ed25519_verify(self._key, cosigned_message(msg, timestamp), sig[8:])

    def timestamp_of(self, sig: Signature) -> int:
        """Timestamp_of returns the timestamp of a cosignature by this verifier.

        sig is a signature from :attr:`Note.sigs` (already verified by
        :func:`~hashfed.signing.note.open_note`).  Raises MalformedNote if sig
        is not by this key or is not a v1 cosignature.
        """
        if sig.name != self._name or sig.key_hash != self._key_hash:
            raise MalformedNote(
                f"signature by {sig.name}+{sig.key_hash:08x} is not by cosigner "
                f"{self._name}+{self._key_hash:08x}"
            )
        try:
            raw = decode_base64(sig.base64)
        except ValueError as e:
            raise MalformedNote(f"signature by {sig.name} is not canonical base64") from e
        return cosignature_timestamp(raw[4:])

    def vkey(self) -> str:
        """Vkey returns the verifier key string ``name+hash+base64(0x04||pub)``."""
        key64 = encode_base64(bytes([ALG_COSIGNATURE_V1]) + self._public)
        return f"{self._name}+{self._key_hash:08x}+{key64}"

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey()!r})"


def parse_cosignature_signer(
    skey: str, clock: Callable[[], int] = _system_clock
) -> CosignatureSigner:
    """Parse_cosignature_signer returns the cosigner for an skey of type 0x04.

    The skey form is ``PRIVATE+KEY+<name>+<hash hex>+base64(0x04 || 32-byte seed)``,
    as made by ``generate_key(name, ALG_COSIGNATURE_V1)``.
    """
    name, key_hash, alg, seed = decode_skey(skey)
    if alg != ALG_COSIGNATURE_V1:
        raise MalformedKey(
            f"signer key for {name!r} has signature type 0x{alg:02x}, want 0x04 (cosignature/v1)"
        )
    return CosignatureSigner(name, ed25519_private_key(name, key_hash, alg, seed), clock)
