"""The case desk over real loopback HTTP: a case's whole life, batching, review, bad input,
PIN guessing limits, identical answers, email, and what never reaches the database or logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hashfed.node.config import CasesConfig, ServerConfig
from hashfed.node.home import Node
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.cases import (
    CASES_PATH,
    MAX_CASE_BODY,
    PIN_HEADER,
    CaseApi,
    TokenBucket,
    client_key,
    setup_case_api,
)
from hashfed.node.services.casedesk import CaseDesk, batch_loop, open_case_desk
from hashfed.node.services.mailer import send_case_number
from hashfed.node.store import logstore
from hashfed.node.store.db import open_database
from hashfed.protocol.records import Retraction, Verdict, decode_record
from hashfed.protocol.tiles import decode_bundle
from synchelpers import NOW, active_hashes, make_node, origin_of, serve, sync, trust, use

P = origin_of("p")
PIN = "correct-horse-42"


class Clock:
    """A settable clock: int seconds for the desk, float for the rate limits."""

    def __init__(self, now: int = NOW + 1234) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def mono(self) -> float:
        return float(self.now)


@dataclass
class Desk:
    node: Node
    desk: CaseDesk
    api: CaseApi
    url: str
    clock: Clock
    session: aiohttp.ClientSession

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        pin: str | None = None,
        **kw: Any,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = dict(kw.pop("headers", {}))
        if pin is not None:
            headers[PIN_HEADER] = pin
        if body is not None:
            kw["json"] = body
        async with self.session.request(method, self.url + path, headers=headers, **kw) as r:
            text = await r.text()
            return r.status, json.loads(text) if text else {}, dict(r.headers)

    async def open(self, hashes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        status, answer, _ = await self.call("POST", CASES_PATH, {"hashes": hashes, **extra})
        assert status == 201, answer
        return answer

    async def status(self, number: str, pin: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        return await self.call("GET", f"{CASES_PATH}/{number}", pin=pin)

    async def withdraw(self, number: str, pin: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        return await self.call("POST", f"{CASES_PATH}/{number}/withdraw", pin=pin)


def pdq(seed: int, count: int, quality: int = 100) -> list[dict[str, Any]]:
    """Returns count distinct valid PDQ hashes as the API takes them."""
    return [
        {
            "kind": "pdq",
            "hash": ((seed.to_bytes(4, "big") + i.to_bytes(4, "big")) * 4).hex(),
            "quality": quality,
        }
        for i in range(count)
    ]


@asynccontextmanager
async def desk_server(
    tmp_path: Path,
    node: Node | None = None,
    request_timeout: float | None = None,
    **cases: Any,
) -> AsyncIterator[Desk]:
    """Serves a publisher node with its case desk on loopback."""
    node = node or make_node(tmp_path, "p", "publisher")
    config = replace(CasesConfig(guess_burst=1000, open_burst=1000), **cases)
    node.config = replace(node.config, cases=config)
    clock = Clock()
    desk = open_case_desk(node.config, node.signer, clock)
    db = open_database(node.config.database)
    server = ServerConfig()
    if request_timeout is not None:
        server = replace(server, request_timeout=request_timeout)
    app = create_app(
        NodeServices(db.conn, node.config.origin, server, peer_signer=node.peer_signer)
    )
    api = setup_case_api(app, desk, config, clock=clock.mono)
    # The node's own access log (node/http/accesslog.py, "hashfed.access") is what
    # runs in 'hashfed serve'; aiohttp's is off there, as here.
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            yield Desk(node, desk, api, url, clock, session)
    finally:
        await runner.cleanup()
        desk.close()
        db.conn.close()


def log_size(node: Node) -> int:
    log = logstore.get_log(node.db.conn, node.config.origin)
    assert log is not None
    return log.size


def entries(node: Node) -> list[bytes]:
    out: list[bytes] = []
    log = logstore.get_log(node.db.conn, node.config.origin)
    assert log is not None
    for index in range((log.size + 255) // 256):
        stored = logstore.read_bundle(node.db.conn, log.id, index)
        assert stored is not None
        out += decode_bundle(stored[1], stored[0])
    return out[: log.size]


def case_rows(node: Node) -> int:
    return int(node.db.conn.execute("SELECT count(*) FROM cases").fetchone()[0])


# -- the whole life of a case ------------------------------------------------------------


async def test_case_life_open_publish_feedback_withdraw(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    trust(a, p, "publisher")
    trust(p, a, "partner")
    hashes = pdq(7, 2)
    async with desk_server(tmp_path, node=p) as d, serve(a) as a_url:
        use(a, p, d.url)
        use(p, a, a_url)
        opened = await d.open(hashes, pin=PIN)
        number = opened["case"]
        assert opened["state"] == "pending" and opened["hashes"] == 2
        assert "pin" not in opened  # the person chose it
        assert "nobody, including us, can recover or reset it" in opened["notice"]

        status, body, headers = await d.status(number, PIN)
        assert status == 200 and headers["Cache-Control"] == "no-store"
        assert body["state"] == "pending" and body["published"] == 0
        assert body["opened"] == time.strftime("%Y-%m-%d", time.gmtime(d.clock.now))
        assert log_size(p) == 0  # pending: nothing in the log yet

        assert (await sync(a)).ok
        assert active_hashes(a, P) == []

        batch = d.desk.publish_pending()
        assert batch.published == 2 and batch.cases == 1
        assert batch.time == NOW + 1234 - (NOW + 1234) % 3600
        status, body, _ = await d.status(number, PIN)
        assert body["state"] == "active" and body["published"] == 2
        indices = sorted(
            r[0] for r in p.db.conn.execute("SELECT log_index FROM case_hashes").fetchall()
        )
        assert indices == [0, 1]
        assert (
            p.db.conn.execute("SELECT count(*) FROM case_hashes WHERE hash IS NOT NULL").fetchone()[
                0
            ]
            == 0
        ), "the case keeps no copy of a published hash"

        assert (await sync(a)).ok
        want = sorted(bytes.fromhex(h["hash"]) for h in hashes)
        assert sorted(bytes(h) for _, h in active_hashes(a, P)) == want

        # Partner A reports that it blocked an upload matching entry 1.
        a.own_log().feedback(P, 1, Verdict.BLOCKED)
        a.own_log().feedback(P, 0, Verdict.FALSE_POSITIVE)
        assert (await sync(p)).ok
        status, body, _ = await d.status(number, PIN)
        assert body["feedback"] == {
            "Blocked": 1,
            "NotBlocked": 1,
            "PendingReview": 0,
            "QualityUnknown": 0,
        }

        status, body, _ = await d.withdraw(number, PIN)
        assert status == 200 and body["state"] == "withdrawn"
        records = [decode_record(e) for e in entries(p)]
        retractions = [r for r in records if isinstance(r, Retraction)]
        assert len(retractions) == 1 and retractions[0].indices == (0, 1)
        assert str(retractions[0].reason) == "withdrawn"
        erased = p.db.conn.execute(
            "SELECT count(*) FROM bank b JOIN logs l ON l.id = b.log_id WHERE l.origin = ?"
            " AND b.hash IS NULL AND b.salt IS NULL AND b.status = 'retracted'",
            (P,),
        ).fetchone()[0]
        assert erased == 2

        assert (await sync(a)).ok
        assert active_hashes(a, P) == []
        assert (
            a.db.conn.execute(
                "SELECT count(*) FROM bank WHERE hash IS NOT NULL AND log_id ="
                " (SELECT id FROM logs WHERE origin = ?)",
                (P,),
            ).fetchone()[0]
            == 0
        )

        # Withdrawal is irreversible, and withdrawing again changes nothing.
        status, body, _ = await d.withdraw(number, PIN)
        assert status == 200 and body["state"] == "withdrawn"
        assert log_size(p) == 3
        status, body, _ = await d.status(number, PIN)
        assert body["state"] == "withdrawn" and body["hashes"] == 2


async def test_withdraw_before_publication_deletes_pending_hashes(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        opened = await d.open(pdq(3, 2))
        assert opened["pin"].isdigit() and len(opened["pin"]) == 10
        status, body, _ = await d.withdraw(opened["case"], opened["pin"])
        assert status == 200 and body["state"] == "withdrawn" and body["published"] == 0
        assert d.desk.publish_pending().published == 0
        assert log_size(d.node) == 0
        assert d.node.db.conn.execute("SELECT count(*) FROM case_hashes").fetchone()[0] == 0


async def test_batch_mixes_cases_with_one_coarse_time(tmp_path: Path) -> None:
    async with desk_server(tmp_path, time_granularity=600) as d:
        first = await d.open(pdq(1, 10))
        second = await d.open(pdq(2, 10))
        d.clock.now += 77
        batch = d.desk.publish_pending()
        assert batch.published == 20 and batch.cases == 2
        assert batch.time is not None and batch.time % 600 == 0 and batch.time <= d.clock.now
        added = {r[0] for r in d.node.db.conn.execute("SELECT added FROM bank").fetchall()}
        assert added == {batch.time}
        by_case = [
            r[0]
            for r in d.node.db.conn.execute(
                "SELECT case_id FROM case_hashes ORDER BY log_index"
            ).fetchall()
        ]
        runs = sum(1 for x, y in itertools.pairwise(by_case) if x != y)
        assert runs > 1, "the batch interleaves the two cases"
        for opened in (first, second):
            _, body, _ = await d.status(opened["case"], opened["pin"])
            assert body["state"] == "active" and body["published"] == 10
        assert d.desk.publish_pending().published == 0


async def test_review_queue_approve_and_reject(tmp_path: Path) -> None:
    async with desk_server(tmp_path, review=True) as d:
        kept = await d.open(pdq(1, 2))
        dropped = await d.open(pdq(2, 2))
        assert kept["state"] == dropped["state"] == "review"
        assert d.desk.publish_pending().published == 0
        listed = d.desk.list_cases("review")
        assert len(listed) == 2 and all(set(r) >= {"id", "state", "opened"} for r in listed)
        blob = json.dumps(listed)
        assert kept["case"] not in blob and kept["pin"] not in blob
        ids = [r["id"] for r in listed]
        # The ids are opaque; find which is which through the status the person sees.
        d.desk.approve(ids[0])
        d.desk.reject(ids[1])
        statuses = {}
        for opened in (kept, dropped):
            _, body, _ = await d.status(opened["case"], opened["pin"])
            statuses[body["state"]] = opened
        assert set(statuses) == {"pending", "rejected"}
        assert d.desk.publish_pending().published == 2
        assert log_size(d.node) == 2
        rejected = statuses["rejected"]
        status, body, _ = await d.withdraw(rejected["case"], rejected["pin"])
        assert status == 409 and "rejected" in body["error"]
        pending_left = d.node.db.conn.execute(
            "SELECT count(*) FROM case_hashes WHERE case_id = ?", (ids[1],)
        ).fetchone()[0]
        assert pending_left == 0


# -- bad input ---------------------------------------------------------------------------

VALID = pdq(9, 1)
BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("21 hashes", {"hashes": pdq(1, 21)}, 400, "at most 20"),
    ("no hashes", {"hashes": []}, 400, "at least one"),
    ("duplicates", {"hashes": VALID + VALID}, 400, "twice"),
    ("malformed hex", {"hashes": [{"kind": "pdq", "hash": "zz" * 32, "quality": 90}]}, 400, "hex"),
    ("short hash", {"hashes": [{"kind": "pdq", "hash": "ab" * 16, "quality": 90}]}, 400, "64"),
    ("quality below 50", {"hashes": pdq(1, 1, quality=49)}, 400, "below"),
    ("pdq without quality", {"hashes": [{"kind": "pdq", "hash": "ab" * 32}]}, 400, "quality"),
    (
        "md5 with quality",
        {"hashes": [{"kind": "md5", "hash": "ab" * 16, "quality": 80}]},
        400,
        "no quality",
    ),
    ("all zeros", {"hashes": [{"kind": "md5", "hash": "00" * 16}]}, 400, "zeros"),
    ("unknown kind", {"hashes": [{"kind": "sha1", "hash": "ab" * 20}]}, 400, "kind"),
    ("extra field", {"hashes": VALID, "image": "aGVsbG8="}, 400, "unknown field"),
    ("weak PIN", {"hashes": VALID, "pin": "12345678"}, 400, "PIN"),
    ("short PIN", {"hashes": VALID, "pin": "abc"}, 400, "at least 8"),
    ("common PIN", {"hashes": VALID, "pin": "password"}, 400, "common"),
    ("email without SMTP", {"hashes": VALID, "email": "x@example.org"}, 400, "email"),
    ("not an object", [1, 2], 400, "object"),
]


@pytest.mark.parametrize(
    ("body", "status", "words"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_json_input_is_refused_and_nothing_stored(
    tmp_path: Path, body: Any, status: int, words: str
) -> None:
    async with desk_server(tmp_path) as d:
        got, answer, _ = await d.call("POST", CASES_PATH, body)
        assert got == status, answer
        assert words.lower() in answer["error"].lower()
        assert case_rows(d.node) == 0 and log_size(d.node) == 0
        d.desk.publish_pending()
        assert log_size(d.node) == 0


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100)
RAW_BODIES: list[tuple[str, bytes, str, int]] = [
    ("malformed JSON", b'{"hashes": [', "application/json", 400),
    ("not UTF-8", b'{"hashes": "\xff"}', "application/json", 400),
    ("oversized", b'{"hashes": "' + b"a" * MAX_CASE_BODY + b'"}', "application/json", 413),
    ("image as JSON", JPEG, "application/json", 415),
    ("image", JPEG, "image/jpeg", 415),
    ("video", b"\x00\x00\x00\x18ftypmp42" + bytes(64), "video/mp4", 415),
    ("form", b"hashes=1", "application/x-www-form-urlencoded", 415),
    ("text", b'{"hashes": []}', "text/plain", 415),
]


@pytest.mark.parametrize(
    ("data", "content_type", "status"), [b[1:] for b in RAW_BODIES], ids=[b[0] for b in RAW_BODIES]
)
async def test_uploads_and_malformed_bodies_are_refused(
    tmp_path: Path, data: bytes, content_type: str, status: int
) -> None:
    async with desk_server(tmp_path) as d:
        got, answer, _ = await d.call(
            "POST", CASES_PATH, data=data, headers={"Content-Type": content_type}
        )
        assert got == status, answer
        assert answer["error"]
        assert case_rows(d.node) == 0 and log_size(d.node) == 0


async def test_multipart_upload_is_refused(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        form = aiohttp.FormData()
        form.add_field("file", JPEG, filename="me.jpg", content_type="image/jpeg")
        got, answer, _ = await d.call("POST", CASES_PATH, data=form)
        assert got == 415 and "never uploaded" in answer["error"]
        assert case_rows(d.node) == 0


async def test_no_hashes_can_be_added_to_a_case(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        opened = await d.open(pdq(1, 1))
        for method in ("POST", "PUT"):
            got, answer, _ = await d.call(
                method, f"{CASES_PATH}/{opened['case']}/hashes", {"hashes": pdq(2, 1)}
            )
            assert got == 409 and "open a new case" in answer["error"]
        got, answer, _ = await d.call("PUT", f"{CASES_PATH}/{opened['case']}", {"hashes": []})
        assert got == 409 and "open a new case" in answer["error"]
        assert d.node.db.conn.execute("SELECT count(*) FROM case_hashes").fetchone()[0] == 1


async def test_pin_is_never_taken_from_the_url(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        opened = await d.open(pdq(1, 1))
        got, answer, _ = await d.call(
            "GET", f"{CASES_PATH}/{opened['case']}", params={"pin": opened["pin"]}
        )
        assert got == 400 and "URL" in answer["error"]
        got, answer, _ = await d.call("GET", f"{CASES_PATH}/{opened['case']}")
        assert got == 400 and PIN_HEADER in answer["error"]
        # The PIN may also come in a JSON body (POST).
        got, answer, _ = await d.call(
            "POST", f"{CASES_PATH}/{opened['case']}/status", {"pin": opened["pin"]}
        )
        assert got == 200 and answer["state"] == "pending"


# -- guessing ----------------------------------------------------------------------------


async def test_wrong_pin_and_unknown_case_get_the_same_answer(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        opened = await d.open(pdq(1, 1))
        unknown = "HF-" + "-".join(["7ZZZ"] * 6) + "-ZZ"
        timings = {}
        answers = {}
        for name, number, pin in (
            ("wrong pin", opened["case"], "not-the-pin-1"),
            ("unknown", unknown, "not-the-pin-1"),
        ):
            start = time.perf_counter()
            got, body, headers = await d.status(number, pin)
            timings[name] = time.perf_counter() - start
            headers.pop("Date", None)
            answers[name] = (got, body, headers)
        assert answers["wrong pin"] == answers["unknown"]
        assert answers["unknown"][0] == 404
        # Both paths hash a PIN with scrypt: neither is a fast path.
        assert min(timings.values()) > 0.2 * max(timings.values())
        got, body, _ = await d.withdraw(unknown, "not-the-pin-1")
        assert (got, body) == (404, answers["unknown"][1])


async def test_pin_guessing_locks_the_case_with_growing_lockouts(tmp_path: Path) -> None:
    async with desk_server(tmp_path, max_failures=5, lockout=60) as d:
        opened = await d.open(pdq(1, 1), pin=PIN)
        number = opened["case"]
        for n in range(5):
            got, _, _ = await d.status(number, f"wrong-guess-{n}")
            assert got == 404
        got, body, headers = await d.status(number, PIN)  # even the right PIN waits
        assert got == 429 and headers["Retry-After"] == "60"
        got, _, _ = await d.withdraw(number, PIN)
        assert got == 429
        d.clock.now += 60
        got, body, _ = await d.status(number, PIN)
        assert got == 200 and body["state"] == "pending"
        for n in range(5):
            assert (await d.status(number, f"wrong-guess-{n}"))[0] == 404
        assert (await d.status(number, PIN))[2]["Retry-After"] == "60"
        for n in range(4):
            d.clock.now += 60
            assert (await d.status(number, f"again-{n}"))[0] == 404
        d.clock.now += 60
        assert (await d.status(number, "again-last"))[0] == 404
        got, _, headers = await d.status(number, PIN)
        assert got == 429 and headers["Retry-After"] == "120", "the second lockout doubles"
        # The lockout is this network's only: the person, elsewhere, withdraws at once.
        d.api.config = replace(d.api.config, client_ip_header="X-Forwarded-For")
        got, body, _ = await d.call(
            "POST",
            f"{CASES_PATH}/{number}/withdraw",
            pin=PIN,
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
        assert got == 200 and body["state"] == "withdrawn"


async def test_unknown_numbers_lock_exactly_like_real_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hashfed.node.services.casecrypto import number_digest, parse_case_number

    async with desk_server(tmp_path, max_failures=5, lockout=60) as d:
        number = (await d.open(pdq(1, 1), pin=PIN))["case"]
        unknown = "HF-" + "-".join(["1ABC"] * 6) + "-DE"

        async def answer(case: str, guess: str) -> tuple[int, dict[str, Any], str | None]:
            got, body, headers = await d.status(case, guess)
            return got, body, headers.get("Retry-After")

        seen = []
        # Two rounds of lockouts (60 s, then 120 s), probing while locked and after.
        for step in range(16):
            if step == 7:
                d.clock.now += 30  # half-way through the first lockout
            if step == 8:
                d.clock.now += 30  # the first lockout is over
            guess = f"wrong-guess-{step}"
            real, fake = await answer(number, guess), await answer(unknown, guess)
            assert real == fake, f"step {step}: {real} != {fake}"
            seen.append(real[0] if real[2] is None else (real[0], real[2]))
        assert (
            seen == [404] * 5 + [(429, "60")] * 2 + [(429, "30")] + [404] * 5 + [(429, "120")] * 3
        )
        # Only the digest of a number is kept, in memory, known or not.
        digest = number_digest(parse_case_number(unknown))
        guard = d.desk._guard
        assert digest in guard._cases and len(guard) == 2
        # The record is bounded: the least recently guessed number is forgotten first.
        guard.max_cases = 2
        others = ["HF-" + "-".join([f"{n}ABC"] * 6) + "-DE" for n in (2, 3)]
        for other in others:
            assert (await d.status(other, "wrong-guess"))[0] == 404
        assert digest not in guard._cases and len(guard) == 2


async def test_pin_checks_are_limited_per_client(tmp_path: Path) -> None:
    async with desk_server(tmp_path, guess_burst=3, guess_per_hour=60) as d:
        unknown = "HF-" + "-".join(["1ABC"] * 6) + "-DE"
        for _ in range(3):
            assert (await d.status(unknown, "some-guess-1"))[0] == 404
        got, body, headers = await d.status(unknown, "some-guess-1")
        assert got == 429 and headers["Retry-After"] == "60" and "PIN checks" in body["error"]
        d.clock.now += 60
        assert (await d.status(unknown, "some-guess-1"))[0] == 404
        assert (await d.status(unknown, "some-guess-1"))[0] == 429
        # Another client (a trusted proxy's header names it) has its own bucket.
        d.api.config = replace(d.api.config, client_ip_header="X-Forwarded-For")
        got, _, _ = await d.call(
            "GET",
            f"{CASES_PATH}/{unknown}",
            pin="some-guess-1",
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert got == 404


async def test_opening_is_limited_per_client(tmp_path: Path) -> None:
    async with desk_server(tmp_path, open_burst=2, open_per_hour=1) as d:
        await d.open(pdq(1, 1))
        await d.open(pdq(2, 1))
        got, _body, headers = await d.call("POST", CASES_PATH, {"hashes": pdq(3, 1)})
        assert got == 429 and headers["Retry-After"] == "3600"
        assert case_rows(d.node) == 2


# -- email, and what is never stored or logged ------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def database_bytes(node: Node) -> bytes:
    node.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
    home = node.config.database
    return b"".join(
        Path(str(home) + suffix).read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(str(home) + suffix).exists()
    )


async def mail_sent(d: Desk) -> None:
    """Waits for the emails the desk is sending in the background."""
    await asyncio.gather(*d.api.mail_tasks)


class StallingInbox(Inbox):
    """An SMTP server that stalls at DATA until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.reached.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        return await super().handle_DATA(server, session, envelope)


