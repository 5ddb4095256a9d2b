"""The blast radius in a real incident: the recovery workflow and the real activities on the Temporal dev server,
a real gateway serving two services that call the same model host, and real traffic before the host goes down."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import suppress

import httpx
import pytest
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.recovery import RecoveryActivities
from demo.upstream import run_upstream
from gateway.app import run_gateway
from governor.audit import AuditAction
from governor.enums import FallbackTier, RecoveryPhase, Severity, TransitionMode
from governor.incident import WORKFLOW_NAME, IncidentReport, IncidentState, Names, RecoveryInput
from governor.policy import parse_policy
from governor.settings import WorkerSettings
from tests.activities.conftest import TOKEN
from tests.activities.test_blast_radius import send, service_policy, write
from workflows.recovery import IncidentRecoveryWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.mark.parametrize(
    ("fault", "confirmed_as", "severity"),
    [
        ({"outage": True}, Severity.CRITICAL, Severity.CRITICAL),  # nothing above critical
        ({"latency_ms": 800}, Severity.HIGH, Severity.CRITICAL),  # a timeout (HIGH): one step up, 2 services hit
    ],
)
async def test_a_shared_model_host_failing_hits_both_services_and_raises_the_severity(
    dev_env: WorkflowEnvironment,
    http: httpx.AsyncClient,
    settings: WorkerSettings,
    fault: dict[str, object],
    confirmed_as: Severity,
    severity: Severity,
) -> None:
    acts = RecoveryActivities(http, settings)
    acts.confirm_backoff_s = (0.01,)
    queue = f"blast-{uuid.uuid4().hex[:8]}"
    wid = f"recovery-chat-{uuid.uuid4().hex[:8]}"
    async with run_upstream(name="shared") as shared, run_upstream(name="backup") as backup:
        placeholder = ["http://127.0.0.1:9"]
        data = {
            "chat": service_policy("chat", "primary-llm", shared.url, backup.url, placeholder),
            "search": service_policy("search", "search-model", shared.url, backup.url, placeholder),
        }
        async with run_gateway({n: parse_policy(d, n) for n, d in data.items()}, TOKEN) as gateway:
            for d in data.values():
                d["gateways"] = [gateway.url]
                d["notifications"] = {"routes": {}}
                write(settings.policy_dir, d)
            await asyncio.gather(send(http, gateway.url, "chat", 30), send(http, gateway.url, "search", 15))
            shared.set(**fault)
            async with Worker(
                dev_env.client, task_queue=queue, workflows=[IncidentRecoveryWorkflow], activities=acts.all()
            ):
                handle = await dev_env.client.start_workflow(
                    WORKFLOW_NAME,
                    RecoveryInput(service="chat", dependency="primary-llm"),
                    id=wid,
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    start_signal=Names.REPORT,
                    start_signal_args=[IncidentReport(service="chat", dependency="primary-llm", source="test")],
                    result_type=IncidentState,
                )
                try:
                    deadline = time.monotonic() + 60
                    while True:
                        state = await handle.query(Names.STATE, result_type=IncidentState)
                        if state.phase in (RecoveryPhase.DIAGNOSIS, RecoveryPhase.REMEDIATION) or state.closed_at:
                            break
                        assert time.monotonic() < deadline, f"stuck in {state.phase}"
                        await asyncio.sleep(0.2)
                    (response,) = await asyncio.gather(
                        http.post(
                            f"{gateway.url}/chat/v1/chat/completions",
                            json={"model": "any", "messages": [{"role": "user", "content": "hi"}]},
                        )
                    )
                finally:
                    with suppress(Exception):
                        await handle.terminate("test over")
    assert state.closed_at is None, f"closed: {state.outcome}"
    radius = state.blast_radius
    assert radius is not None and [s.service for s in radius.services] == ["chat", "search"]
    chat, search = radius.services
    assert chat.traffic_share == 1.0 and search.traffic_share == 1.0
    assert chat.rps_at_risk == pytest.approx(30 / 60) and search.rps_at_risk == pytest.approx(15 / 60)
    confirmed = next(e.details for e in state.audit if e.action == AuditAction.FAILURE_CONFIRMED)
    blast = next(e.details for e in state.audit if e.action == AuditAction.BLAST_RADIUS)
    assert confirmed["severity"] == confirmed_as and state.severity is severity
    if severity is not confirmed_as:
        assert blast["severity_raised"] == f"{confirmed_as} -> {severity}" and "2 services hit" in blast["why"]
    else:
        assert "severity_raised" not in blast
    span = state.tiers[-1]
    assert span.tier is FallbackTier.TIER_1_SECONDARY and span.mode is TransitionMode.AUTOMATIC
    assert response.status_code == 200 and response.headers["x-governor-tier"] == "tier_1_secondary"
    assert state.impact is not None and "2 services hit" in state.impact.description
    assert state.impact.estimated_recovery_minutes is not None
