"""The seed's RecoveryPlan, derived from an incident's state: its steps (the nine phases, the ramp's steps in place of
gradual_restore), which are done, the progress, the owner and the estimated completion.

Pure (no Temporal import): `governor show`/`recovery`, `governor status`, the UI's current details and the post-mortem
all call `recovery_plan`, so they cannot disagree on how far a recovery is.

Estimates: a ramp step takes its policy soak time; remediation takes what is left of the failure type's typical
recovery time (or the policy's `remediation.escalate_after_s`); every other step the seed's 5 minutes
(`RecoveryPlan.get_estimated_completion`). Each step says which (`estimate_source`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from governor.audit import AuditAction
from governor.decisions import throughput_needed
from governor.enums import FailureType, RecoveryPhase
from governor.policy import Ramp

if TYPE_CHECKING:
    from governor.incident import IncidentState
    from governor.policy import ServicePolicy

SEED_MINUTES_PER_STEP = 5
"""The seed's `get_estimated_completion`: "Assume 5 minutes per step average"."""

PHASE_STEPS: dict[RecoveryPhase, str] = {
    RecoveryPhase.DETECTION: "Confirm and classify the failure",
    RecoveryPhase.ISOLATION: "Isolate failed component",
    RecoveryPhase.FALLBACK_ACTIVE: "Activate fallback",
    RecoveryPhase.DIAGNOSIS: "Diagnose root cause",
    RecoveryPhase.REMEDIATION: "Implement fix",
    RecoveryPhase.VALIDATION: "Validate fix (recovery checks)",
    RecoveryPhase.GRADUAL_RESTORE: "Gradual traffic restoration",
    RecoveryPhase.FULL_RESTORE: "Full restoration",
    RecoveryPhase.POST_MORTEM: "Post-mortem documentation",
}
"""Each phase's step, in the seed's words (`create_recovery_plan`), plus the detection step it leaves implicit."""

HUMAN_ACTIONS = frozenset(
    {
        AuditAction.APPROVED,
        AuditAction.REJECTED,
        AuditAction.FORCE_TIER,
        AuditAction.DECLARE_REMEDIATED,
        AuditAction.PAUSE,
        AuditAction.RESUME,
        AuditAction.ABORT,
        AuditAction.PROMOTE,
    }
)
"""Controls that make their sender the plan's owner when nobody claimed the incident."""

UNASSIGNED = "unassigned"


class StepStatus(StrEnum):
    DONE = "done"
    CURRENT = "current"
    PENDING = "pending"
    SKIPPED = "skipped"


class EstimateSource(StrEnum):
    SOAK = "soak"
    """the ramp step's soak time from the policy"""
    TYPICAL_RECOVERY = "typical_recovery"
    """the failure type's typical recovery minutes (or the policy's remediation deadline)"""
    SEED = "seed_5_min"
    """the seed's 5 minutes per step"""
    NONE = "none"
    """nothing left to do"""


class PlanStep(BaseModel):
    name: str
    """`detection` ... `post_mortem`; ramp steps are `ramp:<percent>` (the gate names)."""
    phase: RecoveryPhase
    description: str
    automated: bool
    """RecoveryPhase.automated: whether the seed says this phase runs without a human."""
    status: StepStatus
    percent: int | None = None
    remaining_s: float = 0.0
    estimate_source: EstimateSource = EstimateSource.NONE


class RecoveryPlan(BaseModel):
    """The seed's RecoveryPlan for one incident."""

    plan_id: str
    incident_id: str
    failure_type: FailureType | None
    current_phase: RecoveryPhase
    steps: list[PlanStep]
    completed_steps: list[str] = Field(default_factory=list)
    progress: float
    """Completed steps / steps to do, in percent (skipped steps, as after a false alarm, do not count)."""
    owner: str
    started_at: datetime | None
    remaining_s: float
    estimated_completion: datetime | None
    """None once the incident is closed."""
    attempt: int = 1

    @property
    def remaining_steps(self) -> list[PlanStep]:
        return [s for s in self.steps if s.status in (StepStatus.CURRENT, StepStatus.PENDING)]

    @property
    def current_step(self) -> PlanStep | None:
        return next((s for s in self.steps if s.status is StepStatus.CURRENT), None)


def plan_owner(state: IncidentState) -> str:
    """Who owns the recovery: whoever claimed it (`owner`), else whoever last approved or steered it, else nobody."""
    claimed = getattr(state, "owner", None)
    if claimed:
        return str(claimed)
    for entry in reversed(state.audit):
        if entry.action in HUMAN_ACTIONS and entry.actor and entry.actor != "system":
            return entry.actor
    return UNASSIGNED