STALL_BOUND = 60
"""The request timeout of the tests below. What they stall (the SMTP server, every PIN
thread) is only released after the answer, so an answer that waited on it would never
come: the bound only turns that hang into a failure, and a busy machine stays within it."""


async def test_a_stalling_mail_server_never_keeps_the_number_and_pin_from_the_answer(
    tmp_path: Path,
) -> None:
    """The answer (number and PIN) comes before the email, however long the SMTP
    server stalls; the email is sent afterwards."""
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    inbox = StallingInbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = controller_mod.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        async with desk_server(
            tmp_path,
            request_timeout=STALL_BOUND,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="desk@stopncii.example",
            smtp_starttls=False,
        ) as d:
            d.api.send_mail = lambda to, number: send_case_number(d.api.config, to, number, "p")
            opened = await d.open(pdq(5, 1), email="a@example.org")
            assert opened["email"] == "queued" and opened["pin"] and opened["case"]
            assert (await d.status(opened["case"], opened["pin"]))[0] == 200
            # The email is attempted after the answer, and stalls there.
            assert await asyncio.to_thread(inbox.reached.wait, 30)
            assert not inbox.messages
            inbox.release.set()
            await mail_sent(d)
    finally:
        inbox.release.set()
        controller.stop()
    assert len(inbox.messages) == 1 and opened["case"].encode() in inbox.messages[0][2]


