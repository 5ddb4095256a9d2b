"""Text for `governor status`, `chain`/`hierarchy` and `recovery`: the seed's FallbackReporter layout (rules, bars,
icons, the `→` current tier and `↓ (on failure)` between tiers) filled with what the gateways and Temporal say now."""

from __future__ import annotations

from datetime import datetime

from governor.plan import RecoveryPlan, RecoveryView, StepStatus
from governor.status_report import ChainView, StatusReport
from governor.timefmt import format_duration

RULE = "═" * 60
LINE = "  " + "─" * 40
STEP_ICONS = {StepStatus.DONE: "✓", StepStatus.CURRENT: "→", StepStatus.PENDING: "·", StepStatus.SKIPPED: "-"}


def bar(value: float, width: int = 20) -> str:
    """The seed's `_bar`: filled blocks for the share, light shade for the rest."""
    filled = max(0, min(width, int((value / 100) * width)))
    return "█" * filled + "░" * (width - filled)


def _eta(at: datetime | None) -> str:
    return f"{at:%H:%M:%S} UTC" if at else "-"


def _section(title: str) -> list[str]:
    return [f"  {title}", LINE]


def render_status(r: StatusReport) -> str:
    lines = ["", RULE, "       FALLBACK GOVERNANCE STATUS", RULE, f"  Timestamp: {r.timestamp.isoformat()}", RULE, ""]
    h = r.health
    lines += _section("SYSTEM HEALTH")
    lines += [
        "",
        f"  Health: {bar(r.health_percent, 25)} {r.health_percent:.0f}%",
        f"  Healthy: {h.healthy} | Degraded: {h.degraded} | Unhealthy: {h.unhealthy}"
        + (f" | Recovering: {h.recovering}" if h.recovering else "")
        + (f" | Unknown: {h.unknown}" if h.unknown else ""),
    ]
    for d in r.dependencies:
        why = f"  ({'; '.join(d.why)})" if d.why else ""
        lines.append(f"  {d.icon} {d.service}/{d.dependency}: {d.status.value.upper()} [{d.alert_level}]{why}")
    lines.append("")

    lines += _section("CURRENT STATE")
    lines.append(
        f"  Degradation Level: {r.degradation_level.value.upper()} (SLA impact {r.degradation_level.sla_impact})"
    )
    lines.append(f"  Active Incidents: {r.active_incidents}")
    for s in r.services:
        if s.tier is None:
            lines.append(f"  ? {s.service}: no gateway replica answered ({'; '.join(s.errors) or 'no gateways'})")
            continue
        level = s.degradation_level.value if s.degradation_level else "?"
        served = f"{s.tier.value} ({s.quality}% quality)"
        if s.primary_weight is not None and 0 < s.primary_weight < 100 and s.tier.rank > 0:
            served += f", {s.primary_weight:g}% to primary"
        replicas = f", {s.replicas_answering}/{s.replicas} replicas" if s.replicas > 1 or s.errors else ""
        lines.append(f"  {s.service}: serving {served}, degradation {level}{replicas}")
        if s.disagree:
            lines.append(f"    replicas serve from different tiers; the worst is shown ({'; '.join(s.errors)})")
        for e in s.errors:
            lines.append(f"    ? {e}")
    lines.append("")

    if r.active_fallbacks:
        lines += _section("ACTIVE FALLBACKS")
        for service, fb in r.active_fallbacks.items():
            extra = f", degradation {fb['degradation_level']}" if fb.get("degradation_level") else ""
            lines.append(f"  • {service}: {fb['tier']} ({fb['quality']}% quality){extra}")
    lines.append("")

    if r.circuit_breakers:
        lines += _section("CIRCUIT BREAKERS")
        for b in r.circuit_breakers:
            state = b.state.value.upper() if b.state else "UNKNOWN"
            forced = " (forced)" if b.mode in ("open", "closed") else ""
            lines.append(f"  {b.icon} {b.breaker_id}: {state}{forced}")
    lines.append("")

    if r.incidents:
        lines += _section("OPEN INCIDENTS")
        for i in r.incidents:
            how = "automated" if i.phase_automated else "may need a human"
            waiting = ", AWAITING APPROVAL" if i.awaiting_approval else ""
            lines.append(f"  • {i.incident_id}: {i.failure_type or 'failure'} ({i.severity or '?'}) on {i.tier.value}")
            lines.append(
                f"      phase {i.phase.value} ({how}){waiting}  {bar(i.progress, 20)} {i.progress:.0f}%  "
                f"owner {i.owner}, ETA {_eta(i.estimated_completion)}"
            )
        lines.append("")
    lines.append(RULE)
    return "\n".join(lines)


