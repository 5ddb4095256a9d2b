"""assess_blast_radius against REAL gateways on 127.0.0.1: the policy folder is scanned for services on the failed
dependency's host, and their traffic share comes from each one's gateway stats (real requests through the chain)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities.recovery import RecoveryActivities
from demo.upstream import run_upstream
from gateway.app import run_gateway
from governor.actions import BlastRadiusInput
from governor.blast_radius import BlastRadius
from governor.enums import FallbackTier
from governor.policy import ServicePolicy, parse_policy
from governor.settings import WorkerSettings
from tests.activities.conftest import TOKEN

CHAT = {"model": "any", "messages": [{"role": "user", "content": "hello"}]}


def service_policy(service: str, dep: str, primary: str, secondary: str, gateways: list[str]) -> dict[str, Any]:
    return {
        "service": service,
        "gateways": gateways,
        "dependencies": [
            {"name": dep, "tier": "tier_0_primary", "health_url": f"{primary}/health", "timeout_ms": 500},
            {"name": f"{service}-secondary", "tier": "tier_1_secondary", "health_url": f"{secondary}/health"},
        ],
        "chain": [
            {"tier": "tier_0_primary", "upstream": primary},
            {"tier": "tier_1_secondary", "upstream": secondary},
            {"tier": "tier_4_static", "body": {"message": "limited mode"}},
        ],
    }


def write(folder: Path, data: dict[str, Any]) -> ServicePolicy:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{data['service']}.yaml").write_text(yaml.safe_dump(data))
    return parse_policy(data, data["service"])


async def send(http: httpx.AsyncClient, gateway: str, service: str, n: int) -> None:
    for _ in range(n):
        response = await http.post(f"{gateway}/{service}/v1/chat/completions", json=CHAT)
        assert response.status_code == 200, response.text


async def assess(acts: RecoveryActivities, policy: ServicePolicy, dependency: str) -> BlastRadius:
    env = ActivityEnvironment()
    return await env.run(acts.assess_blast_radius, BlastRadiusInput(policy=policy, dependency=dependency))


async def test_services_on_the_failed_host_are_found_with_their_share_of_real_traffic(
    acts: RecoveryActivities, settings: WorkerSettings, http: httpx.AsyncClient
) -> None:
    async with (
        run_upstream(name="shared") as shared,
        run_upstream(name="chat-backup") as chat_backup,
        run_upstream(name="billing") as billing,
    ):
        # chat and search call the same model host under different names; billing has its own
        placeholder = ["http://127.0.0.1:9"]  # the gateway's own URL is known once it listens
        data = {
            "chat": service_policy("chat", "primary-llm", shared.url, chat_backup.url, placeholder),
            "search": service_policy("search", "search-model", shared.url, chat_backup.url, placeholder),
            "billing": service_policy("billing", "billing-llm", billing.url, chat_backup.url, placeholder),
        }
        served = {name: parse_policy(d, name) for name, d in data.items()}
        gw_runner = run_gateway(served, TOKEN)
        gateway = await gw_runner.__aenter__()
        try:
            policies = {}
            for name, d in data.items():
                d["gateways"] = [gateway.url]
                policies[name] = write(settings.policy_dir, d)
            await asyncio.gather(
                send(http, gateway.url, "chat", 30),
                send(http, gateway.url, "search", 12),
                send(http, gateway.url, "billing", 5),
            )
            radius = await assess(acts, policies["chat"], "primary-llm")
        finally:
            await gw_runner.__aexit__(None, None, None)
    assert [s.service for s in radius.services] == ["chat", "search"], "billing is on another port: not hit"
    chat, search = radius.services
    assert radius.hosts == [shared.url.removeprefix("http://")]
    assert chat.tiers == [FallbackTier.TIER_0_PRIMARY] and chat.dependencies == ["primary-llm"]
    assert "same upstream host" in search.why and search.dependencies == ["search-model"]
    assert chat.traffic_share == 1.0 and search.traffic_share == 1.0
    assert chat.rps_at_risk is not None and search.rps_at_risk is not None and chat.total_rps is not None
    assert chat.rps_at_risk == pytest.approx(30 / 60) and search.rps_at_risk == pytest.approx(12 / 60)
    assert radius.rps_at_risk == pytest.approx(42 / 60) and not radius.errors
    assert "analytics" in chat.features
    assert radius.summary().startswith("2 services hit (chat 100%, search 100% of traffic); 0.7 req/s at risk")


async def test_an_unreadable_gateway_or_policy_folder_makes_the_assessment_partial_not_failed(
    acts: RecoveryActivities, settings: WorkerSettings
) -> None:
    # no policy folder at all, and the incident's own gateway refuses connections
    own = parse_policy(
        service_policy("chat", "primary-llm", "http://127.0.0.1:9101", "http://127.0.0.1:9102", ["http://127.0.0.1:9"]),
        "chat",
    )
    assert not settings.policy_dir.exists()
    radius = await assess(acts, own, "primary-llm")
    assert [s.service for s in radius.services] == ["chat"]
    assert radius.services[0].traffic_share is None and radius.services[0].stats_error
    assert any("policy folder unreadable" in e for e in radius.errors)
    assert any("chat: stats unreadable" in e for e in radius.errors)