async def test_opening_a_case_does_not_queue_behind_pin_checks(tmp_path: Path) -> None:
    async with desk_server(tmp_path, request_timeout=STALL_BOUND) as d:
        busy = threading.Event()
        blocked = [
            d.api.pin_executor.submit(busy.wait) for _ in range(d.api.config.pin_workers + 5)
        ]
        try:
            opened = await d.open(pdq(5, 1))  # the PIN threads are all busy
            assert opened["pin"]
        finally:
            busy.set()
        for future in blocked:
            future.result()


async def test_email_sent_once_and_nothing_identifying_stored_or_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    inbox = Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = controller_mod.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    caplog.set_level(logging.DEBUG)
    address = "someone.private@example.org"
    try:
        async with desk_server(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_from="desk@stopncii.example",
            smtp_starttls=False,  # the test server offers no STARTTLS
        ) as d:
            # On by default: a server without STARTTLS gets no case number.
            d.api.send_mail = lambda to, number: send_case_number(
                replace(d.api.config, smtp_starttls=True), to, number, "p"
            )
            refused = await d.open(pdq(4, 1), email=address)
            assert refused["email"] == "queued"
            await mail_sent(d)
            assert len(inbox.messages) == 0
            d.api.send_mail = lambda to, number: send_case_number(d.api.config, to, number, "p")
            opened = await d.open(pdq(5, 2), email=address, pin=PIN)
            assert opened["email"] == "queued"
            await mail_sent(d)
            number = opened["case"]
            assert (await d.status(number, PIN))[0] == 200
            assert (await d.status(number, "wrong-pin-99"))[0] == 404
            d.desk.publish_pending()
            assert (await d.withdraw(number, PIN))[0] == 200
            stored = database_bytes(d.node)
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    sender, recipients, content = inbox.messages[0]
    assert sender == "desk@stopncii.example" and recipients == [address]
    assert number.encode() in content and PIN.encode() not in content
    # Everything logged in this process except the test SMTP server's own debug log.
    ours = "\n".join(
        caplog.handler.format(r) for r in caplog.records if not r.name.startswith("mail.")
    )
    for secret in (address, number, PIN, number.replace("-", "")):
        assert secret.encode() not in stored, f"{secret!r} found in the database file"
        assert secret not in ours, f"{secret!r} found in the logs"
    assert "/v1/cases/{number}" in ours  # the access log ran, naming the route only


