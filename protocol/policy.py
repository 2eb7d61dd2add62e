"""Transparency log trust policies (C2SP tlog-policy).

A policy says which logs a verifier knows, which witnesses it knows, and the
quorum: the rule that decides whether the witnesses that cosigned a checkpoint
are enough.  Only the quorum is required.

Wire format.  A policy file is a sequence of lines, each ended by a newline
(0x0A; a missing newline after the last line is tolerated).  Items on a line are
separated by runs of spaces and tabs, and only those; whitespace may also lead
and trail.  Lines that are empty, whitespace only, or whose first non-blank
character is ``#`` are ignored.  Every line is one of::

    log <vkey> [<url>]                    an Ed25519 log key (type 0x01)
    witness <name> <vkey> [<url>]         a cosignature/v1 witness key (type 0x04)
    group <name> all|any|<k> <member>...  at least k of the n members witnessed
    quorum <name>                         exactly once; a witness, group or none

Rules checked by :func:`parse_policy`:

* The only octets allowed are tab, newline, 0x20-0x7E and 0x80-0xFF.
* Keys are vkeys (C2SP signed-note); a log key's name is the log's origin.  Two
  logs, or two witnesses, may not wrap the same 32-byte public key, whatever
  their key names and key hashes.
* Witnesses and groups share one namespace, names are compared as opaque
  octet strings (no Unicode normalisation), and ``none`` is predefined.
* A group has n >= 1 members, each a witness or group defined on an earlier
  line, none listed twice, and never ``none``.  ``any`` means k = 1, ``all``
  means k = n, and a number must be decimal without leading zeros, 1 <= k <= n.
* The quorum line names ``none`` or a witness or group defined earlier.
* At most :data:`MAX_LOGS` logs, :data:`MAX_WITNESSES` witnesses and
  :data:`MAX_GROUPS` groups (the spec asks for at least 32 of each).

Worked example: two witnesses from each of two operators, one log, and a
quorum needing two X witnesses and one Y witness (keys abbreviated)::

    log example.com/log+33d7b496+AeHT...kSx https://example.com/log/

    witness X1 x1.example+1a2b3c4d+BC1z...
    witness X2 x2.example+5e6f7a8b+BJ9q...
    witness X3 x3.example+9c0d1e2f+BEv0...
    group X-witnesses 2 X1 X2 X3

    witness Y1 y1.example+31415926+BNm4...
    witness Y2 y2.example+27182818+BA7e...
    group Y-witnesses any Y1 Y2

    group X-and-Y all X-witnesses Y-witnesses
    quorum X-and-Y

Names, URLs and comments may hold non-UTF-8 octets.  Bytes input is decoded
with ``surrogateescape``, so such octets survive as lone surrogates in the
``str`` fields and in :func:`format_policy` output (write it back with
``errors="surrogateescape"``).  Comments and blank lines are not kept:
:func:`format_policy` writes the canonical text, logs then witnesses then
groups then the quorum, and ``parse_policy(format_policy(p)) == p``.

This module does no I/O; reading the file is up to the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hashfed.signing.cosignature import CosignatureVerifier
from hashfed.signing.errors import MalformedKey, UnverifiedNote
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Ed25519Verifier,
    decode_base64,
    decode_vkey,
    parse_verifier,
)
from hashfed.signing.note import Note, Signature, VerifierList, open_note

from .checkpoint import parse_checkpoint_body
from .errors import MalformedPolicy, OriginMismatch

MAX_LOGS = 256
"""Most log lines a policy may have."""

MAX_WITNESSES = 256
"""Most witness lines a policy may have."""

MAX_GROUPS = 256
"""Most group lines a policy may have."""

NONE = "none"
"""The predefined quorum name that requires no cosignature at all."""

_WHITESPACE = re.compile(rb"[ \t]+")
_BAD_OCTET = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_DECIMAL = re.compile(rb"[1-9][0-9]*")
_KEY_TYPES = {ALG_ED25519: "0x01 (Ed25519)", ALG_COSIGNATURE_V1: "0x04 (cosignature/v1)"}


@dataclass(frozen=True)
class PolicyLog:
    """PolicyLog is one ``log`` line: the log's key and optional URL.

    origin is the vkey's key name, which must be the log's checkpoint origin.
    verifier is derived from vkey and takes no part in equality.
    """

    vkey: str
    verifier: Ed25519Verifier = field(compare=False, repr=False)
    url: str | None
    origin: str


@dataclass(frozen=True)
class PolicyWitness:
    """PolicyWitness is one ``witness`` line: a policy-local name, a key and optional URL.

    name is the name used by groups and the quorum; the vkey's own key name is
    the one that appears on cosignature lines.  verifier takes no part in equality.
    """

    name: str
    vkey: str
    verifier: CosignatureVerifier = field(compare=False, repr=False)
    url: str | None


@dataclass(frozen=True)
class PolicyGroup:
    """PolicyGroup is one ``group`` line: witnessed when >= threshold members are."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class QuorumResult:
    """QuorumResult is the outcome of checking a checkpoint's cosignatures against a policy.

    cosigners maps the policy name of every witness with a valid cosignature to
    its timestamp.  attested is the largest time t such that the witnesses
    whose cosignatures are dated t or later still satisfy the quorum: the time
    up to which the policy considers the checkpoint fresh.  It is None when the
    quorum is not met, and for ``quorum none``, where no witness attests anything.
    """

    met: bool
    cosigners: dict[str, int]
    attested: int | None