def _remediation_s(state: IncidentState, policy: ServicePolicy | None, now: datetime) -> float:
    """What is left of the expected remediation time (never below the seed's 5 minutes once overdue)."""
    if policy is not None and policy.remediation.escalate_after_s is not None:
        budget = policy.remediation.escalate_after_s
    else:
        ftype = state.failure_type or FailureType.MODEL_UNAVAILABLE
        budget = ftype.typical_recovery_minutes * 60.0
    entered = next((p.entered_at for p in reversed(state.phases) if p.phase is RecoveryPhase.REMEDIATION), None)
    if state.phase is not RecoveryPhase.REMEDIATION or entered is None:
        return budget
    left = budget - (now - entered).total_seconds()
    return left if left > 0 else SEED_MINUTES_PER_STEP * 60.0


def recovery_plan(state: IncidentState, policy: ServicePolicy | None, now: datetime) -> RecoveryPlan:
    """The plan as it stands at `now`: steps done, the current one, what is left and when it should be over."""
    ramp = policy.ramp if policy is not None else Ramp()
    order = list(RecoveryPhase)
    current = order.index(state.phase)
    closed = state.closed_at is not None
    seed_s = SEED_MINUTES_PER_STEP * 60.0
    steps: list[PlanStep] = []
    for index, phase in enumerate(order):
        if phase is RecoveryPhase.GRADUAL_RESTORE:
            for i, step in enumerate(ramp.steps):
                if index < current or (index == current and i < state.ramp_step):
                    status = StepStatus.DONE
                elif index == current and i == state.ramp_step:
                    status = StepStatus.CURRENT
                else:
                    status = StepStatus.PENDING
                left = step.soak_s
                if status is StepStatus.CURRENT and state.soak_started_at is not None:
                    left = max(0.0, step.soak_s - (now - state.soak_started_at).total_seconds())
                steps.append(
                    PlanStep(
                        name=f"ramp:{step.percent}",
                        phase=phase,
                        description=f"{step.percent}% of traffic to the primary"
                        + (f", soak {step.soak_s:g} s" if step.soak_s else ""),
                        automated=phase.automated,
                        status=status,
                        percent=step.percent,
                        remaining_s=0.0 if status is StepStatus.DONE else left,
                        estimate_source=EstimateSource.NONE if status is StepStatus.DONE else EstimateSource.SOAK,
                    )
                )
            continue
        if index < current:
            status = StepStatus.DONE
        elif index == current:
            status = StepStatus.CURRENT
        else:
            status = StepStatus.PENDING
        if phase is RecoveryPhase.REMEDIATION:
            left, source = _remediation_s(state, policy, now), EstimateSource.TYPICAL_RECOVERY
        else:
            left, source = seed_s, EstimateSource.SEED
        steps.append(
            PlanStep(
                name=str(phase),
                phase=phase,
                description=PHASE_STEPS[phase],
                automated=phase.automated,
                status=status,
                remaining_s=0.0 if status is StepStatus.DONE else left,
                estimate_source=EstimateSource.NONE if status is StepStatus.DONE else source,
            )
        )
    if closed:
        # The incident is over: what it went through is done, what it never needed (a false alarm's) is skipped.
        visited = {p.phase for p in state.phases} | {state.phase}
        finished = state.outcome == "recovered"
        for s in steps:
            if s.status is StepStatus.DONE:
                continue
            went = finished or s.phase in visited
            s.status = StepStatus.DONE if went else StepStatus.SKIPPED
            s.remaining_s, s.estimate_source = 0.0, EstimateSource.NONE
    counted = [s for s in steps if s.status is not StepStatus.SKIPPED]
    done = [s.name for s in counted if s.status is StepStatus.DONE]
    remaining = sum(s.remaining_s for s in counted if s.status is not StepStatus.DONE)
    return RecoveryPlan(
        plan_id=f"REC-{state.incident_id}",
        incident_id=state.incident_id,
        failure_type=state.failure_type,
        current_phase=state.phase,
        steps=steps,
        completed_steps=done,
        progress=round(100.0 * len(done) / len(counted), 1) if counted else 0.0,
        owner=plan_owner(state),
        started_at=state.detected_at or (state.audit[0].at if state.audit else None),
        remaining_s=remaining,
        estimated_completion=None if closed else now + timedelta(seconds=remaining),
        attempt=state.attempt,
    )


def plan_line(plan: RecoveryPlan) -> str:
    """One line: progress, steps, owner, ETA (the UI's details, `governor status`)."""
    eta = f", ETA {plan.estimated_completion:%H:%M:%S} UTC" if plan.estimated_completion else ""
    return (
        f"{plan.progress:.0f}% ({len(plan.completed_steps)}/{len([s for s in plan.steps if s.status != 'skipped'])} "
        f"steps), owner {plan.owner}{eta}"
    )


