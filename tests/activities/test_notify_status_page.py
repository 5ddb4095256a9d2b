"""The status_page channel against the real gateway (gateway.app.run_gateway): what customers see on /status.json."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment

from activities.notify import NotificationActivities
from gateway.app import RunningGateway, run_gateway
from governor.actions import NotifyInput, NotifyResult
from governor.enums import DegradationLevel, NotificationAudience
from governor.policy import ChannelSpec, ServicePolicy, parse_policy
from governor.settings import WorkerSettings

TOKEN = "status-page-test-token"


def chat_policy_data(gateways: list[str] | None = None) -> dict[str, Any]:
    return {
        "service": "chat",
        "gateways": gateways or ["http://127.0.0.1:9"],
        "dependencies": [{"name": "primary-llm", "tier": "tier_0_primary"}],
        "chain": [
            {"tier": "tier_0_primary", "upstream": "http://127.0.0.1:9"},
            {"tier": "tier_4_static", "body": {"message": "limited mode"}},
        ],
    }


def chat_policy() -> ServicePolicy:
    return parse_policy(chat_policy_data(), "status-page-test")


@pytest.fixture
async def gateways() -> AsyncIterator[list[RunningGateway]]:
    """Two gateway replicas serving the same policy, as production runs them."""
    policies = {"chat": chat_policy()}
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(run_gateway(policies, TOKEN)) for _ in range(2)]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        yield client


async def run(acts: NotificationActivities, input: NotifyInput) -> NotifyResult:
    env = ActivityEnvironment()
    now = datetime.now(UTC)
    env.info = dataclasses.replace(
        env.info,
        started_time=now,
        scheduled_time=now,
        start_to_close_timeout=timedelta(seconds=30),
        schedule_to_close_timeout=None,
        retry_policy=RetryPolicy(maximum_attempts=3),
    )
    return await env.run(acts.notify, input)


def status_input(event: str, level: DegradationLevel, gateways: list[str] | None, **details: object) -> NotifyInput:
    extra = {"gateways": gateways} if gateways is not None else {}
    return NotifyInput(
        incident_id="recovery-chat",
        event=event,
        audience=NotificationAudience.CUSTOMERS,
        channels=[ChannelSpec(type="status_page")],
        title="chat is degraded",
        message="internal detail customers never see",
        details={"service": "chat", "degradation_level": level.value, **extra, **details},
        idempotency_key=f"recovery-chat:{event}:customers",
    )


async def public_status(http: httpx.AsyncClient, gateway: RunningGateway) -> dict[str, object]:
    response = await http.get(f"{gateway.url}/status.json")
    response.raise_for_status()
    [component] = [c for c in response.json()["components"] if c["id"] == "chat"]
    return component  # type: ignore[no-any-return]


async def test_status_page_shows_the_seed_message_on_every_replica_then_operational(
    http: httpx.AsyncClient, gateways: list[RunningGateway]
) -> None:
    acts = NotificationActivities(http, gateway_token=TOKEN, backoff_s=0.01)
    urls = [g.url for g in gateways]

    degraded = await run(acts, status_input("fallback_active", DegradationLevel.EMERGENCY, urls))

    assert degraded.ok, degraded
    assert degraded.deliveries[0].target.endswith("chat=partial_outage")
    for gateway in gateways:
        component = await public_status(http, gateway)
        assert component["status"] == "partial_outage"
        assert component["description"] == "Emergency mode - critical functions only"  # the seed's template
        admin = await http.get(f"{gateway.url}/admin/services/chat", headers={"Authorization": f"Bearer {TOKEN}"})
        assert admin.json()["incident"] == "recovery-chat"  # X-Governor-Incident reached the audit

    resolved = await run(acts, status_input("resolved", DegradationLevel.NORMAL, urls))

    assert resolved.ok
    for gateway in gateways:
        assert (await public_status(http, gateway))["status"] == "operational"


async def test_status_page_refusals_are_configuration_errors(
    http: httpx.AsyncClient, gateways: list[RunningGateway]
) -> None:
    wrong_token = NotificationActivities(http, gateway_token="not-the-token", backoff_s=0.01)
    right_token = NotificationActivities(http, gateway_token=TOKEN, backoff_s=0.01)
    url = gateways[0].url

    forbidden = await run(wrong_token, status_input("fallback_active", DegradationLevel.MINIMAL, [url]))
    unknown = await run(right_token, status_input("fallback_active", DegradationLevel.MINIMAL, [url], service="nope"))

    for result, code in ((forbidden, 403), (unknown, 404)):
        [delivery] = result.deliveries
        assert not delivery.ok and not delivery.retryable and delivery.attempts == 1
        assert delivery.status_code == code, delivery
    assert (await public_status(http, gateways[0]))["status"] == "operational"  # nothing changed


async def test_status_page_finds_the_replicas_in_the_workers_policy_files(
    http: httpx.AsyncClient, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    """With neither a channel url nor details.gateways, the replicas are the `gateways` of the service's policy."""
    (tmp_path / "chat.yaml").write_text(yaml.safe_dump(chat_policy_data([g.url for g in gateways])))
    settings = WorkerSettings(policy_dir=tmp_path, gateway_token=TOKEN, metrics_port=None)
    acts = NotificationActivities(http, settings, backoff_s=0.01)

    result = await run(acts, status_input("fallback_active", DegradationLevel.DEGRADED_L1, None))

    assert result.ok, result
    for gateway in gateways:
        component = await public_status(http, gateway)
        assert component["status"] == "degraded_performance"
        assert component["description"] == "Running in backup mode, full functionality"
