"""`governor status`, `chain`/`hierarchy`, `recovery`, `claim` and `failover` without `--tier`, live: the real Temporal
dev server, the real recovery workflow with the real activities (workers.worker.activity_functions), a real gateway and
fake-model upstreams with fault injection, with client traffic flowing through the gateway the whole time.

The CLI's rendered output is checked for the seed's elements (health bar and counts, the breaker icons, the active
fallback with its quality, the `→` current tier and `↓ (on failure)`, the recovery checks and the ramp), as the
gateways and the workflow report them at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from demo.upstream import Upstream, run_upstream
from gateway.app import RunningGateway, run_gateway
from governor.client import GovernorClient
from governor.enums import FallbackTier, RecoveryPhase
from governor.incident import IncidentState
from governor.policy import parse_policy
from governor.settings import TemporalSettings, WorkerSettings
from tests.gateway.conftest import CHAT, STATIC_BODY, TOKEN
from tests.governor.test_cli_devserver import Governed

pytestmark = pytest.mark.integration


def live_policy(service: str, primary: str, secondary: str, degraded: str, gateway: str) -> dict[str, Any]:
    return {
        "service": service,
        "gateways": [gateway],
        "dependencies": [
            {"name": "primary-llm", "tier": "tier_0_primary", "health_url": f"{primary}/health", "timeout_ms": 1000},
            {"name": "secondary-llm", "tier": "tier_1_secondary", "health_url": f"{secondary}/health"},
        ],
        "chain": [
            {"tier": "tier_0_primary", "upstream": primary, "timeout_ms": 1000},
            {"tier": "tier_1_secondary", "upstream": secondary, "timeout_ms": 1000},
            {"tier": "tier_2_cache", "ttl_s": 300},
            {"tier": "tier_3_degraded", "upstream": degraded, "timeout_ms": 1000},
            {"tier": "tier_4_static", "body": STATIC_BODY},
        ],
        "deadline_ms": 3000,
        "recovery_checks": {
            "health_passes": 3,
            "min_samples": 5,
            "probe_interval_s": 0.2,
            "normal_rps": 5,
            "stable_s": 5,
        },
        "ramp": {
            "steps": [{"percent": 10, "soak_s": 0}, {"percent": 100, "soak_s": 0}],
            "sample_interval_s": 0.3,
            "stats_window_s": 5,
        },
        "approvals": {"approvers": ["alice", "bob"], "gates": ["ramp:10"], "timeout_s": 3600},
    }


@dataclass
class Live:
    g: Governed
    primary: Upstream
    gw: RunningGateway
    token_file: Path

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        return await self.g.governor(*argv)

    async def state(self, incident: str) -> IncidentState:
        return await self.g.sdk.state(incident)


async def _traffic(url: str, stop: asyncio.Event) -> None:
    """About 30 chat requests a second through the gateway, like the demo's clients."""
    async with httpx.AsyncClient(timeout=5) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                await http.post(url, json=CHAT)
            await asyncio.sleep(0.03)


@pytest.fixture
async def live(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Live]:
    from workers.worker import activity_functions, build_worker

    service = f"live{uuid.uuid4().hex[:8]}"
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    token_file = tmp_path / "gateway-token"
    token_file.write_text(TOKEN + "\n")
    async with (
        run_upstream(name="primary") as primary,
        run_upstream(name="secondary") as secondary,
        run_upstream(name="degraded") as degraded,
    ):
        placeholder = live_policy(service, primary.url, secondary.url, degraded.url, "http://127.0.0.1:1")
        async with run_gateway({service: parse_policy(placeholder, "live")}, TOKEN) as gw:
            data = live_policy(service, primary.url, secondary.url, degraded.url, gw.url)
            (policy_dir / f"{service}.yaml").write_text(yaml.safe_dump(data))
            task_queue = f"live-{uuid.uuid4().hex[:8]}"
            target = dev_env.client.service_client.config.target_host
            sdk = await GovernorClient.connect(TemporalSettings(address=target, task_queue=task_queue))
            settings = WorkerSettings(
                policy_dir=policy_dir, gateway_token=TOKEN, postmortem_dir=tmp_path / "pm", metrics_port=None
            )
            stop = asyncio.Event()
            traffic = asyncio.create_task(_traffic(f"{gw.url}/{service}/v1/chat/completions", stop))
            async with (
                httpx.AsyncClient(timeout=5) as http,
                build_worker(dev_env.client, task_queue, activity_functions(http, settings, dev_env.client)),
            ):
                try:
                    yield Live(Governed(dev_env, service, task_queue, policy_dir, sdk), primary, gw, token_file)
                finally:
                    stop.set()
                    await traffic
                    with contextlib.suppress(RPCError):
                        await dev_env.client.get_workflow_handle(f"recovery-{service}").terminate("test over")


