"""Peers (nodes this node talks to) and trusted origins (logs this node syncs and applies).

A **peer** is another hashfed node, known by a local name, its base URL and its
*peer-authentication* verifier key (the ``peer`` key of ``hashfed keys show`` on
that node, named after its origin). A peer may read the logs in its read list,
or every log this node holds when the list is empty (``read`` is NULL); logs in
``[server] public_logs`` are open to anyone. See specs/peer-auth.md.

A **trusted origin** is a log this node syncs (from any peer) and applies to its
bank, known by its *log-signing* verifier key. As tlog-policy requires, the
origin is the key's name. Its role says which records are applied:

    publisher   hash additions and retractions from that origin go into the bank
    partner     only its feedback records are applied

Trusting an origin also creates its (empty) log in the ``logs`` table, so sync
has somewhere to write. A node never trusts its own origin.

Every function takes a connection; callers that change several rows wrap the
call in :func:`hashfed.node.store.db.transaction`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from urllib.parse import urlsplit

from hashfed.node.config import ROLES
from hashfed.node.errors import AlreadyConfigured, InvalidPeer, NotConfigured
from hashfed.node.store import logstore
from hashfed.protocol.errors import MalformedRecord
from hashfed.protocol.records import check_origin
from hashfed.protocol.session import PEER_KEY_PREFIX, is_peer_key_name
from hashfed.signing.errors import MalformedKey
from hashfed.signing.keys import ALG_ED25519, Verifier, decode_vkey, parse_verifier

MAX_PEER_NAME = 100
"""Longest peer name accepted."""


@dataclass(frozen=True)
class Peer:
    """A configured peer node.

    read is None when the peer may read every log this node holds, else the
    origins it may read.
    """

    name: str
    url: str
    vkey: str
    read: tuple[str, ...] | None = None

    @property
    def urls(self) -> tuple[str, ...]:
        """The base URLs to sync from, in order of preference (the node's own first,
        then its mirrors and static trees); empty for a peer that only reads."""
        return tuple(self.url.split())

    @property
    def key_name(self) -> str:
        """The name of the peer's key (``peer:<origin>``): the audience of sessions with it."""
        return self.vkey.split("+", 1)[0]

    def verifier(self) -> Verifier:
        """Returns the verifier of the peer's peer-authentication key."""
        return parse_verifier(self.vkey)

    def may_read(self, origin: str) -> bool:
        """Reports whether this peer may read the log of origin (public logs aside)."""
        return self.read is None or origin in self.read


@dataclass(frozen=True)
class TrustedLog:
    """An origin whose log this node syncs, with its log-signing key and role."""

    origin: str
    vkey: str
    role: str


def check_ed25519_vkey(vkey: str) -> str:
    """Returns the key name of vkey, raising InvalidPeer unless it is an Ed25519 (0x01) vkey."""
    try:
        name, _, alg, _ = decode_vkey(vkey)
        parse_verifier(vkey)
    except MalformedKey as exc:
        raise InvalidPeer(f"not a verifier key: {exc}") from None
    if alg != ALG_ED25519:
        raise InvalidPeer(
            f"verifier key for {name!r} has signature type 0x{alg:02x}; peers and logs use "
            "Ed25519 keys (type 0x01), as printed by 'hashfed keys show'"
        )
    return name


