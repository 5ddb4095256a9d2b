"""The governor's own metrics on the worker's Prometheus endpoint: counters from the workflow (rollbacks, missed
notification SLAs) and gauges from the collector (open incidents, pending approvals and their age), scraped over
HTTP as Prometheus would, with the SDK's naming switches on."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from governor.client import GovernorClient
from governor.enums import FailureType
from governor.incident import ApprovalInput, Names
from tests.ports import free_port
from tests.workflows.conftest import Incident
from tests.workflows.fakes import FakeWorld, failing, healthy, policy_for
from workers.governor_metrics import GovernorMetrics
from workflows.recovery import IncidentRecoveryWorkflow

QUICK_RAMP = {
    "steps": [{"percent": p, "soak_s": 1 if p < 100 else 0} for p in (10, 25, 50, 100)],
    "sample_interval_s": 1,
    "stats_window_s": 1,
}


def metrics_runtime(port: int) -> Runtime:
    config = PrometheusConfig(
        bind_address=f"127.0.0.1:{port}", counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True
    )
    return Runtime(telemetry=TelemetryConfig(metrics=config))


async def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """Every governor_* sample: name, labels, value."""
    async with httpx.AsyncClient(trust_env=False) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = []
    for line in text.splitlines():
        match = re.fullmatch(r"(governor_\w+)(?:\{(.*)\})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` whose labels include `labels` (None: no such series)."""
    found = [v for n, have, v in samples if n == name and labels.items() <= have.items()]
    return sum(found) if found else None


async def client_with(env: WorkflowEnvironment, runtime: Runtime) -> Client:
    return await Client.connect(
        env.client.service_client.config.target_host, data_converter=pydantic_data_converter, runtime=runtime
    )


async def test_rollbacks_and_missed_notifications_are_counted(time_skipping_env: WorkflowEnvironment) -> None:
    port = free_port()
    client = await client_with(time_skipping_env, metrics_runtime(port))
    world = FakeWorld()
    world.stats = lambda w: failing(0.2) if w.weight == 25 and not w.rollback_count else healthy()
    world.failing_audiences = {"oncall"}
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[IncidentRecoveryWorkflow], activities=world.activities()):
        inc = Incident(time_skipping_env, world, queue)
        await inc.report(failure_type=FailureType.ERROR_SPIKE)
        await inc.until(lambda s: bool(s.rollbacks))
        world.rollback_count = 1
        state = await inc.result()
        assert state.outcome == "recovered" and len(state.rollbacks) == 1
        samples = await scrape(port)
    labels = {"service": "chat", "dependency": "primary-llm"}
    assert value(samples, "governor_rollbacks_total", **labels) == 1
    oncall = sum(1 for n in state.notifications if n.audience == "oncall" and n.channel != "none")
    assert oncall >= 2
    assert value(samples, "governor_notification_sla_missed_total", audience="oncall", **labels) == oncall
    assert value(samples, "governor_notification_sla_missed_total", audience="leadership") is None


@pytest.mark.integration
async def test_collector_reports_open_incidents_and_the_approval_wait(dev_env: WorkflowEnvironment) -> None:
    port = free_port()
    runtime = metrics_runtime(port)
    world = FakeWorld(
        policy_for(
            approvals={"approvers": ["alice"], "gates": ["ramp:10"], "timeout_s": 3600, "four_eyes": False},
            ramp=QUICK_RAMP,  # real time on the dev server: the fakes' 4-minute ramp would be most of the test
        )
    )
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    service = f"svc{uuid.uuid4().hex[:6]}"
    world.policy = world.policy.model_copy(update={"service": service})
    async with Worker(
        dev_env.client, task_queue=queue, workflows=[IncidentRecoveryWorkflow], activities=world.activities()
    ):
        inc = Incident(dev_env, world, queue)
        await inc.report(failure_type=FailureType.ERROR_SPIKE)
        state = await asyncio.wait_for(_until_awaiting(inc), 60)
        collector = GovernorMetrics(GovernorClient(dev_env.client, task_queue=queue), runtime.metric_meter)
        where = {
            "phase": "gradual_restore",
            "service": service,
            "severity": str(state.severity),
            "tier": str(state.tier),
        }
        for _ in range(50):  # visibility lags the workflow a little
            await collector.collect_once()
            samples = await scrape(port)
            if value(samples, "governor_incidents_open", **where) == 1 and value(
                samples, "governor_approvals_pending", service=service
            ):
                break
            await asyncio.sleep(0.2)
        assert value(samples, "governor_incidents_open", **where) == 1
        assert value(samples, "governor_approvals_pending", service=service) == 1
        assert (value(samples, "governor_approval_wait_seconds", service=service) or 0) > 0
        assert value(samples, "governor_metrics_collected") == 1

        gate_id = (await inc.state()).pending_gates[0].gate_id
        approval = ApprovalInput(gate="ramp:10", approver="alice", reason="ok", gate_id=gate_id)
        await inc.handle.signal(Names.APPROVE, approval)  # type: ignore[union-attr]
        assert (await inc.result()).outcome == "recovered"
        for _ in range(50):
            await collector.collect_once()
            samples = await scrape(port)
            if value(samples, "governor_incidents_open", **where) == 0:
                break
            await asyncio.sleep(0.2)
    assert value(samples, "governor_incidents_open", **where) == 0  # a closed incident's series reads 0, not 1
    assert value(samples, "governor_approvals_pending", service=service) == 0


async def _until_awaiting(inc: Incident):
    while True:
        try:
            state = await inc.state()
            if state.awaiting_approval:
                return state
        except Exception:  # the first workflow task may not have run yet
            pass
        await asyncio.sleep(0.2)
