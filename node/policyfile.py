"""The node's witness policy: a C2SP tlog-policy file at ``<home>/policy``.

A partner lists the witnesses it requires and the quorum; it applies a log's
checkpoints only once they carry that quorum of cosignatures. A publisher
lists its witnesses with URLs and pushes its checkpoints to them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hashfed.node.errors import NodeError
from hashfed.protocol.errors import ProtocolError
from hashfed.protocol.policy import Policy, parse_policy
from hashfed.signing.errors import SigningError

POLICY_FILE = "policy"


def policy_path(home: Path) -> Path:
    """Returns where a node keeps its tlog-policy file."""
    return home / POLICY_FILE


def load_policy(home: Path) -> Policy | None:
    """Returns the node's policy, or None if it has none."""
    path = policy_path(home)
    if not path.exists():
        return None
    try:
        return parse_policy(path.read_bytes())
    except ProtocolError as exc:
        raise NodeError(f"{path}: {exc}") from None


def quorum_check(
    policy: Policy | None, origin: str, clock: Callable[[], int]
) -> Callable[[str], tuple[bool, int | None]] | None:
    """Returns the check sync applies to origin's checkpoints under policy: a note
    -> (quorum met, attested time); None when the policy does not cover origin."""
    if policy is None or not policy.applies_to(origin) or policy.quorum == "none":
        return None  # quorum none: no cosignature is required, and none attests freshness

    def check(note: str) -> tuple[bool, int | None]:
        try:
            result = policy.check_checkpoint(note, origin, now=clock())
        except (ProtocolError, SigningError):
            return False, None
        return result.met, result.attested

    return check
