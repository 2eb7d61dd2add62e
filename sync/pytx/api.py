"""HashfedSignalExchangeAPI: python-threatexchange's SignalExchangeAPI for a hashfed log.

``fetch_iter`` runs hashfed's own verifying client (hashfed.sync.follow over
hashfed.sync.fetch.HttpFetcher) and yields one ``FetchDelta`` per verified
entry bundle: its additions keyed by log index, its retractions as deletes of
the indices they name. Each delta's checkpoint is the verified tree after that
bundle, so the caller may stop and resume anywhere. The nodes in the config
are tried in order: a node that fails (unreachable, tampering, behind, without
the witness quorum) is left for the next, which resumes from the last verified
bundle. A fork of the log raises ``Equivocation`` at once, with the evidence
when there is a whole signed checkpoint to pair: the caller keeps its old
checkpoint, and no node is trusted past it.

The peer key (the credentials) is only used at a node configured as
``VKEY@URL``: its sessions are opened with that peer verifier key as the server
key, so the node must sign its session reply with it before its token is sent
(specs/peer-auth.md). A bare URL is read anonymously.

``report_opinion`` posts the opinion to the platform's own hashfed node (the
collab's ``feedback_node``, with its admin token from ``HashfedNodeToken``):
feedback is a record signed into a log, which only a node can write.

pytx calls are synchronous; the client is asyncio (aiohttp), so each
fetch_iter runs its own event loop, advanced one bundle per ``next()``.
"""

# ruff: noqa: UP006, UP045  (pytx's generics and dataclasses use typing names)

import asyncio
import logging
import re
import time
import typing as t
import urllib.parse
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import aiohttp
from hashfed.protocol.errors import MalformedBundle, ProtocolError
from hashfed.protocol.policy import Policy as WitnessPolicy
from hashfed.protocol.policy import parse_policy
from hashfed.protocol.records import Verdict
from hashfed.protocol.tiles import ENTRY_BUNDLE_WIDTH, split_bundle
from hashfed.protocol.validation import Policy
from hashfed.signing.errors import SigningError
from hashfed.signing.keys import Signer, Verifier, parse_signer, parse_verifier
from hashfed.sync.auth import SessionClient
from hashfed.sync.errors import Equivocation, SyncError
from hashfed.sync.fetch import HttpFetcher
from hashfed.sync.follow import AwaitingQuorum, Behind, VerifiedBundle, follow
from hashfed.sync.pytx.config import (
    API_NAME,
    MAX_MISSING,
    HashfedCheckpoint,
    HashfedCollabConfig,
    HashfedCredentials,
    HashfedNodeToken,
)
from hashfed.sync.pytx.entries import (
    SIGNAL_TYPES,
    HashfedEntry,
    HashfedSignalMetadata,
    bundle_updates,
    convert,
    refill_updates,
)
from threatexchange.exchanges import auth
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.signal_type.signal_base import SignalType

log = logging.getLogger(__name__)

FEEDBACK_PATH = "/v1/feedback"
"""The feedback node's endpoint (specs/match-api.md, "Feedback")."""

PEER_KEY_HINT = (
    "write the node's URL as VKEY@URL, with its peer verifier key (the 'peer' line of "
    "'hashfed keys show' on that node)"
)

HashfedDelta = state.FetchDelta[int, HashfedEntry, HashfedCheckpoint]


class HashfedFetchFailed(SyncError):
    """No configured node could serve a verified update; the checkpoint stays where it was."""


class HashfedConfigError(ValueError):
    """The collaboration config or the credentials cannot be used."""


class HashfedNoFeedbackNode(NotImplementedError):
    """report_opinion without a feedback_node: nowhere to sign feedback into a log."""


class HashfedFeedbackFailed(Exception):
    """The feedback node refused the feedback, or could not be reached; nothing was
    published (the node writes all of a request's records or none)."""


