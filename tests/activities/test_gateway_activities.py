"""Gateway control, stats, evidence and confirmation against the REAL gateway (gateway.app.run_gateway), two replicas.

The upstreams are the demo's fake models; faults are switched in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.gateway_admin import GatewayUnavailable
from activities.recovery import RecoveryActivities
from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from governor.actions import (
    BreakerChange,
    ConfirmFailureInput,
    DegradationChange,
    EvidenceInput,
    GatewayChange,
    ReadStatsInput,
    RouteChange,
    StatusChange,
)
from governor.enums import DegradationLevel, FailureType, FallbackTier, FeatureFlag, Severity
from governor.incident import IncidentReport
from governor.policy import ServicePolicy
from governor.settings import WorkerSettings
from tests.activities.conftest import TOKEN, make_policy

INCIDENT = "recovery-chat"
CHAT = {"model": "any", "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Stack:
    primary: Upstream
    secondary: Upstream
    gateways: list[str]
    policy: ServicePolicy


@pytest.fixture
async def stack(acts: RecoveryActivities) -> AsyncIterator[Stack]:
    """Two upstreams behind two gateway replicas serving the same `chat` policy."""
    acts.confirm_backoff_s = (0.01,)  # the production pauses (0.2 s, 0.5 s) only slow the tests down
    async with run_upstream(name="primary") as primary, run_upstream(name="secondary") as secondary:
        served = make_policy(primary.url + "/health", secondary.url + "/health")
        runners = [run_gateway({"chat": served}, TOKEN) for _ in range(2)]
        replicas = [await r.__aenter__() for r in runners]
        urls = [gw.url for gw in replicas]
        try:
            yield Stack(primary, secondary, urls, served.model_copy(update={"gateways": urls}))
        finally:
            # each replica takes ~0.2 s to stop: stop them together
            await asyncio.gather(*(r.__aexit__(None, None, None) for r in runners))


def change(stack: Stack, **parts: object) -> GatewayChange:
    return GatewayChange(gateways=stack.gateways, service="chat", incident_id=INCIDENT, **parts)  # type: ignore[arg-type]


async def ask(http: httpx.AsyncClient, gateway: str) -> str:
    """One chat request through a replica's data plane; the tier that answered."""
    response = await http.post(f"{gateway}/chat/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    return response.headers["x-governor-tier"]


async def test_change_reaches_every_replica_and_traffic_follows(acts: RecoveryActivities, stack: Stack) -> None:
    full = change(
        stack,
        route=RouteChange(pinned_tier=FallbackTier.TIER_1_SECONDARY, primary_weight=0),
        breaker=BreakerChange(tier=FallbackTier.TIER_0_PRIMARY, mode="open"),
        degradation=DegradationChange(level=DegradationLevel.DEGRADED_L1, flags={"search": FeatureFlag.DISABLED}),
        status=StatusChange(component="degraded_performance", message="Running in backup mode"),
    )
    result = await ActivityEnvironment().run(acts.apply_gateway_change, full)
    assert set(result.replicas) == set(stack.gateways)
    for state in result.replicas.values():
        assert state["pinned_tier"] == "tier_1_secondary" and state["primary_weight"] == 0
        assert state["breakers"]["tier_0_primary"]["state"] == "open"
        assert state["degradation"]["level"] == "degraded_l1"
        assert state["degradation"]["flags"]["search"] == "disabled"
        assert state["status"]["component"] == "degraded_performance"
        assert state["incident"] == INCIDENT  # X-Governor-Incident reached the gateway's audit
    async with httpx.AsyncClient(trust_env=False) as http:
        assert [await ask(http, gw) for gw in stack.gateways] == ["tier_1_secondary", "tier_1_secondary"]
    assert stack.primary.counters.completions == 0


async def test_weight_change_keeps_the_pin_through_the_data_converter(acts: RecoveryActivities, stack: Stack) -> None:
    env = ActivityEnvironment()
    await env.run(acts.apply_gateway_change, change(stack, route=RouteChange(pinned_tier=FallbackTier.TIER_2_CACHE)))
    # The workflow's argument reaches the worker as JSON: an unset pinned_tier must stay unset, not become null.
    converter = pydantic_data_converter.payload_converter
    sent = change(stack, route=RouteChange(primary_weight=25))
    [received] = converter.from_payloads(converter.to_payloads([sent]), [GatewayChange])
    result = await env.run(acts.apply_gateway_change, received)
    for state in result.replicas.values():
        assert (state["pinned_tier"], state["primary_weight"]) == ("tier_2_cache", 25)
    cleared = change(stack, route=RouteChange(pinned_tier=None))
    [received] = converter.from_payloads(converter.to_payloads([cleared]), [GatewayChange])
    result = await env.run(acts.apply_gateway_change, received)
    assert {s["pinned_tier"] for s in result.replicas.values()} == {None}


async def test_wrong_token_is_non_retryable(http: httpx.AsyncClient, settings: WorkerSettings, stack: Stack) -> None:
    wrong = RecoveryActivities(http, settings.model_copy(update={"gateway_token": "not-the-token"}))
    with pytest.raises(ApplicationError, match=r"refused the admin token.*GOVERNOR_GATEWAY_TOKEN") as err:
        await ActivityEnvironment().run(wrong.apply_gateway_change, change(stack, route=RouteChange(primary_weight=0)))
    assert err.value.non_retryable and err.value.type == "GatewayAuthError"


async def test_unknown_service_is_non_retryable(acts: RecoveryActivities, stack: Stack) -> None:
    bad = change(stack, route=RouteChange(primary_weight=0)).model_copy(update={"service": "search"})
    with pytest.raises(ApplicationError, match="does not serve service 'search'") as err:
        await ActivityEnvironment().run(acts.apply_gateway_change, bad)
    assert err.value.non_retryable and err.value.type == "GatewayUnknownService"


async def test_change_the_gateway_refuses_is_non_retryable(acts: RecoveryActivities, stack: Stack) -> None:
    # tier_3_degraded is not in this service's chain: the gateway answers 422 naming the field
    bad = change(stack, route=RouteChange(pinned_tier=FallbackTier.TIER_3_DEGRADED))
    with pytest.raises(ApplicationError, match=r"HTTP 422.*tier_3_degraded is not in 'chat'") as err:
        await ActivityEnvironment().run(acts.apply_gateway_change, bad)
    assert err.value.non_retryable and err.value.type == "GatewayRejectedChange"


async def test_a_replica_that_is_down_is_retried(acts: RecoveryActivities, stack: Stack) -> None:
    with_dead = change(stack, route=RouteChange(primary_weight=10)).model_copy(
        update={"gateways": [*stack.gateways, "http://127.0.0.1:9"]}
    )
    with pytest.raises(GatewayUnavailable, match=r"gateway http://127\.0\.0\.1:9: PUT"):
        await ActivityEnvironment().run(acts.apply_gateway_change, with_dead)


async def test_a_gateway_answering_5xx_is_retried(acts: RecoveryActivities) -> None:
    # The real gateway never answers 5xx on /admin; a stand-in that does checks the retryable path.
    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "overloaded"}}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", overloaded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        bad = GatewayChange(gateways=[url], service="chat", incident_id=INCIDENT, route=RouteChange(primary_weight=0))
        with pytest.raises(GatewayUnavailable, match="HTTP 503: overloaded"):
            await ActivityEnvironment().run(acts.apply_gateway_change, bad)
        with pytest.raises(GatewayUnavailable, match="HTTP 503"):
            await ActivityEnvironment().run(acts.read_stats, ReadStatsInput(gateways=[url], service="chat"))
    finally:
        await runner.cleanup()