@dataclass(frozen=True)
class Policy:
    """Policy is a parsed tlog-policy file; build it with :func:`parse_policy`.

    Groups are in definition order, so each refers only to witnesses and to
    groups before it.  quorum is a witness name, a group name or ``none``.
    """

    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[PolicyGroup, ...]
    quorum: str

    def log_for(self, origin: str) -> PolicyLog | None:
        """Log_for returns the first log whose origin is origin, or None."""
        for log in self.logs:
            if log.origin == origin:
                return log
        return None

    def applies_to(self, origin: str) -> bool:
        """Applies_to reports whether the policy covers the log origin.

        It does if the origin is listed, or if the policy lists no logs at all
        (the logs are then known from other context).
        """
        return not self.logs or self.log_for(origin) is not None

    def satisfied_by(self, names: set[str] | frozenset[str]) -> bool:
        """Satisfied_by reports whether the witnesses named in names meet the quorum.

        names are policy witness names of the witnesses that validly cosigned;
        unknown names are ignored.  ``quorum none`` is always satisfied.
        """
        if self.quorum == NONE:
            return True
        witnessed = {w.name for w in self.witnesses if w.name in names}
        for g in self.groups:  # definition order: members are settled before use
            if sum(1 for m in g.members if m in witnessed) >= g.threshold:
                witnessed.add(g.name)
        return self.quorum in witnessed

    def check_checkpoint(
        self, note: str | bytes, origin: str, now: int | None = None
    ) -> QuorumResult:
        """Check_checkpoint evaluates the quorum over the cosignatures on a checkpoint.

        The caller must already have verified the log's signature
        (:func:`~hashfed.protocol.checkpoint.open_checkpoint`): a log signature
        by a key the policy does not list is tolerated.  If the policy does list
        a key of origin and that key's signature is present but invalid, the
        signing error InvalidSignature is raised.

        Every cosignature line by a listed witness key is verified on its own; an
        invalid one counts as no cosignature.  If now is given, cosignatures
        dated after now are disregarded too.

        Raises the signing errors of :func:`~hashfed.signing.note.open_note`
        for a malformed note, MalformedCheckpoint if the text is not a
        checkpoint, and OriginMismatch if the checkpoint is not of origin or
        the policy does not apply to origin (see :meth:`applies_to`).
        """
        if not self.applies_to(origin):
            raise OriginMismatch(f"the policy lists no log with origin {origin!r}")
        logs = VerifierList(*(log.verifier for log in self.logs if log.origin == origin))
        opened: Note
        try:
            opened = open_note(note, logs)
        except UnverifiedNote as e:
            opened = e.note
        cp = parse_checkpoint_body(opened.text)
        if cp.origin != origin:
            raise OriginMismatch(
                f"checkpoint is for origin {cp.origin!r}, expected origin {origin!r}"
            )
        by_key = {(w.verifier.name, w.verifier.key_hash): w for w in self.witnesses}
        text = opened.text.encode("utf-8")
        cosigners: dict[str, int] = {}
        for sig in opened.unverified_sigs:
            w = by_key.get((sig.name, sig.key_hash))
            if w is None:
                continue
            timestamp = _verified_timestamp(w.verifier, text, sig)
            if timestamp is None or (now is not None and timestamp > now):
                continue
            # Two valid lines from one witness: the newer one attests more.
            cosigners[w.name] = max(timestamp, cosigners.get(w.name, timestamp))
        if self.quorum == NONE:
            return QuorumResult(met=True, cosigners=cosigners, attested=None)
        if not self.satisfied_by(set(cosigners)):
            return QuorumResult(met=False, cosigners=cosigners, attested=None)
        # Dropping the oldest cosignatures can only shrink the witnessed set,
        # so the first time (from the newest down) that satisfies is the largest.
        for t in sorted(set(cosigners.values()), reverse=True):
            if self.satisfied_by({n for n, ts in cosigners.items() if ts >= t}):
                return QuorumResult(met=True, cosigners=cosigners, attested=t)
        raise AssertionError("bad math: quorum met by all cosigners but by no time cut")