async def test_email_failure_keeps_the_case_and_says_so(tmp_path: Path) -> None:
    async with desk_server(
        tmp_path, smtp_host="127.0.0.1", smtp_port=9, smtp_from="desk@stopncii.example"
    ) as d:
        opened = await d.open(pdq(5, 1), email="a@example.org")
        assert opened["email"] == "queued"
        await mail_sent(d)
        assert (await d.status(opened["case"], opened["pin"]))[0] == 200
        got, body, _ = await d.call(
            "POST", CASES_PATH, {"hashes": pdq(6, 1), "email": "not an address"}
        )
        assert got == 400 and "email" in body["error"]


def test_database_holds_no_case_number_or_pin(tmp_path: Path) -> None:
    node = make_node(tmp_path, "p", "publisher")
    desk = open_case_desk(node.config, node.signer)
    from hashfed.node.services.casedesk import parse_case_hashes

    hashes = parse_case_hashes(pdq(4, 3), desk.policy)
    chosen = desk.open_case(hashes, "my-own-pin-77")
    generated = desk.open_case(hashes)
    assert generated.pin is not None
    stored = database_bytes(node)
    for secret in (chosen.number, generated.number, "my-own-pin-77", generated.pin):
        assert secret.encode() not in stored
    raw = [bytes.fromhex(h.hash.hex()) for h in hashes]
    desk.publish_pending()
    desk.withdraw(chosen.number, "my-own-pin-77")
    desk.withdraw(generated.number, generated.pin)
    stored = database_bytes(node)
    for digest in raw:
        assert digest not in stored, "a withdrawn hash stays in the database file"
    desk.close()
    node.close()


