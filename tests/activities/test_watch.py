"""The real probing activity against the real fake upstreams and the real gateway on 127.0.0.1.

Each test injects one fault and checks what a user would see: the failure is confirmed within a few probes and
classified as the seed's type, a healthy upstream stays quiet, and no progress is lost to a cancel or a retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.watch import WatchActivities
from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from governor.detection import Hysteresis, WatchdogConfig, WatchInput, WatchResult
from governor.enums import FailureType
from governor.policy import ServicePolicy, load_policy
from governor.settings import WorkerSettings

TOKEN = "test-token"
SETTINGS = WorkerSettings(gateway_token=TOKEN, metrics_port=None)
BASE = load_policy(Path(__file__).resolve().parents[2] / "policies" / "chat.yaml")
FAST = WatchdogConfig(interval_s=0.05, suspect_interval_s=0.05, confirm_after=3, clear_after=3, min_samples=10)


@dataclasses.dataclass
class Stack:
    primary: Upstream
    secondary: Upstream
    gateway_url: str
    policy: ServicePolicy
    http: httpx.AsyncClient


def wire(primary: Upstream, secondary: Upstream, gateway: str, **primary_dep: Any) -> ServicePolicy:
    data = BASE.model_dump(mode="json")
    data["gateways"] = [gateway]
    data["dependencies"][0].update(health_url=f"{primary.url}/health", timeout_ms=500, **primary_dep)
    data["dependencies"][1].update(health_url=f"{secondary.url}/health", timeout_ms=500)
    data["chain"][0]["upstream"] = primary.url
    data["chain"][1]["upstream"] = secondary.url
    data["chain"][3]["upstream"] = secondary.url
    return ServicePolicy.model_validate(data)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with (
        run_upstream(name="primary") as primary,
        run_upstream(name="secondary") as secondary,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        policy = wire(primary, secondary, "http://127.0.0.1:1")
        async with run_gateway({"chat": policy}, TOKEN) as gw:
            yield Stack(primary, secondary, gw.url, wire(primary, secondary, gw.url), http)


async def watch(
    stack: Stack,
    config: WatchdogConfig = FAST,
    policy: ServicePolicy | None = None,
    env: ActivityEnvironment | None = None,
) -> tuple[WatchResult, list[Any]]:
    heartbeats: list[Any] = []
    env = env or ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    acts = WatchActivities(stack.http, SETTINGS)
    inp = WatchInput(policy=policy or stack.policy, dependency="primary-llm", config=config)
    result = await asyncio.wait_for(env.run(acts.watch_dependency, inp), timeout=10)
    return result, heartbeats


async def drive(stack: Stack, n: int) -> list[int]:
    """Client traffic through the gateway; returns the status codes the clients saw."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{stack.gateway_url}/chat/v1/chat/completions"
    responses = await asyncio.gather(*(stack.http.post(url, json=body) for _ in range(n)))
    return [r.status_code for r in responses]


async def test_a_healthy_dependency_stays_quiet(stack: Stack) -> None:
    assert set(await drive(stack, 20)) == {200}
    result, heartbeats = await watch(stack, FAST.model_copy(update={"evaluations_per_run": 6}))
    assert result.transition is None and not result.hysteresis.failing
    assert result.hysteresis.evaluations == 6 and len(heartbeats) == 6
    assert result.last is not None and result.last.stats is not None and result.last.stats.requests == 20


async def test_outage_is_confirmed_as_model_unavailable(stack: Stack) -> None:
    stack.primary.set(outage=True)
    result, heartbeats = await watch(stack)
    assert result.transition == "confirmed"
    assert result.hysteresis.suspect is not None
    assert result.hysteresis.suspect.failure_type is FailureType.MODEL_UNAVAILABLE
    assert result.hysteresis.evaluations == 3  # exactly N bad evaluations, no more
    assert Hysteresis.model_validate(heartbeats[-1]).failing


