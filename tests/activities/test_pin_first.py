"""fall_back_first (pin first's one activity) against the REAL gateway, two replicas, and the demo's fake models.

The policy is read from the worker's policy folder as load_policy reads it; nothing changes in a gateway until the
failure is confirmed and the tiers are known, and then one change carries the breaker and the pin to every replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.recovery import RecoveryActivities
from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from governor.actions import FallBackFirstInput, FallBackFirstResult
from governor.enums import FailureType, FallbackTier, Severity
from governor.incident import IncidentReport
from governor.settings import WorkerSettings
from tests.activities.conftest import TOKEN, make_policy

CHAT = {"model": "any", "messages": [{"role": "user", "content": "hello"}]}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Stack:
    primary: Upstream
    secondary: Upstream
    gateways: list[str]
    settings: WorkerSettings

    def write_policy(self, **overrides: Any) -> None:
        """The `chat` policy (tests/activities/conftest.py's), as load_policy finds it: in the worker's policy folder."""
        policy = make_policy(self.primary.url + "/health", self.secondary.url + "/health", self.gateways, **overrides)
        folder = self.settings.policy_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chat.yaml").write_text(yaml.safe_dump(policy.model_dump(mode="json")))

    async def replicas(self) -> list[dict[str, Any]]:
        """Each replica's admin state, read directly (not through the activity's read-back)."""
        async with httpx.AsyncClient(trust_env=False) as http:
            answers = [await http.get(f"{gw}/admin/services/chat", headers=AUTH) for gw in self.gateways]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        return [a.json() for a in answers]


@pytest.fixture
async def stack(acts: RecoveryActivities, settings: WorkerSettings) -> AsyncIterator[Stack]:
    acts.confirm_backoff_s = (0.01,)  # the production pauses only slow the tests down
    async with run_upstream(name="primary") as primary, run_upstream(name="secondary") as secondary:
        served = make_policy(primary.url + "/health", secondary.url + "/health")
        runners = [run_gateway({"chat": served}, TOKEN) for _ in range(2)]
        replicas = [await r.__aenter__() for r in runners]
        try:
            yield Stack(primary, secondary, [gw.url for gw in replicas], settings)
        finally:
            await asyncio.gather(*(r.__aexit__(None, None, None) for r in runners))


async def pin_first(acts: RecoveryActivities, dependency: str = "primary-llm", **report: Any) -> FallBackFirstResult:
    request = FallBackFirstInput(
        service="chat",
        dependency=dependency,
        incident_id="recovery-chat",
        report=IncidentReport(service="chat", dependency=dependency, source="test", **report),
    )
    return await ActivityEnvironment().run(acts.fall_back_first, request)


async def test_a_confirmed_outage_is_pinned_on_every_replica_in_one_change(
    acts: RecoveryActivities, stack: Stack
) -> None:
    stack.write_policy()
    stack.primary.set(outage=True)
    result = await pin_first(acts, failure_type=FailureType.MODEL_UNAVAILABLE)
    assert result.policy.service == "chat" and result.confirmation and result.confirmation.confirmed
    assert result.assessment is not None and result.assessment.is_down(FallbackTier.TIER_0_PRIMARY)
    assert result.radius is not None and result.radius_error == ""
    assert result.change is not None and result.applied is not None and result.change_error == ""
    assert result.change.route and result.change.route.pinned_tier is FallbackTier.TIER_1_SECONDARY
    classified = result.confirmation.classification
    assert classified is not None and classified.severity is Severity.CRITICAL  # a model down: its floor applies
    level = result.policy.degradation.level_for(FallbackTier.TIER_1_SECONDARY, critical=True)
    for state in [*result.applied.replicas.values(), *await stack.replicas()]:
        assert state["pinned_tier"] == "tier_1_secondary" and state["primary_weight"] == 0
        assert state["breakers"]["tier_0_primary"]["state"] == "open"
        assert state["degradation"]["level"] == str(level)
        assert state["status"]["component"] == result.change.status.component  # type: ignore[union-attr]
        assert state["incident"] == "recovery-chat"
    async with httpx.AsyncClient(trust_env=False) as http:
        answers = [await http.post(f"{gw}/chat/v1/chat/completions", json=CHAT) for gw in stack.gateways]
    assert [a.headers["x-governor-tier"] for a in answers] == ["tier_1_secondary", "tier_1_secondary"]


async def test_a_report_that_does_not_reproduce_changes_no_gateway(acts: RecoveryActivities, stack: Stack) -> None:
    stack.write_policy()
    before = await stack.replicas()
    result = await pin_first(acts, failure_type=FailureType.MODEL_UNAVAILABLE)
    assert result.confirmation is not None and not result.confirmation.confirmed
    assert result.change is None and result.applied is None and result.assessment is None
    after = await stack.replicas()
    assert [s["pinned_tier"] for s in after] == [None, None] and after == before


async def test_a_gated_tier_gets_the_breaker_and_waits_for_on_call(acts: RecoveryActivities, stack: Stack) -> None:
    stack.write_policy(approvals={"approvers": ["alice"], "gates": ["enter:tier_1_secondary"]})
    stack.primary.set(outage=True)
    result = await pin_first(acts, failure_type=FailureType.MODEL_UNAVAILABLE, severity=Severity.CRITICAL)
    assert result.change is not None and result.applied is not None
    assert result.change.route is None and result.change.degradation is None and result.change.status is None
    for state in await stack.replicas():
        assert state["breakers"]["tier_0_primary"]["state"] == "open" and state["pinned_tier"] is None


async def test_a_manual_report_is_not_probed(acts: RecoveryActivities, stack: Stack) -> None:
    """`governor failover`: on-call saw it fail; the primary still answers its health check."""
    stack.write_policy()
    result = await pin_first(acts, manual=True, message="known-bad model")
    assert result.confirmation is not None and result.confirmation.confirmed
    assert "manual report from test" in result.confirmation.reason
    assert all(s["pinned_tier"] == "tier_1_secondary" for s in await stack.replicas())


async def test_an_unknown_dependency_returns_the_policy_and_touches_nothing(
    acts: RecoveryActivities, stack: Stack
) -> None:
    stack.write_policy()
    result = await pin_first(acts, dependency="vector-db")
    assert result.policy.service == "chat" and result.confirmation is None and result.change is None
    assert [s["pinned_tier"] for s in await stack.replicas()] == [None, None]


async def test_a_replica_that_is_down_is_returned_for_the_workflow_to_apply_again(
    acts: RecoveryActivities, stack: Stack
) -> None:
    stack.gateways.append("http://127.0.0.1:9")  # nothing listens there
    stack.write_policy()
    stack.primary.set(outage=True)
    result = await pin_first(acts, failure_type=FailureType.MODEL_UNAVAILABLE)
    assert result.change is not None and result.applied is None
    assert "127.0.0.1:9" in result.change_error, result.change_error
