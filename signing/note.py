"""Signed notes (C2SP signed-note v1): text signed by one or more named keys.

Wire format.  A signed note is UTF-8 text with no ASCII control character
other than newline (U+000A).  It is::

    <text, ending in "\\n">
    <blank line: "\\n">
    <one or more signature lines>

and every signature line is::

    U+2014 (em dash) U+0020 <key name> U+0020 base64(key hash (4 bytes, big-endian) || signature) "\\n"

The text may itself contain blank lines: it ends at the *last* blank line of
the note (signature lines are never empty, so this is unambiguous).  The text
includes its final newline but not the separating blank line.  Signatures are
made over the text bytes exactly.  Base64 is standard with padding (RFC 4648
section 4); this module accepts only its canonical form.

Worked example: the text of the Go reference tests, signed by its
``PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`` key::

    If you think cryptography is the answer to your problem,
    then you don't know what your problem is.

    — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=

The signature decodes to ``c7 4f 20 a3`` (the key hash) followed by the 64-byte
Ed25519 signature of the two text lines.

Verification (:func:`open_note`) follows golang.org/x/mod/sumdb/note.Open:

* a signature whose (name, key hash) matches no known verifier is recorded in
  :attr:`Note.unverified_sigs`, not treated as an error (this allows key
  rotation and witness cosignatures);
* a signature from a known key that does not verify rejects the whole note
  (:class:`~.errors.InvalidSignature`);
* a note without any verified signature is rejected
  (:class:`~.errors.UnverifiedNote`, which carries the parsed note);
* repeated signatures by one known key, and repeated identical unknown
  signature lines, are dropped after the first;
* a note with more than :data:`MAX_SIGNATURES` signature lines is malformed
  (the spec requires accepting at least 16).

The note text must be ignored unless :func:`open_note` succeeded with a
verifier the caller trusts.
"""  # noqa: E501

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .errors import (
    AmbiguousKey,
    InvalidSignature,
    MalformedKey,
    MalformedNote,
    SigningError,
    UnknownKey,
    UnverifiedNote,
)
from .keys import Signer, Verifier, check_key_name, decode_base64, encode_base64

SIGNATURE_PREFIX = "\u2014 "
"""What every signature line starts with: an em dash (U+2014) and a space."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry; a note with more is malformed."""

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


@dataclass(frozen=True)
class Signature:
    """Signature is one signature line of a note.

    base64 is the encoded key hash and signature bytes, exactly as on the line.
    """

    name: str
    key_hash: int
    base64: str

    def line(self) -> str:
        """Line returns the signature line, ``— <name> <base64>\\n``."""
        return f"{SIGNATURE_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True)
class Note:
    """Note is an opened signed note.

    sigs are the signatures that verified; unverified_sigs are those from keys
    the caller's verifiers do not know.
    """

    text: str
    sigs: list[Signature] = field(default_factory=list)
    unverified_sigs: list[Signature] = field(default_factory=list)


class Verifiers(Protocol):
    """Verifiers looks up the verifier for a signature line's key."""

    def verifier(self, name: str, key_hash: int) -> Verifier:
        """Verifier returns the verifier for (name, key_hash), or raises UnknownKey."""
        ...


class VerifierList:
    """VerifierList is a fixed set of verifiers, looked up by (name, key hash)."""

    def __init__(self, *verifiers: Verifier) -> None:
        self._by_id: dict[tuple[str, int], Verifier] = {}
        for v in verifiers:
            key = (v.name, v.key_hash)
            if key in self._by_id and self._by_id[key] is not v:
                raise AmbiguousKey(
                    f"two verifiers share key name {v.name!r} and key hash {v.key_hash:08x}"
                )
            self._by_id[key] = v

    def verifier(self, name: str, key_hash: int) -> Verifier:
        """Verifier returns the verifier for (name, key_hash), or raises UnknownKey."""
        try:
            return self._by_id[(name, key_hash)]
        except KeyError:
            raise UnknownKey(name, key_hash) from None

    def __iter__(self) -> Iterator[Verifier]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        keys = ", ".join(f"{n}+{h:08x}" for n, h in self._by_id)
        return f"VerifierList({keys})"


def _check_chars(msg: str, what: str) -> None:
    """Raise MalformedNote unless msg is valid UTF-8 with no control character but newline."""
    try:
        msg.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedNote(f"{what} is not valid UTF-8 (lone surrogate)") from e
    bad = _CONTROL.search(msg)
    if bad:
        lineno = msg.count("\n", 0, bad.start()) + 1
        raise MalformedNote(
            f"{what} line {lineno}: control character U+{ord(bad.group()):04X} is not allowed"
        )


def _decode(msg: str | bytes) -> str:
    if isinstance(msg, bytes):
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedNote(f"note is not valid UTF-8 (byte offset {e.start})") from None
    return msg


def check_note_text(text: str) -> None:
    """Check_note_text raises MalformedNote unless text can be the text of a signed note.

    The text must be non-empty, end in a newline, be valid UTF-8 and contain no
    control character other than newline.
    """
    if not text.endswith("\n"):
        raise MalformedNote("note text must end in a newline")
    _check_chars(text, "note text")