async def test_batch_loop_publishes_every_interval(tmp_path: Path) -> None:
    async with desk_server(tmp_path, min_batch_cases=2, max_hold=86400) as d:
        await d.open(pdq(1, 3))
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            d.clock.now += int(seconds)

        await batch_loop(d.desk, 3600, sleep=sleep, rounds=2)
        assert waits == [3600, 3600] and log_size(d.node) == 0, "one case is held"
        await d.open(pdq(2, 1))
        await batch_loop(d.desk, 3600, sleep=sleep, rounds=1)
        assert log_size(d.node) == 4, "two cases make a batch"


async def test_a_small_batch_waits_for_more_cases_or_max_hold(tmp_path: Path) -> None:
    async with desk_server(tmp_path, min_batch_cases=3, max_hold=7200) as d:
        await d.open(pdq(1, 2))
        d.clock.now += 3600
        await d.open(pdq(2, 1))
        held = d.desk.publish_pending(respect_minimum=True)
        assert (held.published, held.cases, held.held) == (0, 0, 2) and log_size(d.node) == 0
        d.clock.now += 3599  # the oldest has waited 7199 s
        assert d.desk.publish_pending(respect_minimum=True).held == 2
        await d.open(pdq(3, 1))  # a third case: the batch is big enough
        batch = d.desk.publish_pending(respect_minimum=True)
        assert (batch.published, batch.cases, batch.held) == (4, 3, 0)
        # A lone case waits max_hold, then is published anyway.
        await d.open(pdq(4, 1))
        d.clock.now += 7199
        assert d.desk.publish_pending(respect_minimum=True).held == 1
        d.clock.now += 1
        assert d.desk.publish_pending(respect_minimum=True).cases == 1
        assert log_size(d.node) == 5


