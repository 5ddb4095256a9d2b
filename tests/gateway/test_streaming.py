"""Server-sent events pass through; a stream never ends silently."""

from __future__ import annotations

import json

from tests.gateway.conftest import CHAT, Stack

STREAM = {**CHAT, "stream": True}


def events(raw: bytes) -> list[str]:
    return [e for e in raw.decode().split("\n\n") if e]


def text_of(evts: list[str]) -> str:
    out = ""
    for e in evts:
        if e.startswith("data: {"):
            out += json.loads(e[6:])["choices"][0]["delta"].get("content", "")
    return out


async def test_stream_passes_through(st: Stack) -> None:
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        assert r.status == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["X-Governor-Tier"] == "tier_0_primary"
        evts = events(await r.read())
    assert evts[-1] == "data: [DONE]"
    assert text_of(evts) == "[primary] what is the weather"


async def test_stream_failing_before_its_first_byte_falls_through(st: Stack) -> None:
    st.primary.set(stream_cut_after=0)
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        assert r.headers["X-Governor-Tier"] == "tier_1_secondary"
        assert r.headers["X-Governor-Reason"].startswith("tier_0_primary=stream_failed_before_first_event")
        evts = events(await r.read())
    assert text_of(evts) == "[secondary] what is the weather"
    assert evts[-1] == "data: [DONE]"


async def test_stream_dying_midway_ends_with_an_explicit_error_event(st: Stack) -> None:
    st.primary.set(stream_cut_after=3, stream_interval_ms=5)
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        assert r.status == 200
        assert r.headers["X-Governor-Tier"] == "tier_0_primary"
        evts = events(await r.read())  # the HTTP response itself ends cleanly
    assert "data: [DONE]" not in evts
    assert evts[-1].startswith("event: error\ndata: ")
    error = json.loads(evts[-1].split("data: ", 1)[1])["error"]
    assert error["type"] == "upstream_stream_failed"
    assert (error["tier"], error["reason"]) == ("tier_0_primary", "disconnected")
    _, stats = await st.admin("GET", "/services/chat/stats")
    assert stats["tiers"]["tier_0_primary"]["errors"] == 1


async def test_stream_error_status_falls_through_and_static_answers_as_sse(st: Stack) -> None:
    for up in (st.primary, st.secondary, st.degraded):
        up.set(error_rate=1.0)
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        assert r.headers["X-Governor-Tier"] == "tier_4_static"
        assert r.headers["content-type"] == "text/event-stream"
        evts = events(await r.read())
    assert text_of(evts) == "limited mode"
    assert evts[-1] == "data: [DONE]"


async def test_completed_stream_is_cached_and_replayed(st: Stack) -> None:
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        first = await r.read()
    st.primary.set(error_rate=1.0)
    st.secondary.set(error_rate=1.0)
    async with st.http.post(f"{st.url}/chat/v1/chat/completions", json=STREAM) as r:
        assert r.headers["X-Governor-Tier"] == "tier_2_cache"
        assert await r.read() == first
