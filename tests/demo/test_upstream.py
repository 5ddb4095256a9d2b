"""The fake model answers like OpenAI's API and injects each fault it is asked for."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from demo.upstream import run_upstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello there world"}]}


async def test_health_and_completion() -> None:
    async with run_upstream(name="primary") as up, aiohttp.ClientSession() as http:
        async with http.get(f"{up.url}/health") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ok", "model": "primary-model", "name": "primary"}
        async with http.post(f"{up.url}/v1/chat/completions", json={**CHAT, "max_tokens": 2}) as r:
            body = await r.json()
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == "[primary] hello"
        assert up.counters.last_max_tokens == 2


async def test_stream_and_stream_cut() -> None:
    async with run_upstream(name="s") as up, aiohttp.ClientSession() as http:
        async with http.post(f"{up.url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            assert r.headers["content-type"] == "text/event-stream"
            text = (await r.read()).decode()
        events = [e for e in text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        words = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in events[:-1])
        assert words == "[s] hello there world"
        up.set(stream_cut_after=2)
        async with http.post(f"{up.url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()


async def test_faults_over_control() -> None:
    async with run_upstream(name="f") as up, aiohttp.ClientSession() as http:
        async with http.put(f"{up.url}/control", json={"rate_limit": True, "retry_after_s": 7}) as r:
            assert r.status == 200
        async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
            assert (r.status, r.headers["retry-after"]) == (429, "7")
        await http.put(f"{up.url}/control", json={"reset": True, "garbage": True})
        async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
            with pytest.raises(ValueError):
                json.loads(await r.read())
        await http.put(f"{up.url}/control", json={"reset": True, "error_rate": 1.0})
        async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 500
        await http.put(f"{up.url}/control", json={"reset": True, "outage": True, "outage_mode": "503"})
        async with http.get(f"{up.url}/health") as r:
            assert r.status == 503
        await http.put(f"{up.url}/control", json={"outage_mode": "close"})
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
                pass
        async with http.get(f"{up.url}/control") as r:
            assert (await r.json())["outage"] is True


async def test_control_rejects_bad_fields() -> None:
    async with run_upstream() as up, aiohttp.ClientSession() as http:
        for bad, field in [({"error_rate": 2}, "error_rate"), ({"outage": "yes"}, "outage"), ({"nope": 1}, "nope")]:
            async with http.put(f"{up.url}/control", json=bad) as r:
                assert r.status == 422
                assert field in (await r.json())["error"]["message"]


async def test_flapping_and_slow_answers() -> None:
    async with run_upstream(name="n") as up, aiohttp.ClientSession() as http:
        async with http.put(f"{up.url}/control", json={"flap_period_s": 10, "flap_down_s": 10}) as r:
            assert r.status == 422
            assert "flap_down_s" in (await r.json())["error"]["message"]
        up.set(flap_period_s=10, flap_down_s=2)
        assert [up.faults.down(t) for t in (100.0, 101.9, 102.0, 109.9, 110.5)] == [True, True, False, False, True]
        up.set(flap_period_s=0.4, flap_down_s=0.2, outage_mode="503")
        statuses = set()
        for _ in range(12):
            async with http.get(f"{up.url}/health") as r:
                statuses.add(r.status)
            await asyncio.sleep(0.05)
        assert statuses == {200, 503}
        up.reset()
        up.set(slow_rate=1.0, slow_ms=300)
        t0 = time.perf_counter()
        async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
        assert time.perf_counter() - t0 >= 0.3
        up.set(slow_rate=0.0)
        t0 = time.perf_counter()
        async with http.post(f"{up.url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
        assert time.perf_counter() - t0 < 0.2