async def test_stats_are_merged_across_replicas(acts: RecoveryActivities, stack: Stack) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(3):
            assert await ask(http, stack.gateways[0]) == "tier_0_primary"
        stack.primary.set(error_rate=1.0)  # every completion answers 500: the gateway falls through
        for _ in range(2):
            assert await ask(http, stack.gateways[1]) == "tier_1_secondary"
    window = await ActivityEnvironment().run(
        acts.read_stats, ReadStatsInput(gateways=stack.gateways, service="chat", window_s=60)
    )
    primary = window.tiers["tier_0_primary"]
    assert (primary.requests, primary.errors) == (5, 2)
    assert primary.error_rate == pytest.approx(0.4)
    assert window.tiers["tier_1_secondary"].requests == 2
    assert window.window_s == 60


async def test_error_spike_seen_only_by_the_gateway_is_confirmed(acts: RecoveryActivities, stack: Stack) -> None:
    stack.primary.set(error_rate=1.0)  # health stays green, completions fail
    async with httpx.AsyncClient(trust_env=False) as http:
        for gw in stack.gateways * 3:
            await ask(http, gw)
    report = IncidentReport(service="chat", dependency="primary-llm", failure_type=FailureType.ERROR_SPIKE)
    result = await ActivityEnvironment().run(
        acts.confirm_failure, ConfirmFailureInput(policy=stack.policy, dependency="primary-llm", report=report)
    )
    assert result.confirmed
    assert result.classification is not None
    assert result.classification.failure_type is FailureType.ERROR_SPIKE
    assert result.classification.severity is Severity.CRITICAL
    assert [p.ok for p in result.probes] == [True, True, True]
    assert result.stats is not None and result.stats.requests >= 5


