"""Phase 1 of the seed's runbook, "assess blast radius": who else a failed dependency hits, and how much traffic.

Pure: the `assess_blast_radius` activity (activities/blast_radius.py) loads every policy and reads each affected
service's gateway stats; these functions decide. A service is hit when one of its dependencies has the failed
dependency's name, or when a dependency's health URL or a chain tier's upstream is on the same upstream host
(host and port) as the failed dependency's. Its features at risk are those its policy degrades or disables at the
level of the tier it falls back to; its share of traffic is the share of requests that reached the hit tier.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from governor.enums import FallbackTier, FeatureFlag, Severity
from governor.models import StatsWindow, TierStats
from governor.policy import ServicePolicy

RAISE_AT_SERVICES = 2
"""Services hit before the incident's severity is raised one step (the seed's "several services are hit")."""


class AffectedService(BaseModel):
    service: str
    dependencies: list[str] = Field(default_factory=list)
    """Its dependencies behind the failure (the same name, or on the same upstream host)."""
    tiers: list[FallbackTier] = Field(default_factory=list)
    """Its chain tiers the failure takes out."""
    why: str = ""
    features: list[str] = Field(default_factory=list)
    """Features degraded or disabled at the level of the tier it falls back to."""
    traffic_share: float | None = None
    """Share of its requests that reached the hit tiers in the stats window; None when its stats were unreadable."""
    rps_at_risk: float | None = None
    total_rps: float | None = None
    stats_error: str = ""


class BlastRadius(BaseModel):
    """What the failed dependency hits, recorded in the incident at isolation."""

    dependency: str
    hosts: list[str] = Field(default_factory=list)
    services: list[AffectedService] = Field(default_factory=list)
    assessed_at: datetime | None = None
    errors: list[str] = Field(default_factory=list)
    """What could not be read (a policy folder, a service's stats): the assessment is then partial."""

    @property
    def features(self) -> list[str]:
        return sorted({f for s in self.services for f in s.features})

    @property
    def rps_at_risk(self) -> float:
        return sum(s.rps_at_risk or 0.0 for s in self.services)

    def summary(self) -> str:
        """One line: `2 services hit (chat 100% of traffic, search 40%); 12.5 req/s at risk; features: ...`."""
        if not self.services:
            return "no service depends on it"
        parts = [
            f"{s.service} {s.traffic_share:.0%}" if s.traffic_share is not None else f"{s.service} (no stats)"
            for s in self.services
        ]
        n = len(self.services)
        line = f"{n} service{'s' if n > 1 else ''} hit ({', '.join(parts)} of traffic); {self.rps_at_risk:.1f} req/s at risk"
        return line + (f"; features at risk: {', '.join(self.features)}" if self.features else "")


class Impact(BaseModel):
    """The seed's FailureEvent extras: affected features, an impact description and the estimated recovery."""

    affected_features: list[str] = Field(default_factory=list)
    description: str = ""
    estimated_recovery_minutes: int | None = None
    estimated_recovery_at: datetime | None = None


def host_of(url: object) -> str:
    """`host:port` of a URL (the scheme's default port when none is given); '' for no URL."""
    if not url:
        return ""
    parts = urlsplit(str(url))
    if not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname.lower()}:{port}"


def upstream_hosts(policy: ServicePolicy, dependency: str) -> list[str]:
    """The hosts behind a dependency: its health URL's, and the upstream of the chain tier it backs."""
    dep = policy.dependency(dependency)
    hosts = {host_of(dep.health_url)}
    hosts |= {host_of(t.upstream) for t in policy.chain if dep.tier is not None and t.tier is dep.tier}
    return sorted(h for h in hosts if h)


def _fallback_features(policy: ServicePolicy, tiers: list[FallbackTier]) -> list[str]:
    """Features not fully enabled at the level of the tier the service falls to when `tiers` are out."""
    below = [t for t in policy.tiers if t not in tiers and t.rank > min(x.rank for x in tiers)]
    to = below[0] if below else FallbackTier.TIER_5_ERROR
    flags = policy.degradation.flags_for(policy.degradation.level_for(to))
    return sorted(f for f, flag in flags.items() if flag is not FeatureFlag.ENABLED)


