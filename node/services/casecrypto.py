"""Case numbers and PINs: how they are made, written, read back and stored (specs/case-api.md).

    case number   16 random bytes, shown as HF-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XX
                  (Crockford base32, 26 symbols). Stored only as
                  SHA-256("hashfed/case/v1\\n" || the 16 bytes): a 128-bit
                  secret needs no slow hash, and a database thief cannot list
                  the numbers.
    PIN           chosen by the person (at least 8 characters, not trivial) or
                  generated (10 digits). Stored only as a scrypt hash
                  (N=2^15, r=8, p=1, 16-byte salt), compared in constant time,
                  never logged, and not recoverable.

This module does no I/O and keeps no state; the desk (casedesk.py) decides
when to call it, and node/store/cases.py keeps what it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets

from hashfed.node.errors import NodeError

NUMBER_BYTES = 16
NUMBER_SYMBOLS = 26  # ceil(128 / 5)
NUMBER_PREFIX = "HF"
NUMBER_DOMAIN = b"hashfed/case/v1\n"

PIN_MIN_LENGTH = 8
PIN_MAX_LENGTH = 64
GENERATED_PIN_DIGITS = 10

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_SIZE = 16
SCRYPT_KEY_SIZE = 32
SCRYPT_MAXMEM = 2 * 128 * SCRYPT_R * SCRYPT_N  # twice what N and r need (32 MiB)

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"O": 0, "I": 1, "L": 1}

# A few of the PINs people choose most often that pass the other rules.
COMMON_PINS = frozenset(
    {
        "password",
        "password1",
        "passw0rd",
        "12341234",
        "11223344",
        "12344321",
        "11112222",
        "00001111",
        "12121212",
        "123123123",
        "abcd1234",
        "1234abcd",
        "abc12345",
        "qwertyui",
        "qwerty123",
        "iloveyou",
        "letmein1",
        "sunshine",
        "princess",
        "football",
        "baseball",
        "welcome1",
        "19841984",
        "20002000",
    }
)


class CaseError(NodeError):
    """A case request is refused; the message says why (and never holds a PIN or number)."""


class InvalidCase(CaseError):
    """The request is malformed: bad hashes, too many, duplicates, a weak PIN, a bad number."""


# -- case numbers ---------------------------------------------------------------------


def new_case_number() -> bytes:
    """Returns a fresh random case number (16 bytes from the system's CSPRNG)."""
    return secrets.token_bytes(NUMBER_BYTES)


def format_case_number(raw: bytes) -> str:
    """Returns the human form of a 16-byte case number: HF- then 26 symbols in groups of 4.

    >>> format_case_number(bytes(16))
    'HF-0000-0000-0000-0000-0000-0000-00'
    """
    if len(raw) != NUMBER_BYTES:
        raise AssertionError("a case number is 16 bytes")
    n = int.from_bytes(raw, "big")
    symbols = "".join(_ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(NUMBER_SYMBOLS)))
    return NUMBER_PREFIX + "-" + "-".join(symbols[i : i + 4] for i in range(0, NUMBER_SYMBOLS, 4))


def parse_case_number(text: str) -> bytes:
    """Returns the 16 bytes of a case number, or raises InvalidCase.

    Case, spaces and hyphens do not matter, and O, I and L read as 0, 1 and 1
    (Crockford base32), so a number copied by hand still parses.
    """
    s = "".join(text.split()).replace("-", "").upper() if isinstance(text, str) else ""
    if s.startswith(NUMBER_PREFIX):
        s = s[len(NUMBER_PREFIX) :]
    if len(s) != NUMBER_SYMBOLS or any(c not in _DECODE for c in s) or _DECODE[s[0]] > 7:
        raise InvalidCase(
            "that is not a case number: case numbers look like HF-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XX"
        )
    n = 0
    for c in s:
        n = n << 5 | _DECODE[c]
    return n.to_bytes(NUMBER_BYTES, "big")


def number_digest(raw: bytes) -> bytes:
    """Returns what the database keeps of a case number: a domain-separated SHA-256."""
    return hashlib.sha256(NUMBER_DOMAIN + raw).digest()


# -- PINs -----------------------------------------------------------------------------


def check_pin(pin: object) -> str:
    """Returns pin if it is strong enough to protect a case, else raises InvalidCase."""
    if not isinstance(pin, str):
        raise InvalidCase("the PIN must be a string")
    if len(pin) < PIN_MIN_LENGTH:
        raise InvalidCase(f"choose a PIN of at least {PIN_MIN_LENGTH} characters")
    if len(pin) > PIN_MAX_LENGTH:
        raise InvalidCase(f"choose a PIN of at most {PIN_MAX_LENGTH} characters")
    if pin != pin.strip() or any(not c.isprintable() for c in pin):
        raise InvalidCase("the PIN may not start or end with a space or hold control characters")
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(pin)}
    if len(steps) == 1 and abs(next(iter(steps))) <= 1:
        raise InvalidCase("the PIN is too easy to guess (one character, or a run like 12345678)")
    if any(pin == (pin[:k] * len(pin))[: len(pin)] for k in (2, 3, 4)):
        raise InvalidCase("the PIN is too easy to guess (a short pattern repeated)")
    if pin.casefold() in COMMON_PINS:
        raise InvalidCase("the PIN is one of the most common ones; choose another")
    return pin


def generate_pin() -> str:
    """Returns a random PIN of 10 digits that passes check_pin."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(GENERATED_PIN_DIGITS))
        try:
            return check_pin(pin)
        except InvalidCase:
            continue


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """Returns the stored form of a PIN: ``scrypt$N$r$p$<salt hex>$<key hex>``."""
    salt = secrets.token_bytes(SCRYPT_SALT_SIZE) if salt is None else salt
    key = hashlib.scrypt(
        pin.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=SCRYPT_KEY_SIZE,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Reports whether pin is the PIN whose stored form is stored (constant-time compare)."""
    name, n, r, p, salt, key = stored.split("$")
    if name != "scrypt":
        raise AssertionError("unknown PIN hash scheme in the database")
    got = hashlib.scrypt(
        pin.encode("utf-8", "surrogatepass"),
        salt=bytes.fromhex(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=2 * 128 * int(r) * int(n),
        dklen=len(key) // 2,
    )
    return hmac.compare_digest(got, bytes.fromhex(key))
