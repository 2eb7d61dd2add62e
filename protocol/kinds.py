"""The hash kinds hashfed carries, defined once: what each kind's hashes look like.

A kind is named on the wire by its frozen name ("kind" in hash content, in the match
API and in case requests) and fixes the size of its hashes, whether each hash comes
with a quality (0..100) and the floor below which a node refuses it, the largest
distance at which two hashes of the kind still match (0: exact matching only), and
the values that can never be a real hash of the kind:

    name  bytes  hex  quality  floor  match distance  degenerate values
    pdq   32     64   yes      50     31 (Hamming)    all zeros, all ones
    md5   16     32   no       -      0 (exact)       all zeros, all ones, MD5("")

Every module that needs a fact about a kind reads it here, through :func:`kinds`,
which returns the registry in force. Adding a kind means adding a :class:`HashKind`
to :data:`BUILTIN_KINDS` (and a hasher for devices and an index for the node);
tests register extra kinds for the duration of a block with :func:`override_kinds`,
which changes nothing outside the current context.

>>> kinds()["md5"].hex_length
32
>>> kinds().parse_hex("pdq", "00")
Traceback (most recent call last):
...
ValueError: pdq hash has 2 hex characters, want 64
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class Kind(StrEnum):
    """The built-in hash kinds: PDQ for photos, MD5 of the file for videos."""

    PDQ = "pdq"
    MD5 = "md5"


@dataclass(frozen=True)
class HashKind:
    """One hash kind: its frozen wire name and the facts every layer checks.

    degenerate maps values that are never a real hash of the kind (beyond all zeros
    and all ones, which no kind accepts) to what they are, for the error message.
    """

    name: str
    size: int
    has_quality: bool
    max_distance: int
    default_quality_floor: int | None = None
    degenerate: Mapping[bytes, str] = field(default_factory=dict, hash=False)
    media: str = ""
    """What a person hashes with this kind ("photos", "videos"), for messages."""

    @property
    def hex_length(self) -> int:
        """The number of hex characters a hash of this kind is written with."""
        return 2 * self.size

    @property
    def exact(self) -> bool:
        """Whether hashes of this kind match only when equal."""
        return self.max_distance == 0

    def degenerate_reason(self, digest: bytes) -> str | None:
        """degenerate_reason returns why digest cannot be a hash of this kind, or None."""
        if digest == b"\0" * self.size or digest == b"\xff" * self.size:
            return "all zeros or all ones"
        return self.degenerate.get(digest)


PDQ = HashKind(
    name=Kind.PDQ,
    size=32,
    has_quality=True,
    max_distance=31,
    default_quality_floor=50,
    media="photos",
)

MD5 = HashKind(
    name=Kind.MD5,
    size=16,
    has_quality=False,
    max_distance=0,
    degenerate={bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"): "the MD5 of the empty file"},
    media="videos",
)

BUILTIN_KINDS = (PDQ, MD5)
"""The kinds every hashfed node knows, in the order they are listed to users."""


class KindRegistry:
    """KindRegistry maps kind names to kinds; it never changes once built."""

    __slots__ = ("_by_name",)

    def __init__(self, kinds: tuple[HashKind, ...]) -> None:
        by_name: dict[str, HashKind] = {}
        for kind in kinds:
            if kind.name in by_name:
                raise ValueError(f"hash kind {kind.name!r} is registered twice")
            if kind.size <= 0 or kind.max_distance < 0:
                raise ValueError(f"hash kind {kind.name!r} needs a positive size and distance >= 0")
            by_name[kind.name] = kind
        self._by_name = by_name

    def __getitem__(self, name: str) -> HashKind:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[HashKind]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: object) -> HashKind | None:
        """get returns the kind named name, or None if no kind has that name."""
        return self._by_name.get(name) if isinstance(name, str) else None

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the registered kinds (plain strings), in registration order."""
        return tuple(str(name) for name in self._by_name)

    def names_text(self, sep: str = ", ") -> str:
        """names_text returns the kind names joined for an error message."""
        return sep.join(self._by_name)

    def lookup(self, name: object) -> HashKind:
        """lookup returns the kind named name, or raises ValueError naming the kinds."""
        kind = self.get(name)
        if kind is None:
            raise ValueError(f"unknown kind {name!r}: use one of {self.names_text()}")
        return kind

    def with_kinds(self, *extra: HashKind) -> KindRegistry:
        """with_kinds returns a registry holding these kinds and extra."""
        return KindRegistry((*self._by_name.values(), *extra))

    def parse_hex(self, name: str, text: object) -> bytes:
        """parse_hex returns the raw bytes of a hex hash of kind name, or raises
        ValueError saying what is wrong (unknown kind, not hex, wrong length)."""
        kind = self.lookup(name)
        if not isinstance(text, str):
            raise ValueError(f"a {name} hash must be a hex string")
        if any(c not in _HEX_DIGITS for c in text):
            raise ValueError(f"{name} hash {text[:80]!r} is not hexadecimal")
        if len(text) != kind.hex_length:
            raise ValueError(f"{name} hash has {len(text)} hex characters, want {kind.hex_length}")
        return bytes.fromhex(text)


_DEFAULT = KindRegistry(BUILTIN_KINDS)
_ACTIVE: ContextVar[KindRegistry | None] = ContextVar("hashfed_kinds", default=None)


def kinds() -> KindRegistry:
    """kinds returns the registry in force: the built-in kinds, unless a caller in this
    context (a test) has overridden it with :func:`override_kinds`."""
    return _ACTIVE.get() or _DEFAULT


@contextmanager
def override_kinds(*extra: HashKind) -> Iterator[KindRegistry]:
    """override_kinds registers extra kinds beside the built-in ones for the duration
    of the block, in this context only (tasks and ``asyncio.to_thread`` calls started
    inside it inherit it), and yields the registry in force."""
    registry = kinds().with_kinds(*extra)
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)


__all__ = [
    "BUILTIN_KINDS",
    "MD5",
    "PDQ",
    "HashKind",
    "Kind",
    "KindRegistry",
    "kinds",
    "override_kinds",
]
