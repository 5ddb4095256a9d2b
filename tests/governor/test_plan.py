"""The seed's RecoveryPlan derived from an incident's state (governor/plan.py): steps, progress, owner, ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governor.audit import AuditEntry, append_entry
from governor.details import details_markdown
from governor.enums import FailureType, RecoveryPhase
from governor.incident import IncidentState, PhaseSpan, RollbackRecord
from governor.plan import (
    SEED_MINUTES_PER_STEP,
    UNASSIGNED,
    EstimateSource,
    StepStatus,
    recovery_plan,
    recovery_view,
)
from governor.policy import ServicePolicy
from governor.postmortem import postmortem_json, render_postmortem
from tests.workflows.fakes import policy_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEED_S = SEED_MINUTES_PER_STEP * 60
ALL_STEPS = [
    "detection", "isolation", "fallback_active", "diagnosis", "remediation", "validation",
    "ramp:10", "ramp:25", "ramp:50", "ramp:100", "full_restore", "post_mortem",
]  # fmt: skip


def state(**fields: Any) -> IncidentState:
    return IncidentState(incident_id="recovery-chat", service="chat", dependency="primary-llm", **fields)


def trail(*entries: tuple[str, str, dict[str, Any]]) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    for i, (action, actor, details) in enumerate(entries):
        append_entry(out, at=NOW - timedelta(minutes=30 - i), action=action, actor=actor, details=details)
    return out


@pytest.fixture
def policy() -> ServicePolicy:
    return policy_for()  # ramp 10 % 60 s, 25 % 60 s, 50 % 120 s, 100 %


def test_a_new_incident_has_every_step_ahead_and_the_seed_estimate(policy: ServicePolicy) -> None:
    plan = recovery_plan(state(failure_type=FailureType.MODEL_UNAVAILABLE), policy, NOW)
    assert [s.name for s in plan.steps] == ALL_STEPS
    assert [s.status for s in plan.steps][:2] == [StepStatus.CURRENT, StepStatus.PENDING]
    assert plan.progress == 0 and plan.completed_steps == [] and plan.owner == UNASSIGNED
    # 7 steps at the seed's 5 min, remediation the failure type's 5 typical minutes, the ramp its soaks (240 s)
    assert plan.remaining_s == 7 * SEED_S + 5 * 60 + 240
    assert plan.estimated_completion == NOW + timedelta(seconds=plan.remaining_s)
    sources = {s.name: s.estimate_source for s in plan.steps}
    assert sources["ramp:50"] is EstimateSource.SOAK and sources["remediation"] is EstimateSource.TYPICAL_RECOVERY
    assert sources["diagnosis"] is EstimateSource.SEED
    assert plan.plan_id == "REC-recovery-chat"
    automated = {s.name for s in plan.steps if s.automated}
    assert automated == {"detection", "isolation", "fallback_active", "validation"}  # RecoveryPhase.automated


def test_mid_ramp_counts_passed_steps_and_what_is_left_of_the_soak(policy: ServicePolicy) -> None:
    s = state(phase=RecoveryPhase.GRADUAL_RESTORE, ramp_step=1, soak_started_at=NOW - timedelta(seconds=20))
    plan = recovery_plan(s, policy, NOW)
    assert plan.completed_steps == ALL_STEPS[:7]  # six phases and ramp:10
    assert plan.current_step is not None and plan.current_step.name == "ramp:25"
    assert plan.current_step.remaining_s == 40
    assert plan.progress == round(100 * 7 / 12, 1)
    assert plan.remaining_s == 40 + 120 + 0 + 2 * SEED_S


def test_remediation_estimate_is_what_is_left_of_the_typical_recovery(policy: ServicePolicy) -> None:
    entered = [PhaseSpan(phase=RecoveryPhase.REMEDIATION, entered_at=NOW - timedelta(minutes=4))]
    s = state(phase=RecoveryPhase.REMEDIATION, failure_type=FailureType.DEPENDENCY_DOWN, phases=entered)
    step = recovery_plan(s, policy, NOW).current_step
    assert step is not None and step.remaining_s == 15 * 60 - 4 * 60  # dependency_down: 15 typical minutes
    overdue = s.model_copy(update={"phases": [entered[0].model_copy(update={"entered_at": NOW - timedelta(hours=1)})]})
    assert recovery_plan(overdue, policy, NOW).current_step.remaining_s == SEED_S  # type: ignore[union-attr]
    custom = policy.model_copy(update={"remediation": policy.remediation.model_copy(update={"escalate_after_s": 600})})
    assert recovery_plan(s, custom, NOW).current_step.remaining_s == 600 - 240  # type: ignore[union-attr]


def test_owner_is_the_claimant_else_the_last_human_to_steer_it(policy: ServicePolicy) -> None:
    audit = trail(
        ("reported", "watchdog-chat-primary-llm", {}),
        ("approved", "alice", {"gate": "ramp:10"}),
        ("refused", "mallory", {"control": "approve"}),
        ("phase", "system", {}),
    )
    assert recovery_plan(state(audit=audit), policy, NOW).owner == "alice"
    assert recovery_plan(state(audit=audit, owner="bob"), policy, NOW).owner == "bob"
    assert recovery_plan(state(audit=audit[:1]), policy, NOW).owner == UNASSIGNED


def test_a_rollback_sends_the_ramp_steps_back_to_pending(policy: ServicePolicy) -> None:
    before = recovery_plan(state(phase=RecoveryPhase.GRADUAL_RESTORE, ramp_step=2), policy, NOW)
    rollback = RollbackRecord(at=NOW, attempt=1, percent=50, reason="error rate 20%")
    after = recovery_plan(state(phase=RecoveryPhase.REMEDIATION, attempt=2, rollbacks=[rollback]), policy, NOW)
    assert before.progress > after.progress
    assert all(s.status is StepStatus.PENDING for s in after.steps if s.name.startswith("ramp:"))
    assert after.attempt == 2


def test_closed_incidents_are_done_or_skipped_and_have_no_eta(policy: ServicePolicy) -> None:
    done = recovery_plan(state(phase=RecoveryPhase.POST_MORTEM, outcome="recovered", closed_at=NOW), policy, NOW)
    assert done.progress == 100 and done.estimated_completion is None and done.remaining_s == 0
    assert done.completed_steps == ALL_STEPS
    spans = [PhaseSpan(phase=RecoveryPhase.DETECTION, entered_at=NOW)]
    alarm = recovery_plan(state(outcome="false_alarm", closed_at=NOW, phases=spans), policy, NOW)
    assert alarm.completed_steps == ["detection"] and alarm.progress == 100
    assert {s.status for s in alarm.steps[1:]} == {StepStatus.SKIPPED}


def test_without_a_policy_the_seed_ramp_is_assumed() -> None:
    plan = recovery_plan(state(), None, NOW)
    ramp = [s for s in plan.steps if s.name.startswith("ramp:")]
    assert [(s.percent, s.remaining_s) for s in ramp] == [(10, 300), (25, 300), (50, 600), (100, 0)]


def test_recovery_view_shows_the_latest_checks_and_the_steps_passed_this_attempt(policy: ServicePolicy) -> None:
    validation = {
        "verdict": "pass",
        "reason": "all recovery checks passed",
        "checks": [
            {"name": "health_endpoint", "passed": True, "threshold": 3, "actual": 3},
            {"name": "latency", "passed": True, "threshold": 500, "actual": 42.0},
            {"name": "error_rate", "passed": True, "threshold": 0.01, "actual": 0.0},
        ],
    }
    audit = trail(
        ("ramp_step_passed", "system", {"percent": 10.0, "error_rate": 0.3, "requests": 50.0}),  # before the rollback
        ("ramp_step_passed", "system", {"percent": 10.0, "error_rate": 0.0, "requests": 80.0}),
    )
    rollback = RollbackRecord(at=audit[0].at + timedelta(seconds=30), attempt=1, percent=25, reason="regressed")
    judgement = {"verdict": "wait", "reason": "5 requests at 25% < 20 needed", "metrics": {"rps": 1.5}}
    s = state(
        phase=RecoveryPhase.GRADUAL_RESTORE, ramp_step=1, ramp_percent=25, validation=validation, audit=audit,
        rollbacks=[rollback], last_judgement=judgement, soak_started_at=NOW - timedelta(seconds=10), attempt=2,
    )  # fmt: skip
    view = recovery_view(s, policy, NOW)
    checks = {c.name: c for c in view.checks}
    assert [c.name for c in view.checks] == ["health_endpoint", "latency", "error_rate", "throughput"]
    assert (checks["latency"].passed, checks["latency"].actual, checks["latency"].method) == (True, 42.0, "p99_under")
    assert checks["throughput"].when == "ramp" and checks["throughput"].actual == 1.5
    assert checks["throughput"].passed is (1.5 >= policy.recovery_checks.throughput_bar * 0.25)
    assert view.ramp[0].status is StepStatus.DONE and "80 requests" in view.ramp[0].result
    assert view.ramp[1].status is StepStatus.CURRENT and "wait" in view.ramp[1].result
    assert "soaking 10 of 60 s" in view.ramp[1].result
    assert view.remaining == ["ramp:25", "ramp:50", "ramp:100", "full_restore", "post_mortem"]
    assert view.validation_verdict == "pass" and view.rollbacks == 1


def test_details_and_postmortem_carry_the_plan(policy: ServicePolicy) -> None:
    audit = trail(("claim", "carol", {"reason": "mine"}))
    s = state(phase=RecoveryPhase.REMEDIATION, audit=audit, owner="carol", failure_type=FailureType.TIMEOUT)
    text = details_markdown(s, policy, NOW)
    assert "**Recovery plan** 33 % (4 steps done) · now `remediation` (may need a human) · **Owner** carol" in text
    assert "ETA " in text and "left: validation, ramp:10" in text
    assert "**Recovery plan**" in details_markdown(s)  # without a clock: as of the last audit entry
    closed = s.model_copy(update={"phase": RecoveryPhase.POST_MORTEM, "outcome": "recovered", "closed_at": NOW})
    markdown = render_postmortem(closed, policy)
    assert "## Recovery plan" in markdown and "100% done (12 of 12 steps), owner **carol**" in markdown
    assert "| remediation | Implement fix | no (may need a human) | done |" in markdown
    data = postmortem_json(closed, policy)
    assert data["recovery_plan"]["progress"] == 100 and data["recovery_plan"]["owner"] == "carol"
