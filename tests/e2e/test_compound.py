"""Two tiers down at once, on the real stack: the demo's models, the gateway, the watchdogs, the dev server, a worker.

Primary and secondary die together under client traffic. What a user checks: one incident for the service (not one
per dependency fighting over the route), the service served from below the dead secondary, no failed client
request, the secondary served again once it has been stable, and the incident closing only when both are back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from bench.fault_stack import demo_stack_options, until
from demo.settings import DEMO_WATCHDOG
from demo.traffic import TrafficGenerator, TrafficReport
from governor.client import GovernorClient
from governor.enums import FallbackTier
from governor.incident import IncidentState, incident_id
from governor.watchdogs import start_or_update_watchdogs
from workers.stack import StackInfo, run_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(600)]


async def test_primary_and_secondary_down_together_one_incident_no_failed_request(tmp_path: Path) -> None:
    options = demo_stack_options(tmp_path)
    seen: dict[str, object] = {}

    async def scenario(info: StackInfo) -> None:
        gc = GovernorClient(info.client, task_queue=info.task_queue)
        policy = info.policies["chat"]
        await start_or_update_watchdogs(info.client, {"chat": policy}, info.task_queue, DEMO_WATCHDOG)
        wid = incident_id("chat")
        async with (
            httpx.AsyncClient(timeout=5, trust_env=False) as http,
            TrafficGenerator(f"{info.gateway_url}/chat/v1/chat/completions", rps=30) as traffic,
        ):
            await traffic.wait_for_requests(60)
            for name in ("primary", "secondary"):
                (await http.put(f"{info.upstreams[name]}/control", json={"outage": True})).raise_for_status()
            both = await until(
                "both failures in one incident",
                gc,
                wid,
                lambda s: (
                    set(s.failed_dependencies) == {"primary-llm", "secondary-llm"}
                    and s.tier.rank > FallbackTier.TIER_1_SECONDARY.rank
                ),
                120,
            )
            seen["both"] = both
            t_low = time.time() + 1  # whole seconds after the pin
            await asyncio.sleep(5)
            seen["served_low"] = traffic.report().tiers_between(t_low, t_low + 3)
            (await http.put(f"{info.upstreams['secondary']}/control", json={"reset": True})).raise_for_status()
            seen["up"] = await until(  # pinned first, then its breaker handed back and the secondary marked restored
                "the secondary served again",
                gc,
                wid,
                lambda s: s.tier is FallbackTier.TIER_1_SECONDARY and "secondary-llm" in s.restored_dependencies,
                90,
            )
            (await http.put(f"{info.upstreams['primary']}/control", json={"reset": True})).raise_for_status()
            seen["end"] = await until("recovered", gc, wid, lambda s: s.outcome == "recovered", 240)
            seen["incidents"] = [i.incident_id for i in await gc.list_incidents(service="chat", open_only=False)]
        seen["traffic"] = traffic.report()

    await run_stack(options, scenario)

    both, up, end, report = seen["both"], seen["up"], seen["end"], seen["traffic"]
    assert isinstance(both, IncidentState) and isinstance(up, IncidentState) and isinstance(end, IncidentState)
    assert isinstance(report, TrafficReport)
    served_low = seen["served_low"]
    assert isinstance(served_low, Counter) and sum(served_low.values()) > 0
    assert "tier_1_secondary" not in served_low and "tier_0_primary" not in served_low, served_low
    assert up.failed_dependencies == ["primary-llm"] and "secondary-llm" in up.restored_dependencies
    assert end.failed_dependencies == [] and end.tier is FallbackTier.TIER_0_PRIMARY
    tiers = [t.tier for t in end.tiers]
    assert FallbackTier.TIER_1_SECONDARY in tiers[tiers.index(both.tier) :], tiers
    incidents = seen["incidents"]
    assert isinstance(incidents, list) and set(incidents) == {incident_id("chat")}, (
        "one incident for the service, not one per dependency"
    )
    assert report.failed == 0, [f"{r.status} {r.error}" for r in report.failures[:5]]
