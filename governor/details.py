"""What the Temporal UI shows of an incident: its search attribute values and its Markdown "current details".

Pure functions of the state (no Temporal import); the workflow upserts and sets them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from governor.incident import IncidentState
from governor.plan import StepStatus, recovery_plan
from governor.timeline import describe

if TYPE_CHECKING:
    from governor.policy import ServicePolicy


def search_attribute_values(s: IncidentState) -> dict[str, Any]:
    """Search attribute name -> value (names as governor/search_attributes.py registers them)."""
    values: dict[str, Any] = {
        "GovernorService": s.service,
        "GovernorDependency": s.dependency,
        "RecoveryPhase": str(s.phase),
        "FallbackTier": str(s.tier),
        "DegradationLevel": str(s.degradation_level),
        "AwaitingApproval": s.awaiting_approval,
        "RampPercent": s.ramp_percent,
    }
    if s.failure_type is not None:
        values["FailureType"] = str(s.failure_type)
    if s.severity is not None:
        values["Severity"] = str(s.severity)
    if s.drill_run is not None:  # only drills upsert it: older histories replay without the extra command
        values["GovernorDrill"] = True
    return values


def details_markdown(s: IncidentState, policy: ServicePolicy | None = None, now: datetime | None = None) -> str:
    """The UI's current details. `now` (the workflow's clock) dates the plan's ETA; without it the last audit entry's
    time stands in, so the text stays a pure function of the state."""
    when = now or (s.audit[-1].at if s.audit else s.detected_at)
    lines = [
        f"## {s.service}: {s.failure_type or 'failure'} on {s.dependency} ({s.severity or 'unclassified'})",
        "",
        f"**Phase** `{s.phase}` · **Tier** `{s.tier}` ({s.tier.quality_percentage} % quality) · "
        f"**Degradation** `{s.degradation_level}` · **Ramp** {s.ramp_percent} % · **Attempt** {s.attempt}",
    ]
    if s.served_tier is not None:
        lines += ["", f"**Served** most answers come from `{s.served_tier}` (the gateway falls through `{s.tier}`)"]
    if s.drill_run is not None:
        d = s.drill_run
        state = f"fault cleared {d.restored_at:%H:%M:%S} UTC" if d.restored_at else f"restores {d.ends_at:%H:%M:%S} UTC"
        lines += [
            "",
            f"**DRILL** by {d.requested_by}: {d.injection}; {state}. Notifications go to on-call and internal only; "
            + ("the status page follows the drill." if d.status_page else "the status page is left untouched."),
        ]
    if s.occurrence_id:
        lines += ["", f"**Occurrence** `{s.occurrence_id}`" + (f" (follows `{s.follows}`)" if s.follows else "")]
    if s.late_report_count:
        lines += [
            "",
            f"**Late reports**: {s.late_report_count}, arrived during the restore; they open the next occurrence.",
        ]
    if when is not None:
        plan = recovery_plan(s, policy, when)
        step = plan.current_step
        eta = f", ETA {plan.estimated_completion:%H:%M:%S} UTC" if plan.estimated_completion else ""
        doing = f" · now `{step.name}` ({'automated' if step.automated else 'may need a human'})" if step else ""
        left = [x.name for x in plan.steps if x.status is StepStatus.PENDING]
        lines += [
            "",
            f"**Recovery plan** {plan.progress:.0f} % ({len(plan.completed_steps)} steps done){doing} · "
            f"**Owner** {plan.owner}{eta}" + (f" · left: {', '.join(left)}" if left else ""),
        ]
    if s.reason:
        lines += ["", f"**Why**: {s.reason}"]
    span = s.tiers[-1] if s.tiers else None
    if span is not None and span.mode is not None:
        by = f" by {span.actor}" if span.human else ""
        lines += [
            "",
            f"**Transition** into `{span.tier}`: `{span.mode}`{by} ({'human' if span.human else 'no human'}; "
            f"told on `{span.mode.notification_channel}`)",
        ]
    if s.impact is not None:
        lines += ["", f"**Impact**: {s.impact.description}"]
        if s.impact.estimated_recovery_at is not None:
            lines.append(
                f"**Estimated recovery** {s.impact.estimated_recovery_minutes} min "
                f"(by {s.impact.estimated_recovery_at:%H:%M:%S} UTC)"
            )
    if s.blast_radius is not None:
        radius = s.blast_radius
        lines += ["", f"**Blast radius**: {radius.summary()}"]
        lines += [f"- `{a.service}`: {a.why}" for a in radius.services[:8]]
    if s.paused:
        lines += ["", '**Paused**: send the `resume` signal with `{"actor": "you"}` to continue.']
    if s.awaiting_human:
        lines += ["", '**Waiting for a human**: send `declare_remediated` with `{"actor": "you", "reason": "..."}`.']
    for g in s.pending_gates:
        gate_id = f'"gate_id": "{g.gate_id}", ' if g.gate_id else ""
        lines += [
            "",
            f"### Awaiting approval: `{g.gate}`" + (f" (id `{g.gate_id}`)" if g.gate_id else ""),
            f"{g.context}. Approvers: {', '.join(g.approvers)}. Deadline {g.deadline:%H:%M:%S} UTC"
            + (" (escalated)" if g.escalated else "")
            + (
                f". Approved so far by {', '.join(g.approved_by)}: a second, different approver is needed"
                if g.approved_by
                else ""
            ),
            f'Send the `approve` signal with `{{"gate": "{g.gate}", {gate_id}"approver": "<name>", "reason": "..."}}`',
        ]
    if s.rollbacks:
        rb = s.rollbacks[-1]
        lines += ["", f"**Last rollback** at {rb.percent} %: {rb.reason}"]
    lines += ["", "### Recent"]
    for e in s.audit[-6:]:
        lines.append(f"- {e.at:%H:%M:%S} {describe(e)}")
    if s.postmortem_path:
        lines += ["", f"**Post-mortem**: `{s.postmortem_path}`"]
    return "\n".join(lines)
