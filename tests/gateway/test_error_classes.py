"""Error classes on real servers: same-tier retries of transient failures within the deadline (Retry-After
honoured), 429 and 529 falling through without a retry, a context-window-exceeded answer falling through to a tier
with a larger context window, other client errors passed through unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.app import RunningGateway, run_gateway
from governor.policy import ServicePolicy
from tests.gateway.conftest import AUTH, CHAT, TOKEN, chat_policy
from tests.gateway.scripted import Reply, Scripted, run_scripted
from tests.gateway.test_admission import with_tier

OPENAI_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
ANTHROPIC_TOO_LONG = {
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"},
}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@contextlib.asynccontextmanager
async def gateway(
    tiers: dict[str, dict[str, Any]], **policy: Any
) -> AsyncIterator[tuple[RunningGateway, Scripted, Scripted, Scripted, httpx.AsyncClient]]:
    async with run_scripted("primary") as p, run_scripted("secondary") as s, run_scripted("degraded") as d:
        pol: ServicePolicy = chat_policy(p.url, s.url, d.url, drop_tiers=("tier_2_cache",), **policy)
        for tier, fields in tiers.items():
            pol = with_tier(pol, tier, **fields)
        async with run_gateway({"chat": pol}, TOKEN) as gw, httpx.AsyncClient(timeout=10) as http:
            yield gw, p, s, d, http


async def post(gw: RunningGateway, http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT)


async def primary_stats(gw: RunningGateway, http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get(f"{gw.url}/admin/services/chat/stats?window=60", headers=AUTH)
    return r.json()["tiers"]["tier_0_primary"]  # type: ignore[no-any-return]


async def test_a_503_is_retried_on_the_same_tier_under_concurrent_load() -> None:
    retry = {"attempts": 2, "backoff_ms": 20, "max_backoff_ms": 100}
    async with gateway({"tier_0_primary": {"retry": retry}}) as (gw, p, s, _, http):
        # 4 at once: 5 failures in a row would open the breaker, and an open breaker is not retried into
        p.then(*(Reply(status=503, body={"error": {"message": "busy"}}) for _ in range(4)))
        answers = await asyncio.gather(*(post(gw, http) for _ in range(4)))
        assert [r.status_code for r in answers] == [200] * 4
        assert {r.headers["x-governor-tier"] for r in answers} == {"tier_0_primary"}
        for r in answers:
            assert r.headers["x-governor-reason"].startswith("tier_0_primary=http_503, retried in ")
        assert len(p.received) == 8 and s.received == []
        stats = await primary_stats(gw, http)
        assert stats["causes"] == {"http_5xx": 4} and stats["requests"] == 8
        metrics = (await http.get(f"{gw.url}/metrics")).text
        assert (
            'governor_gateway_tier_retries_total{cause="http_503",service="chat",tier="tier_0_primary"} 4.0' in metrics
        )


async def test_retries_stop_at_the_deadline_and_the_chain_still_answers() -> None:
    retry = {"attempts": 10, "backoff_ms": 100, "max_backoff_ms": 200}
    async with gateway({"tier_0_primary": {"retry": retry}}, deadline_ms=500) as (gw, p, _s, _, http):
        p.default = Reply(status=502)
        t0 = time.monotonic()
        r = await post(gw, http)
        took = time.monotonic() - t0
        assert took < 0.8, f"took {took:.2f} s past a 0.5 s deadline"
        assert 2 <= len(p.received) <= 7  # retried, but not all 10: the deadline ran out first
        assert r.status_code == 200 and r.headers["x-governor-tier"] in {"tier_1_secondary", "tier_4_static"}
        gaps = [b.at - a.at for a, b in zip(p.received, p.received[1:], strict=False)]
        assert all(g >= 0.045 for g in gaps)  # each wait is at least half its backoff (the jitter's fixed part)


async def test_retry_after_is_honoured_and_a_long_one_falls_through_at_once() -> None:
    retry = {"attempts": 1, "backoff_ms": 10, "max_backoff_ms": 1000}
    async with gateway({"tier_0_primary": {"retry": retry}}) as (gw, p, _s, _, http):
        p.then(Reply(status=503, headers={"retry-after-ms": "300"}))
        r = await post(gw, http)
        assert r.headers["x-governor-tier"] == "tier_0_primary" and len(p.received) == 2
        assert p.received[1].at - p.received[0].at >= 0.29
        p.then(Reply(status=503, headers={"Retry-After": "5"}))  # longer than max_backoff_ms: no retry here
        t0 = time.monotonic()
        r = await post(gw, http)
        assert r.headers["x-governor-tier"] == "tier_1_secondary" and time.monotonic() - t0 < 0.5
        assert len(p.received) == 3 and r.headers["x-governor-reason"] == "tier_0_primary=http_503"


async def test_429_and_529_fall_through_without_a_retry() -> None:
    retry = {"attempts": 3, "backoff_ms": 10}
    async with gateway({"tier_0_primary": {"retry": retry}}) as (gw, p, s, _, http):
        p.then(Reply(status=429, headers={"Retry-After": "1"}), Reply(status=529, body=OVERLOADED))
        limited = await post(gw, http)
        overloaded = await post(gw, http)
        assert len(p.received) == 2 and len(s.received) == 2
        assert limited.headers["x-governor-reason"] == "tier_0_primary=rate_limited"
        assert overloaded.headers["x-governor-reason"] == "tier_0_primary=overloaded"
        assert overloaded.headers["x-governor-tier"] == "tier_1_secondary"
        assert (await primary_stats(gw, http))["causes"] == {"rate_limited": 1, "overloaded": 1}


async def test_a_timeout_is_retried_only_when_the_deadline_leaves_room_for_a_whole_attempt() -> None:
    retry = {"attempts": 1, "backoff_ms": 10}
    async with gateway({"tier_0_primary": {"retry": retry}}, deadline_ms=600) as (gw, p, _s, _, http):
        p.then(Reply(delay_s=1.0))  # the primary's timeout is 400 ms: 200 ms are left, not enough for a retry
        r = await post(gw, http)
        assert r.headers["x-governor-tier"] == "tier_1_secondary" and len(p.received) == 1
    async with gateway({"tier_0_primary": {"retry": retry}}, deadline_ms=2000) as (gw, p, _s, _, http):
        p.then(Reply(delay_s=1.0))
        r = await post(gw, http)
        assert r.headers["x-governor-tier"] == "tier_0_primary" and len(p.received) == 2
        assert r.headers["x-governor-reason"].startswith("tier_0_primary=timeout, retried")


async def test_context_window_exceeded_falls_through_to_a_tier_with_a_larger_one() -> None:
    tiers = {
        "tier_0_primary": {"context_window": 8192},
        "tier_1_secondary": {"context_window": 4096},
        "tier_3_degraded": {"context_window": 200_000},
    }
    async with gateway(tiers) as (gw, p, s, d, http):
        p.then(Reply(status=400, body=OPENAI_TOO_LONG), Reply(status=400, body=ANTHROPIC_TOO_LONG))
        for _ in range(2):
            r = await post(gw, http)
            assert r.status_code == 200 and r.headers["x-governor-tier"] == "tier_3_degraded"
            assert r.headers["x-governor-reason"] == (
                "tier_0_primary=context_window_exceeded; tier_1_secondary=context_window_too_small"
            )
        assert s.received == [] and len(d.received) == 2
        stats = await primary_stats(gw, http)
        assert stats["errors"] == 0 and stats["causes"] == {}  # too long a prompt is no failure of the primary
        p.then(Reply(status=400, body={"error": {"message": "bad temperature", "code": "invalid_value"}}))
        plain = await post(gw, http)  # any other client error passes through unchanged
        assert plain.status_code == 400 and plain.json()["error"]["code"] == "invalid_value"
        assert plain.headers["x-governor-tier"] == "tier_0_primary"


async def test_context_window_exceeded_passes_through_when_no_later_tier_is_larger() -> None:
    tiers = {"tier_0_primary": {"context_window": 200_000}, "tier_1_secondary": {"context_window": 8192}}
    async with gateway(tiers) as (gw, p, s, _, http):
        p.then(Reply(status=400, body=OPENAI_TOO_LONG))
        r = await post(gw, http)
        assert r.status_code == 400 and r.json() == OPENAI_TOO_LONG
        assert r.headers["x-governor-tier"] == "tier_0_primary" and s.received == []