def _verified_timestamp(verifier: CosignatureVerifier, text: bytes, sig: Signature) -> int | None:
    """Return the timestamp of sig if it is a valid cosignature of text, else None."""
    raw = decode_base64(sig.base64)  # open_note already checked it is canonical
    if not verifier.verify(text, raw[4:]):
        return None
    return verifier.timestamp_of(sig)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")


class _Parser:
    """State of one parse: names defined so far, and the lines seen."""

    def __init__(self) -> None:
        self.logs: list[PolicyLog] = []
        self.witnesses: list[PolicyWitness] = []
        self.groups: list[PolicyGroup] = []
        self.quorum: str | None = None
        self.names: set[bytes] = set()
        self.log_keys: dict[bytes, int] = {}
        self.witness_keys: dict[bytes, int] = {}
        self.witness_ids: dict[tuple[str, int], int] = {}

    def line(self, lineno: int, fields: list[bytes]) -> None:
        keyword, args = fields[0], fields[1:]
        if keyword == b"log":
            self.log(lineno, args)
        elif keyword == b"witness":
            self.witness(lineno, args)
        elif keyword == b"group":
            self.group(lineno, args)
        elif keyword == b"quorum":
            self.set_quorum(lineno, args)
        else:
            raise MalformedPolicy(
                f"policy line {lineno}: unknown keyword {_text(keyword)!r} "
                "(want log, witness, group or quorum)"
            )

    def log(self, lineno: int, args: list[bytes]) -> None:
        if not 1 <= len(args) <= 2:
            raise MalformedPolicy(f"policy line {lineno}: want 'log <vkey> [<url>]'")
        if len(self.logs) >= MAX_LOGS:
            raise MalformedPolicy(f"policy line {lineno}: more than {MAX_LOGS} logs")
        vkey = _text(args[0])
        public = _public_key(lineno, "log", vkey, ALG_ED25519)
        if public in self.log_keys:
            raise MalformedPolicy(
                f"policy line {lineno}: log key {vkey!r} duplicates the public key of the log "
                f"on line {self.log_keys[public]}"
            )
        verifier = parse_verifier(vkey)
        if not isinstance(verifier, Ed25519Verifier):
            raise AssertionError("bad math: type 0x01 vkey did not give an Ed25519Verifier")
        self.log_keys[public] = lineno
        url = _text(args[1]) if len(args) == 2 else None
        self.logs.append(PolicyLog(vkey=vkey, verifier=verifier, url=url, origin=verifier.name))

    def witness(self, lineno: int, args: list[bytes]) -> None:
        if not 2 <= len(args) <= 3:
            raise MalformedPolicy(f"policy line {lineno}: want 'witness <name> <vkey> [<url>]'")
        if len(self.witnesses) >= MAX_WITNESSES:
            raise MalformedPolicy(f"policy line {lineno}: more than {MAX_WITNESSES} witnesses")
        name = self.new_name(lineno, args[0])
        vkey = _text(args[1])
        public = _public_key(lineno, f"witness {name!r}", vkey, ALG_COSIGNATURE_V1)
        if public in self.witness_keys:
            raise MalformedPolicy(
                f"policy line {lineno}: witness {name!r} has the same public key as the "
                f"witness on line {self.witness_keys[public]}"
            )
        verifier = parse_verifier(vkey)
        if not isinstance(verifier, CosignatureVerifier):
            raise AssertionError("bad math: type 0x04 vkey did not give a CosignatureVerifier")
        key_id = (verifier.name, verifier.key_hash)
        if key_id in self.witness_ids:
            raise MalformedPolicy(
                f"policy line {lineno}: witness {name!r} has the same key name and key hash "
                f"{verifier.name}+{verifier.key_hash:08x} as the witness on line "
                f"{self.witness_ids[key_id]}, so their cosignatures cannot be told apart"
            )
        self.witness_keys[public] = lineno
        self.witness_ids[key_id] = lineno
        self.names.add(args[0])
        url = _text(args[2]) if len(args) == 3 else None
        self.witnesses.append(PolicyWitness(name=name, vkey=vkey, verifier=verifier, url=url))

    def group(self, lineno: int, args: list[bytes]) -> None:
        if len(args) < 3:
            raise MalformedPolicy(
                f"policy line {lineno}: want 'group <name> all|any|<k> <member>...' "
                "with at least one member"
            )
        if len(self.groups) >= MAX_GROUPS:
            raise MalformedPolicy(f"policy line {lineno}: more than {MAX_GROUPS} groups")
        name = self.new_name(lineno, args[0])
        members: list[str] = []
        seen: set[bytes] = set()
        for m in args[2:]:
            if m == NONE.encode():
                raise MalformedPolicy(
                    f"policy line {lineno}: group {name!r}: 'none' cannot be a group member"
                )
            if m not in self.names:
                raise MalformedPolicy(
                    f"policy line {lineno}: group {name!r}: member {_text(m)!r} is not a "
                    "witness or group defined on an earlier line"
                )
            if m in seen:
                raise MalformedPolicy(
                    f"policy line {lineno}: group {name!r}: member {_text(m)!r} is listed twice"
                )
            seen.add(m)
            members.append(_text(m))
        n = len(members)
        spec = args[1]
        if spec == b"all":
            k = n
        elif spec == b"any":
            k = 1
        elif spec.isdigit() and (spec == b"0" or _DECIMAL.fullmatch(spec)):
            k = int(spec) if len(spec) <= 9 else n + 1  # never more than 512 members
        elif spec.isdigit():
            raise MalformedPolicy(
                f"policy line {lineno}: group {name!r}: threshold {_text(spec)!r} has leading zeros"
            )
        else:
            raise MalformedPolicy(
                f"policy line {lineno}: group {name!r}: threshold {_text(spec)!r} is not "
                "'all', 'any' or a decimal number"
            )
        if not 1 <= k <= n:
            raise MalformedPolicy(
                f"policy line {lineno}: group {name!r}: threshold {_text(spec)} is outside "
                f"1..{n} (the number of members)"
            )
        self.names.add(args[0])
        self.groups.append(PolicyGroup(name=name, threshold=k, members=tuple(members)))

    def set_quorum(self, lineno: int, args: list[bytes]) -> None:
        if len(args) != 1:
            raise MalformedPolicy(f"policy line {lineno}: want 'quorum <name>'")
        if self.quorum is not None:
            raise MalformedPolicy(f"policy line {lineno}: second quorum line; want exactly one")
        if args[0] != NONE.encode() and args[0] not in self.names:
            raise MalformedPolicy(
                f"policy line {lineno}: quorum {_text(args[0])!r} is not 'none' or a witness "
                "or group defined on an earlier line"
            )
        self.quorum = _text(args[0])

    def new_name(self, lineno: int, raw: bytes) -> str:
        if raw == NONE.encode() or raw in self.names:
            raise MalformedPolicy(
                f"policy line {lineno}: name {_text(raw)!r} is already defined "
                "(witnesses and groups share one namespace; 'none' is predefined)"
            )
        return _text(raw)


