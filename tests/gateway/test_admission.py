"""Bulkheads under concurrent load, on real servers: N+1 requests at a tier limited to N fall through (or are shed
with the explicit 503 + Retry-After), queued ones wait at most their timeout, nothing hangs, and every refusal is
counted for the tier with its cause."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import RunningGateway, run_gateway
from governor.enums import FallbackTier
from governor.policy import PolicyError, ServicePolicy, parse_policy
from tests.gateway.conftest import AUTH, CHAT, TOKEN, chat_policy
from tests.gateway.scripted import Reply, Scripted, run_scripted


def with_tier(policy: ServicePolicy, tier: str, **fields: Any) -> ServicePolicy:
    data = policy.model_dump(mode="json", exclude_none=True)
    for spec in data["chain"]:
        if spec["tier"] == tier:
            spec.update(fields)
    return parse_policy(data, "test")


@contextlib.asynccontextmanager
async def chain(
    tier: str, delay_s: float, **bulkhead: Any
) -> AsyncIterator[tuple[RunningGateway, Scripted, Scripted, httpx.AsyncClient]]:
    async with run_scripted("primary") as p, run_scripted("secondary") as s, run_scripted("degraded") as d:
        slow = {"tier_0_primary": p, "tier_1_secondary": s, "tier_3_degraded": d}[tier]
        slow.default = Reply(delay_s=delay_s)  # only the tier under test is slow
        pol = chat_policy(p.url, s.url, d.url, drop_tiers=("tier_2_cache",), deadline_ms=3000)
        pol = with_tier(pol, tier, bulkhead=bulkhead, timeout_ms=2000)
        async with run_gateway({"chat": pol}, TOKEN) as gw, httpx.AsyncClient(timeout=10) as http:
            yield gw, p, s, http


async def burst(gw: RunningGateway, http: httpx.AsyncClient, n: int) -> list[httpx.Response]:
    url = f"{gw.url}/chat/v1/chat/completions"
    return list(await asyncio.gather(*(http.post(url, json=CHAT) for _ in range(n))))


async def stats(gw: RunningGateway, http: httpx.AsyncClient, tier: str) -> dict[str, Any]:
    r = await http.get(f"{gw.url}/admin/services/chat/stats?window=60", headers=AUTH)
    return r.json()["tiers"][tier]  # type: ignore[no-any-return]


async def test_n_plus_one_requests_fall_through_to_the_next_tier_at_once() -> None:
    async with chain("tier_0_primary", 0.5, max_concurrent=3) as (gw, p, _s, http):
        t0 = time.monotonic()
        answers = await burst(gw, http, 5)
        took = time.monotonic() - t0
        tiers = sorted(r.headers["x-governor-tier"] for r in answers)
        assert [r.status_code for r in answers] == [200] * 5
        assert tiers == ["tier_0_primary"] * 3 + ["tier_1_secondary"] * 2
        fell = [r for r in answers if r.headers["x-governor-tier"] == "tier_1_secondary"]
        assert all(r.headers["x-governor-reason"] == "tier_0_primary=bulkhead_full" for r in fell)
        assert p.max_in_flight == 3 and len(p.received) == 3
        assert took < 1.5  # the two extra requests did not wait for the primary's slots
        primary = await stats(gw, http, "tier_0_primary")
        assert primary["skipped_by"] == {"bulkhead_full": 2} and primary["skipped_causes"] == {"bulkhead_full": 2}
        link = gw.app.services["chat"].link(FallbackTier.TIER_0_PRIMARY)
        assert link is not None and link.bulkhead is not None and link.bulkhead.active == 0  # all slots back
        again = await burst(gw, http, 3)
        assert [r.headers["x-governor-tier"] for r in again] == ["tier_0_primary"] * 3


async def test_a_queued_request_gets_the_freed_slot_and_a_full_queue_falls_through() -> None:
    async with chain("tier_0_primary", 0.3, max_concurrent=1, max_queue=1, queue_timeout_ms=2000) as (gw, p, _s, http):
        answers = await burst(gw, http, 3)
        tiers = sorted(r.headers["x-governor-tier"] for r in answers)
        assert tiers == ["tier_0_primary", "tier_0_primary", "tier_1_secondary"]
        assert p.max_in_flight == 1
        gap = p.received[1].at - p.received[0].at
        assert gap >= 0.25  # the queued one went in when the first came back
        primary = await stats(gw, http, "tier_0_primary")
        assert primary["skipped_causes"] == {"bulkhead_full": 1}


async def test_the_queue_wait_is_bounded_by_its_timeout() -> None:
    async with chain("tier_0_primary", 1.0, max_concurrent=1, max_queue=10, queue_timeout_ms=150) as (gw, _p, _s, http):
        url = f"{gw.url}/chat/v1/chat/completions"
        first = asyncio.ensure_future(http.post(url, json=CHAT))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        queued = await asyncio.gather(*(http.post(url, json=CHAT) for _ in range(3)))
        waited = time.monotonic() - t0
        assert [r.headers["x-governor-tier"] for r in queued] == ["tier_1_secondary"] * 3
        assert all(r.headers["x-governor-reason"] == "tier_0_primary=bulkhead_queue_timeout" for r in queued)
        assert 0.15 <= waited < 0.9  # about the queue timeout, not the primary's 1 s
        assert (await first).headers["x-governor-tier"] == "tier_0_primary"
        primary = await stats(gw, http, "tier_0_primary")
        assert primary["skipped_causes"] == {"bulkhead_queue_timeout": 3}


async def test_a_full_secondary_sheds_with_the_explicit_503_and_retry_after() -> None:
    async with chain("tier_1_secondary", 0.5, max_concurrent=2, when_full="shed") as (gw, _p, s, http):
        forced = await http.put(
            f"{gw.url}/admin/services/chat/breakers/tier_0_primary", json={"mode": "open"}, headers=AUTH
        )
        assert forced.status_code == 200  # the primary is out: everything lands on the secondary
        t0 = time.monotonic()
        answers = await burst(gw, http, 4)
        assert time.monotonic() - t0 < 1.5
        ok = [r for r in answers if r.status_code == 200]
        shed = [r for r in answers if r.status_code == 503]
        assert len(ok) == 2 and all(r.headers["x-governor-tier"] == "tier_1_secondary" for r in ok)
        assert len(shed) == 2 and s.max_in_flight == 2
        for r in shed:
            assert r.headers["retry-after"] == "1" and r.headers["x-governor-tier"] == "tier_5_error"
            tried = r.json()["error"]["tiers_tried"]
            assert {"tier": "tier_1_secondary", "reason": "bulkhead_full"} in tried
            assert all(t["tier"] != "tier_3_degraded" for t in tried)  # shed: no further tier tried
        secondary = await stats(gw, http, "tier_1_secondary")
        assert secondary["skipped_causes"] == {"bulkhead_full": 2}


@pytest.mark.parametrize(
    ("tier", "bulkhead", "message"),
    [
        ("tier_4_static", {"max_concurrent": 2}, "applies to upstream tiers only"),
        ("tier_0_primary", {"max_concurrent": 0}, "chain.0.bulkhead.max_concurrent"),
        ("tier_0_primary", {"max_concurrent": 2, "when_full": "drop"}, "chain.0.bulkhead.when_full"),
        ("tier_0_primary", {"max_queue": 2}, "chain.0.bulkhead.max_concurrent"),
    ],
)
def test_bad_bulkheads_are_refused_naming_the_field(tier: str, bulkhead: dict[str, Any], message: str) -> None:
    pol = chat_policy("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3")
    with pytest.raises(PolicyError, match=message):
        with_tier(pol, tier, bulkhead=bulkhead)
