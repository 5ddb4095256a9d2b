"""The `governor` CLI and the client SDK against the real Temporal dev server, the real recovery workflow and the
worker's builder (workers.worker.build_worker).

The activities are small fakes registered under the real activity names (governor.actions.Activity) with the real
models, so no gateway or upstream is needed: detection confirms, probes report healthy (or never, for the incident
that stays in remediation), validation passes, notifications succeed. The real activities are tested against real
HTTP servers in tests/activities; everything on the Temporal side here (signal-with-start, updates and their
validators, the state query, search attributes and visibility) is the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio import activity
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli import common
from cli import main as cli_main
from governor.actions import (
    Activity,
    ConfirmFailureInput,
    ConfirmFailureResult,
    WaitForHealthyInput,
    WaitForHealthyResult,
)
from governor.client import GovernorClient, IncidentSummary
from governor.enums import FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import IncidentReport, IncidentState
from governor.models import Classification
from governor.policy import parse_policy
from governor.settings import TemporalSettings
from tests.workflows.fakes import FakeWorld

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STUCK = "vector-db"
"""A dependency whose probes never come back healthy: its incident waits in remediation for on-call."""


def cli_policy(service: str) -> dict[str, Any]:
    """policies/chat.yaml under a fresh service name: one gate (ramp:10), approvers alice and bob, no soak."""
    data = yaml.safe_load((ROOT / "policies" / "chat.yaml").read_text())
    data["service"] = service
    data["dependencies"].append({"name": STUCK, "type": "database", "health_url": "http://127.0.0.1:9/health"})
    data["ramp"] = {"steps": [{"percent": 10, "soak_s": 0}, {"percent": 100, "soak_s": 0}], "sample_interval_s": 0.2}
    data["approvals"] = {"approvers": ["alice", "bob"], "gates": ["ramp:10"], "timeout_s": 3600}
    data.pop("notifications", None)
    return data


class FakeActivities(FakeWorld):
    """The scripted world of the workflow tests, with two twists: detection classifies what the report says, and
    STUCK's probes never come back healthy (heartbeats carry the cancellation when on-call declares it fixed)."""

    @activity.defn(name=Activity.CONFIRM_FAILURE)
    async def confirm_failure(self, input: ConfirmFailureInput) -> ConfirmFailureResult:
        ftype = input.report.failure_type or FailureType.MODEL_UNAVAILABLE
        return ConfirmFailureResult(
            confirmed=True,
            classification=Classification(failure_type=ftype, severity=Severity.CRITICAL, reason=f"{ftype} seen"),
        )

    @activity.defn(name=Activity.WAIT_FOR_HEALTHY)
    async def wait_for_healthy(self, input: WaitForHealthyInput) -> WaitForHealthyResult:
        while input.dependency.name == STUCK:
            activity.heartbeat()
            await asyncio.sleep(0.2)
        return WaitForHealthyResult(consecutive_passes=input.passes, probes=input.passes)