async def test_stopped_upstream_refuses_and_is_model_unavailable(stack: Stack) -> None:
    await stack.primary.stop()
    result, _ = await watch(stack)
    assert result.transition == "confirmed"
    assert result.last is not None and result.last.probe is not None and result.last.probe.error_kind == "refused"
    assert result.hysteresis.suspect is not None
    assert result.hysteresis.suspect.failure_type is FailureType.MODEL_UNAVAILABLE


async def test_error_spike_seen_in_the_gateway_stats_while_health_passes(stack: Stack) -> None:
    stack.primary.set(error_rate=0.6)
    codes = await drive(stack, 40)
    assert set(codes) == {200}  # the gateway fell through to the secondary: no client saw an error
    result, _ = await watch(stack)
    assert result.transition == "confirmed"
    assert result.last is not None and result.last.probe is not None and result.last.probe.ok
    suspect = result.hysteresis.suspect
    assert suspect is not None and suspect.failure_type is FailureType.ERROR_SPIKE
    assert suspect.severity.value == "CRITICAL"  # >= 50 % errors


async def test_429s_in_the_stats_window_are_rate_limited(stack: Stack) -> None:
    stack.primary.set(rate_limit=True)
    await drive(stack, 30)
    result, _ = await watch(stack)
    assert result.hysteresis.suspect is not None
    assert result.hysteresis.suspect.failure_type is FailureType.RATE_LIMITED


async def test_health_body_failing_its_schema_is_data_corruption(stack: Stack) -> None:
    policy = wire(stack.primary, stack.secondary, stack.gateway_url, health_expect_json={"model": "gpt-4o"})
    result, _ = await watch(stack, policy=policy)
    assert result.hysteresis.suspect is not None
    assert result.hysteresis.suspect.failure_type is FailureType.DATA_CORRUPTION
    assert "model" in result.hysteresis.suspect.reason


async def test_failure_clears_only_after_n_good_probes(stack: Stack) -> None:
    stack.primary.set(outage=True)
    confirmed, _ = await watch(stack)
    stack.primary.set(outage=False)
    env = ActivityEnvironment()
    acts = WatchActivities(stack.http, SETTINGS)
    inp = WatchInput(policy=stack.policy, dependency="primary-llm", config=FAST, hysteresis=confirmed.hysteresis)
    cleared = await asyncio.wait_for(env.run(acts.watch_dependency, inp), timeout=10)
    assert cleared.transition == "cleared"
    assert cleared.hysteresis.evaluations - confirmed.hysteresis.evaluations == 3


async def test_cancel_hands_back_the_streak_and_a_retry_resumes_from_the_heartbeat(stack: Stack) -> None:
    stack.primary.set(outage=True)
    slow_confirm = FAST.model_copy(update={"confirm_after": 1000})
    env = ActivityEnvironment()
    beats: list[Any] = []
    seen_two = asyncio.Event()

    def on_heartbeat(*details: Any) -> None:
        beats.append(details[0])
        if len(beats) == 2:
            seen_two.set()

    env.on_heartbeat = on_heartbeat
    acts = WatchActivities(stack.http, SETTINGS)
    task = asyncio.ensure_future(
        env.run(acts.watch_dependency, WatchInput(policy=stack.policy, dependency="primary-llm", config=slow_confirm))
    )
    await asyncio.wait_for(seen_two.wait(), timeout=5)
    env.cancel()
    cancelled = await asyncio.wait_for(task, timeout=5)
    assert cancelled.cancelled and cancelled.hysteresis.bad_streak >= 2

    # a retried attempt starts from its last heartbeat, not from the (empty) state the workflow passed
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, heartbeat_details=[beats[-1]], attempt=2)
    result, _ = await watch(stack, env=retry)
    assert result.transition == "confirmed"
    assert result.hysteresis.evaluations == Hysteresis.model_validate(beats[-1]).evaluations + 1


# --- the gateway's causes: an open breaker never hides a failure (issue 10.3)


async def drive_one_by_one(stack: Stack, n: int) -> list[int]:
    """Sequential client traffic: the breaker opens part-way and skips the rest."""
    return [code for _ in range(n) for code in await drive(stack, 1)]


