"""The exchange's dataclasses: collaboration config, credentials and checkpoint.

python-threatexchange builds its CLI flags, and HMA its forms, from these
dataclasses' fields: every field carries help text, and the types are the
ones both understand (str, int, list[str], typing.Optional). That is also why
this module does not use ``from __future__ import annotations``: both read
``field.type`` as a type, not as a string. HMA stores the checkpoint as JSON
(``dataclass_json``), so it holds only ints, strings and lists of strings.
"""

# ruff: noqa: UP045  (pytx's CLI recognises typing.Optional, not X | None)

import typing as t
from dataclasses import dataclass, field

from hashfed.protocol.merkle import EMPTY_ROOT
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import parse_signer
from hashfed.sync.follow import CompactRange
from threatexchange.exchanges import auth
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.exchanges.fetch_state import FetchCheckpointBase

API_NAME = "hashfed"

ADMIN_TOKEN_ENV = "TX_HASHFED_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "~/.tx_hashfed_admin_token"

MAX_MISSING = 4096
"""Additions without content a checkpoint remembers (beyond, the oldest are dropped)."""


@dataclass
class _RequiredFields:
    urls: list[str] = field(
        metadata={
            "help": "base URLs of hashfed nodes serving the log: the publisher or any "
            "mirror, tried in order. Write VKEY@URL, with the node's peer verifier key "
            "(peer:<origin>+hash+base64, the 'peer' line of 'hashfed keys show' on that "
            "node), for the peer key to be used there: the node must prove that key "
            "before a session token is sent to it. A bare URL is read anonymously (public "
            "logs only)",
            "metavar": "VKEY@URL[,...]",
        }
    )
    origin: str = field(
        metadata={"help": "the log's origin, e.g. stopncii.org/hashfed (its key name)"}
    )
    log_key: str = field(
        metadata={
            "help": "the pinned verifier key of the log (origin+hash+base64); every "
            "checkpoint must carry a valid signature by it",
            "metavar": "VKEY",
        }
    )


@dataclass
class HashfedCollabConfig(CollaborationConfigWithDefaults, _RequiredFields):
    """A collaboration that reads one hashfed log (publisher or mirror)."""

    api: str = field(init=False, default=API_NAME)
    witness_policy: t.Optional[str] = field(
        default=None,
        metadata={
            "help": "path to a C2SP tlog-policy file: a checkpoint is only used once "
            "the witnesses it names have cosigned it (default: no witnesses required)",
            "metavar": "PATH",
        },
    )
    min_pdq_quality: int = field(
        default=50,
        metadata={"help": "PDQ hashes of lower quality are skipped, as a hashfed node does"},
    )
    feedback_node: t.Optional[str] = field(
        default=None,
        metadata={
            "help": "base URL of this platform's own hashfed node (http(s)://...), which "
            "syncs the same log: report_opinion (pytx 'label', HMA's feedback) publishes "
            "feedback there, signed into that node's log, on every active entry of this "
            "log with the hash. Needs the node's admin token (keys/admin.token) in "
            f"{ADMIN_TOKEN_ENV} or {ADMIN_TOKEN_FILE}. Unset: opinions cannot be reported",
            "metavar": "URL",
        },
    )


@dataclass
class HashfedCredentials(auth.CredentialHelper):
    """The peer-authentication key for the session handshake with the nodes.

    Not needed for a log the node serves publicly. The node must list the
    matching verifier key as a peer ('hashfed peers add'), and the collab must
    name the node's own peer key (VKEY@URL): the key is used nowhere else.
    """

    ENV_VARIABLE: t.ClassVar[str] = "TX_HASHFED_PEER_KEY"
    FILE_NAME: t.ClassVar[str] = "~/.tx_hashfed_peer_key"

    peer_key: str = field(
        repr=False,
        metadata={
            "help": "this platform's peer-authentication secret key "
            "(PRIVATE+KEY+peer:name+hash+base64); used only at nodes given as VKEY@URL"
        },
    )

    @classmethod
    def _from_str(cls, s: str) -> "HashfedCredentials":
        return cls(s.strip())

    def _are_valid(self) -> bool:
        try:
            parse_signer(self.peer_key)
        except SigningError:
            return False
        return True


@dataclass
class HashfedNodeToken(auth.CredentialHelper):
    """The admin token of the platform's own hashfed node (the collab's feedback_node),
    sent only there, only to publish feedback (POST /v1/feedback)."""

    ENV_VARIABLE: t.ClassVar[str] = ADMIN_TOKEN_ENV
    FILE_NAME: t.ClassVar[str] = ADMIN_TOKEN_FILE

    admin_token: str = field(
        repr=False,
        metadata={
            "help": "the admin token of this platform's own hashfed node (the contents "
            "of keys/admin.token in its directory); it lets report_opinion publish "
            "feedback in that node's log, so keep it as secret as the node's keys"
        },
    )

    @classmethod
    def _from_str(cls, s: str) -> "HashfedNodeToken":
        return cls(s.strip())

    def _are_valid(self) -> bool:
        token = self.admin_token
        return (
            0 < len(token) <= 512 and token.isascii() and token.isprintable() and " " not in token
        )


@dataclass
class HashfedCheckpoint(FetchCheckpointBase):
    """How far the log is verified: a tree that is a prefix of a signed checkpoint.

    size and root describe the verified tree; compact_range holds the roots of
    its complete subtrees (hex), enough to prove the next fetch consistent with
    it without any other local state; note is the signed checkpoint the tree
    was verified against (the whole of it once a fetch completes).
    progress_time is the newest author time seen in the log, never decreasing.
    missing lists the verified additions that came without content, as
    "index:commitment" (hex), to be asked for again (at most MAX_MISSING).
    """

    size: int = 0
    root: str = EMPTY_ROOT.hex()
    note: str = ""
    compact_range: list[str] = field(default_factory=list)
    progress_time: int = 0
    missing: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls, tree: CompactRange, note: str, progress_time: int, missing: t.Mapping[int, bytes]
    ) -> "HashfedCheckpoint":
        """Returns the checkpoint of a verified tree."""
        return cls(
            tree.size,
            tree.root().hex(),
            note,
            [h.hex() for h in tree.hashes],
            progress_time,
            [f"{index}:{commit.hex()}" for index, commit in sorted(missing.items())],
        )

    def missing_content(self) -> dict[int, bytes]:
        """Returns the additions still without content: log index -> commitment."""
        try:
            pairs = (item.split(":", 1) for item in self.missing)
            return {int(index): bytes.fromhex(commit) for index, commit in pairs}
        except ValueError:
            raise ValueError("the stored hashfed checkpoint is corrupt: bad missing list") from None

    def tree(self) -> CompactRange:
        """Returns the verified tree, or raises ValueError if the checkpoint is corrupt."""
        try:
            tree = CompactRange(self.size, tuple(bytes.fromhex(h) for h in self.compact_range))
        except ValueError as exc:
            raise ValueError(f"the stored hashfed checkpoint is corrupt: {exc}") from None
        if tree.root().hex() != self.root:
            raise ValueError("the stored hashfed checkpoint is corrupt: its range and root differ")
        return tree

    def get_progress_timestamp(self) -> t.Optional[int]:
        return self.progress_time or None
