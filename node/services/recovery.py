"""Backup, restore, and recovery of a publisher's own log from the network (specs/recovery.md).

    backup   a consistent online copy (SQLite's backup API) of the database, with the
             signed head, hashfed.toml and the witness policy; keys only when asked
    restore  a backup into an empty node directory, marked ``restore-pending``: the
             restored log refuses to append until :func:`recover` has run
    recover  learns the largest size this log ever signed (witnesses' 409 answers,
             partners' checkpoints), fetches and verifies the missing entries from a
             mirror exactly as a sync would, then lets the log append again

A restored publisher must never sign a checkpoint smaller than, or inconsistent
with, one it signed before: partners would halt on it for good. If no mirror
holds the largest size it learned of, recovery refuses for good and the operator
starts a new origin.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from hashfed.node.config import CONFIG_FILE, NodeConfig, load_config, write_config
from hashfed.node.errors import ForkRefused, NodeError
from hashfed.node.home import Node, ensure_api_token, ensure_witness_key, open_node
from hashfed.node.policyfile import load_policy, policy_path
from hashfed.node.services.ownlog import pending_marker, write_signed_head
from hashfed.node.services.syncer import fetcher_for
from hashfed.node.services.witnesspush import push_checkpoint
from hashfed.node.store import bank, logstore, peers
from hashfed.node.store import witness as witness_store
from hashfed.node.store.backup import (
    copied_log,
    copy_database,
    mark_published_cases,
    published_case_indices,
)
from hashfed.node.store.db import open_database, transaction
from hashfed.node.store.syncstore import SqliteSyncStore
from hashfed.protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from hashfed.protocol.merkle import EMPTY_ROOT
from hashfed.signing.keys import parse_signer, parse_verifier, read_key_file
from hashfed.signing.note import VerifierList
from hashfed.sync.engine import ApplyPolicy, SyncResult, sync_origin
from hashfed.sync.errors import SyncError

if TYPE_CHECKING:
    import sqlite_utils

MANIFEST = "backup.json"


class RecoveryRefused(ForkRefused):
    """No mirror holds the largest size this log is known to have signed: appending
    would fork it. The marker stays; the way forward is a new origin (specs/recovery.md)."""


# -- backup -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds."""

    dest: Path
    origin: str
    size: int
    files: list[str]


def _private_copy(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(source.read_bytes())


def backup(node: Node, dest: Path, with_keys: bool = False) -> BackupReport:
    """Writes a consistent copy of node into dest (a new or empty directory), safe while
    ``hashfed serve`` runs. Keys are copied only with with_keys, and then only into a
    directory nobody else can read."""
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise NodeError(f"{dest} exists and is not an empty directory; choose a new one")
        if with_keys and stat.S_IMODE(dest.stat().st_mode) & 0o077:
            raise NodeError(
                f"{dest} is readable by other users (mode "
                f"{stat.S_IMODE(dest.stat().st_mode):o}); a backup with keys needs a private "
                "directory (chmod 700) or a new one"
            )
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    config = node.config
    files = []
    # The signed head first: the database copied after it is at least as new.
    if config.signed_head.exists():
        _private_copy(config.signed_head, dest / config.signed_head.name)
        files.append(config.signed_head.name)
    copy_database(node.db.conn, dest / config.database.name)
    files.append(config.database.name)
    for extra in (config.home / CONFIG_FILE, policy_path(config.home)):
        if extra.exists():
            _private_copy(extra, dest / extra.name)
            files.append(extra.name)
    if with_keys:
        (dest / "keys").mkdir(mode=0o700)
        for key in sorted(config.log_key.parent.iterdir()):
            if key.is_file():
                _private_copy(key, dest / "keys" / key.name)
                files.append(f"keys/{key.name}")
    log = copied_log(dest / config.database.name, config.origin)
    size = 0 if log is None else log.size
    manifest = {"origin": config.origin, "size": size, "created": int(time.time()), "files": files}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    os.chmod(dest / MANIFEST, 0o600)
    return BackupReport(dest, config.origin, size, files)


# -- restore ----------------------------------------------------------------------------


def restore(source: Path, home: Path) -> NodeConfig:
    """Copies the backup in source into home (new or empty) and marks it restore-pending.

    Keys come from the backup if it holds them, else they must already be in
    ``home/keys`` (restored separately). The node refuses to append until
    :func:`recover` has learned what it signed after the backup.
    """
    manifest_path = source / MANIFEST
    if not manifest_path.exists():
        raise NodeError(f"{source} is not a hashfed backup (no {MANIFEST})")
    manifest = _read_manifest(manifest_path)
    if home.exists() and any(p.name != "keys" for p in home.iterdir()):
        raise NodeError(f"{home} already holds files; restore into a new or empty directory")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "keys").mkdir(mode=0o700, exist_ok=True)
    for name in manifest["files"]:
        target = home / name
        if target.exists():
            raise NodeError(f"{target} exists; restore into a new or empty directory")
        _private_copy(source / name, target)
    config = load_config(home)
    if not config.log_key.exists():
        raise NodeError(
            f"the backup holds no keys and {config.log_key} is missing; put the log and peer "
            "keys in place first (they are backed up separately with --with-keys)"
        )
    pending_marker(home).write_text(
        f"Restored from {source} at size {manifest['size']} on "
        f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}.\n"
    )
    node = open_node(home)  # checks the keys against the database's own log
    node.close()
    return config


