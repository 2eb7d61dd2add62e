"""Fetching a log's checkpoint, tiles, entry bundles and content bundles from a peer.

A ``Fetcher`` is what sync reads a log through. Its contract:

* every method returns the resource's bytes, exactly as served, or raises
  ``NotFound`` (404) or ``PeerFault`` (anything else that is wrong: an HTTP
  error, a body over the size limit, a wrong Content-Length, a response slower
  than the read timeout allows, a connection that fails);
* a partial tile or bundle that the peer no longer has falls back to the full
  one (tlog-tiles lets a server replace partial tiles by full ones), of which
  the caller uses the prefix it asked for;
* nothing fetched is trusted: the caller verifies it all.

``HttpFetcher`` implements it over aiohttp, building every path with
``hashfed.protocol.tiles``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from hashfed.protocol.errors import MalformedBundle
from hashfed.protocol.merkle import HASH_SIZE
from hashfed.protocol.tiles import (
    ENTRY_BUNDLE_WIDTH,
    TILE_WIDTH,
    content_path,
    encode_bundle,
    entries_path,
    log_prefix,
    split_bundle,
    tile_path,
)
from hashfed.sync.auth import SessionClient, SessionRefused
from hashfed.sync.errors import NotFound, PeerFault

# Upper bounds on what a peer may send. A checkpoint with 100 signatures is a
# few KiB; an entry bundle holds 256 entries of at most 65,535 bytes each.
MAX_CHECKPOINT_BYTES = 64 * 1024
MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE
MAX_BUNDLE_BYTES = ENTRY_BUNDLE_WIDTH * (2 + 65535)


GET_ONLY = (404, 405)
"""Answers to a session request that mean the server has no session endpoint (a
GET-only mirror or static tree): only public logs can be read there."""


class Fetcher(Protocol):
    """Reads one peer's copy of logs; see the module docstring for the contract."""

    name: str

    async def checkpoint(self, origin: str) -> bytes: ...

    async def tile(self, origin: str, level: int, index: int, width: int) -> bytes: ...

    async def bundle(self, origin: str, index: int, width: int) -> bytes: ...

    async def content(self, origin: str, index: int, width: int) -> bytes: ...


@dataclass(frozen=True)
class Limits:
    """Time limits for one request: connect, between two reads, and in total."""

    connect: float = 10.0
    read: float = 15.0
    total: float = 60.0


class HttpFetcher:
    """A Fetcher over HTTP(S) for the peer at base_url, authenticated if auth is given."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: str,
        base_url: str,
        auth: SessionClient | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.name = name
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = auth
        self._anonymous = False  # the peer refused a session: only public logs are readable
        self._refusal = ""
        limits = limits or Limits()
        self._timeout = aiohttp.ClientTimeout(
            total=limits.total, sock_connect=limits.connect, sock_read=limits.read
        )

    async def checkpoint(self, origin: str) -> bytes:
        return await self._get(f"{log_prefix(origin)}/checkpoint", MAX_CHECKPOINT_BYTES)

    async def tile(self, origin: str, level: int, index: int, width: int) -> bytes:
        data = await self._get_partial(
            origin, tile_path(level, index, width), tile_path(level, index), MAX_TILE_BYTES
        )
        return data[: width * HASH_SIZE] if len(data) > width * HASH_SIZE else data

    async def bundle(self, origin: str, index: int, width: int) -> bytes:
        return await self._get_partial(
            origin, entries_path(index, width), entries_path(index), MAX_BUNDLE_BYTES
        )

    async def content(self, origin: str, index: int, width: int) -> bytes:
        return await self._get_partial(
            origin, content_path(index, width), content_path(index), MAX_BUNDLE_BYTES
        )

    async def _get_partial(self, origin: str, path: str, full: str, limit: int) -> bytes:
        prefix = log_prefix(origin)
        try:
            return await self._get(f"{prefix}/{path}", limit)
        except NotFound:
            if path == full:
                raise
            return await self._get(f"{prefix}/{full}", limit)

    async def _get(self, path: str, limit: int, retried: bool = False) -> bytes:
        url = f"{self._base}/{path}"
        headers = {}
        if self._auth is not None and not self._anonymous:
            try:
                headers["Authorization"] = await self._auth.authorization(self._session, self._base)
            except SessionRefused as exc:
                if exc.status not in (401, *GET_ONLY):
                    raise PeerFault(f"{self.name}: refused a session: {exc}") from None
                # Not one of its peers, or a GET-only mirror (a static tree) that has
                # no session endpoint: public logs can still be read anonymously; a
                # private one answers 401 below, naming the refusal.
                self._anonymous, self._refusal = True, str(exc)
                if exc.status in GET_ONLY:
                    self._refusal = (
                        f"it has no session endpoint (HTTP {exc.status}): a GET-only mirror "
                        "serves public logs only"
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise PeerFault(f"{self.name}: session request failed: {exc!r}") from None
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as resp:
                if resp.status == 401 and self._anonymous:
                    raise PeerFault(f"{self.name}: refused a session: {self._refusal}")
                if resp.status == 401 and self._auth is not None and not retried:
                    self._auth.invalidate(self._base)
                    return await self._get(path, limit, retried=True)
                if resp.status == 404:
                    raise NotFound(f"{self.name}: {path} not found")
                if resp.status != 200:
                    raise PeerFault(f"{self.name}: GET {path} answered HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > limit:
                    size = resp.content_length
                    raise PeerFault(f"{self.name}: {path} is {size} bytes, over the {limit} limit")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise PeerFault(f"{self.name}: {path} is over the {limit}-byte limit")
                return bytes(body)
        except aiohttp.ClientPayloadError as exc:
            raise PeerFault(f"{self.name}: {path}: truncated or malformed body ({exc})") from None
        except TimeoutError:
            raise PeerFault(f"{self.name}: {path}: timed out (too slow)") from None
        except aiohttp.ClientError as exc:
            raise PeerFault(f"{self.name}: {path}: {type(exc).__name__}: {exc}") from None
        except asyncio.CancelledError:
            raise


async def fetch_bundle(
    fetcher: Fetcher, origin: str, index: int, width: int
) -> tuple[list[bytes], list[bytes], bytes, bytes]:
    """Fetches entry bundle index and its content bundle; returns their first width items
    and the two bundles of exactly those items, as bytes (the bytes served when they hold
    width items, which is the usual case, else re-encoded).

    Raises PeerFault if either is malformed or holds fewer than width items.
    """
    entries, content = await asyncio.gather(
        fetcher.bundle(origin, index, width), fetcher.content(origin, index, width)
    )
    what = f"{fetcher.name}: bundle {index}"
    try:
        items = split_bundle(entries, what)
        contents = split_bundle(content, what + " content")
    except MalformedBundle as exc:
        raise PeerFault(str(exc)) from None
    if len(items) < width or len(contents) < width or len(items) > ENTRY_BUNDLE_WIDTH:
        raise PeerFault(
            f"{what} holds {len(items)} entries and {len(contents)} contents, want {width}"
        )
    return (
        items[:width],
        contents[:width],
        entries if len(items) == width else encode_bundle(items[:width]),
        content if len(contents) == width else encode_bundle(contents[:width]),
    )
