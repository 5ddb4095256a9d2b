"""429 storms: a breaker opened by 429s stays open at least as long as their Retry-After says (bounded by the
policy's `breaker.max_retry_after_s`), and every request it skips is counted as rate_limited for the primary."""

from __future__ import annotations

import asyncio
import time

from gateway.breaker import DENY, PROBE, Breaker, BreakerConfig
from governor.enums import CircuitState
from tests.gateway.conftest import Stack, stack
from tests.gateway.test_bad_bodies import bad_answers, load
from tests.gateway.test_breakers_and_routing import Clock


def storm(b: Breaker, retry_after_s: float, n: int = 5) -> None:
    for _ in range(n):
        b.allow()
        b.record(False, cause="rate_limited", retry_after_s=retry_after_s)


def test_retry_after_longer_than_the_open_time_holds_the_breaker_open() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(open_s=1.0), clock)
    storm(b, retry_after_s=5)
    assert (b.effective_state(), b.open_cause) == (CircuitState.OPEN, "rate_limited")
    clock.now += 4.9
    assert b.allow() == DENY and b.retry_in_s() is not None and b.retry_in_s() < 0.2  # type: ignore[operator]
    clock.now += 0.2
    assert b.allow() == PROBE


def test_retry_after_shorter_than_the_open_time_keeps_the_open_time() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(open_s=2.0), clock)
    storm(b, retry_after_s=0.5)
    clock.now += 1.9
    assert b.allow() == DENY
    clock.now += 0.2
    assert b.allow() == PROBE


def test_the_failures_that_open_the_breaker_name_its_cause_not_older_ones() -> None:
    """A healthy but noisy primary's scattered 5xx (each followed by successes) must not name the breaker a 429
    storm opens: found by the fault matrix (bench/faults.py), where it made a 429 storm an `error_spike`."""
    clock = Clock()
    b = Breaker(BreakerConfig(open_s=1.0), clock)
    for _ in range(8):
        b.allow()
        b.record(False, cause="http_5xx")
        for _ in range(10):
            b.allow()
            b.record(True)
        clock.now += 1.0
    assert b.effective_state() is CircuitState.CLOSED
    storm(b, retry_after_s=0)
    assert (b.effective_state(), b.open_cause) == (CircuitState.OPEN, "rate_limited")


def test_retry_after_is_bounded_by_the_policy() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(open_s=1.0, max_retry_after_s=3.0), clock)
    storm(b, retry_after_s=3600)
    clock.now += 2.9
    assert b.allow() == DENY
    clock.now += 0.2
    assert b.allow() == PROBE


def test_a_rate_limited_probe_reopens_for_its_retry_after_and_closing_forgets_it() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(open_s=1.0), clock)
    storm(b, retry_after_s=0)
    clock.now += 1.1
    assert b.allow() == PROBE
    b.record(False, probe=True, cause="rate_limited", retry_after_s=10)
    clock.now += 9.0
    assert b.allow() == DENY
    clock.now += 1.1
    for _ in range(3):
        assert b.allow() == PROBE
        b.record(True, probe=True)
    assert (b.effective_state(), b.open_cause, b.hold_until) == (CircuitState.CLOSED, None, 0.0)


async def calls_until_primary_answers(s: Stack, started: float, limit_s: float) -> float:
    """Keep clients coming until the primary serves again; seconds from `started` to that answer."""
    while time.monotonic() - started < limit_s:
        _, headers, _ = await s.chat()
        if headers["X-Governor-Tier"] == "tier_0_primary":
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"the primary did not serve again within {limit_s} s")


async def test_a_429_storm_with_a_long_retry_after_keeps_traffic_off_the_primary() -> None:
    async with stack(breaker=BreakerConfig(open_s=0.3)) as s:
        s.primary.set(rate_limit=True, retry_after_s=2)
        answers = [await s.chat() for _ in range(10)]
        opened = time.monotonic()
        assert {(st, h["X-Governor-Tier"]) for st, h, _ in answers} == {(200, "tier_1_secondary")}
        assert s.primary.counters.rate_limited == 5  # then the breaker opened
        _, state = await s.admin("GET", "/services/chat")
        breaker = state["breakers"]["tier_0_primary"]
        assert (breaker["state"], breaker["open_cause"]) == ("open", "rate_limited")
        assert breaker["retry_in_s"] > 1.0  # Retry-After 2 s, not the 0.3 s open time
        await asyncio.sleep(0.6)  # twice the open time: still held by the Retry-After
        await s.chat()
        assert s.primary.counters.rate_limited == 5
        _, stats = await s.admin("GET", "/services/chat/stats?window=60")
        primary = stats["tiers"]["tier_0_primary"]
        assert primary["causes"] == {"rate_limited": 5} and primary["rate_limited"] == 5
        assert primary["skipped_causes"] == {"rate_limited": 6}
        s.primary.set(rate_limit=False)
        assert await calls_until_primary_answers(s, opened, limit_s=10) >= 1.9


async def test_a_429_storm_with_a_short_retry_after_keeps_the_breakers_open_time() -> None:
    async with stack(breaker=BreakerConfig(open_s=1.5)) as s:
        s.primary.set(rate_limit=True, retry_after_s=0)
        for _ in range(5):
            await s.chat()
        opened = time.monotonic()
        s.primary.set(rate_limit=False)
        assert await calls_until_primary_answers(s, opened, limit_s=10) >= 1.4


async def test_the_policy_bounds_a_huge_retry_after() -> None:
    async with stack(breaker=BreakerConfig(open_s=0.3), breaker_policy={"max_retry_after_s": 1}) as s:
        s.primary.set(rate_limit=True, retry_after_s=3600)
        for _ in range(5):
            await s.chat()
        opened = time.monotonic()
        _, state = await s.admin("GET", "/services/chat")
        assert state["breakers"]["tier_0_primary"]["retry_in_s"] <= 1.0
        s.primary.set(rate_limit=False)
        assert 0.9 <= await calls_until_primary_answers(s, opened, limit_s=10) < 3600


async def test_a_concurrent_429_storm_is_counted_whole_and_no_client_sees_it() -> None:
    async with stack() as s:
        s.primary.set(rate_limit=True, retry_after_s=30)
        answers = await load(s, 300, concurrency=20)
        assert bad_answers(answers) == []
        _, window = await s.admin("GET", "/services/chat/stats?window=60")
        primary = window["tiers"]["tier_0_primary"]
        attempts = s.primary.counters.rate_limited
        assert primary["causes"] == {"rate_limited": attempts}
        assert primary["skipped_causes"] == {"rate_limited": 300 - attempts}  # every request, attempted or skipped
