"""Which tiers of a service's chain are healthy now: health probes and the gateway's live per-tier stats, judged.

The recovery workflow serves the highest tier healthy now and never one known to be down (DESIGN, "Truth under messy
failures"); these pure rules say what "healthy now" means, and when a recovered tier has been healthy long enough
to move up to (the flapping guard, `recovery_checks.stable_s`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from pydantic import BaseModel, Field

from governor.decisions import pick_tier
from governor.detection import classify_traffic
from governor.enums import FallbackTier, HealthStatus
from governor.models import ProbeResult, StatsWindow, TierStats
from governor.policy import ServicePolicy


class TierHealth(BaseModel):
    tier: FallbackTier
    status: HealthStatus
    reason: str = ""


class TierAssessment(BaseModel):
    """Every chain tier's health now; `checked_at` is when the activity looked."""

    tiers: dict[FallbackTier, TierHealth] = Field(default_factory=dict)
    checked_at: datetime | None = None
    served: dict[FallbackTier, int] = Field(default_factory=dict)
    """Client answers per tier in the gateways' window (the explicit error tier included): what clients got."""

    def serving(self, min_answers: int = 1, ignore: Collection[FallbackTier] = ()) -> FallbackTier | None:
        """The tier that gave most of the window's answers (on a tie the worse one: never look better than served);
        None with fewer than `min_answers` answers in all. Answers from `ignore` (tiers isolated since: what they
        gave is from before their failure) are left out."""
        served = {t: n for t, n in self.served.items() if t not in ignore and n > 0}
        if sum(served.values()) < max(1, min_answers):
            return None
        return max(served, key=lambda t: (served[t], t.rank))

    def health(self) -> dict[FallbackTier, HealthStatus]:
        return {tier: h.status for tier, h in self.tiers.items()}

    def is_down(self, tier: FallbackTier) -> bool:
        h = self.tiers.get(tier)
        return h is not None and not h.status.allows_traffic

    def down(self) -> list[str]:
        """`tier: why` for every tier known down, for audit entries and escalations."""
        return [f"{t}: {h.reason}" for t, h in self.tiers.items() if not h.status.allows_traffic]


def judge_tiers(policy: ServicePolicy, probes: list[ProbeResult], window: StatsWindow | None) -> TierAssessment:
    """A tier is down when a dependency backing it fails its probe, or its gateway window classifies as a failure
    (failed attempts and the requests its breaker skipped, by cause: docs/detection.md). A tier with nothing to
    observe (cache, static, an upstream without traffic or a health URL) counts as healthy: the gateway falls
    through it on its own if it cannot answer. The explicit error tier is always there."""
    tiers: dict[FallbackTier, TierHealth] = {}
    for spec in policy.chain:
        tier = spec.tier
        backing = [d.name for d in policy.dependencies if policy.failed_tier(d.name) is tier]
        failing = [p for p in probes if p.dependency in backing and not p.is_passing()]
        stats = window.tiers.get(str(tier)) if window is not None else None
        verdict = classify_traffic(stats, policy.thresholds, policy.recovery_checks.min_samples) if stats else None
        reasons: list[str] = []
        if failing:
            p = failing[0]
            reasons.append(f"{p.dependency} probe: {p.error_kind or p.status.value}{': ' + p.error if p.error else ''}")
        if verdict is not None:
            reasons.append(f"gateway: {verdict.failure_type.value}, {verdict.reason}")
        if reasons:
            tiers[tier] = TierHealth(tier=tier, status=HealthStatus.UNHEALTHY, reason="; ".join(reasons))
        else:
            tiers[tier] = TierHealth(tier=tier, status=HealthStatus.HEALTHY, reason=_healthy_reason(backing, stats))
    tiers[FallbackTier.TIER_5_ERROR] = TierHealth(
        tier=FallbackTier.TIER_5_ERROR, status=HealthStatus.HEALTHY, reason="the explicit 503 always answers"
    )
    known = {str(t) for t in FallbackTier}
    served = (
        {}
        if window is None
        else {FallbackTier(t): s.served for t, s in window.tiers.items() if s.served and t in known}
    )
    return TierAssessment(tiers=tiers, served=served)


def _healthy_reason(backing: list[str], stats: TierStats | None) -> str:
    parts = [f"{', '.join(backing)} probe{'s' if len(backing) > 1 else ''} pass"] if backing else []
    if stats is not None and stats.observed:
        parts.append(f"gateway {stats.requests} attempts, {stats.error_rate:.1%} errors")
    return "; ".join(parts) or "nothing observed against it"


def best_tier(
    chain: list[FallbackTier],
    assessment: TierAssessment,
    unavailable: set[FallbackTier],
    *,
    current: FallbackTier | None = None,
    healthy_since: dict[FallbackTier, datetime] | None = None,
    now: datetime | None = None,
    stable_s: float = 0.0,
) -> FallbackTier:
    """The highest tier healthy now and not in `unavailable`.

    With `current` (the tier serving) and `healthy_since`, a tier better than the current one counts only once it
    has been healthy for `stable_s` without a break: a flapping tier is never moved up to during an up-window.
    Tiers at or below the current one need only be healthy now (moving down off a tier that failed is urgent)."""
    health = assessment.health()
    if current is not None and healthy_since is not None and now is not None:
        for tier in chain:
            if tier.rank < current.rank:
                since = healthy_since.get(tier)
                if since is None or (now - since).total_seconds() < stable_s:
                    health[tier] = HealthStatus.UNHEALTHY
    return pick_tier(chain, unavailable, health)


def track_healthy_since(
    previous: dict[FallbackTier, datetime], assessment: TierAssessment, now: datetime
) -> dict[FallbackTier, datetime]:
    """When each tier's current healthy streak began; a tier seen down drops out (its streak restarts)."""
    out: dict[FallbackTier, datetime] = {}
    for tier, h in assessment.tiers.items():
        if h.status.allows_traffic:
            out[tier] = previous.get(tier, now)
    return out
