"""Pin first: the decisions on the report -> pinned tier path, shared by the one activity that takes it
(activities/pin_first.py) and the recovery workflow that records it, so both reach the same tier and change.

Pure functions of the policy, the report and what the probes found; no I/O, no Temporal.
"""

from __future__ import annotations

from pydantic import BaseModel

from governor.blast_radius import BlastRadius, raised_severity
from governor.decisions import status_component
from governor.enums import DegradationLevel, FallbackTier, Severity
from governor.gateway_api import BreakerChange, DegradationChange, RouteChange, StatusChange
from governor.incident import IncidentReport
from governor.models import Classification
from governor.policy import ServicePolicy
from governor.tier_health import TierAssessment, best_tier


def waits_for_oncall(policy: ServicePolicy, gate: str) -> bool:
    """Whether `gate` waits for on-call: the policy gates it, or `auto_failover: false` gates every fallback."""
    return policy.approvals.is_gated(gate) or (not policy.auto_failover and gate.startswith("enter:"))


def confirmed_severity(classification: Classification | None, report: IncidentReport) -> Severity:
    """The worse of what the probes classified and what the report claimed; HIGH when neither says."""
    severities = [x for x in (classification.severity if classification else None, report.severity) if x is not None]
    return max(severities, key=lambda x: x.rank) if severities else Severity.HIGH


def degradation_for(policy: ServicePolicy, tier: FallbackTier, severity: Severity | None) -> DegradationChange:
    """The degradation level and flags the policy maps `tier` to (a CRITICAL failure takes at least its floor)."""
    level = policy.degradation.level_for(tier, critical=severity is Severity.CRITICAL)
    return DegradationChange(level=level, flags=policy.degradation.flags_for(level))


def route_for(tier: FallbackTier, primary_weight: int = 0) -> RouteChange:
    """Serve from `tier`, the primary keeping `primary_weight` %; the primary is "pinned" by clearing the pin (a
    pinned primary with weight 0 would send everything to the secondary)."""
    if tier is FallbackTier.TIER_0_PRIMARY:
        return RouteChange(pinned_tier=None, primary_weight=100)
    return RouteChange(pinned_tier=tier, primary_weight=primary_weight)


def status_for(level: DegradationLevel) -> StatusChange:
    """The status page component and message a degradation level shows."""
    return StatusChange(component=status_component(level), message=level.user_message)  # type: ignore[arg-type]


class FirstPin(BaseModel):
    """The first gateway change of a confirmed incident: the failed tier's breaker open and, when the best tier
    needs no approval, its pin with the degradation and status page it serves at."""

    severity: Severity
    breaker: BreakerChange
    tier: FallbackTier | None = None
    """None: the best tier waits for on-call (its `enter:` gate); the workflow asks, then pins it."""
    route: RouteChange | None = None
    degradation: DegradationChange | None = None
    status: StatusChange | None = None


def plan_first_pin(
    policy: ServicePolicy,
    dependency: str,
    report: IncidentReport,
    classification: Classification | None,
    radius: BlastRadius | None,
    assessment: TierAssessment,
) -> FirstPin:
    """What detection, isolation and fallback decide for a confirmed failure of `dependency`, in one change."""
    failed = policy.failed_tier(dependency)
    severity = confirmed_severity(classification, report)
    if radius is not None:
        severity = raised_severity(severity, radius) or severity
    plan = FirstPin(severity=severity, breaker=BreakerChange(tier=failed, mode="open"))
    tier = best_tier(policy.tiers, assessment, {failed})
    if waits_for_oncall(policy, f"enter:{tier}"):
        return plan
    degradation = degradation_for(policy, tier, severity)
    plan.tier, plan.degradation, plan.status = tier, degradation, status_for(degradation.level)
    plan.route = route_for(tier)
    return plan
