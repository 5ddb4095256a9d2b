"""No silent 200: a 2xx is a success only when its body is what the endpoint promises (issue 10.4).

The real gateway in front of the real demo upstreams; the primary answers each kind of bad 200 under concurrent
load. What a user checks: every client got a real chat completion (from the secondary), none got the bad body, and
the gateway counted every bad answer as `bad_body` for the primary, in its stats window and in /metrics.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from demo.upstream import run_upstream
from gateway.app import GatewaySettings, run_gateway
from gateway.breaker import BreakerConfig
from gateway.http import JSON_CT
from gateway.service import ServiceRuntime
from gateway.shaping import body_problem
from governor.policy import PolicyError, ServicePolicy, parse_policy
from tests.gateway.conftest import CHAT, TOKEN, Stack, chat_policy, stack

NEVER_OPEN = BreakerConfig(failure_threshold=10**9, failure_rate=1.0, min_calls=10**9)
KINDS = ["html", "json_error", "broken_json", "sse", "binary"]
REASONS = {
    "html": "not_json",
    "json_error": "error_object",
    "broken_json": "not_json",
    "sse": "event_stream_not_asked_for",
    "binary": "not_json",
}


async def load(s: Stack, n: int, concurrency: int = 20) -> list[tuple[int, Any, bytes]]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[int, Any, bytes]:
        async with sem:
            body = {**CHAT, "messages": [{"role": "user", "content": f"question {i}"}]}
            return await s.chat(body)

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=60)


def bad_answers(answers: list[tuple[int, Any, bytes]]) -> list[str]:
    """Every answer that is not a real chat completion served by a healthy tier."""
    bad = []
    for status, headers, raw in answers:
        try:
            body = json.loads(raw)
        except ValueError:
            bad.append(f"{status} not JSON: {raw[:60]!r}")
            continue
        if status != 200 or not isinstance(body, dict) or "choices" not in body or "error" in body:
            bad.append(f"{status} {raw[:60]!r}")
        elif headers.get("X-Governor-Tier") != "tier_1_secondary" or "[secondary]" not in raw.decode():
            bad.append(f"served by {headers.get('X-Governor-Tier')}: {raw[:60]!r}")
    return bad


async def stats(s: Stack, tier: str = "tier_0_primary") -> dict[str, Any]:
    status, window = await s.admin("GET", "/services/chat/stats?window=60")
    assert status == 200
    tiers: dict[str, Any] = window["tiers"]
    return tiers[tier]


@pytest.mark.parametrize("kind", KINDS)
async def test_each_bad_200_falls_through_and_is_counted_as_bad_body(kind: str) -> None:
    async with stack(breaker=NEVER_OPEN) as s:
        s.primary.set(garbage=True, garbage_kind=kind)
        answers = await load(s, 200)
        assert bad_answers(answers) == []
        assert s.primary.counters.garbage == 200  # the primary really answered every one with a bad 200
        primary = await stats(s)
        assert primary["requests"] == 200 and primary["errors"] == 200
        assert primary["causes"] == {"bad_body": 200}
        _, headers, _ = answers[0]
        assert headers["X-Governor-Reason"] == f"tier_0_primary=bad_body: {REASONS[kind]}"
        async with s.http.get(f"{s.url}/metrics") as r:
            metrics = await r.text()
        assert (
            'governor_gateway_tier_attempts_total{outcome="bad_body",service="chat",tier="tier_0_primary"} 200.0'
            in (metrics)
        )


async def test_an_open_breaker_still_counts_the_bad_bodies_it_skips() -> None:
    async with stack() as s:  # the seed's breaker: open after 5 consecutive failures
        s.primary.set(garbage=True, garbage_kind="json_error")
        answers = await load(s, 120, concurrency=4)
        assert bad_answers(answers) == []
        primary = await stats(s)
        attempts = s.primary.counters.garbage
        assert primary["causes"] == {"bad_body": attempts} and attempts < 120
        assert primary["skipped_by"] == {"breaker_open": 120 - attempts}
        assert primary["skipped_causes"] == {"bad_body": 120 - attempts}
        _, state = await s.admin("GET", "/services/chat")
        assert state["breakers"]["tier_0_primary"]["state"] == "open"
        assert state["breakers"]["tier_0_primary"]["open_cause"] == "bad_body"
        async with s.http.get(f"{s.url}/metrics") as r:
            metrics = await r.text()
        skipped = (
            'governor_gateway_tier_skipped_total{cause="bad_body",reason="breaker_open",service="chat",'
            f'tier="tier_0_primary"}} {120 - attempts}.0'
        )
        assert skipped in metrics


async def test_good_answers_and_client_errors_still_pass() -> None:
    async with stack(breaker=NEVER_OPEN) as s:
        answers = await load(s, 40)
        assert {h["X-Governor-Tier"] for _, h, _ in answers} == {"tier_0_primary"}
        status, headers, raw = await s.chat({"model": "m", "messages": []})  # the upstream's own 400
        assert (status, headers["X-Governor-Tier"]) == (400, "tier_0_primary")
        assert "error" in json.loads(raw)
        assert (await stats(s))["causes"] == {}


async def served_by(policy: ServicePolicy) -> tuple[str, str]:
    """The tier that answered one chat completion, and why earlier tiers did not."""
    async with (
        run_gateway({"chat": policy}, TOKEN, settings=GatewaySettings(breaker=NEVER_OPEN)) as gw,
        aiohttp.ClientSession() as http,
        http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT) as r,
    ):
        await r.read()
        return r.headers["X-Governor-Tier"], r.headers.get("X-Governor-Reason", "")


async def test_a_tier_expectation_from_the_policy() -> None:
    async with run_upstream(name="primary") as p, run_upstream(name="secondary") as sec:

        def with_expect(expect: dict[str, Any]) -> ServicePolicy:
            data = chat_policy(p.url, sec.url, sec.url).model_dump(mode="json")
            data["chain"][0]["expect"] = expect
            return parse_policy(data, "test")

        assert await served_by(with_expect({"json_keys": ["choices", "usage"]})) == ("tier_0_primary", "")
        assert await served_by(with_expect({"json_keys": ["choices", "citations"]})) == (
            "tier_1_secondary",
            "tier_0_primary=bad_body: no_citations",
        )
        # require_json: false turns the check off: an HTML 200 from that tier is served as it is
        p.set(garbage=True, garbage_kind="html")
        assert await served_by(with_expect({"require_json": False})) == ("tier_0_primary", "")
        assert (await served_by(with_expect({})))[0] == "tier_1_secondary"


def test_a_bad_expectation_in_the_policy_is_refused() -> None:
    data = chat_policy("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3").model_dump(mode="json")
    data["chain"][0]["expect"] = {"json_key": ["choices"]}
    with pytest.raises(PolicyError, match="json_key"):
        parse_policy(data, "test")


async def test_a_spent_deadline_is_counted_on_the_tiers_it_skipped_but_not_blamed_on_them() -> None:
    async with stack(deadline_ms=300) as s:
        s.primary.set(latency_ms=500)  # the primary eats the whole deadline
        status, headers, _ = await s.chat()
        assert (status, headers["X-Governor-Tier"]) == (200, "tier_4_static")
        assert "tier_1_secondary=deadline_exceeded" in headers["X-Governor-Reason"]
        secondary = await stats(s, "tier_1_secondary")
        assert (secondary["requests"], secondary["skipped_by"], secondary["skipped_causes"]) == (
            0,
            {"deadline": 1},
            {"deadline": 1},
        )
        assert (await stats(s))["causes"] == {"timeout": 1}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"choices": [], "usage": {"total_tokens": 123456789012345678901234567890}}', None),  # beyond 64 bits
        (b'{"choices": [], "score": NaN}', None),  # the standard library's JSON takes NaN
        (b'{"choices": [{"message": {"content": "caf\xc3\xa9 \\ud83d\\ude00"}}]}', None),
        (b'{"choices": [], "x": "\xff\xfe"}', "not_json"),  # not UTF-8
        (b'{"choices": []', "not_json"),
        (b"", "not_json"),
        (b"[1, 2]", "not_a_json_object"),
        (b'{"error": {"type": "insufficient_quota"}, "choices": []}', "error_object"),
        (b'{"id": "x"}', "no_choices"),
    ],
)
def test_the_body_check_parses_what_json_parses_and_refuses_the_rest(body: bytes, problem: str | None) -> None:
    """The fast parser (orjson) must not judge a valid answer `not_json` where the standard library's parser takes it."""
    svc = ServiceRuntime(chat_policy("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"), BreakerConfig())
    assert body_problem(svc.links[0], body, JSON_CT, chat=True) == problem