async def test_operator_publishing_ignores_the_minimum(tmp_path: Path) -> None:
    async with desk_server(tmp_path, review=True) as d:
        number = (await d.open(pdq(1, 2), pin=PIN))["case"]
        case_id = case_id_of(d.desk, number, PIN)
        d.desk.approve(case_id)
        d.clock.now += 86399
        assert d.desk.publish_pending(respect_minimum=True).held == 1, "held since approval"
        batch = d.desk.publish_pending()  # hashfed cases publish: run now
        assert (batch.published, batch.cases, batch.held) == (2, 1, 0)


def test_a_restart_cannot_hold_a_case_forever(tmp_path: Path) -> None:
    from hashfed.node.services.casedesk import parse_case_hashes

    node, before, after = two_desks(tmp_path, max_hold=3600)
    before.open_case(parse_case_hashes(pdq(1, 1), before.policy), PIN)
    opened = node.db.conn.execute("SELECT opened FROM cases").fetchone()[0]
    clock = before._clock
    assert isinstance(clock, Clock)
    clock.now = opened + 86400 + 3599  # a fresh desk has never seen the case before
    assert after.publish_pending(respect_minimum=True).held == 1
    clock.now += 1  # but it has waited since the end of its opening day at the latest
    assert after.publish_pending(respect_minimum=True).cases == 1
    before.close()
    after.close()
    node.close()