def _public_key(lineno: int, what: str, vkey: str, alg: int) -> bytes:
    """Return the public key bytes of vkey after checking it is a usable key of type alg."""
    try:
        _, _, got, public = decode_vkey(vkey)
        if got != alg:
            have = _KEY_TYPES.get(got, f"0x{got:02x}")
            raise MalformedKey(f"verifier key has signature type {have}, want {_KEY_TYPES[alg]}")
        parse_verifier(vkey)
    except MalformedKey as e:
        raise MalformedPolicy(f"policy line {lineno}: {what}: {e}") from None
    return public


def parse_policy(text: str | bytes) -> Policy:
    """Parse_policy returns the policy in text, a tlog-policy file.

    It raises MalformedPolicy, naming the line and the problem, if text breaks
    any rule of the format (see the module documentation).
    """
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError as e:
            lineno = text.count("\n", 0, e.start) + 1
            raise MalformedPolicy(
                f"policy line {lineno}: lone surrogate U+{ord(text[e.start]):04X} cannot be encoded"
            ) from None
    else:
        raw = text
    p = _Parser()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for i, line in enumerate(lines):
        lineno = i + 1
        bad = _BAD_OCTET.search(line)
        if bad:
            raise MalformedPolicy(
                f"policy line {lineno}: control character 0x{bad.group()[0]:02x} is not "
                "allowed (only tab and newline are)"
            )
        stripped = line.strip(b" \t")
        if not stripped or stripped.startswith(b"#"):
            continue
        p.line(lineno, _WHITESPACE.split(stripped))
    if p.quorum is None:
        raise MalformedPolicy("policy has no quorum line; want exactly one")
    return Policy(
        logs=tuple(p.logs),
        witnesses=tuple(p.witnesses),
        groups=tuple(p.groups),
        quorum=p.quorum,
    )


def format_policy(policy: Policy) -> str:
    """Format_policy returns the canonical text of policy.

    Logs come first, then witnesses, then groups in their order, then the
    quorum; a threshold is written ``all`` if k = n, else ``any`` if k = 1,
    else in decimal.  The text is parsed again before it is returned, so a
    hand-built Policy that breaks a rule raises MalformedPolicy.
    """
    lines: list[str] = []
    for log in policy.logs:
        lines.append(" ".join(["log", log.vkey] + ([log.url] if log.url is not None else [])))
    for w in policy.witnesses:
        lines.append(" ".join(["witness", w.name, w.vkey] + ([w.url] if w.url is not None else [])))
    for g in policy.groups:
        n = len(g.members)
        k = "all" if g.threshold == n else "any" if g.threshold == 1 else str(g.threshold)
        lines.append(" ".join(["group", g.name, k, *g.members]))
    lines.append(f"quorum {policy.quorum}")
    out = "".join(line + "\n" for line in lines)
    if parse_policy(out) != policy:
        raise MalformedPolicy("policy does not round-trip through its canonical text")
    return out
