"""`governor simulate --drill`, live: the real Temporal dev server, the real recovery workflow with the real
activities, a real gateway in front of fake-model upstreams, client traffic through the gateway the whole time, and a
real HTTP server receiving every notification route (on-call, internal, customers, users, leadership, public).

The drill must move the traffic to the fallback without one failed client request, tell on-call and internal only,
leave the gateway's status page as it was, mark the incident as a drill in `show`, `list` and the post-mortem, and
restore and close on its own with a post-mortem saying what it found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from gateway.app import RunningGateway, run_gateway
from governor.client import GovernorClient
from governor.enums import FallbackTier
from governor.incident import IncidentState
from governor.policy import parse_policy
from governor.settings import TemporalSettings, WorkerSettings
from tests.activities.test_notify import Recorder
from tests.gateway.conftest import CHAT, TOKEN
from tests.governor.test_cli_devserver import Governed
from tests.governor.test_cli_status_live import live_policy

pytestmark = pytest.mark.integration

AUDIENCES = ("oncall", "internal", "customers", "users", "leadership", "public")


@dataclass
class Traffic:
    """What the clients saw: each answer's status and the tier that served it (x-governor-tier)."""

    answers: list[tuple[float, int, str]] = field(default_factory=list)

    def since(self, t0: float) -> list[tuple[float, int, str]]:
        return [a for a in self.answers if a[0] >= t0]


async def _clients(url: str, stop: asyncio.Event, seen: Traffic) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while not stop.is_set():
            try:
                r = await http.post(url, json=CHAT)
                seen.answers.append((time.monotonic(), r.status_code, r.headers.get("x-governor-tier", "")))
            except httpx.HTTPError as err:
                seen.answers.append((time.monotonic(), 0, type(err).__name__))
            await asyncio.sleep(0.03)


@dataclass
class Drill:
    g: Governed
    gw: RunningGateway
    hooks: Recorder
    traffic: Traffic
    primary: Any

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        return await self.g.governor(*argv)

    async def status_page(self) -> dict[str, Any]:
        """What the governor writes to the public page: the indicator, each component's status, the incidents.
        (A component's `description` and `degradation_level` are read live from the degradation level, which a
        drill does exercise: they are left out.)"""
        async with httpx.AsyncClient(timeout=5) as http:
            page = (await http.get(f"{self.gw.url}/status.json")).json()
        return {
            "status": page["status"],
            "components": [(c["id"], c["status"], c["updated_at"]) for c in page["components"]],
            "incidents": page["incidents"],
        }

    async def until(self, incident: str, check: Any, limit_s: float = 90) -> IncidentState:
        deadline = time.monotonic() + limit_s
        while True:
            state = await self.g.sdk.state(incident)
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"never held: phase {state.phase}, tier {state.tier}, drill {state.drill_run}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def drill(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Drill]:
    from demo.upstream import run_upstream
    from workers.worker import activity_functions, build_worker

    service = f"drill{uuid.uuid4().hex[:8]}"
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    hooks = Recorder()
    await hooks.start()
    async with (
        run_upstream(name="primary") as primary,
        run_upstream(name="secondary") as secondary,
        run_upstream(name="degraded") as degraded,
    ):
        placeholder = live_policy(service, primary.url, secondary.url, degraded.url, "http://127.0.0.1:1")
        async with run_gateway({service: parse_policy(placeholder, "drill")}, TOKEN) as gw:
            data = live_policy(service, primary.url, secondary.url, degraded.url, gw.url)
            data["approvals"] = {"approvers": ["alice"], "gates": [], "timeout_s": 3600}
            data["notifications"] = {
                "routes": {a: [{"type": "webhook", "url": hooks.url(f"/{a}")}] for a in AUDIENCES},
                "escalation": ["leadership"],
            }
            (policy_dir / f"{service}.yaml").write_text(yaml.safe_dump(data))
            task_queue = f"drill-{uuid.uuid4().hex[:8]}"
            target = dev_env.client.service_client.config.target_host
            sdk = await GovernorClient.connect(TemporalSettings(address=target, task_queue=task_queue))
            settings = WorkerSettings(
                policy_dir=policy_dir, gateway_token=TOKEN, postmortem_dir=tmp_path / "pm", metrics_port=None
            )
            stop, seen = asyncio.Event(), Traffic()
            clients = asyncio.create_task(_clients(f"{gw.url}/{service}/v1/chat/completions", stop, seen))
            async with (
                httpx.AsyncClient(timeout=5) as http,
                build_worker(dev_env.client, task_queue, activity_functions(http, settings, dev_env.client)),
            ):
                try:
                    yield Drill(Governed(dev_env, service, task_queue, policy_dir, sdk), gw, hooks, seen, primary)
                finally:
                    stop.set()
                    await clients
                    await hooks.stop()
                    with contextlib.suppress(RPCError):
                        await dev_env.client.get_workflow_handle(f"recovery-{service}").terminate("test over")