async def test_case_paths_need_no_peer_session_but_logs_still_do(tmp_path: Path) -> None:
    async with desk_server(tmp_path) as d:
        assert (await d.call("GET", "/logs"))[0] == 401
        assert (await d.call("GET", "/v1/casesX"))[0] == 401
        assert (await d.call("POST", CASES_PATH, {"hashes": pdq(1, 1)}))[0] == 201


# -- races between processes (hashfed serve beside hashfed cases ...) --------------------


def two_desks(tmp_path: Path, **cases: Any) -> tuple[Node, CaseDesk, CaseDesk]:
    """Two desks on one database, each on its own connection, as two processes have."""
    node = make_node(tmp_path, "p", "publisher")
    node.config = replace(node.config, cases=replace(CasesConfig(), **cases))
    clock = Clock()
    return (
        node,
        open_case_desk(node.config, node.signer, clock),
        open_case_desk(node.config, node.signer, clock),
    )


def case_id_of(desk: CaseDesk, number: str, pin: str) -> str:
    return desk._authenticate(number, pin)


def bank_statuses(node: Node) -> list[str]:
    log = logstore.get_log(node.db.conn, node.config.origin)
    assert log is not None
    rows = node.db.conn.execute("SELECT status FROM bank WHERE log_id = ?", (log.id,))
    return sorted(str(r[0]) for r in rows)


def test_a_case_rejected_while_a_batch_is_built_is_not_published(tmp_path: Path) -> None:
    from hashfed.node.services.casedesk import parse_case_hashes

    node, serve_desk, cli_desk = two_desks(tmp_path)
    kept = serve_desk.open_case(parse_case_hashes(pdq(1, 2), serve_desk.policy), PIN)
    dropped = serve_desk.open_case(parse_case_hashes(pdq(2, 3), serve_desk.policy), PIN)
    dropped_id = case_id_of(serve_desk, dropped.number, PIN)
    read = serve_desk._pending_rows
    calls = 0

    def read_then_reject(conn: Any) -> list[tuple[Any, ...]]:
        nonlocal calls
        calls += 1
        rows = read(conn)
        if calls == 1:  # the batch is read; the operator rejects a case before it is written
            cli_desk.reject(dropped_id)
        return rows

    serve_desk._pending_rows = read_then_reject  # type: ignore[method-assign]
    result = serve_desk.publish_pending()
    assert calls >= 3, "the batch was not read again inside the append's transaction"
    assert (result.published, result.cases) == (2, 1)
    assert log_size(node) == 2 and bank_statuses(node) == ["active", "active"]
    states = dict(node.db.conn.execute("SELECT id, state FROM cases").fetchall())
    assert states[dropped_id] == "rejected"
    assert states[case_id_of(serve_desk, kept.number, PIN)] == "active"
    assert node.db.conn.execute(
        "SELECT count(*) FROM case_hashes WHERE case_id = ?", (dropped_id,)
    ).fetchone() == (0,)
    serve_desk.close()
    cli_desk.close()
    node.close()


def test_a_case_withdrawn_while_a_batch_is_built_stays_withdrawn(tmp_path: Path) -> None:
    from hashfed.node.services.casedesk import parse_case_hashes

    node, serve_desk, person_desk = two_desks(tmp_path)
    case = serve_desk.open_case(parse_case_hashes(pdq(3, 2), serve_desk.policy), PIN)
    read = serve_desk._pending_rows
    calls = 0

    def read_then_withdraw(conn: Any) -> list[tuple[Any, ...]]:
        nonlocal calls
        calls += 1
        rows = read(conn)
        if calls == 1:
            person_desk.withdraw(case.number, PIN)
        return rows

    serve_desk._pending_rows = read_then_withdraw  # type: ignore[method-assign]
    assert serve_desk.publish_pending().published == 0
    assert log_size(node) == 0
    assert node.db.conn.execute("SELECT state FROM cases").fetchall() == [("withdrawn",)]
    serve_desk.close()
    person_desk.close()
    node.close()


