"""The case desk under a flood of PIN checks from many networks (specs/case-api.md §Guessing).

PIN checks run only on the desk's own threads; a match request is answered
during the flood, and the person withdraws with the right PIN during it.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hashfed.node.config import CasesConfig, ServerConfig
from hashfed.node.http.app import NodeServices, create_app
from hashfed.node.http.cases import CASES_PATH, PIN_HEADER, CaseApi, setup_case_api
from hashfed.node.match.bank import BankIndex
from hashfed.node.services import casedesk as cases_module
from hashfed.node.services.casecrypto import format_case_number
from hashfed.node.services.casedesk import open_case_desk
from hashfed.node.services.pinguard import GuessRefused, PinGuard, client_net
from hashfed.node.store.db import open_database
from synchelpers import make_node

PIN = "correct-horse-42"
FLOOD_NETWORKS = 16


@dataclass
class Desk:
    url: str
    token: str
    api: CaseApi


@asynccontextmanager
async def flood_desk(tmp_path: Path, **cases: object) -> AsyncIterator[Desk]:
    """A publisher with its case desk and match API on 127.0.0.1, every address allowed."""
    node = make_node(tmp_path, "p", "publisher")
    config = CasesConfig(guess_burst=100_000, open_burst=1000, **cases)  # type: ignore[arg-type]
    desk = open_case_desk(node.config, node.signer)
    db = open_database(node.config.database)
    app = create_app(
        NodeServices(
            db.conn,
            node.config.origin,
            ServerConfig(listen="0.0.0.0"),
            match_index=BankIndex.load(db.conn),
            api_token=node.api_token(),
        )
    )
    api = setup_case_api(app, desk, config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Desk(f"http://127.0.0.1:{runner.addresses[0][1]}", node.api_token(), api)
    finally:
        await runner.cleanup()
        desk.close()
        db.conn.close()


def source(network: int) -> aiohttp.ClientSession:
    """A client whose requests come from 127.0.<network>.1: one /24 each."""
    connector = aiohttp.TCPConnector(local_addr=(f"127.0.{network}.1", 0))
    return aiohttp.ClientSession(connector=connector)


async def test_flood_of_pin_checks_blocks_neither_match_nor_the_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real_verify = cases_module.verify_pin

    def recording_verify(pin: str, stored: str) -> bool:
        threads.append(threading.current_thread().name)
        return real_verify(pin, stored)

    monkeypatch.setattr(cases_module, "verify_pin", recording_verify)
    async with flood_desk(tmp_path, pin_workers=2) as d:
        async with (
            source(250) as person,
            person.post(
                d.url + CASES_PATH,
                json={"hashes": [{"kind": "md5", "hash": secrets.token_hex(16)}], "pin": PIN},
            ) as resp,
        ):
            assert resp.status == 201
            number = (await resp.json())["case"]

        stop = asyncio.Event()
        checks = [0]
        started = asyncio.Event()

        async def attacker(network: int) -> None:
            async with source(network) as session:
                while not stop.is_set():
                    guess = format_case_number(secrets.token_bytes(16))
                    headers = {PIN_HEADER: "guess-" + secrets.token_hex(4)}
                    async with session.get(f"{d.url}{CASES_PATH}/{guess}", headers=headers) as r:
                        assert r.status in (404, 429), r.status
                        checks[0] += 1
                        if checks[0] >= FLOOD_NETWORKS // 2:
                            started.set()

        flood = [asyncio.create_task(attacker(n)) for n in range(1, FLOOD_NETWORKS + 1)]
        try:
            await asyncio.wait_for(started.wait(), 60)
            body = {"hashes": [{"kind": "md5", "hash": secrets.token_hex(16)}]}
            auth = {"Authorization": f"Bearer {d.token}"}
            async with source(251) as platform:
                begun = time.perf_counter()
                async with platform.post(d.url + "/v1/match", json=body, headers=auth) as resp:
                    assert resp.status == 200
                match_seconds = time.perf_counter() - begun
            async with source(250) as person:
                begun = time.perf_counter()
                async with person.post(
                    f"{d.url}{CASES_PATH}/{number}/withdraw", headers={PIN_HEADER: PIN}
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["state"] == "withdrawn"
                withdraw_seconds = time.perf_counter() - begun
            assert not any(task.done() for task in flood), "the flood stopped early"
        finally:
            stop.set()
            await asyncio.gather(*flood, return_exceptions=True)
        assert threads and all(name.startswith("hashfed-pin") for name in set(threads))
        print(
            f"\nflood: {checks[0]} PIN checks from {FLOOD_NETWORKS} networks; "
            f"match answered in {match_seconds:.3f} s, withdrawal in {withdraw_seconds:.3f} s"
        )


async def test_one_pin_check_at_a_time_per_network(tmp_path: Path) -> None:
    async with flood_desk(tmp_path) as d, source(7) as session:
        guess = format_case_number(secrets.token_bytes(16))

        async def check() -> int:
            headers = {PIN_HEADER: "guess-guess"}
            async with session.get(f"{d.url}{CASES_PATH}/{guess}", headers=headers) as r:
                return r.status

        statuses = await asyncio.gather(*(check() for _ in range(6)))
        assert 404 in statuses and 429 in statuses
        assert not d.api.pin_checks  # nothing left behind


def test_guard_locks_a_network_not_the_case() -> None:
    guard = PinGuard(max_failures=3, lockout=60, budget=100)
    case = b"c" * 32
    for _ in range(3):
        guard.check(case, "10.0.0.0/24", 1000)
        guard.record(case, "10.0.0.0/24", 1000, right=False)
    with pytest.raises(GuessRefused) as refused:
        guard.check(case, "10.0.0.0/24", 1000)
    assert refused.value.retry_after == 60
    guard.check(case, "192.0.2.0/24", 1000)  # the person, elsewhere, is let through
    assert guard.locked(case, 1000) and not guard.locked(case, 1060)


def test_guard_budget_is_shared_fairly_and_fresh_networks_pass() -> None:
    guard = PinGuard(max_failures=1000, lockout=60, budget=20)
    case, now = b"c" * 32, 5000
    wrong = dict.fromkeys(["a", "b", "c", "d"], 0)
    for _ in range(30):  # four networks guess in turn until refused
        for net in wrong:
            try:
                guard.check(case, net, now)
            except GuessRefused:
                continue
            guard.record(case, net, now, right=False)
            wrong[net] += 1
    assert sum(wrong.values()) <= 20
    assert max(wrong.values()) - min(wrong.values()) <= 5  # none takes more than its share
    guard.check(case, "person", now)  # no wrong PIN yet: always let through
    guard.record(case, "person", now, right=True)
    with pytest.raises(GuessRefused):
        guard.check(case, "a", now)
    guard.check(case, "a", now + 86400)  # a new window


def test_guessing_bound_is_budget_plus_networks() -> None:
    """An attacker with A networks makes at most budget + A wrong guesses a day."""
    guard = PinGuard(max_failures=5, lockout=60, budget=50)
    case, made = b"c" * 32, 0
    for second in range(0, 86400, 120):
        for net in range(200):
            try:
                guard.check(case, str(net), second)
            except GuessRefused:
                continue
            guard.record(case, str(net), second, right=False)
            made += 1
    assert made <= 50 + 200


def test_client_networks() -> None:
    assert client_net("203.0.113.77") == "203.0.113.0/24"
    assert client_net("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert client_net("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_net("not an address") == "not an address"


async def test_a_drained_opening_allowance_still_lets_a_new_network_open(tmp_path: Path) -> None:
    async with flood_desk(tmp_path, open_global_burst=3, open_global_per_hour=0.01) as d:

        async def open_from(network: int) -> int:
            body = {"hashes": [{"kind": "md5", "hash": secrets.token_hex(16)}]}
            async with source(network) as session, session.post(d.url + CASES_PATH, json=body) as r:
                return r.status

        assert [await open_from(9) for _ in range(4)] == [201, 201, 201, 429]
        assert await open_from(10) == 201  # the shared allowance is spent, a new network opens
        assert await open_from(10) == 429
