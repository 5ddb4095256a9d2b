"""Drills (game days): a failure injected on purpose into a healthy service, recovered by the real workflow.

`governor simulate --drill` reports a failure carrying a `DrillRequest`; the workflow (workflows/drilling.py) forces
the failed tier's breaker open in every gateway replica, runs every phase with real traffic on the fallback, tells
only on-call and internal audiences, leaves the status page alone unless `drills.status_page` says otherwise, and
hands the breaker back when the drill's duration is up, so validation and the ramp run as in a real incident.
The incident's `drill` record says what the drill found (`drill_findings`), for the CLI, the UI and the post-mortem.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from governor.enums import NotificationAudience

if TYPE_CHECKING:
    from governor.incident import IncidentState

DRILL_PATCH = "drills"
"""The `workflow.patched` id of the drill behaviour (histories recorded before it never call it)."""

DRILL_AUDIENCES = frozenset({NotificationAudience.ONCALL, NotificationAudience.INTERNAL})
"""The only audiences a drill tells: never users, customers, the public or leadership."""

MAX_DRILL_S = 3600.0


class DrillRequest(BaseModel):
    """What `governor simulate --drill` asks for: how long the injected failure lasts, and who runs the drill."""

    duration_s: float = Field(default=60.0, gt=0, le=MAX_DRILL_S)
    requested_by: str = Field(default="governor simulate", min_length=1, max_length=128)


class DrillRecord(BaseModel):
    """The drill an incident is: what was injected, when it ends and ended, and what the gateways saw meanwhile.

    A drill also sets `state.drill`, the hook that makes its tier transitions `scheduled`."""

    requested_by: str
    duration_s: float
    injection: str
    """What was injected, e.g. `breaker tier_0_primary forced open in 2 gateway replica(s)`."""
    fault_url: str | None = None
    """Injected through this control API (the policy's `drills.faults`); None: the breaker was forced open."""
    fault_clear: dict[str, Any] = Field(default_factory=dict)
    """The body that clears the fault again (PUT to `fault_url` when the drill's duration is up)."""
    detected: bool = True
    """Detection confirmed the injected failure (a fault injected through a control API is probed for real)."""
    injected_at: datetime
    ends_at: datetime
    status_page: bool = False
    """The policy lets the drill change the status page (`drills.status_page`); by default it is left untouched."""
    restored_at: datetime | None = None
    """When the workflow handed the injected fault back (the breaker to its rules)."""
    ended_early_by: str | None = None
    """On-call declared the drill's dependency remediated before its duration was up."""
    stats_window_s: int | None = None
    requests: dict[str, int] = Field(default_factory=dict)
    """Requests each tier served (attempted) over the drill, from every replica's stats window."""
    client_errors: int | None = None
    """Requests that failed for clients over the drill (the gateway's explicit `tier_5_error` answers); None: the
    stats could not be read (`stats_error` says why)."""
    stats_error: str = ""
    suppressed: dict[str, int] = Field(default_factory=dict)
    """Notifications the drill did not send, by audience (customers, public, users, leadership never hear of it)."""


def drill_audiences(d: DrillRecord | None, audiences: list[NotificationAudience]) -> list[NotificationAudience]:
    """Who a notification reaches: everyone asked outside a drill; during one only on-call and internal (an escalation
    meant for others goes to on-call), the others counted in `d.suppressed`."""
    if d is None:
        return audiences
    kept = [a for a in audiences if a in DRILL_AUDIENCES]
    for audience in audiences:
        if audience not in DRILL_AUDIENCES:
            d.suppressed[str(audience)] = d.suppressed.get(str(audience), 0) + 1
    if audiences and not kept:
        kept = [NotificationAudience.ONCALL]
    return kept


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round(max(0.0, (end - start).total_seconds()), 1)


def gates_waited(s: IncidentState) -> list[dict[str, Any]]:
    """Every gate requested during the incident: when it was asked, how long it waited, who decided."""
    out: list[dict[str, Any]] = []
    for entry in s.audit:
        if str(entry.action) != "approval_requested":
            continue
        gate = str(entry.details.get("gate", ""))
        decided = next((d for d in s.decisions if d.gate == gate and d.at >= entry.at), None)
        out.append(
            {
                "gate": gate,
                "requested_at": entry.at.isoformat(),
                "waited_s": _seconds(entry.at, decided.at if decided else None),
                "decision": ("approved" if decided.approved else "rejected") if decided else "pending",
                "by": decided.approver if decided else None,
            }
        )
    return out


def drill_findings(s: IncidentState) -> dict[str, Any] | None:
    """What the drill found, as figures (None when the incident is no drill)."""
    d = s.drill_run
    if d is None:
        return None
    fell_back = next((t.entered_at for t in s.tiers if t.tier is not s.failed_tier), None)
    return {
        "requested_by": d.requested_by,
        "injection": d.injection,
        "duration_s": d.duration_s,
        "time_to_detect_s": _seconds(d.injected_at, s.detected_at),
        "time_to_fallback_s": _seconds(d.injected_at, fell_back or s.mitigated_at),
        "fallback_tier": str(next((t.tier for t in s.tiers if t.tier is not s.failed_tier), "")) or None,
        "time_to_restore_s": _seconds(d.restored_at, s.recovered_at),
        "total_s": _seconds(d.injected_at, s.recovered_at or s.closed_at),
        "restored_at": d.restored_at.isoformat() if d.restored_at else None,
        "ended_early_by": d.ended_early_by,
        "client_errors": d.client_errors,
        "requests": d.requests,
        "stats_window_s": d.stats_window_s,
        "stats_error": d.stats_error,
        "gates": gates_waited(s),
        "status_page_changed": d.status_page,
        "notifications_suppressed": d.suppressed,
        "detected": d.detected,
        "outcome": s.outcome,
    }


def render_drill_findings(s: IncidentState) -> list[str]:
    """The findings as plain lines (CLI, post-mortem); [] when the incident is no drill."""
    f = drill_findings(s)
    if f is None:
        return []

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:g} s"

    errors = f["client_errors"]
    window = f" (stats over the last {f['stats_window_s']} s)" if f["stats_window_s"] else ""
    served = ", ".join(f"{t} {n}" for t, n in sorted(f["requests"].items()) if n) or "-"
    lines = [
        f"Drill by {f['requested_by']}: {f['injection']} for {f['duration_s']:g} s",
        f"time to detect: {secs(f['time_to_detect_s'])}; time to fall back: {secs(f['time_to_fallback_s'])}"
        f" (to {f['fallback_tier'] or '-'}); fault cleared to full restore: {secs(f['time_to_restore_s'])};"
        f" drill total: {secs(f['total_s'])}",
        "client errors during the drill: "
        + (f"unknown ({f['stats_error']})" if errors is None else f"{errors}{window}")
        + f"; requests by tier: {served}",
    ]
    if not f["detected"]:
        lines.append("NOT DETECTED: the probes did not see the injected fault; the incident closed as a false alarm")
    if f["ended_early_by"]:
        lines.append(f"ended early: {f['ended_early_by']} declared the dependency remediated")
    gates = f["gates"]
    lines.append(
        "gates: "
        + (
            "; ".join(
                f"{g['gate']} waited {secs(g['waited_s'])} ({g['decision']}{' by ' + g['by'] if g['by'] else ''})"
                for g in gates
            )
            if gates
            else "none waited"
        )
    )
    skipped = ", ".join(f"{a} {n}" for a, n in sorted(f["notifications_suppressed"].items()))
    lines.append(
        "status page: "
        + ("changed (drills.status_page: true)" if f["status_page_changed"] else "untouched")
        + "; notifications: on-call and internal only"
        + (f" (not sent: {skipped})" if skipped else "")
    )
    return lines
