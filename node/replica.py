"""``hashfed serve --read-only``: a read replica over the database another process writes.

A replica serves what partners read — logs, tiles, bundles, content, the match
API and the proxy's authorisation check — from the node's SQLite database,
which the writer (``hashfed serve``, ``hashfed publish``…) writes on the same
host. SQLite's WAL mode lets any number of readers run beside one writer, each
seeing a consistent snapshot, so replicas need no coordination:

* the connection is ``PRAGMA query_only``: a replica never writes, never
  migrates the schema (a writer and replicas of different schema versions are
  refused), and runs no sync, no witness push, no case desk, no export;
* new checkpoints, tiles, bank changes and peers are picked up without a
  restart: the server re-reads logs and peers whenever ``PRAGMA data_version``
  says another connection committed, and the match index refreshes every few
  seconds (node/match/bank.py);
* tokens any process of the node issued are accepted (node/services/tokens.py), given
  the same ``keys/session.key``.

It is built by the composition root (node/root.py, ``replica_node``) and starts and
stops like the writer (node/serving.py, ``ServeOptions(read_only=True)``): bind
first, then load the index; READY=1, /metrics, /v1/status; a prompt stop. This
module holds only what differs: the read connection and the keys it reads.

Across hosts, replicas serve the exported tree instead (docs/scaling.md).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hashfed.node.config import NodeConfig
from hashfed.node.home import API_TOKEN_FILE
from hashfed.node.services.tokens import SESSION_SECRET_FILE, load_session_secret
from hashfed.node.store.db import open_replica
from hashfed.signing.keys import Ed25519Signer, parse_signer, read_key_file


def open_replica_database(path: Path) -> sqlite3.Connection:
    """Returns a connection that reads the node database at path and can never write it.

    Raises NodeError if there is no database, it is not in WAL mode, or its schema
    is not the one this hashfed reads (replicas never migrate: upgrade the writer).
    """
    return open_replica(path)


@dataclass(frozen=True)
class ReplicaKeys:
    """What a replica reads from the node directory (and never creates)."""

    api_token: str | None
    peer_signer: Ed25519Signer
    session_secret: bytes


def read_replica_keys(config: NodeConfig) -> ReplicaKeys:
    """Reads the API token (if the node has one), the peer key and ``keys/session.key``."""
    api_token_path = config.home / API_TOKEN_FILE
    return ReplicaKeys(
        api_token=read_key_file(api_token_path) if api_token_path.exists() else None,
        peer_signer=parse_signer(read_key_file(config.peer_key).strip()),
        session_secret=load_session_secret(config.home / SESSION_SECRET_FILE),
    )