def _parse_signature_line(line: str, lineno: int) -> tuple[Signature, bytes]:
    """Parse one signature line (without its newline) into a Signature and its raw bytes."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNote(
            f"note line {lineno}: signature line does not start with an em dash and a space"
        )
    name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not b64:
        raise MalformedNote(f"note line {lineno}: signature line has no signature after the name")
    try:
        check_key_name(name)
    except MalformedKey as e:
        raise MalformedNote(f"note line {lineno}: {e}") from None
    try:
        raw = decode_base64(b64)
    except ValueError:
        raise MalformedNote(
            f"note line {lineno}: signature by {name!r} is not canonical base64"
        ) from None
    if len(raw) < 5:
        raise MalformedNote(f"note line {lineno}: signature by {name!r} is too short")
    key_hash: int = struct.unpack(">I", raw[:4])[0]
    return Signature(name, key_hash, b64), raw[4:]


def _split_note(msg: str) -> tuple[str, list[tuple[Signature, bytes]]]:
    """Split a note into its text and its parsed signature lines, without verifying."""
    _check_chars(msg, "note")
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line separating the text from the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise MalformedNote("note has no signature lines after the blank line")
    if not block.endswith("\n"):
        raise MalformedNote("note's last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(
            f"note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are accepted"
        )
    first = text.count("\n") + 2  # 1-based note line number of the first signature line
    return text, [_parse_signature_line(line, first + i) for i, line in enumerate(lines)]


def open_note(msg: str | bytes, verifiers: Verifiers) -> Note:
    """Open_note parses and verifies a signed note, returning it.

    It raises MalformedNote for a note not in signed-note form,
    InvalidSignature if a signature by a known key does not verify, and
    UnverifiedNote (carrying the parsed note) if no signature by a known key is
    present.  Signatures by unknown keys go to :attr:`Note.unverified_sigs`.
    """
    text, parsed = _split_note(_decode(msg))
    text_bytes = text.encode("utf-8")
    sigs: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    seen_unverified: set[str] = set()
    for sig, raw in parsed:
        try:
            v = verifiers.verifier(sig.name, sig.key_hash)
        except UnknownKey:
            line = sig.line()
            if line not in seen_unverified:
                seen_unverified.add(line)
                unverified.append(sig)
            continue
        if v.name != sig.name or v.key_hash != sig.key_hash:
            raise AssertionError(
                f"verifiers returned key {v.name}+{v.key_hash:08x} "
                f"when asked for {sig.name}+{sig.key_hash:08x}"
            )
        if (sig.name, sig.key_hash) in seen:
            continue
        seen.add((sig.name, sig.key_hash))
        if not v.verify(text_bytes, raw):
            raise InvalidSignature(sig.name, sig.key_hash)
        sigs.append(sig)
    note = Note(text=text, sigs=sigs, unverified_sigs=unverified)
    if not sigs:
        raise UnverifiedNote(note)
    return note


def signature_line(text: str, signer: Signer) -> str:
    """Signature_line returns the signature line ``— <name> <base64>\\n`` by signer over text.

    text must be a valid note text (see :func:`check_note_text`).
    """
    check_note_text(text)
    return _sign_line(text.encode("utf-8"), signer)


def _sign_line(text: bytes, signer: Signer) -> str:
    check_key_name(signer.name)
    if not 0 <= signer.key_hash <= 0xFFFFFFFF:
        raise AssertionError(f"signer {signer.name!r} has key hash outside uint32")
    sig = signer.sign(text)
    return Signature(
        signer.name, signer.key_hash, encode_base64(struct.pack(">I", signer.key_hash) + sig)
    ).line()


def _check_new_signers(existing: list[Signature], signers: tuple[Signer, ...]) -> None:
    if not signers:
        raise SigningError("no signers given: a signed note needs at least one signature")
    have = {(s.name, s.key_hash) for s in existing}
    for s in signers:
        if (s.name, s.key_hash) in have:
            raise SigningError(f"note already has a signature by key {s.name}+{s.key_hash:08x}")
        have.add((s.name, s.key_hash))
    if len(existing) + len(signers) > MAX_SIGNATURES:
        raise SigningError(
            f"note would have {len(existing) + len(signers)} signatures; "
            f"at most {MAX_SIGNATURES} are accepted"
        )


def sign_note(text: str, *signers: Signer) -> str:
    """Sign_note returns the signed note of text with one signature line per signer.

    text must end in a newline, be valid UTF-8 and contain no control character
    other than newline (MalformedNote otherwise).  Signers must have distinct
    (name, key hash) pairs.
    """
    check_note_text(text)
    _check_new_signers([], signers)
    text_bytes = text.encode("utf-8")
    return text + "\n" + "".join(_sign_line(text_bytes, s) for s in signers)


def add_signatures(msg: str | bytes, *signers: Signer) -> str:
    """Add_signatures returns the signed note msg with one more signature line per signer.

    Existing signatures are kept as they are and are not verified: callers
    (witnesses adding a cosignature, say) verify with :func:`open_note` first.
    A signer whose key already signed msg is refused with SigningError.
    """
    note = _decode(msg)
    text, parsed = _split_note(note)
    _check_new_signers([sig for sig, _ in parsed], signers)
    text_bytes = text.encode("utf-8")
    return note + "".join(_sign_line(text_bytes, s) for s in signers)