def stats_only(stack: Stack) -> ServicePolicy:
    """The primary watched through the gateway's stats alone (no health URL): the causes must say what failed."""
    data = stack.policy.model_dump(mode="json")
    data["dependencies"][0]["health_url"] = None
    return ServicePolicy.model_validate(data)


async def test_429_storm_behind_an_open_breaker_is_rate_limited(stack: Stack) -> None:
    stack.primary.set(rate_limit=True, retry_after_s=30)
    assert set(await drive_one_by_one(stack, 40)) == {200}
    assert stack.primary.counters.rate_limited == 5  # the breaker opened and skipped the other 35
    result, _ = await watch(stack)
    assert result.transition == "confirmed"
    assert result.last is not None and result.last.stats is not None
    stats = result.last.stats
    assert (stats.requests, stats.skipped, stats.skipped_causes) == (5, 35, {"rate_limited": 35})
    suspect = result.hysteresis.suspect
    assert suspect is not None and suspect.failure_type is FailureType.RATE_LIMITED
    assert "35 of them skipped by an open breaker" in suspect.reason


@pytest.mark.parametrize("kind", ["json_error", "html", "broken_json", "sse"])
async def test_bad_200s_are_data_corruption(stack: Stack, kind: str) -> None:
    stack.primary.set(garbage=True, garbage_kind=kind)
    assert set(await drive_one_by_one(stack, 30)) == {200}
    result, _ = await watch(stack)
    assert result.transition == "confirmed"
    assert result.last is not None and result.last.probe is not None and result.last.probe.ok  # /health is fine
    assert result.last.stats is not None and result.last.stats.failure_causes() == {"bad_body": 30}
    suspect = result.hysteresis.suspect
    assert suspect is not None and suspect.failure_type is FailureType.DATA_CORRUPTION


async def test_refused_connections_in_the_stats_are_model_unavailable(stack: Stack) -> None:
    await stack.primary.stop()
    assert set(await drive_one_by_one(stack, 30)) == {200}
    result, _ = await watch(stack, policy=stats_only(stack))
    assert result.transition == "confirmed"
    assert result.last is not None and result.last.probe is None
    assert result.last.stats is not None and result.last.stats.failure_causes() == {"connect_error": 30}
    suspect = result.hysteresis.suspect
    assert suspect is not None and suspect.failure_type is FailureType.MODEL_UNAVAILABLE


async def test_a_breaker_forced_open_by_the_governor_is_not_a_failure(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = await stack.http.put(
        f"{stack.gateway_url}/admin/services/chat/breakers/tier_0_primary", json={"mode": "open"}, headers=headers
    )
    assert r.status_code == 200
    assert set(await drive(stack, 30)) == {200}
    result, _ = await watch(stack, FAST.model_copy(update={"evaluations_per_run": 4}), policy=stats_only(stack))
    assert result.transition is None and not result.hysteresis.failing
    assert result.last is not None and result.last.stats is not None
    assert result.last.stats.skipped_by == {"breaker_forced_open": 30}


async def test_timeouts_in_the_stats_are_timeout(stack: Stack) -> None:
    data = stack.policy.model_dump(mode="json")
    data["chain"][0]["timeout_ms"] = 150  # the gateway gives the primary 150 ms; it answers in 300
    policy = ServicePolicy.model_validate(data)
    async with run_gateway({"chat": policy}, TOKEN) as gw:
        slow = Stack(
            stack.primary, stack.secondary, gw.url, policy.model_copy(update={"gateways": [gw.url]}), stack.http
        )
        slow.primary.set(latency_ms=300)
        assert set(await drive_one_by_one(slow, 30)) == {200}
        result, _ = await watch(slow, policy=stats_only(slow))
    assert result.last is not None and result.last.stats is not None
    assert result.last.stats.failure_causes() == {"timeout": 30}
    suspect = result.hysteresis.suspect
    assert result.transition == "confirmed" and suspect is not None and suspect.failure_type is FailureType.TIMEOUT
