"""The seed's status report and fallback chain view (`FallbackReporter`), as data: pure functions of what the gateways,
the health probes and Temporal say now.

`governor status`, `governor chain` and `governor recovery` gather the observations (cli/status_cmds.py) and call these;
the text rendering is cli/status_render.py. No Temporal import.

Health of a dependency (the seed's `get_health_summary` counts these): its own health probe (the seed's
`check_health`: latency over warning is degraded, over critical or failing unhealthy), the breaker of the tier it backs
in every replica (open: unhealthy, half-open: recovering), that tier's traffic in the stats window (error rate or p99
over the policy's thresholds), and its open incident (recovering from validation on; critical when the incident is).
Nothing observable: unknown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from governor.enums import CircuitState, DegradationLevel, FallbackTier, HealthStatus, RecoveryPhase, Severity
from governor.gateway_api import ServiceState
from governor.incident import IncidentState
from governor.models import ProbeResult, StatsWindow, TierStats
from governor.plan import RecoveryPlan
from governor.policy import DependencySpec, ServicePolicy

HEALTH_RANK = {
    HealthStatus.HEALTHY: 0,
    HealthStatus.RECOVERING: 1,
    HealthStatus.DEGRADED: 2,
    HealthStatus.UNKNOWN: 3,
    HealthStatus.UNHEALTHY: 4,
    HealthStatus.CRITICAL: 5,
}
"""Worse is higher: a report combines observations by keeping the worst."""

CIRCUIT_ICONS = {CircuitState.CLOSED: "✓", CircuitState.OPEN: "✗", CircuitState.HALF_OPEN: "◐"}
"""The seed's `generate_status_report` breaker icons."""

_CIRCUIT_RANK = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
RECOVERING_PHASES = (RecoveryPhase.VALIDATION, RecoveryPhase.GRADUAL_RESTORE, RecoveryPhase.FULL_RESTORE)


def worst(*statuses: HealthStatus) -> HealthStatus:
    return max(statuses, key=HEALTH_RANK.__getitem__)


class Replica(BaseModel):
    """What one gateway replica answered for one service (state and stats), or why it did not."""

    gateway: str
    state: ServiceState | None = None
    stats: StatsWindow | None = None
    error: str = ""


class BreakerView(BaseModel):
    breaker_id: str
    """`service/tier`, the seed's `CB-<dependency>` made unique per service."""
    service: str
    tier: FallbackTier
    state: CircuitState | None
    """The worst state across the replicas that answered (None: no replica answered)."""
    mode: str = "auto"
    """`open`/`closed` when forced by the governor or on-call, `auto` when the breaker follows its rules."""
    icon: str = "?"
    probe_interval_s: int | None = None
    """CircuitState.probe_interval_seconds: how often the seed probes a breaker in this state (informational)."""
    replicas: dict[str, str] = Field(default_factory=dict)


class DependencyView(BaseModel):
    service: str
    dependency: str
    tier: FallbackTier | None
    status: HealthStatus
    icon: str
    alert_level: str
    why: list[str] = Field(default_factory=list)


class ServiceView(BaseModel):
    service: str
    tier: FallbackTier | None
    """The tier that answers now (the walk from where traffic enters, past open breakers); None: no replica answered."""
    quality: int | None
    primary_weight: float | None
    pinned_tier: FallbackTier | None
    degradation_level: DegradationLevel | None
    sla_impact: str | None
    feature_availability: float | None
    replicas_answering: int
    replicas: int
    disagree: bool = False
    """Replicas serve from different tiers (the worst is shown)."""
    errors: list[str] = Field(default_factory=list)


class IncidentView(BaseModel):
    incident_id: str
    service: str
    dependency: str
    failure_type: str | None
    severity: str | None
    phase: RecoveryPhase
    phase_automated: bool
    tier: FallbackTier
    awaiting_approval: bool
    progress: float
    owner: str
    estimated_completion: datetime | None


class HealthSummary(BaseModel):
    """The seed's `get_health_summary` (recovering counted on its own; the seed counts it as unknown)."""

    total: int = 0
    healthy: int = 0
    degraded: int = 0
    unhealthy: int = 0
    unknown: int = 0
    recovering: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.healthy / self.total if self.total else 0.0