async def test_a_report_that_does_not_reproduce_is_a_false_alarm(acts: RecoveryActivities, stack: Stack) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        for gw in stack.gateways * 3:
            assert await ask(http, gw) == "tier_0_primary"
    report = IncidentReport(service="chat", dependency="primary-llm", failure_type=FailureType.MODEL_UNAVAILABLE)
    result = await ActivityEnvironment().run(
        acts.confirm_failure, ConfirmFailureInput(policy=stack.policy, dependency="primary-llm", report=report)
    )
    assert not result.confirmed and result.classification is None
    assert result.reason.startswith("the reported model_unavailable did not reproduce: primary-llm passed 3/3")
    assert "tier_0_primary: 6 requests, 0 errors" in result.reason


async def test_evidence_names_each_dependency_the_traffic_and_each_replica(
    acts: RecoveryActivities, stack: Stack
) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        await ask(http, stack.gateways[0])
    stack.primary.set(outage=True, outage_mode="503")
    await ActivityEnvironment().run(
        acts.apply_gateway_change,
        change(stack, route=RouteChange(pinned_tier=FallbackTier.TIER_1_SECONDARY)),
    )
    evidence = await ActivityEnvironment().run(
        acts.gather_evidence, EvidenceInput(policy=stack.policy, dependency="primary-llm", incident_id=INCIDENT)
    )
    assert evidence.dependencies == {"primary-llm": "unhealthy", "secondary-llm": "healthy"}
    assert set(evidence.gateway_state) == set(stack.gateways)
    assert evidence.stats is not None and evidence.stats.tiers["tier_0_primary"].requests == 1
    assert "1/2 probed healthy; failing: primary-llm" in evidence.summary
    assert "primary-llm: http_status (HTTP 503" in evidence.summary
    assert f"gateway {stack.gateways[1]}: pinned tier_1_secondary" in evidence.summary


async def test_evidence_survives_a_replica_that_is_down(acts: RecoveryActivities, stack: Stack) -> None:
    policy = stack.policy.model_copy(update={"gateways": [*stack.gateways, "http://127.0.0.1:9"]})
    evidence = await ActivityEnvironment().run(
        acts.gather_evidence, EvidenceInput(policy=policy, dependency="primary-llm", incident_id=INCIDENT)
    )
    assert "error" in evidence.gateway_state["http://127.0.0.1:9"]
    assert evidence.stats is None
    assert "stats unavailable" in evidence.summary
    assert "gateway http://127.0.0.1:9 state unavailable" in evidence.summary
    assert evidence.dependencies == {"primary-llm": "healthy", "secondary-llm": "healthy"}


async def test_a_429_storm_behind_open_breakers_is_confirmed_as_rate_limited(
    acts: RecoveryActivities, stack: Stack
) -> None:
    stack.primary.set(rate_limit=True, retry_after_s=30)  # health stays green, completions answer 429
    async with httpx.AsyncClient(trust_env=False) as http:
        for gw in stack.gateways:
            for _ in range(20):
                assert await ask(http, gw) == "tier_1_secondary"
    assert stack.primary.counters.rate_limited == 10  # each replica's breaker opened after 5 and skipped the rest
    report = IncidentReport(service="chat", dependency="primary-llm", failure_type=FailureType.RATE_LIMITED)
    result = await ActivityEnvironment().run(
        acts.confirm_failure, ConfirmFailureInput(policy=stack.policy, dependency="primary-llm", report=report)
    )
    assert result.confirmed and result.classification is not None
    assert result.classification.failure_type is FailureType.RATE_LIMITED
    assert result.stats is not None
    assert (result.stats.requests, result.stats.skipped_causes) == (10, {"rate_limited": 30})
