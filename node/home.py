"""Creating and opening a node directory (see config.py for its layout)."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hashfed.node.config import NodeConfig, load_config, write_config
from hashfed.node.errors import NodeError
from hashfed.node.services.ownlog import Clock, OwnLog, system_clock, write_signed_head
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database, transaction
from hashfed.protocol.checkpoint import Checkpoint, sign_checkpoint
from hashfed.protocol.merkle import EMPTY_ROOT
from hashfed.protocol.records import check_origin
from hashfed.protocol.session import PEER_KEY_PREFIX, is_peer_key_name, peer_key_name
from hashfed.protocol.validation import Policy
from hashfed.signing.cosignature import CosignatureSigner, parse_cosignature_signer
from hashfed.signing.keys import (
    ALG_COSIGNATURE_V1,
    Ed25519Signer,
    generate_key,
    parse_signer,
    read_key_file,
    write_key_file,
)

if TYPE_CHECKING:
    import sqlite_utils

API_TOKEN_FILE = Path("keys") / "api.token"
"""The local API token (``Authorization: Bearer`` for ``POST /v1/match``), beside the keys."""

ADMIN_TOKEN_FILE = Path("keys") / "admin.token"
"""The admin token, for ``GET /metrics`` and ``GET /v1/status`` (node/http/admin.py)."""


def witness_name(origin: str) -> str:
    """Returns the name of a node's cosigning key: its origin with ``/witness`` appended."""
    return f"{origin}/witness"


def ensure_witness_key(config: NodeConfig) -> None:
    """Creates the node's cosigning key (mode 0600) if it has none."""
    skey, _ = generate_key(witness_name(config.origin), ALG_COSIGNATURE_V1)
    with contextlib.suppress(FileExistsError):
        write_key_file(config.witness_key, skey + "\n")


def ensure_admin_token(home: Path) -> str:
    """Returns the node's admin token, first creating ``keys/admin.token`` (32 random
    bytes, base64url, mode 0600) if the node has none."""
    path = home / ADMIN_TOKEN_FILE
    with contextlib.suppress(FileExistsError):
        write_key_file(path, secrets.token_urlsafe(32) + "\n")
    return read_key_file(path).strip()


def ensure_api_token(home: Path) -> str:
    """Returns the node's local API token, first creating ``keys/api.token`` (32 random
    bytes, base64url, mode 0600) if the node has none."""
    path = home / API_TOKEN_FILE
    with contextlib.suppress(FileExistsError):
        write_key_file(path, secrets.token_urlsafe(32) + "\n")
    return read_key_file(path)


@dataclass
class Node:
    """An open node: its configuration, database, log-signing key and peer-authentication key.

    Both keys are named after the node's origin but are distinct keys: signer
    signs the node's log, peer_signer only session requests to other nodes
    (signed-note: never use one key for two kinds of signature).
    """

    config: NodeConfig
    db: sqlite_utils.Database
    signer: Ed25519Signer
    peer_signer: Ed25519Signer

    def witness_signer(self, clock: Clock = system_clock) -> CosignatureSigner:
        """Returns the node's cosigning key (a third key, for witnessing other logs)."""
        return parse_cosignature_signer(read_key_file(self.config.witness_key).strip(), clock)

    def own_log(self, clock: Clock = system_clock) -> OwnLog:
        """Returns the appender for this node's own log."""
        policy = Policy(min_pdq_quality=self.config.min_pdq_quality)
        return OwnLog(self.db, self.signer, self.config.signed_head, policy, clock)

    def api_token(self) -> str:
        """Returns the local API token (see :func:`ensure_api_token`)."""
        return read_key_file(self.config.home / API_TOKEN_FILE)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def init_node(home: Path, origin: str, role: str = "partner") -> Node:
    """Creates a node directory with new log-signing and peer keys and an empty signed log."""
    check_origin(origin)
    if is_peer_key_name(origin):
        raise NodeError(f"an origin cannot start with {PEER_KEY_PREFIX!r}: peer keys are named so")
    config = NodeConfig(home=home, origin=origin, role=role)
    if (home / "hashfed.toml").exists() or config.database.exists():
        raise NodeError(f"{home} already holds a hashfed node; choose another directory")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    config.log_key.parent.mkdir(exist_ok=True, mode=0o700)
    skey, vkey = generate_key(origin)
    write_key_file(config.log_key, skey + "\n")
    peer_skey, _ = generate_key(peer_key_name(origin))
    write_key_file(config.peer_key, peer_skey + "\n")
    ensure_witness_key(config)
    ensure_api_token(home)
    ensure_admin_token(home)
    write_config(config)
    signer = parse_signer(skey)
    db = open_database(config.database)
    with transaction(db) as conn:
        log = logstore.create_log(conn, origin, vkey, own=True)
        note = sign_checkpoint(Checkpoint(origin, 0, EMPTY_ROOT), signer)
        logstore.record_checkpoint(conn, log.id, 0, EMPTY_ROOT, note)
    write_signed_head(config.signed_head, note)
    return Node(config, db, signer, parse_signer(peer_skey))


def open_node(home: Path) -> Node:
    """Opens the node in home, checking that its keys match its origin and its own log."""
    config = load_config(home)
    signer = parse_signer(read_key_file(config.log_key).strip())
    if signer.name != config.origin:
        raise NodeError(
            f"the key in {config.log_key} is named {signer.name!r} but the node's origin is "
            f"{config.origin!r}; a log's origin must equal its key's name"
        )
    peer_signer = parse_signer(read_key_file(config.peer_key).strip())
    # Nodes made before peer keys had their own names used the origin; they still open.
    if peer_signer.name not in (peer_key_name(config.origin), config.origin):
        raise NodeError(
            f"the key in {config.peer_key} is named {peer_signer.name!r} but the node's origin "
            f"is {config.origin!r}; the peer-authentication key is named "
            f"{peer_key_name(config.origin)!r}"
        )
    if peer_signer.vkey() == signer.vkey():
        raise NodeError(
            f"{config.peer_key} holds the log-signing key; the peer-authentication key must be "
            "a distinct key (a key signs one kind of thing only)"
        )
    ensure_api_token(config.home)  # nodes created before the match API have none
    ensure_witness_key(config)  # nor before witnessing
    db = open_database(config.database)
    log = logstore.get_log(db.conn, config.origin)
    if log is None or log.vkey != signer.vkey():
        db.conn.close()
        raise NodeError(
            f"the database {config.database} does not hold this node's own log signed by "
            f"the key in {config.log_key}"
        )
    return Node(config, db, signer, peer_signer)
