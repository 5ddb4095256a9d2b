"""Shared pieces for the activity tests: an HTTP client, worker settings in a temp folder, a policy builder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.recovery import RecoveryActivities
from governor.policy import ServicePolicy, parse_policy
from governor.settings import WorkerSettings

TOKEN = "test-admin-token"


def make_policy(
    primary_health: str,
    secondary_health: str | None = None,
    gateways: list[str] | None = None,
    **overrides: Any,
) -> ServicePolicy:
    """A `chat` policy whose dependencies' health URLs point at test servers."""
    deps: list[dict[str, Any]] = [
        {"name": "primary-llm", "tier": "tier_0_primary", "health_url": primary_health, "timeout_ms": 500}
    ]
    if secondary_health:
        deps.append(
            {"name": "secondary-llm", "tier": "tier_1_secondary", "health_url": secondary_health, "timeout_ms": 500}
        )
    data: dict[str, Any] = {
        "service": "chat",
        "gateways": gateways or ["http://127.0.0.1:9"],
        "dependencies": deps,
        "chain": [
            {"tier": "tier_0_primary", "upstream": primary_health.rsplit("/", 1)[0]},
            {"tier": "tier_1_secondary", "upstream": (secondary_health or primary_health).rsplit("/", 1)[0]},
            {"tier": "tier_2_cache"},
            {"tier": "tier_4_static", "body": {"message": "limited mode"}},
        ],
        "recovery_checks": {"min_samples": 5, "health_passes": 3},
    }
    data.update(overrides)
    return parse_policy(data, "test-policy")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(
        policy_dir=tmp_path / "policies",
        gateway_token=TOKEN,
        postmortem_dir=tmp_path / "postmortems",
        http_timeout_s=2.0,
        metrics_port=None,
    )


@pytest.fixture
def acts(http: httpx.AsyncClient, settings: WorkerSettings) -> RecoveryActivities:
    return RecoveryActivities(http, settings)
