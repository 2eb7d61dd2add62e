"""The signal-type interface shared by every hash kind (python-threatexchange style).

A signal type is a stateless class: every method is a classmethod, and the class
itself is what callers pass around and key dictionaries on. Each kind lives in its
own module (:mod:`hashfed.hasher.pdq`, :mod:`hashfed.hasher.md5`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    """The result of comparing two hashes of one kind.

    ``distance`` is the Hamming distance in bits for PDQ and 0 or 1 for MD5;
    ``match`` reports whether that distance is within the kind's match threshold.
    """

    match: bool
    distance: int

    @classmethod
    def from_distance(cls, distance: int, threshold: int) -> Comparison:
        """Comparison returns a result that matches when ``distance <= threshold``."""
        return cls(match=distance <= threshold, distance=distance)

    @classmethod
    def exact(cls, a: str, b: str) -> Comparison:
        """Comparison returns a match (distance 0) exactly when ``a == b``."""
        return cls(match=a == b, distance=0 if a == b else 1)


class SignalType(ABC):
    """One kind of hash: its frozen name, canonical form, comparison and examples."""

    @classmethod
    @abstractmethod
    def get_name(cls) -> str:
        """get_name returns the kind's name. Frozen: banks and CSV files store it."""

    @classmethod
    @abstractmethod
    def validate(cls, signal: str) -> str:
        """validate returns the canonical (lowercase hex) form of ``signal`` or raises
        ValueError."""

    @classmethod
    @abstractmethod
    def compare(cls, a: str, b: str) -> Comparison:
        """compare reports whether two canonical hashes of this kind match, and how far apart."""

    @classmethod
    @abstractmethod
    def get_examples(cls) -> list[str]:
        """get_examples returns real hashes of this kind, for tests and documentation."""

    @classmethod
    @abstractmethod
    def hash_file(cls, path: Path) -> str:
        """hash_file returns the canonical hash of the file at ``path``."""