@dataclass
class Governed:
    env: WorkflowEnvironment
    service: str
    task_queue: str
    policy_dir: Path
    sdk: GovernorClient

    @property
    def flags(self) -> list[str]:
        return [
            "--address",
            self.env.client.service_client.config.target_host,
            "--namespace",
            "default",
            "--task-queue",
            self.task_queue,
            "--policy-dir",
            str(self.policy_dir),
            "--timeout",
            "10",
        ]

    async def governor(self, *argv: str) -> tuple[int, str, str]:
        """Run the CLI in-process: (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = await cli_main.run([*self.flags, *argv])
        return code, out.getvalue(), err.getvalue()

    async def listed(self, check: Callable[[list[IncidentSummary]], bool], **filters: Any) -> list[IncidentSummary]:
        """Visibility trails the workflow by a moment: poll the listing until it shows what we expect."""
        deadline = time.monotonic() + 10
        while True:
            found = await self.sdk.list_incidents(service=self.service, **filters)
            if check(found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def governed(dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Governed]:
    from workers.worker import build_worker

    service = f"cli{uuid.uuid4().hex[:8]}"
    data = cli_policy(service)
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / f"{service}.yaml").write_text(yaml.safe_dump(data))
    policy = parse_policy(data, "cli test policy")
    task_queue = f"cli-{uuid.uuid4().hex[:8]}"
    target = dev_env.client.service_client.config.target_host
    sdk = await GovernorClient.connect(TemporalSettings(address=target, task_queue=task_queue))
    async with build_worker(dev_env.client, task_queue, FakeActivities(policy).activities()):
        yield Governed(dev_env, service, task_queue, policy_dir, sdk)
        with contextlib.suppress(RPCError):  # leave nothing running on the shared dev server
            await dev_env.client.get_workflow_handle(f"recovery-{service}").terminate("test over")


async def test_report_list_show_refuse_approve_verify(governed: Governed, monkeypatch: pytest.MonkeyPatch) -> None:
    g = governed
    incident = f"recovery-{g.service}"

    code, out, _ = await g.governor("simulate", "--service", g.service, "--type", "error_spike")
    assert (code, out.splitlines()[0]) == (0, f"opened {incident} (error_spike)")
    code, out, _ = await g.governor(
        "simulate",
        "--service",
        g.service,
        "--dependency",
        "primary-llm",
        "--type",
        "error_spike",
        "--metric",
        "error_rate=0.4",
    )
    assert (code, out.splitlines()[0]) == (0, f"joined open incident {incident} (error_spike)")

    state = await g.sdk.wait_for(incident, lambda s: s.pending("ramp:10") is not None, timeout=20)
    assert state.phase is RecoveryPhase.GRADUAL_RESTORE and state.report_count == 2

    waiting = await g.listed(lambda found: bool(found) and found[0].awaiting_approval, awaiting_approval=True)
    assert [i.incident_id for i in waiting] == [incident]
    code, out, _ = await g.governor("list", "--service", g.service, "--awaiting")
    assert code == 0 and incident in out and "WAITING" in out
    code, out, _ = await g.governor("status")
    assert code == 0 and f"• {incident}: error_spike (CRITICAL) on tier_1_secondary" in out
    assert "phase gradual_restore (may need a human), AWAITING APPROVAL" in out

    code, out, _ = await g.governor("show", incident)
    assert code == 0
    command = rf'approve ramp:10:  governor approve {incident} --gate ramp:10 --gate-id [0-9a-f]{{12}} --reason "why it is safe"'
    assert re.search(command, out), out  # the request's id, so the printed command cannot approve a later request
    assert re.search(r"^  phase +gradual_restore", out, re.M) and "error_spike (CRITICAL)" in out

    code, _, err = await g.governor(
        "approve", incident, "--gate", "ramp:10", "--reason", "looks fine", "--as", "mallory"
    )
    assert code == common.EXIT_REFUSED
    assert err.strip() == "refused: 'mallory' may not approve ramp:10 (approvers: alice, bob)"
    code, _, err = await g.governor("approve", incident, "--gate", "ramp:50", "--reason", "x", "--as", "alice")
    assert code == common.EXIT_REFUSED and "gate 'ramp:50' is not pending (pending: ramp:10 (id " in err

    monkeypatch.setenv("GOVERNOR_USER", "alice")  # identity from the environment this time
    code, out, _ = await g.governor(
        "approve", f"{g.service}/primary-llm", "--gate", "ramp:10", "--reason", "error rate flat for 10 min"
    )
    assert code == 0 and "ramp:10 approved by alice" in out

    final = await g.sdk.wait_for(incident, lambda s: s.closed_at is not None, timeout=20)
    assert final.outcome == "recovered" and final.tier is FallbackTier.TIER_0_PRIMARY
    approvals = [e for e in final.audit if e.action == "approved"]
    assert [(e.actor, e.details["reason"]) for e in approvals] == [("alice", "error rate flat for 10 min")]
    assert all(e.actor != "mallory" for e in final.audit)  # a refused update leaves no trace

    code, out, _ = await g.governor("audit", "verify", incident)
    assert code == 0 and out.startswith(f"{incident}: audit chain intact ({len(final.audit)} entries")

    code, out, err = await g.governor("postmortem", incident)  # governor.postmortem's full report
    assert code == 0 and "timeline only" not in err
    assert out.startswith(f"# Post-mortem: {g.service}: error_spike on primary-llm") and f"`{incident}`" in out
    assert re.search(r"\| ramp:10 \([0-9a-f]{12}\) \| approved \| alice \|", out), out

    code, _, err = await g.governor("pause", incident, "--reason", "too late")
    assert code == common.EXIT_REFUSED and "closed" in err

    code, _, err = await g.governor("show", f"recovery-{g.service}-nothing")
    assert code == common.EXIT_UNKNOWN_INCIDENT
    assert f"no incident 'recovery-{g.service}-nothing' in namespace 'default'" in err and "Traceback" not in err


async def test_controls_on_an_incident_waiting_in_remediation(governed: Governed) -> None:
    g = governed
    reported = await g.sdk.report_failure(
        IncidentReport(service=g.service, dependency=STUCK, failure_type=FailureType.DEPENDENCY_DOWN, source="test")
    )
    incident = reported.incident_id
    assert reported.started is True and incident == f"recovery-{g.service}"
    await g.sdk.wait_for(incident, phase=RecoveryPhase.REMEDIATION, timeout=20)

    async def ok(*argv: str) -> str:
        code, out, err = await g.governor(*argv, "--as", "bob")
        assert code == 0, err
        return out

    async def refused(*argv: str) -> str:
        code, _, err = await g.governor(*argv, "--as", "bob")
        assert code == common.EXIT_REFUSED, err
        return err.strip()

    assert "pause accepted from bob" in await ok("pause", incident, "--reason", "checking the vendor")
    assert await refused("pause", incident) == "refused: already paused"
    assert "resume accepted from bob" in await ok("resume", incident)
    assert "note added" in await ok("note", incident, "vendor", "says", "ETA", "20", "min")
    assert "is not in" in await refused("force-tier", incident, "--tier", "tier_5_error")
    assert await refused("abort", incident) == "refused: abort applies to the ramp; the incident is in remediation"

    out = await ok(
        "failover",
        "--service",
        g.service,
        "--dependency",
        STUCK,
        "--tier",
        "static",
        "--reason",
        "secondary is flaky too",
    )
    assert f"force_tier accepted from bob\n  {incident}: phase remediation" in out
    state = await g.sdk.wait_for(incident, lambda s: s.tier is FallbackTier.TIER_4_STATIC, timeout=20)
    assert state.phase is RecoveryPhase.REMEDIATION

    assert "declare_remediated accepted from bob" in await ok(
        "recover", "--service", g.service, "--dependency", STUCK, "--reason", "vendor fixed it"
    )
    await g.sdk.wait_for(incident, lambda s: s.pending("ramp:10") is not None, timeout=20)
    assert "ramp:10 rejected by bob" in await ok("reject", incident, "--gate", "ramp:10", "--reason", "not yet")
    # a rejected gate rolls back and waits for a human before trying again
    state = await g.sdk.wait_for(incident, lambda s: len(s.rollbacks) == 1 and s.awaiting_human, timeout=20)
    assert state.rollbacks[0].reason == "bob rejected ramp:10: not yet" and state.rollbacks[0].actor == "bob"

    note = next(e for e in state.audit if e.action == "note")
    assert (note.actor, note.details["text"]) == ("bob", "vendor says ETA 20 min")
    code, out, _ = await g.governor("show", incident, "--json")
    assert code == 0 and IncidentState.model_validate_json(out).incident_id == incident
    # the service's one incident: close it so the next test of this service opens its own
    await g.env.client.get_workflow_handle(incident).terminate("test over")


async def test_failover_without_an_open_incident_reports_one_then_forces_the_tier(governed: Governed) -> None:
    g = governed
    code, out, err = await g.governor("failover", "--service", g.service, "--tier", "tier_2_cache", "--as", "bob")
    incident = f"recovery-{g.service}"
    assert code == 0, err
    assert out.splitlines()[0] == f"reported a manual failure: {incident}"
    assert "force_tier accepted from bob" in out
    state = await g.sdk.state(incident)
    forced = next(e for e in state.audit if e.action == "force_tier")
    assert (forced.actor, forced.details["tier"]) == ("bob", "tier_2_cache")
    assert state.reports[0].message == "manual failover to tier_2_cache by bob: manual failover"


async def test_installed_entry_point_exits_3_for_an_unknown_incident(governed: Governed) -> None:
    """The real `main()` (asyncio.run and all) in its own process: a user error, not a traceback."""
    env = {**os.environ, "GOVERNOR_TEMPORAL_ADDRESS": governed.env.client.service_client.config.target_host}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "show",
        "recovery-nowhere-nothing",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == common.EXIT_UNKNOWN_INCIDENT
    assert "no incident 'recovery-nowhere-nothing'" in stderr.decode() and "Traceback" not in stderr.decode()