def render_chain_view(c: ChainView) -> str:
    lines = ["", f"  FALLBACK CHAIN: {c.service}", LINE, ""]
    if c.current_tier is None:
        lines.append(f"  (no gateway replica answered: {'; '.join(c.errors) or 'no gateways'}; no tier marked)")
    for t in c.tiers:
        marker = "→" if t.current else " "
        breaker = ""
        if t.breaker is not None:
            state = t.breaker.state.value.upper() if t.breaker.state else "UNKNOWN"
            forced = " forced" if t.breaker.mode in ("open", "closed") else ""
            breaker = f"  [{t.breaker.icon} breaker {state}{forced}]"
        lines.append(f"  {marker} TIER {t.index}: {t.provider}{breaker}")
        detail = f"       Quality: {t.quality}%  ({t.tier.value}, degradation {t.degradation_level.value}"
        if t.rps is not None:
            detail += f", {t.rps:.1f} rps, {t.error_rate or 0:.1%} errors"
        detail += ", approval to exit)" if t.approval_to_exit else ")"
        lines.append(detail)
        if t.index < len(c.tiers) - 1:
            lines.append("       ↓ (on failure)")
    if c.current_tier is not None and c.current_tier.rank > 0 and c.primary_weight and c.primary_weight < 100:
        lines.append(f"  ramp: {c.primary_weight:g}% of requests go to the primary first")
    if c.current_tier is not None and c.current_tier.value not in {t.tier.value for t in c.tiers}:
        lines.append(f"  → {c.current_tier.value}: no tier can answer; requests get the explicit 503")
    lines.append("")
    return "\n".join(lines)


def render_plan(plan: RecoveryPlan) -> list[str]:
    lines = []
    for s in plan.steps:
        how = "automated" if s.automated else "may need a human"
        left = f", ~{format_duration(s.remaining_s)} left ({s.estimate_source.value})" if s.remaining_s else ""
        lines.append(f"  {STEP_ICONS[s.status]} {s.name:<16} {s.description} [{how}]{left}")
    return lines


def plan_summary(plan: RecoveryPlan) -> str:
    todo = len([s for s in plan.steps if s.status is not StepStatus.SKIPPED])
    return (
        f"{bar(plan.progress, 20)} {plan.progress:.0f}% ({len(plan.completed_steps)}/{todo} steps), "
        f"owner {plan.owner}, ETA {_eta(plan.estimated_completion)}"
    )


def render_recovery(v: RecoveryView) -> str:
    p = v.plan
    how = "automated" if p.current_phase.automated else "may need a human"
    lines = [
        f"Recovery plan {p.plan_id}",
        f"  failure   {p.failure_type.value if p.failure_type else 'unclassified'}, phase {p.current_phase.value} "
        f"({how}), attempt {p.attempt}" + (f", {v.rollbacks} rollback(s)" if v.rollbacks else ""),
        f"  progress  {plan_summary(p)}",
        f"  left      {len(v.remaining)} step(s): {', '.join(v.remaining) or 'none'}"
        + (f"; about {format_duration(p.remaining_s)}" if p.remaining_s else ""),
        "",
        "Recovery checks"
        + (
            f" (latest validation: {v.validation_verdict}: {v.validation_reason})"
            if v.validation_verdict
            else " (not run yet)"
        ),
    ]
    for c in v.checks:
        icon = "?" if c.passed is None else ("✓" if c.passed else "✗")
        actual = "-" if c.actual is None else f"{c.actual:g}"
        lines.append(f"  {icon} {c.name:<16} {c.method:<18} threshold {c.threshold:g}  actual {actual}  ({c.when})")
    lines += ["", "Restoration ramp"]
    for s in v.ramp:
        soak = f"soak {format_duration(s.soak_s)}" if s.soak_s else "no soak"
        lines.append(
            f"  {STEP_ICONS[s.status]} step {s.step}  {s.percent:>3}%  {soak:<14} {s.status.value:<8} {s.result}"
        )
    lines += ["", "Plan", *render_plan(p)]
    return "\n".join(lines)