async def test_drill_fails_over_for_real_tells_oncall_only_and_restores_on_its_own(drill: Drill) -> None:
    s = drill.g.service
    incident = f"recovery-{s}"
    await asyncio.sleep(1)  # clients on the primary
    page_before = await drill.status_page()
    t0 = time.monotonic()

    code, out, err = await drill.cli(
        "simulate", "--service", s, "--type", "model_unavailable", "--drill", "--duration", "6", "--as", "alice"
    )
    assert code == 0, err
    assert f"drill {incident} started by alice" in out and "status page is left untouched" in out

    # a second drill (or any drill) on a service with an open incident is refused
    code, _, err = await drill.cli("simulate", "--service", s, "--type", "rate_limited", "--drill", "--as", "bob")
    assert code == 2 and f"{s} has an open incident ({incident})" in err

    # while the fault is injected: the clients are served by the secondary, the incident says DRILL
    during = await drill.until(incident, lambda st: st.tier is FallbackTier.TIER_1_SECONDARY and st.drill_run)
    assert during.drill_run and during.drill_run.restored_at is None
    await asyncio.sleep(1)
    code, out, _ = await drill.cli("show", incident)
    assert code == 0 and f"Incident {incident}  (open)  DRILL" in out and "breaker tier_0_primary forced open" in out
    listed = await drill.g.listed(lambda found: any(i.drill for i in found))
    assert [i.drill for i in listed] == [True]
    code, out, _ = await drill.cli("list", "--service", s)
    assert f"{incident} (drill)" in out
    assert await drill.status_page() == page_before

    # it restores on its own: fault cleared after its duration, validated, ramped, closed
    final = await drill.until(incident, lambda st: st.closed_at is not None, limit_s=120)
    assert final.outcome == "recovered" and final.tier is FallbackTier.TIER_0_PRIMARY
    assert final.drill_run and final.drill_run.restored_at is not None
    assert (final.drill_run.restored_at - final.drill_run.injected_at).total_seconds() >= 6

    # the clients: traffic moved to the secondary and back, and not one request failed
    answers = drill.traffic.since(t0)
    statuses = Counter(status for _, status, _ in answers)
    tiers = Counter(tier for _, _, tier in answers)
    assert statuses == {200: len(answers)}, statuses
    assert tiers["tier_1_secondary"] > 20 and tiers["tier_0_primary"] > 0, tiers
    assert answers[-1][2] == "tier_0_primary"

    # only on-call and internal were told; the status page never moved
    told = {r.path for r in drill.hooks.received}
    assert told and told <= {"/oncall", "/internal"}, told
    assert all(r.json()["title"].startswith("[DRILL] ") for r in drill.hooks.received)
    assert await drill.status_page() == page_before

    # the post-mortem says what the drill found
    code, pm, err = await drill.cli("postmortem", incident)
    assert code == 0, err
    assert pm.startswith(f"# Post-mortem (DRILL): {s}") and "## What the drill found" in pm
    assert "client errors during the drill: 0" in pm and "time to detect: 0 s" in pm
    assert "status page: untouched" in pm and "gates: none waited" in pm


async def test_drill_refuses_bad_input(drill: Drill) -> None:
    code, _, err = await drill.cli("simulate", "--service", "nosuch", "--type", "rate_limited", "--drill", "--as", "a")
    assert code == 1 and "no policy for service 'nosuch'" in err
    with pytest.raises(SystemExit):
        await drill.cli("simulate", "--service", drill.g.service, "--type", "meltdown", "--drill", "--as", "a")
    code, _, err = await drill.cli(
        "simulate", "--service", drill.g.service, "--type", "rate_limited", "--duration", "5", "--as", "a"
    )
    assert code == 1 and "--duration is for a drill" in err
    argv = ["simulate", "--service", drill.g.service, "--type", "rate_limited", "--drill", "--dependency", "nope"]
    code, _, err = await drill.cli(*argv, "--as", "a")
    assert code == 1 and "nope" in err


async def test_drill_through_the_upstreams_control_api_is_detected_for_real_and_cleared(drill: Drill) -> None:
    s = drill.g.service
    incident = f"recovery-{s}"
    path = drill.g.policy_dir / f"{s}.yaml"
    data = yaml.safe_load(path.read_text())
    control = f"{drill.primary.url}/control"
    data["drills"] = {
        "faults": {
            "primary-llm": {
                "url": control,
                "inject": {"outage": True, "outage_mode": "503"},
                "clear": {"outage": False},
            }
        }
    }
    path.write_text(yaml.safe_dump(data))
    await asyncio.sleep(1)
    page_before = await drill.status_page()
    t0 = time.monotonic()

    code, out, err = await drill.cli(
        "simulate", "--service", s, "--type", "model_unavailable", "--drill", "--duration", "5", "--as", "alice"
    )
    assert code == 0, err
    assert f"fault injected through {control}" in out
    during = await drill.until(incident, lambda st: st.tier is FallbackTier.TIER_1_SECONDARY)
    assert drill.primary.faults.outage is True  # the upstream really is down
    assert during.drill_run and during.detected_at is not None

    final = await drill.until(incident, lambda st: st.closed_at is not None, limit_s=120)
    assert final.outcome == "recovered" and final.drill_run and final.drill_run.detected
    assert drill.primary.faults.outage is False  # cleared on its own
    answers = drill.traffic.since(t0)
    statuses = Counter(status for _, status, _ in answers)
    assert statuses == {200: len(answers)}, statuses
    assert Counter(t for _, _, t in answers)["tier_1_secondary"] > 20
    assert {r.path for r in drill.hooks.received} <= {"/oncall", "/internal"}
    assert await drill.status_page() == page_before
    code, pm, _ = await drill.cli("postmortem", incident)
    assert code == 0 and "## What the drill found" in pm and f"injected through {control}" in pm
    assert "client errors during the drill: 0" in pm