def _read_manifest(path: Path) -> dict[str, Any]:
    """Returns the backup's manifest, refusing one that is malformed or names a file
    outside the backup (a tampered backup must not write outside the node directory)."""
    try:
        manifest = json.loads(path.read_text())
        files, size = manifest["files"], manifest["size"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NodeError(f"{path} is not a hashfed backup manifest: {exc}") from None
    if not isinstance(files, list) or not isinstance(size, int):
        raise NodeError(f"{path} is not a hashfed backup manifest: bad 'files' or 'size'")
    for name in files:
        parts = name.split("/") if isinstance(name, str) else []
        plain = all(part and part not in (".", "..") and "\\" not in part for part in parts)
        if not plain or not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "keys")):
            raise NodeError(f"{path} names {name!r}, which is not a file of a node directory")
        if not (path.parent / name).is_file() or (path.parent / name).is_symlink():
            raise NodeError(f"the backup in {path.parent} lacks {name}, which its manifest lists")
    return dict(manifest)


# -- recovery -----------------------------------------------------------------------------


@dataclass
class RecoveryReport:
    """What recovery learned and did."""

    origin: str
    old_size: int
    new_size: int
    learned_size: int
    sources: dict[str, int] = field(default_factory=dict)  # who said which size
    mirror: str | None = None
    errors: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def rebuild_home(home: Path) -> bool:
    """Makes a node directory that holds only keys (a lost disk) into an empty publisher
    node of the same origin, ready for :func:`recover`, and marks it restore-pending.
    Returns False (doing nothing) if home already holds a node."""
    if (home / CONFIG_FILE).exists():
        return False
    key_file = home / "keys" / "log.key"
    if not key_file.exists():
        raise NodeError(
            f"{home} holds no node and no log key ({key_file}); put the lost node's keys "
            "there first: recovery rebuilds a log only with the key that signed it"
        )
    signer = parse_signer(read_key_file(key_file).strip())
    config = NodeConfig(home=home, origin=signer.name, role="publisher")
    write_config(config)
    ensure_witness_key(config)
    ensure_api_token(home)
    db = open_database(config.database)
    try:
        with transaction(db) as conn:
            log = logstore.create_log(conn, config.origin, signer.vkey(), own=True)
            note = sign_checkpoint(Checkpoint(config.origin, 0, EMPTY_ROOT), signer)
            logstore.record_checkpoint(conn, log.id, 0, EMPTY_ROOT, note)
    finally:
        db.conn.close()
    write_signed_head(config.signed_head, note)
    pending_marker(home).write_text(f"Rebuilt from keys only on {time.ctime()}.\n")
    return True


async def _partner_sizes(
    session: aiohttp.ClientSession, node: Node, peer_list: list[peers.Peer], report: RecoveryReport
) -> None:
    verifiers = VerifierList(node.signer.verifier())
    for peer in peer_list:
        fetcher = fetcher_for(session, node, peer)
        try:
            note = (await fetcher.checkpoint(node.config.origin)).decode("utf-8")
            checkpoint, _ = open_checkpoint(note, verifiers, node.config.origin)
        except Exception as exc:  # a silent or broken peer must not stop the others
            report.errors.append(f"{peer.name}: {exc}")
            continue
        report.sources[f"partner {peer.name}"] = checkpoint.size


async def _witness_sizes(node: Node, report: RecoveryReport) -> None:
    """Pushes the current checkpoint to the policy's witnesses: a witness that cosigned a
    larger size answers 409 with it, which push_checkpoint records in witness_push."""
    policy = load_policy(node.config.home)
    if policy is None or not any(w.url for w in policy.witnesses):
        return
    pushed = await push_checkpoint(node.db, node.config.origin, policy)
    report.errors += [f"witness {name}: {error}" for name, error in pushed.errors.items()]
    for name, size in witness_store.pushed_sizes(node.db.conn):
        report.sources[f"witness {name}"] = size


def _set_own(db: sqlite_utils.Database, origin: str, own: bool) -> None:
    with transaction(db) as conn:
        logstore.set_own(conn, origin, own)


