"""Peer authentication over real loopback HTTP: sessions, bearer tokens, 401 vs 403."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hashfed.node.http.auth import (
    MAX_SESSION_BODY,
    SessionStore,
    check_read,
    request_peer,
    setup_auth,
)
from hashfed.node.store.peers import Peer
from hashfed.protocol.errors import MalformedSessionRequest
from hashfed.protocol.session import SessionRequest, parse_session_request, sign_session_request
from hashfed.signing.keys import Ed25519Signer, generate_key, parse_signer
from hashfed.signing.note import sign_note
from hashfed.sync.auth import SessionClient, SessionRefused

SERVER = "server.example/hashfed"
PRIVATE = "private.example/log"
OTHER = "other.example/log"
PUBLIC = "public.example/log"
NOW = 1_700_000_000

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def new_signer(name: str) -> tuple[Ed25519Signer, str]:
    skey, vkey = generate_key(name)
    return parse_signer(skey), vkey


A_SIGNER, A_VKEY = new_signer("a.example/hashfed")
B_SIGNER, B_VKEY = new_signer("b.example/hashfed")
STRANGER, _ = new_signer("stranger.example/hashfed")


class Setup:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.peers = {
            "a": Peer("a", "http://a.example", A_VKEY),
            "b": Peer("b", "http://b.example", B_VKEY, read=(OTHER,)),
        }
        self.store = SessionStore(SERVER, lambda: self.peers, self.clock)

    def app(self) -> web.Application:
        async def checkpoint(request: web.Request) -> web.Response:
            origin = request.match_info["origin"]
            check_read(request, origin, public=origin == PUBLIC)
            peer = request_peer(request)
            return web.Response(text=f"{origin} for {peer.name if peer else 'anyone'}")

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/logs/{origin:.+}/checkpoint", checkpoint)
        app.router.add_get("/healthz", healthz)
        setup_auth(app, self.store, is_public=lambda path: path.startswith(f"/logs/{PUBLIC}/"))
        return app


@pytest.fixture
def setup() -> Setup:
    return Setup()


@pytest.fixture
async def client(setup: Setup, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(setup.app())


def session_request(signer: Ed25519Signer, when: int = NOW, audience: str = SERVER) -> str:
    return sign_session_request(audience, when, signer)


async def open_session(client: Client, body: str | bytes, status: int = 200) -> str:
    resp = await client.post("/v1/auth/session", data=body)
    doc = await resp.json()
    assert resp.status == status, doc
    if status != 200:
        assert isinstance(doc["error"], str)
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        return str(doc["error"])
    assert resp.headers["Cache-Control"] == "no-store"
    assert doc["expires"] == NOW + 600
    assert len(base64.urlsafe_b64decode(doc["token"] + "=")) == 65  # hashfed-token/v1
    return str(doc["token"])


async def get(client: Client, origin: str, token: str | None = None) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    resp = await client.get(f"/logs/{origin}/checkpoint", headers=headers)
    return resp.status, await resp.text()


async def test_configured_peer_reads_with_a_session(client: Client) -> None:
    token = await open_session(client, session_request(A_SIGNER))
    assert await get(client, PRIVATE, token) == (200, f"{PRIVATE} for a")
    assert await get(client, OTHER, token) == (200, f"{OTHER} for a")


async def test_no_authorization_is_401(client: Client) -> None:
    resp = await client.get(f"/logs/{PRIVATE}/checkpoint")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in await resp.json()
    for header in ("Basic dXNlcjpwdw==", "Bearer ", "Bearer nonsense-token-of-sorts"):
        resp = await client.get(f"/logs/{PRIVATE}/checkpoint", headers={"Authorization": header})
        assert resp.status == 401


async def test_unknown_or_wrong_key_is_401(client: Client) -> None:
    assert "not signed by a configured peer" in await open_session(
        client, session_request(STRANGER), 401
    )
    impostor, _ = new_signer("a.example/hashfed")  # a's name, another key
    assert "configured peer" in await open_session(client, session_request(impostor), 401)
    # a's key hash with a signature that does not verify
    note = session_request(A_SIGNER)
    text, sig_line = note.rsplit("\n\n", 1)
    prefix, b64 = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    forged = f"{text}\n\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    assert "invalid signature" in await open_session(client, forged, 401)


async def test_malformed_session_requests_are_400(client: Client) -> None:
    assert "signed note" in await open_session(client, b"hello", 400)
    bad_text = sign_note(f"hashfed-session/v2\n{SERVER}\n{NOW}\nAAAA\n", A_SIGNER)
    assert "hashfed-session/v1" in await open_session(client, bad_text, 400)


async def test_replayed_session_request_is_401(client: Client) -> None:
    body = session_request(A_SIGNER)
    await open_session(client, body)
    assert "replayed" in await open_session(client, body, 401)


async def test_stale_session_request_is_401(setup: Setup, client: Client) -> None:
    assert "stale" in await open_session(client, session_request(A_SIGNER, NOW - 61), 401)
    assert "stale" in await open_session(client, session_request(A_SIGNER, NOW + 61), 401)
    await open_session(client, session_request(A_SIGNER, NOW - 60))
    # the same request turns stale as the server's clock moves on
    body = session_request(A_SIGNER)
    setup.clock.now += 61
    assert "stale" in await open_session(client, body, 401)


async def test_replay_cache_forgets_only_what_turned_stale(setup: Setup, client: Client) -> None:
    body = session_request(A_SIGNER)
    setup.clock.now += 1
    assert (await client.post("/v1/auth/session", data=body)).status == 200
    setup.clock.now += 59  # still inside the window: remembered
    assert "replayed" in await open_session(client, body, 401)
    setup.clock.now += 2  # outside: purged, and refused as stale instead
    assert "stale" in await open_session(client, body, 401)


async def test_wrong_audience_is_401(client: Client) -> None:
    body = session_request(A_SIGNER, audience="elsewhere.example/hashfed")
    assert "elsewhere.example" in await open_session(client, body, 401)


async def test_expired_token_is_401(setup: Setup, client: Client) -> None:
    token = await open_session(client, session_request(A_SIGNER))
    setup.clock.now += 599
    assert (await get(client, PRIVATE, token))[0] == 200
    setup.clock.now += 1
    status, text = await get(client, PRIVATE, token)
    assert status == 401 and "expired" in text


async def test_peer_not_allowed_the_origin_is_403(client: Client) -> None:
    token = await open_session(client, session_request(B_SIGNER))
    assert await get(client, OTHER, token) == (200, f"{OTHER} for b")
    status, text = await get(client, PRIVATE, token)
    assert status == 403 and "may not read" in text


async def test_removed_peer_loses_its_sessions(setup: Setup, client: Client) -> None:
    token = await open_session(client, session_request(A_SIGNER))
    del setup.peers["a"]
    assert (await get(client, PRIVATE, token))[0] == 401


async def test_public_log_and_healthz_need_no_auth(client: Client) -> None:
    assert await get(client, PUBLIC) == (200, f"{PUBLIC} for anyone")
    assert (await client.get("/healthz")).status == 200
    token = await open_session(client, session_request(B_SIGNER))
    assert await get(client, PUBLIC, token) == (200, f"{PUBLIC} for b")
    assert (await get(client, PUBLIC, "not-a-live-token-at-all"))[0] == 401
    resp = await client.get(
        f"/logs/{PUBLIC}/checkpoint", headers={"Authorization": "Basic dXNlcjpwdw=="}
    )
    assert resp.status == 200


async def test_oversized_session_body_is_413(client: Client) -> None:
    body = session_request(A_SIGNER).encode() + b"x" * MAX_SESSION_BODY
    assert "larger than" in await open_session(client, body, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 1024

    resp = await client.post("/v1/auth/session", data=chunks())  # no Content-Length
    assert resp.status == 413


async def test_tokens_never_reach_the_logs(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await open_session(client, session_request(A_SIGNER))
    await get(client, PRIVATE, token)
    await get(client, PRIVATE, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert "GET /logs/" in caplog.text  # the access log did record the requests
    assert token not in caplog.text
    assert token[:20] not in caplog.text


async def test_session_client_gets_renews_and_reuses_tokens(setup: Setup, client: Client) -> None:
    client_clock = FakeClock()
    sessions = SessionClient(A_SIGNER, SERVER, client_clock)
    base = str(client.make_url("/")).rstrip("/")
    first = await sessions.authorization(client.session, base)
    assert first.startswith("Bearer ")
    assert await sessions.authorization(client.session, base) == first
    status, _ = await get(client, PRIVATE, first.removeprefix("Bearer "))
    assert status == 200
    sessions.invalidate()
    second = await sessions.authorization(client.session, base)
    assert second != first
    assert (await get(client, PRIVATE, second.removeprefix("Bearer ")))[0] == 200
    # a minute before expiry it opens a new session (within the server's window)
    client_clock.now = setup.clock.now = NOW + 540
    third = await sessions.authorization(client.session, base)
    assert third != second
    client_clock.now = setup.clock.now = NOW + 541
    assert await sessions.authorization(client.session, base) == third


async def test_session_client_reports_refusals(client: Client) -> None:
    sessions = SessionClient(STRANGER, SERVER, FakeClock())
    base = str(client.make_url("/")).rstrip("/")
    with pytest.raises(SessionRefused, match="not signed by a configured peer") as excinfo:
        await sessions.authorization(client.session, base)
    assert excinfo.value.status == 401


def test_session_request_format_round_trips() -> None:
    request = SessionRequest(SERVER, NOW, bytes(range(16)))
    text = request.text()
    assert text == f"hashfed-session/v1\n{SERVER}\n{NOW}\nAAECAwQFBgcICQoLDA0ODw==\n"
    assert parse_session_request(text) == request
    for bad in (
        text.replace(str(NOW), "0" + str(NOW)),
        text.replace(str(NOW), "-1"),
        text + "extra\n",
        text[:-1],
        text.replace("AAECAwQFBgcICQoLDA0ODw==", "AAECAwQFBgcICQoLDA0O"),
        text.replace(SERVER, "has space"),
    ):
        with pytest.raises(MalformedSessionRequest):
            parse_session_request(bad)