class HashfedNode(t.NamedTuple):
    """A configured node: its base URL and, if given, the peer key it must prove."""

    url: str
    server_key: t.Optional[Verifier]


class HashfedSignalExchangeAPI(
    auth.SignalExchangeWithAuth[HashfedCollabConfig, HashfedCredentials],
    SignalExchangeAPI[
        HashfedCollabConfig, HashfedCheckpoint, HashfedSignalMetadata, int, HashfedEntry
    ],
):
    """Reads a hashfed log from its publisher or mirrors, verifying everything."""

    def __init__(
        self, collab: HashfedCollabConfig, credentials: t.Optional[HashfedCredentials] = None
    ) -> None:
        self.collab = collab
        try:
            self.verifier: Verifier = parse_verifier(collab.log_key)
        except SigningError as exc:
            raise HashfedConfigError(f"hashfed collab {collab.name}: log_key: {exc}") from None
        if self.verifier.name != collab.origin:
            raise HashfedConfigError(
                f"hashfed collab {collab.name}: log_key is named {self.verifier.name!r}, "
                f"not after the origin {collab.origin!r}"
            )
        if not collab.urls:
            raise HashfedConfigError(f"hashfed collab {collab.name}: no node URLs configured")
        self.nodes = [_parse_node(entry, collab.log_key.strip()) for entry in collab.urls]
        self.signer: t.Optional[Signer] = None
        if credentials is not None:
            try:
                self.signer = parse_signer(credentials.peer_key)
            except SigningError as exc:
                raise HashfedConfigError(f"hashfed peer key: {exc}") from None
        self.witness_policy = _load_policy(collab)
        if collab.feedback_node:
            _feedback_url(collab)  # a bad URL is refused now, not at the first opinion
        self.rules = Policy(min_pdq_quality=collab.min_pdq_quality)

    @classmethod
    def for_collab(
        cls,
        collab: HashfedCollabConfig,
        credentials: t.Optional[HashfedCredentials] = None,
    ) -> "HashfedSignalExchangeAPI":
        if credentials is None:
            try:
                credentials = HashfedCredentials.get(cls)
            except auth.SignalExchangeAPIMissingAuthException:
                credentials = None  # reads the logs the nodes serve publicly
        return cls(collab, credentials)

    @classmethod
    def get_name(cls) -> str:
        return API_NAME

    @staticmethod
    def get_config_cls() -> t.Type[HashfedCollabConfig]:
        return HashfedCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> t.Type[HashfedCheckpoint]:
        return HashfedCheckpoint

    @staticmethod
    def get_record_cls() -> t.Type[HashfedSignalMetadata]:
        return HashfedSignalMetadata

    @staticmethod
    def get_credential_cls() -> t.Type[HashfedCredentials]:
        return HashfedCredentials

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: t.Sequence[t.Type[SignalType]],
        collab: HashfedCollabConfig,
        fetched: t.Mapping[int, HashfedEntry],
    ) -> t.Dict[t.Type[SignalType], t.Dict[str, HashfedSignalMetadata]]:
        return convert(signal_types, fetched)

    def fetch_iter(
        self,
        supported_signal_types: t.Sequence[t.Type[SignalType]],
        checkpoint: t.Optional[HashfedCheckpoint],
    ) -> Iterator[HashfedDelta]:
        """Yields one delta per verified bundle until the log is up to date.

        Raises Equivocation if the origin forked, HashfedFetchFailed if no node
        could serve a verified update (after yielding what was verified).
        """
        current = checkpoint or HashfedCheckpoint()
        errors: t.List[str] = []
        with asyncio.Runner() as runner:
            session = runner.run(_open_session())
            try:
                for node in self.nodes:
                    fetcher = self._fetcher(session, node)
                    bundles = follow(
                        fetcher,
                        self.collab.origin,
                        self.verifier,
                        current.tree(),
                        current.note,
                        quorum=self._quorum,
                    )
                    try:
                        while (bundle := runner.run(_next(bundles))) is not None:
                            delta = self._delta(bundle, current)
                            current = delta.checkpoint
                            yield delta
                        refilled = runner.run(self._refill(fetcher, current))
                        if refilled is not None:
                            yield refilled
                        return
                    except Equivocation as exc:
                        if exc.evidence is not None:
                            log.error(
                                "hashfed evidence of equivocation:\n%s", exc.evidence.format()
                            )
                        raise
                    except (Behind, AwaitingQuorum) as exc:
                        log.info("hashfed: %s", exc)
                        errors.append("")
                    except SyncError as exc:
                        error = str(exc)
                        if self.signer is not None and node.server_key is None:
                            error += f" (read anonymously: to use the peer key, {PEER_KEY_HINT})"
                        log.warning("hashfed: %s; trying the next node", error)
                        errors.append(error)
                    finally:
                        runner.run(bundles.aclose())
            finally:
                runner.run(session.close())
        if any(errors):
            message = "; ".join(e for e in errors if e)
            if self.signer is None:
                message += (
                    f" (no peer key configured, so only public logs can be read: set "
                    f"{HashfedCredentials.ENV_VARIABLE} or {HashfedCredentials.FILE_NAME})"
                )
            raise HashfedFetchFailed(message)

    def _fetcher(self, session: aiohttp.ClientSession, node: HashfedNode) -> HttpFetcher:
        """Returns the node's fetcher: authenticated only where the node's peer key is
        configured, which the node must prove (its signed session reply) before the
        session's token is used; anonymous elsewhere."""
        auth_client = None
        if self.signer is not None and node.server_key is not None:
            key = node.server_key
            auth_client = SessionClient(self.signer, key.name, server_key=key)
        return HttpFetcher(session, node.url, node.url, auth_client)

    async def _refill(
        self, fetcher: HttpFetcher, current: HashfedCheckpoint
    ) -> t.Optional[HashfedDelta]:
        """Asks the node again for the content of additions that came without it
        (specs/protocol.md §8.4): returns a delta of those found, or None.

        Best effort: each item is checked against its entry's commitment, kept in
        the checkpoint, so a node can only fail to help, never harm."""
        missing = current.missing_content()
        contents: t.Dict[int, bytes] = {}
        for bundle in sorted({index // ENTRY_BUNDLE_WIDTH for index in missing}):
            width = min(ENTRY_BUNDLE_WIDTH, current.size - bundle * ENTRY_BUNDLE_WIDTH)
            try:
                data = await fetcher.content(self.collab.origin, bundle, width)
                items = split_bundle(data, f"{fetcher.name}: content bundle {bundle}")
            except (SyncError, MalformedBundle) as exc:
                log.info("hashfed: content of earlier entries not available: %s", exc)
                return None
            for index in missing:
                offset = index - bundle * ENTRY_BUNDLE_WIDTH
                if 0 <= offset < min(width, len(items)):
                    contents[index] = items[offset]
        updates, resolved = refill_updates(missing, contents, self.rules)
        if not resolved:
            return None
        for index in resolved:
            del missing[index]
        newest = max((entry.time for entry in updates.values() if entry), default=0)
        progress = max(current.progress_time, newest)
        checkpoint = HashfedCheckpoint.of(current.tree(), current.note, progress, missing)
        log.info("hashfed: content of %d earlier entries received at last", len(resolved))
        return state.FetchDelta(updates, checkpoint)

    def _quorum(self, note: str) -> bool:
        if self.witness_policy is None:
            return True
        try:
            result = self.witness_policy.check_checkpoint(
                note, self.collab.origin, int(time.time())
            )
        except (ProtocolError, SigningError):
            return False
        return result.met

    def _delta(self, bundle: VerifiedBundle, before: HashfedCheckpoint) -> HashfedDelta:
        updates, newest, missing = bundle_updates(bundle, self.rules)
        progress = max(before.progress_time, newest)
        still = before.missing_content()
        still.update(missing)
        for index, update in updates.items():
            if update is None:  # retracted: its content is erased, nothing to ask for
                still.pop(index, None)
        if len(still) > MAX_MISSING:
            dropped = sorted(still)[: len(still) - MAX_MISSING]
            log.warning(
                "hashfed: %d additions without content are no longer asked for", len(dropped)
            )
            for index in dropped:
                del still[index]
        checkpoint = HashfedCheckpoint.of(bundle.tree, bundle.note, progress, still)
        return state.FetchDelta(updates, checkpoint)

    def report_opinion(
        self, s_type: t.Type[SignalType], signal: str, opinion: state.SignalOpinion
    ) -> None:
        """Publishes the opinion as feedback in the platform's own hashfed node's log.

        Feedback is a record signed into a log, so it goes to the collab's
        feedback_node (POST /v1/feedback with its admin token), which syncs this
        log: one record on every active entry of this log with the hash (the
        same photo may be in several cases). The category becomes the verdict
        (OPINION_VERDICTS), the tags the record's tags. Raises
        HashfedNoFeedbackNode (a NotImplementedError, as pytx expects of an
        exchange that cannot report) when no node is configured, pytx's
        SignalExchangeAPIMissingAuthException without its admin token (naming
        TX_HASHFED_ADMIN_TOKEN and ~/.tx_hashfed_admin_token), HashfedFeedbackFailed
        if the node refuses or cannot be reached (its one-line reason in the message).
        """
        if not self.collab.feedback_node:
            raise HashfedNoFeedbackNode(
                f"hashfed collab {self.collab.name}: no feedback_node configured, so "
                "opinions cannot be reported: feedback is a record signed into your own "
                "hashfed node's log. Set the collab's feedback_node to that node's URL and "
                f"put its admin token (keys/admin.token) in {HashfedNodeToken.ENV_VARIABLE} "
                f"or {HashfedNodeToken.FILE_NAME}"
            )
        url = _feedback_url(self.collab)
        kind = next((k for k, cls in SIGNAL_TYPES.items() if cls is s_type), None)
        if kind is None:
            raise HashfedFeedbackFailed(
                f"hashfed: {s_type.get_name()} signals are not in hashfed logs (only "
                f"{', '.join(cls.get_name() for cls in SIGNAL_TYPES.values())})"
            )
        body = {
            "kind": str(kind),
            "hash": signal,
            "origin": self.collab.origin,
            "verdict": OPINION_VERDICTS[opinion.category],
            "tags": sorted(opinion.tags),
        }
        token = _admin_token(type(self))
        with asyncio.Runner() as runner:
            status, answer = runner.run(_post_json(url, token, body))
        if status != 201 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            reason = str(error or answer)[:300]
            raise HashfedFeedbackFailed(
                f"hashfed node {self.collab.feedback_node}: {status}: {reason}"
            )
        log.info(
            "hashfed: published %s feedback on %d entries as %s",
            body["verdict"],
            len(answer.get("feedback", [])),
            answer.get("log"),
        )


OPINION_VERDICTS: t.Dict[state.SignalOpinionCategory, str] = {
    state.SignalOpinionCategory.POSITIVE_CLASS: Verdict.BLOCKED.value,
    state.SignalOpinionCategory.NEGATIVE_CLASS: Verdict.FALSE_POSITIVE.value,
    state.SignalOpinionCategory.INVESTIGATION_SEED: Verdict.PENDING_REVIEW.value,
}
"""pytx's opinion categories as hashfed verdicts (specs/protocol.md §7.6): the match
fits the collaboration (blocked, as pytx's StopNCII exchange reads Blocked), the hash
gives false positives, or the match awaits review."""

_LOOPBACK = ("127.0.0.1", "::1", "localhost")

FEEDBACK_TIMEOUT = 60.0
"""Seconds report_opinion waits for the node's answer."""


def _feedback_url(collab: HashfedCollabConfig) -> str:
    base = (collab.feedback_node or "").strip()
    if not re.fullmatch(r"https?://\S+", base, re.IGNORECASE):
        raise HashfedConfigError(
            f"hashfed collab {collab.name}: feedback_node {base!r:.200} is not an http(s) URL"
        )
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme.lower() == "http" and parsed.hostname not in _LOOPBACK:
        # The admin token also opens the node's metrics and status: never in clear text.
        raise HashfedConfigError(
            f"hashfed collab {collab.name}: feedback_node {base!r:.200} would carry the node's "
            "admin token in clear text; use https, or http to this machine (127.0.0.1, ::1, "
            "localhost)"
        )
    return base.rstrip("/") + FEEDBACK_PATH


def _admin_token(api: t.Type[HashfedSignalExchangeAPI]) -> str:
    """Returns the feedback node's admin token; without one (or with a malformed one)
    pytx's own auth exceptions propagate, which its CLI prints as what to set."""
    return HashfedNodeToken.get(api).admin_token


async def _post_json(url: str, token: str, body: t.Dict[str, t.Any]) -> t.Tuple[int, t.Any]:
    """POSTs body as JSON with the bearer token; returns the status and decoded answer."""
    timeout = aiohttp.ClientTimeout(total=FEEDBACK_TIMEOUT)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=body, headers=headers, allow_redirects=False) as response,
        ):
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, (await response.text())[:300]
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HashfedFeedbackFailed(f"hashfed node {url}: {exc or type(exc).__name__}") from None