async def _catch_up(node: Node, session: aiohttp.ClientSession, peer: peers.Peer) -> SyncResult:
    """Syncs the own log from peer as if it were a mirrored log: every checkpoint,
    proof, entry and content bundle is verified by the sync engine before it is kept."""
    origin = node.config.origin
    _set_own(node.db, origin, False)
    try:
        store = SqliteSyncStore(node.db, retention=0)
        fetcher = fetcher_for(session, node, peer)
        policy = ApplyPolicy("publisher", node.config.min_pdq_quality, 0, None)
        return await sync_origin(store, fetcher, origin, parse_verifier(node.signer.vkey()), policy)
    finally:
        _set_own(node.db, origin, True)


def _reconcile_cases(node: Node, old_size: int) -> list[str]:
    """Brings the case desk in line with the recovered tail and says what was lost.

    Cases still pending in the backup whose hashes the recovered entries hold were
    published after the backup: they are marked published (never published twice).
    Cases opened after the backup existed only on this node (their case numbers and
    PIN hashes are in no mirror): they are lost, and their hashes can be withdrawn
    only with 'hashfed retract'.
    """
    conn = node.db.conn
    log = logstore.get_log(conn, node.config.origin)
    assert log is not None
    with transaction(node.db) as tx:
        found = mark_published_cases(tx, log.id, old_size)
    known = published_case_indices(conn)
    tail = bank.indices_from(conn, log.id, old_size)
    unknown = [i for i in tail if i not in known]
    lost = []
    if found:
        lost.append(f"{len(set(found))} pending cases were found published; marked so")
    if unknown:
        lost.append(
            f"{len(unknown)} hash additions (indices {unknown[0]}..{unknown[-1]}) were published "
            "after the backup: any case opened after the backup is lost (its case number and "
            "PIN hash were only on this node), so its hashes can be withdrawn only with "
            "'hashfed retract'"
        )
    lost.append(
        "cases opened after the backup and not yet published (pending or in review) are "
        "in no mirror and are lost"
    )
    return lost


async def recover(
    home: Path,
    source: str,
    peer_vkey: str | None = None,
    on_progress: Callable[[str], None] = lambda _: None,
) -> RecoveryReport:
    """Recovers the own log of the node in home from the mirror source (a peer name, or a
    URL with peer_vkey), then lets it append again; see the module docstring."""
    rebuilt = rebuild_home(home)
    node = open_node(home)
    try:
        origin = node.config.origin
        if peer_vkey is not None:
            parse_verifier(peer_vkey)
            name = "recovery-" + peer_vkey.split("+", 1)[0].split("/")[0]
            with transaction(node.db) as conn:
                if peers.get_peer(conn, name) is None:
                    peers.add_peer(conn, name, source, peer_vkey, None)
            source = name
        mirror = peers.get_peer(node.db.conn, source)
        if mirror is None or not mirror.url:
            raise NodeError(f"no peer named {source!r} with a URL; see 'hashfed peers list'")
        log = logstore.get_log(node.db.conn, origin)
        assert log is not None
        report = RecoveryReport(origin, log.size, log.size, log.size)
        report.sources["this node"] = log.size
        peer_list = [p for p in peers.list_peers(node.db.conn) if p.url]
        async with aiohttp.ClientSession() as session:
            on_progress("asking witnesses and partners for the largest size signed")
            await _witness_sizes(node, report)
            await _partner_sizes(session, node, peer_list, report)
            report.learned_size = max(report.sources.values())
            for peer in [mirror, *(p for p in peer_list if p.name != mirror.name)]:
                on_progress(f"fetching and verifying {origin} from {peer.name}")
                try:
                    result = await _catch_up(node, session, peer)
                except SyncError as exc:
                    report.errors.append(f"{peer.name}: {exc}")
                    continue
                report.new_size = max(report.new_size, result.new_size)
                report.mirror = peer.name
                if report.new_size >= report.learned_size:
                    break
        if report.new_size < report.learned_size:
            who = ", ".join(f"{k} ({v})" for k, v in report.sources.items())
            pending_marker(home).write_text(
                f"Recovery refused: size {report.learned_size} was signed but no mirror "
                f"serves more than {report.new_size}. Start a new origin (specs/recovery.md).\n"
            )
            raise RecoveryRefused(
                f"{origin} signed size {report.learned_size} (sizes seen: {who}) but no mirror "
                f"serves more than {report.new_size}: appending would fork the log. Start a new "
                "origin with a new key and have partners trust it (specs/recovery.md)"
            )
        log = logstore.get_log(node.db.conn, origin)
        assert log is not None and log.checkpoint is not None
        write_signed_head(node.config.signed_head, log.checkpoint)
        report.lost = _reconcile_cases(node, report.old_size)
        if rebuilt:
            report.lost.append(
                "the peers, trusted logs and witness policy were only on this node: add them "
                "again ('hashfed peers add', 'hashfed trust add', 'hashfed policy set'); "
                "hashfed.toml was rewritten with defaults"
            )
        pending_marker(home).unlink(missing_ok=True)
        return report
    finally:
        node.close()