def test_hashes_published_while_withdrawing_are_retracted(tmp_path: Path) -> None:
    from hashfed.node.services.casedesk import parse_case_hashes

    node, person_desk, serve_desk = two_desks(tmp_path)
    case = person_desk.open_case(parse_case_hashes(pdq(4, 3), person_desk.policy), PIN)
    read = person_desk._published_indices
    calls = 0

    def read_then_publish(conn: Any, case_id: str) -> list[int]:
        nonlocal calls
        calls += 1
        indices = read(conn, case_id)
        if calls == 1:  # none published yet; a batch of the serving process lands now
            assert indices == []
            assert serve_desk.publish_pending().published == 3
        return indices

    person_desk._published_indices = read_then_publish  # type: ignore[method-assign]
    status = person_desk.withdraw(case.number, PIN)
    assert status.state == "withdrawn"
    assert bank_statuses(node) == ["retracted"] * 3
    last = decode_record(entries(node)[-1])
    assert isinstance(last, Retraction) and sorted(last.indices) == [0, 1, 2]
    person_desk.close()
    serve_desk.close()
    node.close()


def test_reject_truncates_the_wal_so_deleted_hashes_leave_it(tmp_path: Path) -> None:
    from hashfed.node.services.casedesk import parse_case_hashes

    node = make_node(tmp_path, "p", "publisher")
    node.config = replace(node.config, cases=CasesConfig(review=True))
    desk = open_case_desk(node.config, node.signer, Clock())
    hashes = parse_case_hashes(pdq(7, 2), desk.policy)
    desk.open_case(hashes, PIN)
    wal = Path(str(node.config.database) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    desk.reject(desk.list_cases("review")[0]["id"])
    assert wal.stat().st_size == 0
    stored = database_bytes(node)
    for h in hashes:
        assert h.hash not in stored
    desk.close()
    node.close()


# -- logs and rate-limit memory ---------------------------------------------------------


async def test_access_log_keeps_no_client_address_or_headers_for_case_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hashfed.access")
    agent, referer = "Browser/1.0 (person-identifying)", "https://referrer.example/private"
    number = f"HF-{'1ABC-' * 6}DE"
    async with desk_server(tmp_path) as d:
        headers = {"User-Agent": agent, "Referer": referer}
        await d.call("POST", CASES_PATH, {"hashes": pdq(1, 1)}, headers=headers)
        await d.call("GET", f"{CASES_PATH}/{number}", pin=PIN, headers=headers)
        await d.call("GET", "/logs", headers=headers)
    access = [r for r in caplog.records if r.name == "hashfed.access"]
    cases = [r for r in access if "/v1/cases" in r.getMessage()]
    other = [r for r in access if "/logs" in r.getMessage()]
    assert len(cases) == 2 and other
    for record in cases:
        line = caplog.handler.format(record)
        assert number not in line and agent not in line and referer not in line
        assert record.client is None  # type: ignore[attr-defined]
    # Other routes name their client.
    assert other[0].client == "127.0.0.1"  # type: ignore[attr-defined]


def test_token_buckets_are_capped_least_recently_used_out() -> None:
    clock = Clock()
    bucket = TokenBucket(1, 1, clock.mono, max_clients=3)
    for client in ("a", "b", "c"):
        assert bucket.take(client) == 0
    assert bucket.take("a") > 0  # a is now the most recently used
    assert bucket.take("d") == 0  # evicts b, the least recently used
    assert len(bucket) == 3
    assert bucket.take("a") > 0 and bucket.take("c") > 0
    assert bucket.take("b") == 0  # forgotten: a full bucket again
    for n in range(1000):
        bucket.take(f"10.0.{n // 256}.{n % 256}")
    assert len(bucket) == 3


def test_clients_are_keyed_by_ipv4_address_and_ipv6_slash_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff:1:2:3")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key("not an address") == "not an address"


async def test_one_ipv6_slash_64_shares_one_bucket(tmp_path: Path) -> None:
    async with desk_server(tmp_path, open_burst=1, client_ip_header="X-Forwarded-For") as d:
        first = {"X-Forwarded-For": "2001:db8:0:1::1"}
        same = {"X-Forwarded-For": "2001:db8:0:1:ffff::2"}
        other = {"X-Forwarded-For": "2001:db8:0:2::1"}
        assert (await d.call("POST", CASES_PATH, {"hashes": pdq(1, 1)}, headers=first))[0] == 201
        assert (await d.call("POST", CASES_PATH, {"hashes": pdq(2, 1)}, headers=same))[0] == 429
        assert (await d.call("POST", CASES_PATH, {"hashes": pdq(3, 1)}, headers=other))[0] == 201


async def test_opening_is_limited_for_everyone_together(tmp_path: Path) -> None:
    async with desk_server(tmp_path, client_ip_header="X-Forwarded-For") as d:
        d.api.opening_everyone = TokenBucket(2, 1, d.clock.mono, 1)
        for n in range(2):
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert (await d.call("POST", CASES_PATH, {"hashes": pdq(n + 1, 1)}, headers=headers))[
                0
            ] == 201
        headers = {"X-Forwarded-For": "198.51.100.99"}
        got, body, _ = await d.call("POST", CASES_PATH, {"hashes": pdq(9, 1)}, headers=headers)
        assert got == 429 and "cases opened" in body["error"]
        assert case_rows(d.node) == 2
