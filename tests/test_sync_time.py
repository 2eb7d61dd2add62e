"""Time in sync: the background loop's jittered interval and backoff (injected sleep and rng)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hashfed.node.config import SyncConfig
from hashfed.node.services.syncer import Outcome, next_delay, sync_loop
from synchelpers import Relay, allow, bank, make_node, origin_of, publish, serve, trust, use

P = origin_of("p")


def test_next_delay_without_failures_is_the_jittered_interval() -> None:
    rng = random.Random(1)
    delays = [next_delay(100, 0.2, 0, 3600, rng) for _ in range(2000)]
    assert all(80 <= d <= 120 for d in delays)
    assert min(delays) < 82 and max(delays) > 118  # the whole range is used
    assert len(set(delays)) > 1000  # not lockstep
    assert next_delay(100, 0.0, 0, 3600, rng) == 100


@pytest.mark.parametrize(
    ("failures", "base"),
    [(0, 10), (1, 20), (2, 40), (3, 80), (4, 160), (5, 300), (6, 300), (40, 300), (5000, 300)],
)
def test_next_delay_doubles_per_failure_up_to_backoff_max(failures: int, base: float) -> None:
    assert next_delay(10, 0.0, failures, 300, random.Random(0)) == base
    rng = random.Random(failures)
    for _ in range(200):
        assert base * 0.75 <= next_delay(10, 0.25, failures, 300, rng) <= base * 1.25


def test_next_delay_is_reproducible_with_a_seeded_rng() -> None:
    one = [next_delay(10, 0.3, f, 100, random.Random(5)) for f in range(6)]
    two = [next_delay(10, 0.3, f, 100, random.Random(5)) for f in range(6)]
    assert one == two


async def test_sync_loop_backs_off_on_failure_and_resets_on_success(tmp_path: Path) -> None:
    p, a = make_node(tmp_path, "p", "publisher"), make_node(tmp_path, "a")
    a.config = replace(a.config, sync=SyncConfig(interval=10, jitter=0.1, backoff_max=50))
    publish(p, 20)
    allow(p, a)
    trust(a, p)
    delays: list[float] = []
    rounds: list[tuple[bool, float]] = []
    async with serve(p) as p_url:
        relay = Relay(p_url)
        async with relay.running() as relay_url:
            use(a, p, relay_url)
            relay.fail = True

            async def sleep(delay: float) -> None:
                delays.append(delay)
                # The peer comes back after three failed rounds, and fails again later.
                relay.fail = len(delays) < 3 or len(delays) >= 5

            def on_round(outcomes: list[Outcome] | None, delay: float) -> None:
                assert outcomes is not None and len(outcomes) == 1
                rounds.append((outcomes[0].ok, delay))

            await sync_loop(a, sleep=sleep, rng=random.Random(7), rounds=7, on_round=on_round)

    assert [ok for ok, _ in rounds] == [False, False, False, True, True, False, False]
    assert [d for _, d in rounds] == delays
    rng = random.Random(7)
    failures = [1, 2, 3, 0, 0, 1, 2]
    assert delays == [next_delay(10, 0.1, f, 50, rng) for f in failures]
    for delay, base in zip(delays, [20, 40, 50, 10, 10, 20, 40], strict=True):
        assert base * 0.9 <= delay <= base * 1.1
    assert bank(a, P) == bank(p, P)


async def test_sync_loop_with_nothing_to_sync_is_not_failing(tmp_path: Path) -> None:
    a = make_node(tmp_path, "a")
    a.config = replace(a.config, sync=SyncConfig(interval=30, jitter=0.0, backoff_max=60))
    delays: list[float] = []
    seen: list[object] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    await sync_loop(
        a, sleep=sleep, rng=random.Random(1), rounds=3, on_round=lambda o, d: seen.append(o)
    )
    assert delays == [30, 30, 30]
    assert seen == [None, None, None]
