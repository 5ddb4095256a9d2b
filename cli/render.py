"""Plain-text rendering: tables, an incident, a control's result, a fallback chain, a setup summary, the audit verdict."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cli.common import primary_dependency
from governor.enums import FallbackTier
from governor.impact_report import BLAST_HEADERS, TRANSITION_HEADERS, blast_rows, impact_lines, transition_rows
from governor.incident import ControlResult, IncidentState
from governor.policy import (
    ServicePolicy,
)
from governor.timefmt import format_duration, format_time
from governor.timeline import describe

LINE_BREAK = " ⏎ "
"""What a line break in a value becomes inside a table cell: a row stays one line, whatever the text holds."""


def one_line(text: str) -> str:
    """`text` on one line: its lines (blank ones dropped) joined by LINE_BREAK."""
    return LINE_BREAK.join(line.strip() for line in text.splitlines() if line.strip())


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value, missing="-")
    return one_line(str(value)) or "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None and '' show as '-'."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _short(value: Any, limit: int = 70) -> str:
    text = one_line(value) if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def approve_command(incident: str, gate: str, verb: str = "approve", gate_id: str = "") -> str:
    why = "why it is safe" if verb == "approve" else "why not"
    request = f" --gate-id {shlex.quote(gate_id)}" if gate_id else ""
    return f'governor {verb} {shlex.quote(incident)} --gate {shlex.quote(gate)}{request} --reason "{why}"'


def timeline_rows(state: IncidentState) -> list[list[Any]]:
    """The audit trail as timeline rows: time, offset from detection, actor, action, transition, what happened."""
    start = state.audit[0].at if state.audit else state.detected_at  # T+0 is the first report
    rows: list[list[Any]] = []
    for entry in state.audit:
        offset = f"+{format_duration(entry.at - start)}" if start else ""
        # Every entry records the phase it happened in; show only real transitions.
        if entry.previous_state:
            change = f"{entry.previous_state} -> {entry.new_state}"
        else:
            change = f"-> {entry.new_state}" if entry.action in {"phase", "tier"} else ""
        rows.append(
            [entry.at.strftime("%H:%M:%S"), offset, entry.actor, entry.action, change, _short(describe(entry), 90)]
        )
    return rows


def render_incident(state: IncidentState) -> str:
    """`governor show`: where the incident stands, what it waits for (with the exact command), and its timeline."""
    lines = [f"Incident {state.incident_id}  ({state.outcome})" + ("  DRILL" if state.drill_run else "")]
    failure = state.failure_type.value if state.failure_type else "unclassified"
    severity = f" ({state.severity.value})" if state.severity else ""
    flags = [f for f, on in (("PAUSED", state.paused), ("WAITING FOR A HUMAN", state.awaiting_human)) if on]
    facts: list[tuple[str, str]] = [
        ("occurrence", state.occurrence_id or "-"),
        ("service", f"{state.service} / {state.dependency}"),
        ("failure", f"{failure}{severity}" + (f": {state.reason}" if state.reason else "")),
        ("phase", state.phase.value + (f"  [{', '.join(flags)}]" if flags else "")),
        ("tier", f"{state.tier.value} ({state.tier.quality_percentage}% quality, failed: {state.failed_tier.value})"),
        (
            "degradation",
            f"{state.degradation_level.value} (SLA impact {state.degradation_level.sla_impact})"
            + (f": {state.degradation_level.user_message}" if state.degradation_level.user_message else ""),
        ),
        ("ramp", f"{state.ramp_percent}% to primary (step {state.ramp_step}, attempt {state.attempt})"),
        ("reports", str(max(state.report_count, len(state.reports)))),
        ("detected", format_time(state.detected_at, missing="-")),
        ("mitigated", format_time(state.mitigated_at, missing="-")),
        ("recovered", format_time(state.recovered_at, missing="-")),
    ]
    if state.drill_run:
        from governor.drill import render_drill_findings

        facts += [("drill" if i == 0 else "", line) for i, line in enumerate(render_drill_findings(state))]
        d = state.drill_run
        facts.append(
            (
                "drill fault",
                f"cleared {format_time(d.restored_at)}" if d.restored_at else f"until {format_time(d.ends_at)}",
            )
        )
    if state.follows:
        facts.append(("follows", f"{state.follows} (reports arrived during its restore)"))
    if state.late_report_count:
        facts.append(("late reports", f"{state.late_report_count} (they open the next occurrence at close)"))
    if state.rollbacks:
        last = state.rollbacks[-1]
        facts.append(("rollbacks", f"{len(state.rollbacks)} (last at {last.percent}%: {last.reason})"))
    if state.forced_tier:
        facts.append(("forced tier", state.forced_tier.value))
    if state.postmortem_path:
        facts.append(("post-mortem", state.postmortem_path))
    facts += [(k, v) for k, _, v in (line.partition(": ") for line in impact_lines(state))]
    width = max(len(k) for k, _ in facts)
    hang = "\n" + " " * (width + 4)  # a value's further lines start under its first (a multi-line reason or summary)
    lines += [f"  {k.ljust(width)}  " + hang.join(v.splitlines() or [""]) for k, v in facts]
    if state.blast_radius is not None and state.blast_radius.services:
        lines += ["", "Blast radius", indent(render_table(BLAST_HEADERS, blast_rows(state.blast_radius)))]
    if state.tiers:
        lines += ["", "Tier transitions", indent(render_table(TRANSITION_HEADERS, transition_rows(state)))]

    lines.append("")
    if state.pending_gates:
        lines.append("Pending gates")
        rows = [
            [
                g.gate,
                g.gate_id or "-",
                g.requested_at,
                g.deadline,
                ", ".join(g.approvers) + (f" (approved by {', '.join(g.approved_by)})" if g.approved_by else ""),
                g.escalated,
                g.context,
            ]
            for g in state.pending_gates
        ]
        headers = ["gate", "id", "requested", "deadline", "approvers", "escalated", "why"]
        lines.append(indent(render_table(headers, rows)))
        for g in state.pending_gates:
            lines.append(f"  approve {g.gate}:  {approve_command(state.incident_id, g.gate, gate_id=g.gate_id)}")
            lines.append(f"  reject  {g.gate}:  {approve_command(state.incident_id, g.gate, 'reject', g.gate_id)}")
    else:
        lines.append("Pending gates: none")

    lines.append("")
    if state.audit:
        lines.append(f"Timeline ({len(state.audit)} audit entries)")
        rows = timeline_rows(state)
        lines.append(indent(render_table(["time", "offset", "actor", "action", "change", "what happened"], rows)))
    else:
        lines.append("Timeline: no audit entries yet")
    return "\n".join(lines)


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def render_result(incident: str, control: str, result: ControlResult) -> str:
    ids = result.pending_gate_ids or [""] * len(result.pending_gates)
    pending = ", ".join(f"{g} (id {i})" if i else g for g, i in zip(result.pending_gates, ids, strict=False)) or "none"
    return (
        f"{result.message or control + ' accepted'}\n"
        f"  {incident}: phase {result.phase.value}, tier {result.tier.value}, ramp {result.ramp_percent}%, "
        f"pending gates: {pending}"
    )


def render_timeline_summary(state: IncidentState) -> str:
    """The post-mortem fallback when governor.postmortem is not available: key times and the timeline."""
    failure = state.failure_type.value if state.failure_type else "unclassified failure"
    lines = [
        f"# Post-mortem (timeline only): {state.service} / {state.dependency}",
        "",
        f"Incident `{state.incident_id}`: {failure}, outcome **{state.outcome}**.",
        "",
    ]
    start = state.detected_at
    for label, at in (
        ("Detected", state.detected_at),
        ("Mitigated", state.mitigated_at),
        ("Recovered", state.recovered_at),
        ("Closed", state.closed_at),
    ):
        after = f" (+{format_duration(at - start)})" if at and start and label != "Detected" else ""
        lines.append(f"- {label}: {format_time(at)}{after}")
    lines += [
        "",
        "## Timeline",
        "",
        "| time | offset | actor | action | change | what happened |",
        "|---|---|---|---|---|---|",
    ]
    for row in timeline_rows(state):
        lines.append("| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def chain_rows(policy: ServicePolicy) -> list[dict[str, Any]]:
    rows = []
    for spec in policy.chain:
        tier = spec.tier
        if spec.upstream:
            serves = spec.upstream
        elif tier is FallbackTier.TIER_2_CACHE:
            serves = f"cache (ttl {spec.ttl_s}s)"
        elif tier is FallbackTier.TIER_4_STATIC:
            serves = f"static answer (HTTP {spec.status})"
        else:
            serves = "explicit error (503)"
        rows.append(
            {
                "tier": tier.value,
                "serves": serves,
                "quality_percentage": tier.quality_percentage,
                "latency_multiplier": tier.latency_multiplier,
                "degradation_level": policy.degradation.level_for(tier).value,
                "approval_to_exit": policy.approvals.is_gated(f"exit:{tier.value}"),
                "approval_to_enter": policy.approvals.is_gated(f"enter:{tier.value}"),
            }
        )
    return rows


def render_chain(policy: ServicePolicy) -> str:
    rows = [
        [
            r["tier"],
            r["serves"],
            f"{r['quality_percentage']}%",
            f"{r['latency_multiplier']}x",
            r["degradation_level"],
            r["approval_to_exit"],
        ]
        for r in chain_rows(policy)
    ]
    table = render_table(["tier", "serves", "quality", "latency", "degradation", "approval to exit"], rows)
    return f"Fallback chain of {policy.service} (on failure, each tier falls through to the next)\n" + indent(table)


def render_setup(policy: ServicePolicy) -> str:
    lines = [f"Service {policy.service}: policy valid", ""]
    lines.append("Dependencies")
    rows = [
        [d.name, d.type, d.tier.value if d.tier else "tier_0_primary", d.health_url, f"{d.timeout_ms} ms", d.retries]
        for d in policy.dependencies
    ]
    lines.append(indent(render_table(["name", "type", "backs", "health url", "timeout", "retries"], rows)))
    lines += ["", render_chain(policy), ""]
    steps = " > ".join(f"{s.percent}% ({format_duration(s.soak_s)})" for s in policy.ramp.steps)
    lines.append(f"Ramp back to primary: {steps}")
    lines.append(
        f"Rollback when the primary's error rate > {policy.rollback.error_rate:.0%} during a step; "
        f"after {policy.rollback.max_attempts} attempts wait for a human"
    )
    gates = ", ".join(policy.approvals.gates) or "none"
    lines.append(
        f"Approval gates: {gates}; approvers: {', '.join(policy.approvals.approvers)}"
        + ("; four-eyes" if policy.approvals.four_eyes else "")
    )
    lines.append(f"Gateways: {', '.join(policy.gateways)}")
    dep = primary_dependency(policy)
    lines += ["", f"Try it: governor simulate --service {policy.service} --dependency {dep} --type model_unavailable"]
    return "\n".join(lines)


def summary_rows(incidents: list[Any]) -> list[list[Any]]:
    return [
        [
            i.incident_id + (" (drill)" if getattr(i, "drill", False) else ""),
            i.failure_type.value if i.failure_type else None,
            i.severity.value if i.severity else None,
            i.phase.value if i.phase else None,
            i.tier.value if i.tier else None,
            f"{i.ramp_percent}%" if i.ramp_percent is not None else None,
            "WAITING" if i.awaiting_approval else "",
            i.status,
            i.started_at,
        ]
        for i in incidents
    ]