class StatusReport(BaseModel):
    timestamp: datetime
    health: HealthSummary
    health_percent: float
    degradation_level: DegradationLevel
    """The worst level any service is at (the seed has one level for the system)."""
    active_incidents: int
    active_fallbacks: dict[str, dict[str, Any]]
    services: list[ServiceView]
    dependencies: list[DependencyView]
    circuit_breakers: list[BreakerView]
    incidents: list[IncidentView]


# --------------------------------------------------------------------------- the tier served


def serving_tier(state: ServiceState) -> FallbackTier:
    """Where a request is answered now: it enters at the pinned tier (or the primary), then walks past open breakers
    and an empty cache; static always answers; nothing left is the explicit error."""
    chain = [FallbackTier(t) for t in state.chain] or [FallbackTier.TIER_0_PRIMARY]
    pinned = state.pinned_tier
    if pinned is not None and pinned is not FallbackTier.TIER_0_PRIMARY:
        start = chain.index(pinned) if pinned in chain else len(chain)
    elif state.primary_weight <= 0:
        start = 1
    else:
        start = 0
    for tier in chain[start:]:
        snap = state.breakers.get(tier.value)
        if snap is not None:
            if snap.state != CircuitState.OPEN.value:
                return tier
        elif tier is FallbackTier.TIER_2_CACHE:
            if state.cache is not None and state.cache.entries > 0:
                return tier
        else:  # static, or a tier the gateway serves without an upstream
            return tier
    return FallbackTier.TIER_5_ERROR


def _circuit(value: str) -> CircuitState | None:
    try:
        return CircuitState(value)
    except ValueError:
        return None


def breaker_views(policy: ServicePolicy, replicas: list[Replica]) -> list[BreakerView]:
    views: list[BreakerView] = []
    for spec in policy.chain:
        per: dict[str, str] = {}
        states: list[CircuitState] = []
        modes: set[str] = set()
        for r in replicas:
            snap = r.state.breakers.get(spec.tier.value) if r.state else None
            if snap is None:
                continue
            per[r.gateway] = snap.state
            modes.add(snap.mode)
            if (c := _circuit(snap.state)) is not None:
                states.append(c)
        if not per and not any(r.state is None for r in replicas):
            continue  # a tier without a breaker (cache, static)
        state = max(states, key=_CIRCUIT_RANK.__getitem__) if states else None
        views.append(
            BreakerView(
                breaker_id=f"{policy.service}/{spec.tier.value}",
                service=policy.service,
                tier=spec.tier,
                state=state,
                mode=next(iter(modes)) if len(modes) == 1 else ("mixed" if modes else "auto"),
                icon=CIRCUIT_ICONS[state] if state is not None else "?",
                probe_interval_s=state.probe_interval_seconds if state is not None else None,
                replicas=per,
            )
        )
    return views


def service_view(policy: ServicePolicy, replicas: list[Replica]) -> ServiceView:
    answering = [r for r in replicas if r.state is not None]
    tiers = [serving_tier(r.state) for r in answering if r.state is not None]
    tier = max(tiers, key=lambda t: t.rank) if tiers else None
    first = answering[0].state if answering else None
    level = None
    if answering:
        level = max((r.state.degradation.level for r in answering if r.state), key=lambda lv: lv.rank)
    return ServiceView(
        service=policy.service,
        tier=tier,
        quality=tier.quality_percentage if tier else None,
        primary_weight=float(first.primary_weight) if first else None,
        pinned_tier=first.pinned_tier if first else None,
        degradation_level=level,
        sla_impact=level.sla_impact if level else None,
        feature_availability=level.feature_availability if level else None,
        replicas_answering=len(answering),
        replicas=len(replicas),
        disagree=len(set(tiers)) > 1,
        errors=[f"{r.gateway}: {r.error}" for r in replicas if r.error],
    )


def merged_stats(replicas: list[Replica], tier: FallbackTier) -> TierStats | None:
    parts = [r.stats.tiers[tier.value] for r in replicas if r.stats and tier.value in r.stats.tiers]
    return TierStats.merge(parts) if parts else None


