"""assess_tiers against the REAL gateway and the demo's fake models: which tiers are healthy now."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.testing import ActivityEnvironment

from activities.recovery import RecoveryActivities
from demo.upstream import run_upstream
from gateway.app import run_gateway
from governor.actions import AssessTiersInput
from governor.enums import FallbackTier, HealthStatus
from governor.tier_health import best_tier
from tests.activities.conftest import TOKEN, make_policy

CHAT = {"model": "any", "messages": [{"role": "user", "content": "hello"}]}


async def test_primary_and_secondary_down_leaves_only_the_tiers_that_answer(
    acts: RecoveryActivities, http: httpx.AsyncClient
) -> None:
    async with run_upstream(name="primary") as primary, run_upstream(name="secondary") as secondary:
        served = make_policy(primary.url + "/health", secondary.url + "/health")
        async with run_gateway({"chat": served}, TOKEN) as gw:
            policy = served.model_copy(update={"gateways": [gw.url]})
            healthy = await ActivityEnvironment().run(acts.assess_tiers, AssessTiersInput(policy=policy))
            assert all(h.status is HealthStatus.HEALTHY for h in healthy.tiers.values()), healthy.down()

            primary.set(outage=True)
            secondary.set(outage=True, outage_mode="503")
            for _ in range(30):  # client traffic: the gateway falls through both to the cache / static tier
                await http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT)
            await asyncio.sleep(0)
            both = await ActivityEnvironment().run(acts.assess_tiers, AssessTiersInput(policy=policy))
            assert both.is_down(FallbackTier.TIER_0_PRIMARY) and both.is_down(FallbackTier.TIER_1_SECONDARY)
            assert "secondary-llm probe" in both.tiers[FallbackTier.TIER_1_SECONDARY].reason
            assert not both.is_down(FallbackTier.TIER_4_STATIC)
            # never the dead secondary: the best tier left is the cache (static behind it)
            assert best_tier(policy.tiers, both, {FallbackTier.TIER_0_PRIMARY}) is FallbackTier.TIER_2_CACHE
            # ... but the cache holds nothing, so clients got the tier below it: what the incident must show
            serving = both.serving()
            assert serving is not None and serving.rank > FallbackTier.TIER_2_CACHE.rank
            assert sum(both.served.values()) == 30 and FallbackTier.TIER_2_CACHE not in both.served

            # the secondary's probe passes again, but its failures are still in the gateway's window: not healthy yet
            secondary.set(outage=False)
            back = await ActivityEnvironment().run(acts.assess_tiers, AssessTiersInput(policy=policy))
            reason = back.tiers[FallbackTier.TIER_1_SECONDARY].reason
            assert back.is_down(FallbackTier.TIER_1_SECONDARY) and "probe" not in reason and "gateway" in reason