def find_dependents(policies: dict[str, ServicePolicy], service: str, dependency: str) -> list[AffectedService]:
    """Every service (the incident's own first) whose dependencies or chain share the failed dependency's name or
    upstream host."""
    hosts = set(upstream_hosts(policies[service], dependency))
    out: list[AffectedService] = []
    for name in sorted(policies, key=lambda n: (n != service, n)):
        policy = policies[name]
        deps: list[str] = []
        tiers: set[FallbackTier] = set()
        why: set[str] = set()
        for d in policy.dependencies:
            same_name, same_host = d.name == dependency, host_of(d.health_url) in hosts
            if same_name or same_host:
                deps.append(d.name)
                why.add("the same dependency" if same_name else f"the same upstream host {host_of(d.health_url)}")
                if d.tier is not None:
                    tiers.add(d.tier)
        for t in policy.chain:
            if host_of(t.upstream) in hosts:
                tiers.add(t.tier)
                why.add(f"{t.tier} on the same upstream host {host_of(t.upstream)}")
        if not deps and not tiers:
            continue
        ordered = sorted(tiers, key=lambda t: t.rank)
        out.append(
            AffectedService(
                service=name,
                dependencies=deps,
                tiers=ordered,
                why="; ".join(sorted(why)),
                features=_fallback_features(policy, ordered) if ordered else [],
            )
        )
    return out


def _reach(stats: TierStats) -> int:
    """Requests that came to a tier: tried or skipped (its breaker open, its deadline spent)."""
    return stats.requests + stats.skipped


def with_traffic(affected: AffectedService, window: StatsWindow | None, error: str = "") -> AffectedService:
    """The service's share of requests that reached its hit tiers in the window, and their rate."""
    if window is None:
        return affected.model_copy(update={"stats_error": error or "no stats"})
    total = max((_reach(s) for s in window.tiers.values()), default=0)
    hit = max((_reach(window.tiers[str(t)]) for t in affected.tiers if str(t) in window.tiers), default=0)
    seconds = window.window_s or 1.0
    return affected.model_copy(
        update={
            "traffic_share": hit / total if total else 0.0,
            "rps_at_risk": hit / seconds,
            "total_rps": total / seconds,
        }
    )


def assess(
    policies: dict[str, ServicePolicy],
    service: str,
    dependency: str,
    windows: dict[str, StatsWindow | str],
    at: datetime | None = None,
    errors: list[str] | None = None,
) -> BlastRadius:
    """The blast radius from the dependents and each one's stats window (or the error reading it)."""
    services = []
    for affected in find_dependents(policies, service, dependency):
        window = windows.get(affected.service, "stats not read")
        if isinstance(window, str):
            services.append(with_traffic(affected, None, window))
        else:
            services.append(with_traffic(affected, window))
    problems = list(errors or [])
    problems += [f"{s.service}: stats unreadable ({s.stats_error})" for s in services if s.stats_error]
    return BlastRadius(
        dependency=dependency,
        hosts=upstream_hosts(policies[service], dependency),
        services=services,
        assessed_at=at,
        errors=problems,
    )


def raised_severity(severity: Severity | None, radius: BlastRadius) -> Severity | None:
    """One step up when `RAISE_AT_SERVICES` or more services are hit; None when it stays (or is CRITICAL)."""
    if severity is None or len(radius.services) < RAISE_AT_SERVICES:
        return None
    order = list(Severity)
    return order[severity.rank + 1] if severity.rank + 1 < len(order) else None


def impact_of(
    *,
    service: str,
    tier: FallbackTier,
    policy: ServicePolicy,
    critical: bool,
    typical_minutes: int | None,
    detected_at: datetime | None,
    radius: BlastRadius | None,
) -> Impact:
    """Affected features (the tier served's degradation flags), the impact line and the estimated recovery."""
    level = policy.degradation.level_for(tier, critical=critical)
    flags = policy.degradation.flags_for(level)
    affected = sorted(f for f, flag in flags.items() if flag is not FeatureFlag.ENABLED)
    line = (
        f"{service} served by {tier} at {level} ({level.feature_availability:.0%} of features, "
        f"SLA impact {level.sla_impact})"
    )
    if affected:
        line += f"; limited: {', '.join(affected)}"
    if radius is not None and len(radius.services) > 1:
        line += f"; {len(radius.services)} services hit, {radius.rps_at_risk:.1f} req/s at risk"
    eta = detected_at + timedelta(minutes=typical_minutes) if detected_at and typical_minutes is not None else None
    return Impact(
        affected_features=affected,
        description=line,
        estimated_recovery_minutes=typical_minutes,
        estimated_recovery_at=eta,
    )