async def test_status_chain_recovery_claim_and_failover_one_tier_down(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = live.g.service
    incident = f"recovery-{s}"
    token = ["--gateway-token-file", str(live.token_file)]
    await asyncio.sleep(1)  # some traffic in the stats windows

    # -- healthy: everything green, the primary marked as the tier serving
    code, out, err = await live.cli("status", *token)
    assert code == 0, err
    assert "FALLBACK GOVERNANCE STATUS" in out and f"Health: {'█' * 25} 100%" in out
    assert "Healthy: 2 | Degraded: 0 | Unhealthy: 0" in out
    assert f"✓ {s}/primary-llm: HEALTHY [NONE]" in out and f"✓ {s}/tier_0_primary: CLOSED" in out
    assert "Active Incidents: 0" in out and "ACTIVE FALLBACKS" not in out
    code, out, _ = await live.cli("chain", s, *token)
    assert code == 0 and "  → TIER 0: primary-llm" in out and out.count("↓ (on failure)") == 4

    # -- the primary goes down; an incident opens and waits in remediation on the secondary
    live.primary.set(outage=True)
    code, out, err = await live.cli("simulate", "--service", s, "--type", "model_unavailable")
    assert code == 0, err
    await live.g.sdk.wait_for(incident, lambda st: st.phase is RecoveryPhase.REMEDIATION, timeout=60)
    monkeypatch.setenv("GOVERNOR_GATEWAY_TOKEN", TOKEN)  # the token from the environment this time
    code, out, err = await live.cli("status")
    assert code == 0, err
    assert "Healthy: 1 | Degraded: 0 | Unhealthy: 1" in out, out
    assert f"Health: {'█' * 12}{'░' * 13} 50%" in out
    assert f"🔴 {s}/primary-llm: CRITICAL [CRITICAL]" in out  # model_unavailable is CRITICAL
    # the secondary's own level is degraded_l1; a CRITICAL failure takes at least degraded_l2 (the seed's rule)
    assert f"• {s}: tier_1_secondary (90% quality), degradation degraded_l2" in out
    assert f"✗ {s}/tier_0_primary: OPEN (forced)" in out and f"✓ {s}/tier_1_secondary: CLOSED" in out
    assert "Degradation Level: DEGRADED_L2" in out and "Active Incidents: 1" in out
    assert f"• {incident}: model_unavailable (CRITICAL) on tier_1_secondary" in out
    assert "phase remediation (may need a human)" in out and "40%  owner unassigned" in out
    code, out, _ = await live.cli("status", "--json")
    data = json.loads(out)
    assert data["active_fallbacks"][s]["tier"] == "tier_1_secondary" and data["health"]["unhealthy"] == 1
    assert data["incidents"][0]["progress"] == 40.0 and data["incidents"][0]["owner"] == "unassigned"

    code, chain_out, _ = await live.cli("chain", s)
    assert code == 0
    lines = chain_out.splitlines()
    assert any(line.startswith("  → TIER 1: secondary-llm") and "[✓ breaker CLOSED]" in line for line in lines)
    assert any(line.startswith("    TIER 0: primary-llm") and "[✗ breaker OPEN forced]" in line for line in lines)
    code, hierarchy_out, _ = await live.cli("hierarchy", "--service", s)
    assert code == 0 and hierarchy_out.split("FALLBACK CHAIN")[1][:200] == chain_out.split("FALLBACK CHAIN")[1][:200]
    code, out, _ = await live.cli("chain", s, "--json")
    view = json.loads(out)
    assert view["current_tier"] == "tier_1_secondary" and view["tiers"][0]["breaker"]["state"] == "open"

    # -- carol takes it; the plan names her
    code, out, err = await live.cli("claim", incident, "--as", "carol", "--reason", "on call")
    assert code == 0 and "claim accepted from carol" in out, err
    code, out, err = await live.cli("claim", incident, "--as", "carol")
    assert code == 2 and f"'carol' already owns {incident}" in err
    code, out, _ = await live.cli("show", incident)
    assert code == 0 and "owner carol" in out and "→ remediation" in out

    # -- failover without --tier: one tier down from the tier served (secondary -> cache)
    code, out, err = await live.cli("failover", "--service", s, "--as", "carol")
    assert code == 0, err
    assert "one tier down from tier_1_secondary: tier_2_cache" in out
    await live.g.sdk.wait_for(incident, lambda st: st.tier is FallbackTier.TIER_2_CACHE, timeout=30)
    code, out, _ = await live.cli("chain", s)
    assert "  → TIER 2: cache (ttl 300s)" in out

    # -- the primary is fixed: validation passes and the ramp waits for ramp:10
    live.primary.set(outage=False)
    await live.g.sdk.wait_for(incident, lambda st: st.pending("ramp:10") is not None, timeout=60)
    code, out, err = await live.cli("recovery", f"{s}/primary-llm")
    assert code == 0, err
    assert f"Recovery plan REC-{incident}" in out and "phase gradual_restore (may need a human)" in out
    # validation probed the data path through the real gateway too (recovery_checks.probe_request)
    assert "Recovery checks (latest validation: pass: all recovery checks passed; data path: 5 POST" in out
    assert "✓ health_endpoint  consecutive_passes" in out and "✓ latency" in out and "✓ error_rate" in out
    assert "? throughput" in out and "(ramp)" in out
    assert "→ step 1   10%  no soak        current  awaiting approval (ramp:10)" in out and "· step 2  100%" in out
    assert "owner carol" in out and "ETA " in out and "left      4 step(s): ramp:10, ramp:100, full_restore" in out
    code, out, _ = await live.cli("recovery", incident, "--json")
    rec = json.loads(out)
    assert rec["validation_verdict"] == "pass" and rec["remaining"][0] == "ramp:10"
    assert {c["name"] for c in rec["checks"]} == {"health_endpoint", "latency", "error_rate", "throughput"}
    assert rec["plan"]["owner"] == "carol" and rec["estimated_completion"] is not None

    code, out, err = await live.cli(
        "approve", incident, "--gate", "ramp:10", "--reason", "checks pass", "--as", "alice"
    )
    assert code == 0, err
    final = await live.g.sdk.wait_for(incident, lambda st: st.closed_at is not None, timeout=90)
    assert final.outcome == "recovered" and final.owner == "carol"
    code, out, _ = await live.cli("postmortem", incident)
    assert code == 0 and "## Recovery plan" in out and "100% done (10 of 10 steps), owner **carol**" in out

    # -- no incident: failover without --tier reads the tier served from the gateway (primary) and moves one down
    code, out, err = await live.cli("failover", "--service", s, "--as", "alice", "--reason", "maintenance")
    assert code == 0, err
    assert "one tier down from tier_0_primary: tier_1_secondary" in out and "reported a manual failure" in out
    await live.g.sdk.wait_for(incident, lambda st: st.tier is FallbackTier.TIER_1_SECONDARY, timeout=30)
    code, out, _ = await live.cli("status")
    assert f"• {s}: tier_1_secondary (90% quality)" in out