# --------------------------------------------------------------------------- `governor recovery`


class CheckView(BaseModel):
    """One of the seed's RECOVERY_CHECKS with its latest result (None: not run yet)."""

    name: str
    method: str
    threshold: float
    passed: bool | None = None
    actual: float | None = None
    when: str = "validation"


class RampStepView(BaseModel):
    step: int
    percent: int
    soak_s: float
    status: StepStatus
    result: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)


class RecoveryView(BaseModel):
    """The seed's quick command `recovery`: the recovery checks and the restoration ramp with their latest results,
    what is left and the ETA."""

    incident_id: str
    plan: RecoveryPlan
    validation_verdict: str | None
    validation_reason: str = ""
    checks: list[CheckView]
    ramp: list[RampStepView]
    remaining: list[str]
    estimated_completion: datetime | None
    rollbacks: int = 0


SEED_CHECK_METHODS = {
    "health_endpoint": "consecutive_passes",
    "latency": "p99_under",
    "error_rate": "under_threshold",
    "throughput": "rps_above",
}


def recovery_view(state: IncidentState, policy: ServicePolicy | None, now: datetime) -> RecoveryView:
    from governor.policy import RecoveryChecks

    plan = recovery_plan(state, policy, now)
    rc = policy.recovery_checks if policy is not None else RecoveryChecks()
    ramp = policy.ramp if policy is not None else Ramp()
    thresholds = {
        "health_endpoint": float(rc.health_passes),
        "latency": rc.p99_ms,
        "error_rate": rc.error_rate,
        "throughput": rc.throughput_bar,
    }
    latest = {c["name"]: c for c in state.validation.get("checks", []) if isinstance(c, dict) and "name" in c}
    checks = []
    for name, method in SEED_CHECK_METHODS.items():
        seen = latest.get(name)
        view = CheckView(name=name, method=method, threshold=thresholds[name])
        if seen is not None:
            view.passed, view.actual = bool(seen.get("passed")), seen.get("actual")
            view.threshold = float(seen.get("threshold", view.threshold))
        elif name == "throughput":
            view.when = "ramp"  # judged on live traffic once the primary gets a share
            metrics = state.last_judgement.get("metrics", {})
            rps, offered = metrics.get("rps"), metrics.get("rps_offered")
            if rps is not None and state.phase is RecoveryPhase.GRADUAL_RESTORE:
                view.actual = float(rps)
                needed = throughput_needed(rc, state.ramp_percent, None if offered is None else float(offered))
                view.passed = float(rps) >= needed
        checks.append(view)
    passed = {
        e.details.get("percent"): e.details
        for e in state.audit
        if e.action == AuditAction.RAMP_STEP_PASSED and e.at >= _attempt_start(state)
    }
    by_name = {s.name: s for s in plan.steps}
    ramp_views = []
    for i, step in enumerate(ramp.steps):
        status = by_name[f"ramp:{step.percent}"].status
        metrics = {k: float(v) for k, v in (passed.get(step.percent) or {}).items() if isinstance(v, int | float)}
        result = ""
        if status is StepStatus.CURRENT and state.pending(f"ramp:{step.percent}") is not None:
            result = f"awaiting approval (ramp:{step.percent})"
        elif step.percent in passed and status is StepStatus.DONE:
            result = f"passed: error rate {metrics.get('error_rate', 0):.1%}, {metrics.get('requests', 0):g} requests"
        elif status is StepStatus.CURRENT and state.last_judgement:
            j = state.last_judgement
            result = f"last sample {j.get('verdict')}: {j.get('reason')}"
            metrics = {k: float(v) for k, v in j.get("metrics", {}).items() if isinstance(v, int | float)}
            if state.soak_started_at is not None:
                result += (
                    f" (soaking {max(0.0, (now - state.soak_started_at).total_seconds()):.0f} of {step.soak_s:g} s)"
                )
        ramp_views.append(
            RampStepView(
                step=i + 1, percent=step.percent, soak_s=step.soak_s, status=status, result=result, metrics=metrics
            )
        )
    return RecoveryView(
        incident_id=state.incident_id,
        plan=plan,
        validation_verdict=state.validation.get("verdict"),
        validation_reason=str(state.validation.get("reason", "")),
        checks=checks,
        ramp=ramp_views,
        remaining=[s.name for s in plan.remaining_steps],
        estimated_completion=plan.estimated_completion,
        rollbacks=len(state.rollbacks),
    )


def _attempt_start(state: IncidentState) -> datetime:
    """Steps passed before the last rollback do not count for the ramp now under way."""
    if state.rollbacks:
        return state.rollbacks[-1].at
    return datetime.min.replace(tzinfo=state.audit[0].at.tzinfo) if state.audit else datetime.min