def _parse_node(entry: str, log_key: str) -> HashfedNode:
    """Returns a configured node: "VKEY@URL" (its peer verifier key) or a bare "URL".

    "name=URL", written before the nodes' peer keys were pinned, is still read:
    its name is ignored and the node is read anonymously."""
    text = entry.strip()
    match = _NODE.fullmatch(text)
    if match is None:
        raise HashfedConfigError(f"hashfed node {entry!r} is not an http(s) URL or VKEY@URL")
    vkey, name, url = match.group("vkey", "name", "url")
    if name is not None:
        log.warning(
            "hashfed node %r: name=URL no longer names the node's key; it is read "
            "anonymously: to use the peer key, %s",
            entry,
            PEER_KEY_HINT,
        )
    if vkey is None:
        return HashfedNode(url, None)
    try:
        key = parse_verifier(vkey)
    except SigningError as exc:
        raise HashfedConfigError(f"hashfed node {url}: peer key: {exc}") from None
    if vkey == log_key:
        raise HashfedConfigError(
            f"hashfed node {url}: the key before '@' is the log key; {PEER_KEY_HINT}"
        )
    return HashfedNode(url, key)


_NODE = re.compile(
    r"(?:(?!https?://)(?:(?P<vkey>[^@\s]+)@|(?P<name>[^=@+\s]+)=))?(?P<url>https?://\S+)",
    re.IGNORECASE,
)


def _load_policy(collab: HashfedCollabConfig) -> t.Optional[WitnessPolicy]:
    if not collab.witness_policy:
        return None
    path = Path(collab.witness_policy).expanduser()
    try:
        policy = parse_policy(path.read_bytes())
    except OSError as exc:
        raise HashfedConfigError(f"hashfed witness policy {path}: {exc.strerror}") from None
    except (ProtocolError, SigningError, ValueError) as exc:
        raise HashfedConfigError(f"hashfed witness policy {path}: {exc}") from None
    if not policy.applies_to(collab.origin):
        raise HashfedConfigError(
            f"hashfed witness policy {path} lists no log with origin {collab.origin!r}"
        )
    return policy


async def _open_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def _next(bundles: AsyncGenerator[VerifiedBundle, None]) -> t.Optional[VerifiedBundle]:
    try:
        return await anext(bundles)
    except StopAsyncIteration:
        return None