def check_url(url: str) -> str:
    """Returns url without a trailing '/', raising InvalidPeer unless it is an http(s) base URL.

    "-" stands for a peer that only reads from this node: it is stored as "" and
    sync never fetches from it.
    """
    if url == "-":
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidPeer(f"peer URL {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidPeer(f"peer URL {url!r} must be http:// or https:// with a host name")
    if parts.username is not None or parts.password is not None:
        raise InvalidPeer(f"peer URL {url!r} must not carry a user name or password")
    if parts.query or parts.fragment or any(c.isspace() for c in url):
        raise InvalidPeer(f"peer URL {url!r} must be a base URL without spaces, query or fragment")
    return url.rstrip("/")


def check_peer_name(name: str) -> None:
    """Raises InvalidPeer unless name can name a peer (printable, no spaces, no commas)."""
    if (
        not 1 <= len(name) <= MAX_PEER_NAME
        or "," in name
        or any(c.isspace() or not c.isprintable() for c in name)
    ):
        raise InvalidPeer(
            f"peer name {name!r} must be 1..{MAX_PEER_NAME} printable characters "
            "without spaces or commas"
        )


def _check_read_origin(origin: str) -> None:
    try:
        check_origin(origin, "--read origin")
    except MalformedRecord as exc:
        raise InvalidPeer(str(exc)) from None
    if "," in origin:
        raise InvalidPeer(f"--read origin {origin!r} has a comma, which a read list cannot hold")


def _peer(row: tuple[str, str, str, str | None]) -> Peer:
    read = None if row[3] is None else tuple(row[3].split(","))
    return Peer(row[0], row[1], row[2], read)


def add_peer(
    conn: sqlite3.Connection,
    name: str,
    url: str,
    vkey: str,
    read: tuple[str, ...] | None = None,
    mirrors: tuple[str, ...] = (),
) -> Peer:
    """Adds a peer and returns it, refusing a bad name, URL or key and any duplicate.

    read None (or empty) lets the peer read every log; otherwise it names the
    only origins it may read. mirrors are further base URLs serving the same
    logs (tlog-mirrors, static trees), tried in order after url; they are kept
    in the url column, separated by spaces.
    """
    check_peer_name(name)
    url = check_url(url)
    extra = [check_url(m) for m in mirrors]
    if extra and (not url or "" in extra):
        raise InvalidPeer("a peer that only reads (URL -) cannot have mirrors")
    url = " ".join(dict.fromkeys([url, *extra]))
    key_name = check_ed25519_vkey(vkey)
    if not is_peer_key_name(key_name):
        raise InvalidPeer(
            f"{vkey} is a log-signing key (its name is an origin, {key_name!r}); a peer is added "
            f"with its peer-authentication key, named '{PEER_KEY_PREFIX}{key_name}' ('peer' in "
            "its 'hashfed keys show'). A log key goes to 'hashfed trust add'"
        )
    read = tuple(dict.fromkeys(read)) if read else None
    for origin in read or ():
        _check_read_origin(origin)
    if get_peer(conn, name) is not None:
        raise AlreadyConfigured(
            f"a peer named {name!r} is already configured; 'hashfed peers remove {name}' first"
        )
    for other in list_peers(conn):
        if other.vkey == vkey:
            raise AlreadyConfigured(f"peer {other.name!r} already has the key {vkey}")
    for trusted in list_trust(conn):
        if trusted.vkey == vkey:
            raise InvalidPeer(
                f"{vkey} is the log-signing key of trusted origin {trusted.origin!r}; a peer is "
                "added with its peer-authentication key ('peer' in 'hashfed keys show')"
            )
    conn.execute(
        "INSERT INTO peers (name, url, vkey, read) VALUES (?, ?, ?, ?)",
        (name, url, vkey, None if read is None else ",".join(read)),
    )
    return Peer(name, url, vkey, read)


def get_peer(conn: sqlite3.Connection, name: str) -> Peer | None:
    """Returns the peer called name, or None."""
    row = conn.execute("SELECT name, url, vkey, read FROM peers WHERE name = ?", (name,)).fetchone()
    return None if row is None else _peer(row)


def list_peers(conn: sqlite3.Connection) -> list[Peer]:
    """Returns every configured peer, by name."""
    rows = conn.execute("SELECT name, url, vkey, read FROM peers ORDER BY name").fetchall()
    return [_peer(row) for row in rows]


def remove_peer(conn: sqlite3.Connection, name: str) -> None:
    """Removes the peer called name, raising NotConfigured if there is none."""
    if conn.execute("DELETE FROM peers WHERE name = ?", (name,)).rowcount == 0:
        raise NotConfigured(f"no peer named {name!r} is configured (see 'hashfed peers list')")


def add_trust(conn: sqlite3.Connection, vkey: str, role: str) -> TrustedLog:
    """Trusts the log whose log-signing key is vkey, in role, and returns it.

    The origin is the key's name. Refuses a bad key or role, an origin already
    trusted, the node's own origin, and an origin the node already holds under
    another key. Creates the origin's empty log if the node holds none.
    """
    origin = check_ed25519_vkey(vkey)
    if is_peer_key_name(origin):
        raise InvalidPeer(
            f"{vkey} is a peer-authentication key (its name starts with {PEER_KEY_PREFIX!r}); "
            f"trust a log by its log-signing key, named {origin[len(PEER_KEY_PREFIX) :]!r} "
            "('log' in its 'hashfed keys show'). A peer key goes to 'hashfed peers add'"
        )
    if role not in ROLES:
        raise InvalidPeer(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    try:
        check_origin(origin, "the key's name")
    except MalformedRecord as exc:
        raise InvalidPeer(f"{exc}; it cannot be a log origin") from None
    if get_trust(conn, origin) is not None:
        raise AlreadyConfigured(
            f"origin {origin!r} is already trusted; 'hashfed trust remove {origin}' first"
        )
    for peer in list_peers(conn):
        if peer.vkey == vkey:
            raise InvalidPeer(
                f"{vkey} is the peer-authentication key of peer {peer.name!r}; trust a log by "
                "its log-signing key ('log' in 'hashfed keys show')"
            )
    log = logstore.get_log(conn, origin)
    if log is not None and log.own:
        raise InvalidPeer(f"{origin!r} is this node's own origin; a node does not trust itself")
    if log is not None and log.vkey != vkey:
        raise InvalidPeer(
            f"this node already holds a log for {origin!r} signed by another key ({log.vkey}); "
            "a log's key cannot be changed"
        )
    if log is None:
        logstore.create_log(conn, origin, vkey, own=False)
    conn.execute("INSERT INTO trust (origin, vkey, role) VALUES (?, ?, ?)", (origin, vkey, role))
    return TrustedLog(origin, vkey, role)


def get_trust(conn: sqlite3.Connection, origin: str) -> TrustedLog | None:
    """Returns the trusted origin, or None if origin is not trusted."""
    sql = "SELECT origin, vkey, role FROM trust WHERE origin = ?"
    row = conn.execute(sql, (origin,)).fetchone()
    return None if row is None else TrustedLog(*row)


def list_trust(conn: sqlite3.Connection) -> list[TrustedLog]:
    """Returns every trusted origin, by origin."""
    rows = conn.execute("SELECT origin, vkey, role FROM trust ORDER BY origin").fetchall()
    return [TrustedLog(*row) for row in rows]


def remove_trust(conn: sqlite3.Connection, origin: str) -> bool:
    """Stops trusting origin, raising NotConfigured if it is not trusted.

    A log the node holds nothing of (no entry, checkpoint, evidence or sync
    state) is forgotten too, so that a mistaken ``trust add`` leaves no trace and
    the origin can be trusted again under another key; returns whether it was.
    Any other log is kept; sync no longer fetches or applies it (``hashfed log
    forget`` drops it).
    """
    if conn.execute("DELETE FROM trust WHERE origin = ?", (origin,)).rowcount == 0:
        raise NotConfigured(f"origin {origin!r} is not trusted (see 'hashfed trust list')")
    log = logstore.get_log(conn, origin)
    if log is None or log.own or log.size or log.checkpoint or logstore.log_rows(conn, log):
        return False
    logstore.forget_log(conn, log)
    return True


def forget_mirror(conn: sqlite3.Connection, log: logstore.LogRow) -> None:
    """Stops trusting a mirrored log's origin, if trusted, and deletes all the node holds of it."""
    conn.execute("DELETE FROM trust WHERE origin = ?", (log.origin,))
    logstore.forget_log(conn, log)