# --------------------------------------------------------------------------- health


def dependency_health(
    policy: ServicePolicy,
    dep: DependencySpec,
    replicas: list[Replica],
    probe: ProbeResult | None,
    incident: IncidentState | None,
) -> DependencyView:
    tier = dep.tier
    why: list[str] = []
    seen: list[HealthStatus] = []
    if probe is not None:
        seen.append(probe.status)
        why.append(
            f"probe {probe.status.value} ({probe.latency_ms:.0f} ms)" + (f": {probe.error}" if probe.error else "")
        )
    if tier is not None:
        for view in breaker_views(policy, replicas):
            if view.tier is tier and view.state is not None:
                if view.state is CircuitState.OPEN:
                    seen.append(HealthStatus.UNHEALTHY)
                    why.append("breaker open" + (" (forced)" if view.mode == "open" else ""))
                elif view.state is CircuitState.HALF_OPEN:
                    seen.append(HealthStatus.RECOVERING)
                    why.append("breaker half-open")
                else:
                    seen.append(HealthStatus.HEALTHY)
        stats = merged_stats(replicas, tier)
        t = policy.thresholds
        if stats is not None and stats.requests >= policy.recovery_checks.min_samples:
            if stats.error_rate > t.error_rate_critical or stats.p99_ms > t.latency_critical_ms:
                seen.append(HealthStatus.UNHEALTHY)
            elif stats.error_rate > t.error_rate_warning or stats.p99_ms > t.latency_warning_ms:
                seen.append(HealthStatus.DEGRADED)
            why.append(f"traffic: {stats.error_rate:.1%} errors, p99 {stats.p99_ms:.0f} ms, {stats.rps:.1f} rps")
    status = worst(*seen) if seen else HealthStatus.UNKNOWN
    if incident is not None and incident.closed_at is None:
        why.append(f"incident in {incident.phase}")
        if incident.phase in RECOVERING_PHASES:
            if status is not HealthStatus.UNHEALTHY:
                status = HealthStatus.RECOVERING
        elif incident.phase is not RecoveryPhase.DETECTION:
            status = (
                HealthStatus.RECOVERING
                if probe is not None and probe.status is HealthStatus.HEALTHY
                else worst(status, HealthStatus.UNHEALTHY)
            )
        if status is HealthStatus.UNHEALTHY and incident.severity is Severity.CRITICAL:
            status = HealthStatus.CRITICAL
    if not seen and incident is None:
        why.append("nothing observable (no health_url, no replica answered)")
    return DependencyView(
        service=policy.service,
        dependency=dep.name,
        tier=tier,
        status=status,
        icon=status.icon,
        alert_level=status.alert_level,
        why=why,
    )


def health_summary(dependencies: list[DependencyView]) -> HealthSummary:
    h = HealthSummary(total=len(dependencies))
    for d in dependencies:
        if d.status is HealthStatus.HEALTHY:
            h.healthy += 1
        elif d.status is HealthStatus.DEGRADED:
            h.degraded += 1
        elif d.status in (HealthStatus.UNHEALTHY, HealthStatus.CRITICAL):
            h.unhealthy += 1
        elif d.status is HealthStatus.RECOVERING:
            h.recovering += 1
        else:
            h.unknown += 1
    return h


# --------------------------------------------------------------------------- the report


def incident_view(state: IncidentState, plan: RecoveryPlan) -> IncidentView:
    return IncidentView(
        incident_id=state.incident_id,
        service=state.service,
        dependency=state.dependency,
        failure_type=str(state.failure_type) if state.failure_type else None,
        severity=str(state.severity) if state.severity else None,
        phase=state.phase,
        phase_automated=state.phase.automated,
        tier=state.tier,
        awaiting_approval=state.awaiting_approval,
        progress=plan.progress,
        owner=plan.owner,
        estimated_completion=plan.estimated_completion,
    )


