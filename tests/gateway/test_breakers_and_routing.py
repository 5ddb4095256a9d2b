"""Breakers isolate a failing upstream; the pinned tier and primary weight steer traffic for the ramp."""

from __future__ import annotations

import json

from gateway.breaker import DENY, PASS, PROBE, Breaker, BreakerConfig
from governor.enums import CircuitState
from tests.gateway.conftest import Stack, stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_follows_the_seed_defaults() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(), clock)
    for _ in range(4):
        assert b.allow() == PASS
        b.record(False)
    assert b.effective_state() is CircuitState.CLOSED
    b.record(False)  # the 5th consecutive failure
    assert b.effective_state() is CircuitState.OPEN
    assert b.allow() == DENY
    clock.now += 59.9
    assert b.allow() == DENY
    clock.now += 0.2
    # Half-open admits a bounded number of probes at once.
    assert [b.allow() for _ in range(4)] == [PROBE, PROBE, PROBE, DENY]
    for _ in range(3):
        b.record(True, probe=True)
    assert b.effective_state() is CircuitState.CLOSED


def test_a_failed_probe_reopens() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(failure_threshold=1), clock)
    b.record(False)
    clock.now += 61
    assert b.allow() == PROBE
    b.record(False, probe=True)
    assert b.effective_state() is CircuitState.OPEN
    assert b.allow() == DENY


def test_sliding_window_failure_rate_opens_without_consecutive_failures() -> None:
    clock = Clock()
    b = Breaker(BreakerConfig(), clock)
    for i in range(20):  # alternate: never 5 in a row, but 50 % over 20 calls
        b.record(i % 2 == 0)
        clock.now += 0.5
    assert b.effective_state() is CircuitState.OPEN
    # Old failures leave the window.
    b2 = Breaker(BreakerConfig(), clock)
    for i in range(18):
        b2.record(i % 2 == 0)
    clock.now += 31
    b2.record(False)
    b2.record(True)
    assert b2.effective_state() is CircuitState.CLOSED


async def test_open_breaker_stops_calling_the_primary(st: Stack) -> None:
    st.primary.set(error_rate=1.0)
    for _ in range(5):
        await st.chat()
    calls = st.primary.counters.completions
    status, headers, _ = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=breaker_open"
    assert st.primary.counters.completions == calls
    _, state = await st.admin("GET", "/services/chat")
    assert state["breakers"]["tier_0_primary"]["state"] == "open"
    # After the open period, probes reach the primary again; three successes close it.
    st.primary.set(error_rate=0.0)
    breaker = st.service().links[0].breaker
    breaker.opened_at -= 61
    for _ in range(3):
        _, headers, _ = await st.chat()
        assert headers["X-Governor-Tier"] == "tier_0_primary"
    assert breaker.effective_state() is CircuitState.CLOSED


async def test_forced_breaker_modes(st: Stack) -> None:
    status, state = await st.admin("PUT", "/services/chat/breakers/tier_0_primary", json={"mode": "open"})
    assert status == 200
    assert state["breakers"]["tier_0_primary"] == state["breakers"]["tier_0_primary"] | {
        "state": "open",
        "mode": "open",
    }
    _, headers, _ = await st.chat()
    assert headers["X-Governor-Tier"] == "tier_1_secondary"
    assert st.primary.counters.completions == 0
    st.primary.set(error_rate=1.0)
    await st.admin("PUT", "/services/chat/breakers/tier_0_primary", json={"mode": "closed"})
    for _ in range(8):  # forced closed: failures never open it
        await st.chat()
    assert st.primary.counters.completions == 8
    _, state = await st.admin("PUT", "/services/chat/breakers/tier_0_primary", json={"mode": "auto"})
    assert state["breakers"]["tier_0_primary"]["state"] == "closed"
    status, err = await st.admin("PUT", "/services/chat/breakers/tier_2_cache", json={"mode": "open"})
    assert status == 404
    assert err["error"]["field"] == "tier"


async def test_pinned_tier_serves_everything(st: Stack) -> None:
    _, state = await st.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_1_secondary"})
    assert (state["pinned_tier"], state["primary_weight"]) == ("tier_1_secondary", 0)
    for _ in range(5):
        _, headers, _ = await st.chat()
        assert headers["X-Governor-Tier"] == "tier_1_secondary"
        assert headers["X-Governor-Reason"] == "tier_0_primary=skipped: pinned to tier_1_secondary"
    assert st.primary.counters.completions == 0
    # A pinned tier that fails still falls through down the chain, never up.
    st.secondary.set(error_rate=1.0)
    _, headers, _ = await st.chat({"messages": [{"role": "user", "content": "new question"}]})
    assert headers["X-Governor-Tier"] == "tier_3_degraded"
    assert st.primary.counters.completions == 0
    _, state = await st.admin("PUT", "/services/chat/route", json={"pinned_tier": None})
    assert (state["pinned_tier"], state["primary_weight"]) == (None, 100)


async def test_primary_weight_splits_traffic() -> None:
    async with stack() as s:
        await s.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_1_secondary", "primary_weight": 25})
        tiers = [(await s.chat())[1]["X-Governor-Tier"] for _ in range(200)]
        share = tiers.count("tier_0_primary") / len(tiers)
        assert 0.12 < share < 0.40, share
        assert set(tiers) == {"tier_0_primary", "tier_1_secondary"}
        await s.admin("PUT", "/services/chat/route", json={"primary_weight": 0})
        tiers = [(await s.chat())[1]["X-Governor-Tier"] for _ in range(20)]
        assert set(tiers) == {"tier_1_secondary"}
        await s.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_0_primary", "primary_weight": 100})
        assert (await s.chat())[1]["X-Governor-Tier"] == "tier_0_primary"


async def test_pinning_the_error_tier_answers_503() -> None:
    async with stack() as s:
        await s.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_5_error"})
        status, headers, body = await s.chat()
        assert status == 503
        assert headers["X-Governor-Tier"] == "tier_5_error"
        assert json.loads(body)["error"]["tiers_tried"][0] == {
            "tier": "tier_0_primary",
            "reason": "skipped: pinned to tier_5_error",
        }
        assert s.primary.counters.completions == 0
