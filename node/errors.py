"""Errors raised by hashfed.node, each named for the condition and saying what to do."""

from __future__ import annotations


class NodeError(Exception):
    """Something about this node stops the command; the message says what to do."""


class NotANode(NodeError):
    """The directory holds no hashfed node."""


class DatabaseError(NodeError):
    """The database cannot be used as it is (too new, damaged, or behind its own log)."""


class ForkRefused(NodeError):
    """Signing now would fork the node's own log: the database is behind what it signed."""


class InvalidPeer(NodeError):
    """A peer or trusted key given to hashfed is not acceptable (bad URL, key or name)."""


class AlreadyConfigured(NodeError):
    """A peer or trusted origin of that name or key is already configured."""


class NotConfigured(NodeError):
    """No peer or trusted origin of that name is configured."""
