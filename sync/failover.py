"""One origin served at several URL prefixes: try them in order, fail over on errors.

A partner may reach a log through several base URLs: the publisher's node, a
C2SP tlog-mirror, a static tree behind nginx or a CDN. Everything fetched is
verified by the caller, so any of them may serve any resource; a
:class:`FailoverFetcher` asks them in order of preference:

* it starts with the one that last answered (the first at the beginning), so a
  healthy mirror keeps serving a whole catch-up;
* on ``PeerFault`` (a connection that fails, an HTTP error, a timeout) or
  ``NotFound`` (a mirror that lags behind, or does not carry that log) it asks
  the next one;
* it raises ``NotFound`` only if every URL answered 404, else ``PeerFault``
  naming each URL's failure.

The sync engine (and the pytx exchange, which reuses it) sees one ``Fetcher``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from hashfed.sync.auth import SessionClient
from hashfed.sync.errors import NotFound, PeerFault
from hashfed.sync.fetch import Fetcher, HttpFetcher, Limits


class FailoverFetcher:
    """A Fetcher over several fetchers of the same logs, tried in order (see module doc)."""

    def __init__(self, name: str, fetchers: Sequence[Fetcher]) -> None:
        if not fetchers:
            raise ValueError("a FailoverFetcher needs at least one fetcher")
        self.name = name
        self._fetchers = list(fetchers)
        self._preferred = 0

    async def checkpoint(self, origin: str) -> bytes:
        return await self._first(lambda f: f.checkpoint(origin))

    async def tile(self, origin: str, level: int, index: int, width: int) -> bytes:
        return await self._first(lambda f: f.tile(origin, level, index, width))

    async def bundle(self, origin: str, index: int, width: int) -> bytes:
        return await self._first(lambda f: f.bundle(origin, index, width))

    async def content(self, origin: str, index: int, width: int) -> bytes:
        return await self._first(lambda f: f.content(origin, index, width))

    async def _first(self, get: Callable[[Fetcher], Awaitable[bytes]]) -> bytes:
        failures: list[str] = []
        all_missing = True
        count = len(self._fetchers)
        for step in range(count):
            position = (self._preferred + step) % count
            fetcher = self._fetchers[position]
            try:
                data = await get(fetcher)
            except NotFound as exc:
                failures.append(str(exc))
                continue
            except PeerFault as exc:
                failures.append(str(exc))
                all_missing = False
                continue
            self._preferred = position
            return data
        message = f"{self.name}: every URL failed: " + "; ".join(failures)
        if all_missing:
            raise NotFound(message)
        raise PeerFault(message)


def peer_fetcher(
    session: aiohttp.ClientSession,
    name: str,
    urls: Sequence[str],
    auth: SessionClient | None = None,
    limits: Limits | None = None,
) -> Fetcher:
    """Returns a Fetcher for the peer called name at urls, in order of preference.

    One URL gives a plain HttpFetcher; several give a FailoverFetcher whose
    members share auth, which keeps one token per base URL: each URL opens
    (and, with a server key, proves) its own session, a token is never sent
    to another URL, and a GET-only mirror (404/405 on the session endpoint)
    is read anonymously (specs/peer-auth.md, "Clients").
    """
    fetchers = [
        HttpFetcher(session, name if len(urls) == 1 else f"{name} ({url})", url, auth, limits)
        for url in urls
    ]
    if len(fetchers) == 1:
        return fetchers[0]
    return FailoverFetcher(name, fetchers)
