"""Every request is answered by the best available tier, and says which tier and why."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from demo.upstream import run_upstream
from gateway.app import run_gateway
from tests.gateway.conftest import CHAT, STATIC_BODY, TOKEN, Stack, chat_policy, stack
from tests.ports import free_port


def content(body: bytes) -> str:
    return json.loads(body)["choices"][0]["message"]["content"]


async def test_healthy_primary_answers_without_a_reason(st: Stack) -> None:
    status, headers, body = await st.chat()
    assert status == 200
    assert headers["X-Governor-Tier"] == "tier_0_primary"
    assert "X-Governor-Reason" not in headers
    assert content(body) == "[primary] what is the weather"


async def test_5xx_falls_through_to_secondary(st: Stack) -> None:
    st.primary.set(error_rate=1.0)
    status, headers, body = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=http_500"
    assert content(body).startswith("[secondary]")


async def test_timeout_falls_through_within_the_tier_timeout(st: Stack) -> None:
    st.primary.set(latency_ms=3000)
    started = time.perf_counter()
    status, headers, _ = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=timeout"
    assert time.perf_counter() - started < 1.5  # primary's timeout is 400 ms


async def test_refused_connection_falls_through() -> None:
    async with run_upstream(name="secondary") as sec, run_upstream(name="degraded") as deg:
        pol = chat_policy(f"http://127.0.0.1:{free_port()}", sec.url, deg.url)
        async with run_gateway({"chat": pol}, TOKEN) as gw, aiohttp.ClientSession() as http:
            async with http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT) as r:
                assert r.status == 200
                assert r.headers["X-Governor-Tier"] == "tier_1_secondary"
                assert r.headers["X-Governor-Reason"] == "tier_0_primary=connect_error"


async def test_outage_that_drops_connections_falls_through(st: Stack) -> None:
    await st.chat()  # leave a kept-alive connection in the pool
    st.primary.set(outage=True)
    status, headers, _ = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=disconnected"


async def test_garbage_body_is_not_passed_off_as_an_answer(st: Stack) -> None:
    st.primary.set(garbage=True)
    status, headers, body = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=bad_body: not_json"
    assert content(body).startswith("[secondary]")


async def test_429_falls_through_and_is_counted_as_rate_limited(st: Stack) -> None:
    st.primary.set(rate_limit=True)
    status, headers, _ = await st.chat()
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_1_secondary")
    assert headers["X-Governor-Reason"] == "tier_0_primary=rate_limited"
    _, stats = await st.admin("GET", "/services/chat/stats?window=30")
    assert stats["tiers"]["tier_0_primary"]["rate_limited"] == 1


async def test_client_errors_pass_through_unchanged(st: Stack) -> None:
    status, headers, body = await st.chat({"model": "m", "messages": []})
    assert status == 400
    assert headers["X-Governor-Tier"] == "tier_0_primary"
    assert json.loads(body)["error"]["message"].startswith("messages")
    assert st.secondary.counters.completions == 0


async def test_cache_serves_the_last_good_answer_with_age(st: Stack) -> None:
    await st.chat()
    st.primary.set(outage=True, outage_mode="503")
    st.secondary.set(error_rate=1.0)
    # Same request with keys in another order and other spacing: canonical JSON makes it the same entry.
    reordered = json.dumps({"messages": CHAT["messages"], "model": "m"}, indent=2)
    async with st.http.post(
        f"{st.url}/chat/v1/chat/completions", data=reordered, headers={"content-type": "application/json"}
    ) as r:
        assert r.status == 200
        assert r.headers["X-Governor-Tier"] == "tier_2_cache"
        assert r.headers["X-Governor-Reason"] == "tier_0_primary=http_503; tier_1_secondary=http_500"
        assert r.headers["Age"] == "0"
        assert content(await r.read()) == "[primary] what is the weather"
    # Past the TTL the entry is gone, and the next tier answers.
    cache = st.service().cache
    cache._clock = lambda: time.monotonic() + 61
    status, headers, _ = await st.chat()
    assert status == 200
    assert headers["X-Governor-Tier"] == "tier_3_degraded"
    assert "tier_2_cache=cache_miss" in headers["X-Governor-Reason"]


async def test_cache_is_a_bounded_lru() -> None:
    async with stack() as s:
        cache = s.service().cache
        cache.max_entries = 2
        for word in ("a", "b", "c"):
            await s.chat({"messages": [{"role": "user", "content": word}]})
        assert len(cache) == 2
        s.primary.set(error_rate=1.0)
        s.secondary.set(error_rate=1.0)
        _, headers, _ = await s.chat({"messages": [{"role": "user", "content": "a"}]})
        assert headers["X-Governor-Tier"] == "tier_3_degraded"  # evicted
        _, headers, _ = await s.chat({"messages": [{"role": "user", "content": "c"}]})
        assert headers["X-Governor-Tier"] == "tier_2_cache"


async def test_degraded_tier_caps_max_tokens(st: Stack) -> None:
    st.primary.set(error_rate=1.0)
    st.secondary.set(error_rate=1.0)
    status, headers, body = await st.chat({**CHAT, "max_tokens": 500})
    assert (status, headers["X-Governor-Tier"]) == (200, "tier_3_degraded")
    assert st.degraded.counters.last_max_tokens == 3
    assert content(body) == "[degraded] what is"


async def test_static_then_explicit_503() -> None:
    async with stack(drop_tiers=("tier_2_cache", "tier_3_degraded")) as s:
        s.primary.set(error_rate=1.0)
        s.secondary.set(rate_limit=True, retry_after_s=7)
        status, headers, body = await s.chat()
        assert (status, headers["X-Governor-Tier"]) == (200, "tier_4_static")
        assert json.loads(body) == STATIC_BODY
    async with stack(drop_tiers=("tier_2_cache", "tier_3_degraded", "tier_4_static")) as s:
        s.primary.set(error_rate=1.0)
        s.secondary.set(rate_limit=True, retry_after_s=7)
        status, headers, body = await s.chat()
        assert status == 503
        assert headers["X-Governor-Tier"] == "tier_5_error"
        assert headers["Retry-After"] == "7"
        assert json.loads(body)["error"] | {"message": None} == {
            "type": "no_tier_available",
            "service": "chat",
            "tiers_tried": [
                {"tier": "tier_0_primary", "reason": "http_500"},
                {"tier": "tier_1_secondary", "reason": "rate_limited"},
            ],
            "retry_after_s": 7,
            "message": None,
        }


async def test_overall_deadline_bounds_the_chain() -> None:
    async with stack(deadline_ms=300, drop_tiers=("tier_2_cache",)) as s:
        for up in (s.primary, s.secondary, s.degraded):
            up.set(latency_ms=5000)
        started = time.perf_counter()
        status, headers, _ = await s.chat()
        assert time.perf_counter() - started < 1.0
        assert (status, headers["X-Governor-Tier"]) == (200, "tier_4_static")
        assert headers["X-Governor-Reason"] == (
            "tier_0_primary=timeout; tier_1_secondary=deadline_exceeded; tier_3_degraded=deadline_exceeded"
        )


async def test_unknown_service_is_404_and_oversized_body_is_413(st: Stack) -> None:
    async with st.http.post(f"{st.url}/nope/v1/chat/completions", json=CHAT) as r:
        assert r.status == 404
        assert (await r.json())["error"]["field"] == "service"
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", data=b"x" * 100_000) as r:
        assert r.status == 413
        assert (await r.json())["error"]["type"] == "request_too_large"
    assert st.primary.counters.completions == 0


async def test_concurrent_requests_share_pooled_connections(st: Stack) -> None:
    results = await asyncio.gather(*(st.chat() for _ in range(50)))
    assert {h["X-Governor-Tier"] for _, h, _ in results} == {"tier_0_primary"}
    pool = st.service().links[0].pool
    assert len(pool._all) <= 50
    await asyncio.gather(*(st.chat() for _ in range(50)))
    assert len(pool._all) <= 50  # reused, not re-opened


async def test_head_is_answered_by_an_upstream_that_sends_no_body_and_the_connection_is_not_reused_wrongly() -> None:
    """A HEAD answer has no body whatever its Content-Length says: the gateway must not wait for one (it used to,
    until the tier's timeout, then fell through) nor judge the missing body `not_json`; the client gets the
    upstream's Content-Length, and the next request on the gateway still reaches the primary."""
    from aiohttp import web

    doc = json.dumps({"object": "list", "data": ["x" * 990]}).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=doc, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/models", handler)  # and HEAD (allow_head), answered without the body
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with run_upstream(name="secondary") as sec:
            upstream = f"http://127.0.0.1:{port}"
            policy = chat_policy(upstream, sec.url, sec.url)
            async with run_gateway({"chat": policy}, TOKEN) as gw, aiohttp.ClientSession() as http:
                for _ in range(3):
                    async with http.head(f"{gw.url}/chat/v1/models", timeout=aiohttp.ClientTimeout(total=5)) as r:
                        assert r.status == 200
                        assert r.headers["X-Governor-Tier"] == "tier_0_primary", r.headers.get("X-Governor-Reason")
                        assert r.headers["Content-Length"] == str(len(doc))
                        assert await r.read() == b""
                    async with http.get(f"{gw.url}/chat/v1/models") as r:
                        assert r.headers["X-Governor-Tier"] == "tier_0_primary"
                        assert await r.read() == doc
    finally:
        await runner.cleanup()
