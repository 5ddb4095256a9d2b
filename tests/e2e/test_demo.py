"""The demo incident, unattended, on the real embedded stack: what `governor up --demo --auto-approve` plays.

Real Temporal dev server, worker, gateway, intake, demo upstreams and the client traffic process, on free ports with a
fresh state folder. The watchdogs must notice the outage (the scenario only flips the primary's fault switch). Checked
as a user would: which tiers answered the clients over time, that no client request failed, the phases the incident
went through, the rollback in its audit trail, and the post-mortem on disk.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from cli.stack_cmds import prepare_demo
from demo.scenario import DEMO_APPROVER, DEMO_POLICY_DIR, DemoResult, DemoSettings
from governor.enums import FallbackTier, RecoveryPhase
from tests.ports import free_ports
from workers.stack import StackError, StackOptions, run_stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PRIMARY = FallbackTier.TIER_0_PRIMARY.value
SECONDARY = FallbackTier.TIER_1_SECONDARY.value


def demo_policy_on(folder: Path, ports: dict[int, int]) -> Path:
    """demo/policies/chat.yaml with its gateway, upstreams and pager moved to free ports."""
    text = (DEMO_POLICY_DIR / "chat.yaml").read_text()
    for old, new in ports.items():
        assert f"127.0.0.1:{old}" in text, old
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    folder.mkdir(parents=True)
    (folder / "chat.yaml").write_text(text)
    return folder


def at(result: DemoResult, when: datetime | None) -> float:
    assert when is not None
    return when.timestamp()


async def play_demo(tmp_path: Path, settings: DemoSettings, attempts: int = 3) -> tuple[list[DemoResult], Path]:
    """Run the demo unattended on free ports; start again on new ports if another process took one meanwhile
    (ports are only reserved by binding them, and other test runs share this machine)."""
    for attempt in range(1, attempts + 1):
        run = tmp_path / f"run{attempt}"
        temporal, ui, gateway, primary, secondary, degraded, metrics, intake, pager = free_ports(9)
        policies = demo_policy_on(
            run / "policies", {8080: gateway, 9101: primary, 9102: secondary, 9103: degraded, 9105: pager}
        )
        log = run / "demo.out"
        results: list[DemoResult] = []
        with log.open("w") as out:
            options = StackOptions(
                state_dir=run / "state",
                policy_dir=policies,
                temporal_port=temporal,
                ui_port=ui,
                metrics_port=metrics,
                intake_port=intake,
                ready_timeout_s=120,
                out=out,
            )
            try:
                await run_stack(options, prepare_demo(options, settings, results))
            except StackError as err:
                clash = "address already in use" in log.read_text() or "is taken" in str(err)
                if clash and not results and attempt < attempts:
                    continue
                print(log.read_text()[-8000:])
                raise
        return results, log
    raise AssertionError("unreachable")


async def test_demo_incident_plays_end_to_end_without_a_failed_client_request(tmp_path: Path) -> None:
    settings = DemoSettings(
        auto_approve=True,
        unattended=True,
        approve_after_s=1,
        baseline_s=3,
        outage_s=5,
        fix_after_s=1,
        step_timeout_s=120,
    )
    results, log = await play_demo(tmp_path, settings)
    assert results, log.read_text()[-4000:]
    result = results[0]
    state = result.incident

    # The incident ended recovered, and it was a watchdog that reported it.
    assert state.outcome == "recovered" and state.phase is RecoveryPhase.POST_MORTEM
    reported = next(e for e in state.audit if e.action == "reported")
    assert reported.actor.startswith("watchdog"), reported

    # Clients: not one failed request, and the tiers that answered them over time.
    traffic = result.traffic
    assert traffic.failed == 0, traffic.failures[:5]
    assert traffic.requests > 1000
    fault = at(result, result.fault_at)
    fallback = fault + (result.fallback_after_s or 0)
    back = at(result, result.primary_back_at)
    first_ramp = next(e.at for e in state.audit if e.action == "ramp_step").timestamp()
    recovered = at(result, state.recovered_at)
    end = traffic.seconds[-1].second
    before = traffic.tiers_between(0, fault - 1)
    assert set(before) == {PRIMARY} and before[PRIMARY] > 50
    outage = traffic.tiers_between(fallback + 1, back)
    assert set(outage) == {SECONDARY} and outage[SECONDARY] > 100
    ramp = traffic.tiers_between(first_ramp + 1, recovered - 1)
    assert ramp[PRIMARY] > 0 and ramp[SECONDARY] > ramp[PRIMARY]  # the primary gets a share, never all of it
    after = traffic.tiers_between(recovered + 1, end + 1)
    assert set(after) == {PRIMARY} and after[PRIMARY] > 50, after
    runs = [tier for tier, _, _ in traffic.tier_runs()]
    assert runs[0] == PRIMARY and runs[-1] == PRIMARY and SECONDARY in runs

    # The phases: all nine, remediation twice (once for the outage, once after the rollback).
    phases = [p.phase for p in state.phases]
    assert set(phases) == set(RecoveryPhase)
    assert Counter(phases)[RecoveryPhase.REMEDIATION] == 2
    assert phases[:5] == [
        RecoveryPhase.DETECTION,
        RecoveryPhase.ISOLATION,
        RecoveryPhase.FALLBACK_ACTIVE,
        RecoveryPhase.DIAGNOSIS,
        RecoveryPhase.REMEDIATION,
    ]
    assert phases[-3:] == [RecoveryPhase.GRADUAL_RESTORE, RecoveryPhase.FULL_RESTORE, RecoveryPhase.POST_MORTEM]

    # The rollback at 25 %, in the audit trail with the metrics that caused it, then the ramp completed.
    rollbacks = [e for e in state.audit if e.action == "rolled_back"]
    assert len(rollbacks) == 1
    assert rollbacks[0].details["percent"] == 25 and rollbacks[0].details["metrics"]["error_rate"] > 0.05
    passed = [e.details["percent"] for e in state.audit if e.action == "ramp_step_passed"]
    assert passed == [10, 10, 25, 50, 100]  # attempt 1 passed 10 % then rolled back at 25 %

    # Approvals: ramp:10 twice (before each attempt), by the named approver, with a reason.
    assert [(d.gate, d.approver, d.approved) for d in state.decisions] == [("ramp:10", DEMO_APPROVER, True)] * 2
    assert all(d.reason for d in state.decisions)

    # On-call was paged through the policy's webhook route (the demo pager) about the gate.
    assert any(p["event"] == "approval_requested" and p["audience"] == "oncall" for p in result.pages)

    # The post-mortem, as written by the worker.
    assert result.postmortem is not None and result.postmortem.is_file()
    assert result.postmortem.parent == (log.parent / "state" / "postmortems").resolve()
    text = result.postmortem.read_text()
    for needle in ("MTTD", "MTTR", "## Rollbacks", "## Approvals", DEMO_APPROVER, state.decisions[0].reason, "25"):
        assert needle in text, needle
    rollback_section = text.split("## Rollbacks", 1)[1].split("\n## ", 1)[0]
    # the reason is the ramp's judgement ("error rate 12.5% > 5.0% at 25%") or, when the watchdog confirmed the
    # failure first, the confirmation's ("... most are http_5xx") with its metrics (error_rate 13.5%): both name the rate
    assert "25%" in rollback_section and ("error rate" in rollback_section or "error_rate" in rollback_section)
    # Every audience the demo notifies is routed (leadership too: the outage is CRITICAL), so nothing failed for lack
    # of a channel; the figures count from the watchdog's first failing check and the incident is closed.
    assert (
        "no channel configured" not in text and "FAILED" not in text.split("## Notifications", 1)[1].split("\n## ")[0]
    )
    assert any(p["audience"] == "leadership" for p in result.pages)
    assert "| failure started | 20" in text and "here: watchdog: first failing check" in text
    assert "| total duration |" in text and "open for" not in text
    assert result.started_after_s is not None and 0 <= result.started_after_s <= (result.detected_after_s or 0)