def status_report(
    now: datetime,
    policies: dict[str, ServicePolicy],
    replicas: dict[str, list[Replica]],
    probes: dict[tuple[str, str], ProbeResult],
    incidents: list[tuple[IncidentState, RecoveryPlan]],
) -> StatusReport:
    """The seed's `get_system_status`, live: per service the replicas' answers, per dependency its probe, and the open
    incidents with their plans."""
    open_by_dep = {(s.service, s.dependency): s for s, _ in incidents if s.closed_at is None}
    services: list[ServiceView] = []
    deps: list[DependencyView] = []
    breakers: list[BreakerView] = []
    for name in sorted(policies):
        policy, reps = policies[name], replicas.get(name, [])
        services.append(service_view(policy, reps))
        breakers += breaker_views(policy, reps)
        for dep in policy.dependencies:
            deps.append(
                dependency_health(policy, dep, reps, probes.get((name, dep.name)), open_by_dep.get((name, dep.name)))
            )
    health = health_summary(deps)
    levels = [s.degradation_level for s in services if s.degradation_level is not None]
    fallbacks = {
        s.service: {
            "tier": s.tier.value,
            "quality": s.quality,
            "degradation_level": s.degradation_level.value if s.degradation_level else None,
            "primary_weight": s.primary_weight,
        }
        for s in services
        if s.tier is not None and s.tier is not FallbackTier.TIER_0_PRIMARY
    }
    views = [incident_view(s, p) for s, p in incidents if s.closed_at is None]
    return StatusReport(
        timestamp=now,
        health=health,
        health_percent=round(health.percent, 1),
        degradation_level=max(levels, key=lambda lv: lv.rank) if levels else DegradationLevel.NORMAL,
        active_incidents=len(views),
        active_fallbacks=fallbacks,
        services=services,
        dependencies=deps,
        circuit_breakers=breakers,
        incidents=views,
    )


# --------------------------------------------------------------------------- the chain view


class ChainTierView(BaseModel):
    index: int
    tier: FallbackTier
    provider: str
    quality: int
    current: bool
    breaker: BreakerView | None = None
    rps: float | None = None
    error_rate: float | None = None
    degradation_level: DegradationLevel
    approval_to_exit: bool


class ChainView(BaseModel):
    """The seed's `generate_fallback_chain_report`: the chain, the tier serving now marked, each tier's breaker."""

    service: str
    current_tier: FallbackTier | None
    primary_weight: float | None
    pinned_tier: FallbackTier | None
    tiers: list[ChainTierView]
    errors: list[str] = Field(default_factory=list)


def provider_of(policy: ServicePolicy, tier: FallbackTier) -> str:
    spec = next(s for s in policy.chain if s.tier is tier)
    backing = next((d.name for d in policy.dependencies if d.tier is tier), None)
    if spec.upstream:
        speaks = [] if spec.provider == "openai" else [spec.provider]  # OpenAI's format is the default: not shown
        where = ", ".join([str(spec.upstream), *speaks, *([f"model {spec.model}"] if spec.model else [])])
        return f"{backing} ({where})" if backing else where
    if tier is FallbackTier.TIER_2_CACHE:
        return f"cache (ttl {spec.ttl_s}s)"
    if tier is FallbackTier.TIER_4_STATIC:
        return f"static answer (HTTP {spec.status})"
    return "explicit error (503)"


def chain_view(policy: ServicePolicy, replicas: list[Replica]) -> ChainView:
    service = service_view(policy, replicas)
    breakers = {b.tier: b for b in breaker_views(policy, replicas)}
    tiers = []
    for i, spec in enumerate(policy.chain):
        stats = merged_stats(replicas, spec.tier)
        tiers.append(
            ChainTierView(
                index=i,
                tier=spec.tier,
                provider=provider_of(policy, spec.tier),
                quality=spec.tier.quality_percentage,
                current=spec.tier is service.tier,
                breaker=breakers.get(spec.tier),
                rps=stats.rps if stats else None,
                error_rate=stats.error_rate if stats else None,
                degradation_level=policy.degradation.level_for(spec.tier),
                approval_to_exit=policy.approvals.is_gated(f"exit:{spec.tier.value}"),
            )
        )
    return ChainView(
        service=policy.service,
        current_tier=service.tier,
        primary_weight=service.primary_weight,
        pinned_tier=service.pinned_tier,
        tiers=tiers,
        errors=service.errors,
    )
