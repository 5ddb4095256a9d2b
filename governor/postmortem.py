"""The post-mortem of one incident, rendered from the workflow's state: pure, so the activity and the CLI share it.

Every figure counts from one origin, the failure's start: the earliest sign of it any report names (a watchdog's
first failing check, an alert's `startsAt`, a report's own time), else the first report's arrival, else detection.
MTTD = detected (the governor confirmed it) - start, time to mitigate = fallback serving - start,
MTTR = primary restored - start, total duration = closed - start (an open incident is "open for X so far").
The demo's summary counts from the fault it injects; `governor up --demo` prints both, and `fault -> X` equals
`fault -> failure started` plus the figure here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from governor.audit import AuditAction, verify_chain
from governor.drill import drill_findings, render_drill_findings
from governor.enums import FallbackTier, RecoveryPhase
from governor.impact_report import postmortem_sections
from governor.incident import IncidentState
from governor.plan import RecoveryPlan, recovery_plan
from governor.policy import ServicePolicy
from governor.timefmt import format_duration
from governor.timefmt import format_time as _ts
from governor.timeline import describe

FIGURES: dict[str, str] = {
    "failure started": "the earliest sign of the failure a report names (a watchdog's first failing check, an "
    "alert's startsAt, else the report's time); every figure below counts from it",
    "MTTD (time to detect)": "failure started -> the governor confirmed the failure (detection re-probed it)",
    "time to mitigate": "failure started -> a fallback tier served the traffic",
    "MTTR (time to restore)": "failure started -> the primary served all traffic again",
    "total duration": "failure started -> the incident closed (post-mortem written)",
    "open for": "failure started -> now: the incident is still open",
}
"""What each key time measures, as the post-mortem (and the demo's summary) say it."""


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _cell(value: Any, limit: int = 160) -> str:
    """One Markdown table cell: no pipes or newlines, bounded length."""
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class FailureStart:
    at: datetime | None
    source: str
    """Where the time comes from, e.g. `watchdog: first failing check`."""


def failure_start(state: IncidentState) -> FailureStart:
    """The origin of every figure: the earliest of the reports' `failing_since` and `reported_at`, never after the
    first report arrived (a reporter's clock may run ahead); else that arrival; else detection."""
    candidates: list[tuple[datetime, str]] = []
    for r in state.reports:
        if r.failing_since is not None:
            candidates.append((r.failing_since, f"{r.source}: first failing check"))
        if r.reported_at is not None:
            candidates.append((r.reported_at, f"{r.source}: reported at"))
    arrived = next((e.at for e in state.audit if e.action == AuditAction.REPORTED), None)
    if arrived is not None:
        candidates.append((arrived, "first report received"))
    if not candidates:
        return FailureStart(state.detected_at, "detection (no report carried a time)")
    at, source = min(candidates, key=lambda c: c[0])
    return FailureStart(at, source)


def failure_started_at(state: IncidentState) -> datetime | None:
    return failure_start(state).at


def _end_of(state: IncidentState, now: datetime | None) -> datetime | None:
    """Where open spans end: the close, else `now`, else the latest time the state knows."""
    if state.closed_at is not None:
        return state.closed_at
    if now is not None:
        return now
    known = [e.at for e in state.audit] + [t for t in (state.recovered_at, state.mitigated_at, state.detected_at) if t]
    return max(known) if known else None


def incident_metrics(state: IncidentState, now: datetime | None = None) -> dict[str, float | None]:
    """MTTD, time to mitigate, MTTR and duration (to the close, or to `now` while open), in seconds from the
    failure's start (None when that point was never reached)."""
    start = failure_started_at(state)
    return {
        "mttd_s": _seconds(start, state.detected_at),
        "time_to_mitigate_s": _seconds(start, state.mitigated_at),
        "mttr_s": _seconds(start, state.recovered_at),
        "duration_s": _seconds(start, _end_of(state, now)),
    }


def time_in_phases(state: IncidentState, now: datetime | None = None) -> dict[RecoveryPhase, float]:
    """Seconds spent in each phase, in phase order (a phase entered twice, e.g. after a rollback, adds up)."""
    end = _end_of(state, now)
    totals: dict[RecoveryPhase, float] = {}
    for span in state.phases:
        totals[span.phase] = totals.get(span.phase, 0.0) + (_seconds(span.entered_at, span.left_at or end) or 0.0)
    return {p: totals[p] for p in RecoveryPhase if p in totals}


def time_in_tiers(state: IncidentState, now: datetime | None = None) -> dict[FallbackTier, float]:
    """Seconds clients were served from each tier: the pinned tiers' spans, except the stretches where most answers
    came from a worse tier than the pin (audit `tier_served`), which count on the tier that served them."""
    if not state.tiers:
        return {}
    end = state.tiers[-1].left_at or _end_of(state, now)
    known = {t.value for t in FallbackTier}
    marks = [(span.entered_at, 0, span.tier) for span in state.tiers]
    marks += [
        (e.at, 1, FallbackTier(e.details["served"]))
        for e in state.audit
        if e.action == AuditAction.TIER_SERVED and "refused" not in e.details and e.details.get("served") in known
    ]
    marks.sort(key=lambda m: (m[0], m[1]))
    totals: dict[FallbackTier, float] = {}
    for (at, _, tier), after in zip(marks, [*marks[1:], None], strict=True):
        until = after[0] if after is not None else end
        totals[tier] = totals.get(tier, 0.0) + (_seconds(at, until) or 0.0)
    return {t: totals[t] for t in FallbackTier if t in totals}


def follow_ups(state: IncidentState, policy: ServicePolicy) -> list[str]:
    """Action items the incident itself suggests; on-call adds their own as notes."""
    items: list[str] = []
    ftype = state.failure_type
    if ftype is not None and state.outcome != "false_alarm":
        items.append(f"Find and fix the root cause of the {ftype.value} on {state.dependency}.")
        if ftype.requires_manual_intervention:
            items.append(f"{ftype.value} needs a human by nature: check the runbook covers it.")
    if state.outcome == "false_alarm":
        items.append("Tune the alert or watchdog that reported this: the failure did not reproduce.")
    if state.rollbacks:
        items.append(
            f"Review why the ramp rolled back {len(state.rollbacks)} time(s) "
            f"(last at {state.rollbacks[-1].percent}%: {state.rollbacks[-1].reason})."
        )
    missed = [n for n in state.notifications if not n.within_sla]
    if missed:
        who = ", ".join(sorted({f"{n.audience.value} via {n.channel}" for n in missed}))
        items.append(f"{len(missed)} notification(s) missed their SLA or failed ({who}): check the routes.")
    rejected = [d for d in state.decisions if not d.approved]
    if rejected:
        items.append(f"Discuss the rejected gate(s): {', '.join(sorted({d.gate for d in rejected}))}.")
    if any(g.escalated for g in state.pending_gates):
        items.append("An approval escalated past its deadline: check the approver rota.")
    if state.forced_tier is not None or any(e.action == "force_tier" for e in state.audit):
        items.append("A tier was forced by hand: decide whether the policy's chain should change.")
    if state.outcome == "aborted":
        items.append("The recovery was aborted: record why and what finished it.")
    worst_tier = max((s.tier for s in state.tiers), key=lambda t: t.rank, default=None)
    if worst_tier is not None and worst_tier.rank >= FallbackTier.TIER_3_DEGRADED.rank:
        items.append(
            f"Users got {worst_tier.value} ({worst_tier.quality_percentage}% quality): "
            "is a better fallback tier affordable?"
        )
    return items


def plan_of(state: IncidentState, policy: ServicePolicy, now: datetime | None = None) -> RecoveryPlan | None:
    """The incident's recovery plan as of its end (or `now` while it is open); None before anything happened."""
    at = _end_of(state, now)
    return recovery_plan(state, policy, at) if at is not None else None


def _plan_section(state: IncidentState, policy: ServicePolicy, now: datetime | None) -> list[str]:
    plan = plan_of(state, policy, now)
    if plan is None:
        return []
    phases = time_in_phases(state, now)
    eta = f"; estimated completion {_ts(plan.estimated_completion)}" if plan.estimated_completion else ""
    out = [
        "## Recovery plan",
        "",
        f"Plan `{plan.plan_id}`: {plan.progress:.0f}% done ({len(plan.completed_steps)} of "
        f"{len([s for s in plan.steps if s.status != 'skipped'])} steps), owner **{plan.owner}**{eta}.",
        "",
        "| step | what | automated | status | time in phase |",
        "|---|---|---|---|---|",
    ]
    for s in plan.steps:
        spent = phases.get(s.phase) if not s.name.startswith("ramp:") else None
        out.append(
            f"| {s.name} | {_cell(s.description)} | {'yes' if s.automated else 'no (may need a human)'} | {s.status.value} "
            f"| {format_duration(spent) if spent is not None else '-'} |"
        )
    return [*out, ""]


def postmortem_json(state: IncidentState, policy: ServicePolicy, now: datetime | None = None) -> dict[str, Any]:
    """The machine-readable post-mortem: the metrics, the summaries, and the full state it was made from."""
    return {
        "incident_id": state.incident_id,
        "service": state.service,
        "dependency": state.dependency,
        "outcome": state.outcome,
        "failure_type": state.failure_type.value if state.failure_type else None,
        "severity": state.severity.value if state.severity else None,
        "reason": state.reason,
        "failure_started_at": _iso(failure_started_at(state)),
        "failure_start_source": failure_start(state).source,
        "open": state.closed_at is None,
        "metrics": incident_metrics(state, now),
        "metrics_measure": {
            "mttd_s": FIGURES["MTTD (time to detect)"],
            "time_to_mitigate_s": FIGURES["time to mitigate"],
            "mttr_s": FIGURES["MTTR (time to restore)"],
            "duration_s": FIGURES["total duration" if state.closed_at is not None else "open for"],
        },
        "time_in_phase_s": {p.value: s for p, s in time_in_phases(state, now).items()},
        "time_in_tier_s": {t.value: s for t, s in time_in_tiers(state, now).items()},
        "tier_transitions": [
            {**s.model_dump(mode="json"), "human": s.human, "channel": s.mode.notification_channel if s.mode else None}
            for s in state.tiers
        ],
        "blast_radius": state.blast_radius.model_dump(mode="json") if state.blast_radius else None,
        "impact": state.impact.model_dump(mode="json") if state.impact else None,
        "approvals": [d.model_dump(mode="json") for d in state.decisions],
        "rollbacks": [r.model_dump(mode="json") for r in state.rollbacks],
        "notifications": [{**n.model_dump(mode="json"), "within_sla": n.within_sla} for n in state.notifications],
        "notes": state.notes,
        "follow_ups": follow_ups(state, policy),
        "recovery_plan": plan.model_dump(mode="json") if (plan := plan_of(state, policy, now)) else None,
        "audit_chain_intact": verify_chain(state.audit) is None,
        "drill": drill_findings(state),
        "state": state.model_dump(mode="json"),
    }


def key_times(state: IncidentState, metrics: dict[str, float | None], now: datetime | None) -> list[str]:
    """The key-times table: each figure, its value, when it happened and what it measures."""
    start = failure_start(state)
    rows = [
        (
            "failure started",
            _ts(start.at, "unknown"),
            _ts(start.at, "unknown"),
            f"{FIGURES['failure started']}; here: {start.source}",
        ),
        ("MTTD (time to detect)", format_duration(metrics["mttd_s"]), _ts(state.detected_at), None),
        ("time to mitigate", format_duration(metrics["time_to_mitigate_s"]), _ts(state.mitigated_at), None),
        ("MTTR (time to restore)", format_duration(metrics["mttr_s"]), _ts(state.recovered_at), None),
    ]
    if state.closed_at is not None:
        rows.append(("total duration", format_duration(metrics["duration_s"]), _ts(state.closed_at), None))
    else:
        so_far = format_duration(metrics["duration_s"], "unknown")
        if now is not None:
            rows.append(("open for", f"{so_far} so far", _ts(now), None))
        else:  # no clock given: the span to the last thing the state knows
            rows.append(("open for", f"{so_far} up to its last event", "not closed", None))
    out = ["## Key times", "", "| figure | value | at | what it measures |", "|---|---|---|---|"]
    out += [
        f"| {name} | {value} | {at} | {_cell(measures or FIGURES[name], 300)} |" for name, value, at, measures in rows
    ]
    out.append("")
    return out


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _details(details: dict[str, Any]) -> str:
    if not details:
        return ""
    return ", ".join(f"{k}={json.dumps(v, default=str) if not isinstance(v, str) else v}" for k, v in details.items())


def render_postmortem(state: IncidentState, policy: ServicePolicy, now: datetime | None = None) -> str:
    """The Markdown post-mortem: summary, key times, time per phase and tier, approvals, rollbacks, notifications,
    notes, follow-ups and the audited timeline."""
    metrics = incident_metrics(state, now)
    ftype = state.failure_type.value if state.failure_type else "unclassified failure"
    severity = f" ({state.severity.value})" if state.severity else ""
    drill = " (DRILL)" if state.drill_run else ""
    out: list[str] = [f"# Post-mortem{drill}: {state.service}: {ftype} on {state.dependency}{severity}", ""]
    if state.drill_run:
        out += ["## What the drill found", "", *(f"- {line}" for line in render_drill_findings(state)), ""]

    out += [
        "## Summary",
        "",
        f"- Incident: `{state.incident_id}`, occurrence `{state.occurrence_id or '-'}`"
        + (f" (follows `{state.follows}`)" if state.follows else ""),
        f"- Outcome: **{state.outcome}**",
        f"- What happened: {state.reason or 'n/a'}",
        f"- Failed tier: {state.failed_tier.value}; final tier: {state.tier.value} "
        f"({state.tier.quality_percentage}% quality); degradation: {state.degradation_level.value}",
        f"- Ramp attempts: {state.attempt} of {policy.rollback.max_attempts}; rollbacks: {len(state.rollbacks)}",
        f"- Reports: {max(state.report_count, len(state.reports))} (sources: {', '.join(sorted({r.source for r in state.reports})) or 'none'})",
    ]
    if state.late_report_count:
        out.append(
            f"- Late reports: {state.late_report_count} arrived after the full restore began; they open the next "
            "occurrence of this incident (its own post-mortem)"
        )
    summary = state.evidence.get("summary") if isinstance(state.evidence, dict) else None
    if summary:
        out += ["", "### Evidence at diagnosis", "", "```", str(summary), "```"]
    out.append("")

    out += key_times(state, metrics, now)

    out += _plan_section(state, policy, now)
    phases = time_in_phases(state, now)
    out += ["## Time in each phase", "", "| phase | time |", "|---|---|"]
    out += [f"| {p.value} | {format_duration(s)} |" for p, s in phases.items()] or ["| (none recorded) | |"]
    out.append("")
    tiers = time_in_tiers(state, now)
    out += ["## Time in each tier", "", "| tier | quality | time |", "|---|---|---|"]
    out += [f"| {t.value} | {t.quality_percentage}% | {format_duration(s)} |" for t, s in tiers.items()] or [
        "| (none recorded) | | |"
    ]
    out.append("")

    out += postmortem_sections(state)

    out += ["## Approvals", ""]
    if state.decisions:
        out += ["| gate | decision | approver | at | reason |", "|---|---|---|---|---|"]
        out += [
            f"| {_cell(d.gate + (f' ({d.gate_id})' if d.gate_id else ''))} | {'approved' if d.approved else 'rejected'} "
            f"| {_cell(', '.join(d.approved_by) or d.approver)} | {_ts(d.at)} "
            f"| {_cell(d.reason or '-')} |"
            for d in state.decisions
        ]
    else:
        out.append("No gated step was decided.")
    if state.pending_gates:
        out += ["", "Still pending at close: " + ", ".join(f"`{g.gate}`" for g in state.pending_gates)]
    out.append("")

    out += ["## Rollbacks", ""]
    if state.rollbacks:
        out += ["| at | attempt | step | reason | metrics | by |", "|---|---|---|---|---|---|"]
        for r in state.rollbacks:
            shown = ", ".join(
                f"{k} {v:.1%}" if k == "error_rate" else f"{k} {v:g}" for k, v in sorted(r.metrics.items())
            )
            out.append(
                f"| {_ts(r.at)} | {r.attempt} | {r.percent}% | {_cell(r.reason)} | {_cell(shown or '-')} "
                f"| {_cell(r.actor)} |"
            )
    else:
        out.append("No rollback.")
    out.append("")

    out += ["## Notifications", ""]
    if state.notifications:
        out += [
            "| audience | channel | event | due | sent | SLA |",
            "|---|---|---|---|---|---|",
        ]
        for n in state.notifications:
            if n.within_sla:
                verdict = "met"
            elif not n.ok:
                verdict = f"FAILED: {n.error or 'not delivered'}"
            else:
                late = _seconds(n.due_at, n.sent_at)
                verdict = f"missed by {format_duration(late)}"
            out.append(
                f"| {n.audience.value} ({n.audience.sla_minutes} min) | {_cell(n.channel)} | {_cell(n.event)} "
                f"| {_ts(n.due_at)} | {_ts(n.sent_at)} | {_cell(verdict)} |"
            )
        met = sum(1 for n in state.notifications if n.within_sla)
        out += ["", f"{met}/{len(state.notifications)} notifications met their audience's SLA."]
    else:
        out.append("No notification was sent.")
    out.append("")

    out += ["## Notes", ""]
    if state.notes:
        for note in state.notes:
            author = note.get("author") or note.get("actor") or "someone"
            at = note.get("at")
            when = f" ({at})" if at else ""
            text = note.get("text") or json.dumps({k: v for k, v in note.items() if k not in {"author", "at"}})
            out.append(f"- **{author}**{when}: {text}")
    else:
        out.append("No notes.")
    out.append("")

    out += ["## Follow-ups", ""]
    out += [f"- [ ] {item}" for item in follow_ups(state, policy)] or ["- [ ] (none suggested)"]
    out.append("")

    broken = verify_chain(state.audit)
    chain = "intact" if broken is None else f"BROKEN at entry {broken}"
    out += [
        "## Timeline",
        "",
        f"Audit trail: {len(state.audit)} entries, hash chain {chain}.",
        "",
        "| # | at | actor | action | from → to | what happened | details | checksum |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in state.audit:
        move = f"{e.previous_state} → {e.new_state}" if (e.previous_state or e.new_state) else ""
        out.append(
            f"| {e.seq} | {_ts(e.at)} | {_cell(e.actor)} | {_cell(e.action)} | {_cell(move)} "
            f"| {_cell(describe(e))} | {_cell(_details(e.details))} | `{e.checksum}` |"
        )
    out.append("")
    return "\n".join(out)
