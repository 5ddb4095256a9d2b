"""The seed's status report and chain view as data (governor/status_report.py) and as text (cli/status_render.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cli.status_render import bar, render_chain_view, render_status
from governor.enums import (
    CircuitState,
    DegradationLevel,
    FallbackTier,
    HealthStatus,
    RecoveryPhase,
    Severity,
)
from governor.gateway_api import BreakerSnapshot, CacheState, DegradationState, ServiceState, StatusState
from governor.incident import IncidentState
from governor.models import ProbeResult, StatsWindow, TierStats
from governor.plan import recovery_plan
from governor.status_report import Replica, chain_view, serving_tier, status_report
from tests.workflows.fakes import policy_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHAIN = ["tier_0_primary", "tier_1_secondary", "tier_2_cache", "tier_3_degraded", "tier_4_static"]


def gw_state(
    pinned: str | None = None,
    weight: float = 100,
    level: str = "normal",
    entries: int = 0,
    many: dict[str, str] | None = None,
    **breakers: str,
) -> ServiceState:
    breakers = {**(many or {}), **breakers}
    snaps = {
        t: BreakerSnapshot(state="closed", mode="auto")
        for t in ("tier_0_primary", "tier_1_secondary", "tier_3_degraded")
    }
    for tier, how in breakers.items():
        state, _, mode = how.partition(":")
        snaps[tier] = BreakerSnapshot(state=state, mode=mode or "auto")
    return ServiceState(
        service="chat",
        pinned_tier=FallbackTier(pinned) if pinned else None,
        primary_weight=weight,
        chain=CHAIN,
        breakers=snaps,
        degradation=DegradationState(level=DegradationLevel(level)),
        status=StatusState(component="operational"),
        cache=CacheState(entries=entries),
    )


def probe(dep: str, status: HealthStatus, latency: float = 20.0) -> ProbeResult:
    return ProbeResult(
        dependency=dep, url=f"http://x/{dep}", ok=status is not HealthStatus.UNHEALTHY, status=status,
        latency_ms=latency, checked_at=NOW,
    )  # fmt: skip


def test_serving_tier_follows_the_pin_the_weight_and_the_breakers() -> None:
    assert serving_tier(gw_state()) is FallbackTier.TIER_0_PRIMARY
    assert serving_tier(gw_state(tier_0_primary="open")) is FallbackTier.TIER_1_SECONDARY
    assert serving_tier(gw_state(pinned="tier_1_secondary", weight=0)) is FallbackTier.TIER_1_SECONDARY
    assert serving_tier(gw_state(weight=0)) is FallbackTier.TIER_1_SECONDARY
    both = {"tier_0_primary": "open", "tier_1_secondary": "open"}
    assert serving_tier(gw_state(many=both)) is FallbackTier.TIER_3_DEGRADED  # empty cache falls through
    assert serving_tier(gw_state(entries=3, many=both)) is FallbackTier.TIER_2_CACHE
    assert serving_tier(gw_state(tier_3_degraded="open", many=both)) is FallbackTier.TIER_4_STATIC
    assert serving_tier(gw_state(pinned="tier_1_secondary", tier_1_secondary="half_open")) is (
        FallbackTier.TIER_1_SECONDARY
    )


def incident(**fields: Any) -> IncidentState:
    return IncidentState(
        incident_id="recovery-chat", service="chat", dependency="primary-llm",
        tier=FallbackTier.TIER_1_SECONDARY, **fields,
    )  # fmt: skip


def test_status_report_during_an_outage() -> None:
    policy = policy_for()
    replica = Replica(
        gateway="http://gw1",
        state=gw_state(pinned="tier_1_secondary", weight=0, level="degraded_l1", tier_0_primary="open:open"),
        stats=StatsWindow(window_s=30, tiers={"tier_1_secondary": TierStats(requests=100, errors=0, rps=3.3)}),
    )
    s = incident(phase=RecoveryPhase.REMEDIATION, severity=Severity.CRITICAL)
    probes = {
        ("chat", "primary-llm"): probe("primary-llm", HealthStatus.UNHEALTHY),
        ("chat", "secondary-llm"): probe("secondary-llm", HealthStatus.HEALTHY),
    }
    report = status_report(NOW, {"chat": policy}, {"chat": [replica]}, probes, [(s, recovery_plan(s, policy, NOW))])
    assert (report.health.total, report.health.healthy, report.health.unhealthy) == (2, 1, 1)
    assert report.health_percent == 50
    deps = {d.dependency: d for d in report.dependencies}
    assert deps["primary-llm"].status is HealthStatus.CRITICAL and deps["primary-llm"].icon == "🔴"
    assert deps["primary-llm"].alert_level == "CRITICAL"
    assert deps["secondary-llm"].status is HealthStatus.HEALTHY and deps["secondary-llm"].icon == "✓"
    assert report.active_fallbacks == {
        "chat": {"tier": "tier_1_secondary", "quality": 90, "degradation_level": "degraded_l1", "primary_weight": 0.0}
    }
    assert report.degradation_level is DegradationLevel.DEGRADED_L1
    breakers = {b.breaker_id: b for b in report.circuit_breakers}
    assert breakers["chat/tier_0_primary"].state is CircuitState.OPEN and breakers["chat/tier_0_primary"].icon == "✗"
    assert breakers["chat/tier_0_primary"].probe_interval_s == 30
    assert report.active_incidents == 1 and report.incidents[0].phase_automated is False

    text = render_status(report)
    for piece in (
        "FALLBACK GOVERNANCE STATUS",
        f"Health: {bar(50, 25)} 50%",
        "Healthy: 1 | Degraded: 0 | Unhealthy: 1",
        "🔴 chat/primary-llm: CRITICAL [CRITICAL]",
        "Degradation Level: DEGRADED_L1",
        "Active Incidents: 1",
        "• chat: tier_1_secondary (90% quality), degradation degraded_l1",
        "✗ chat/tier_0_primary: OPEN (forced)",
        "✓ chat/tier_1_secondary: CLOSED",
        "phase remediation (may need a human)",
    ):
        assert piece in text, piece


def test_a_replica_that_does_not_answer_makes_health_unknown_not_a_crash() -> None:
    policy = policy_for()
    report = status_report(
        NOW, {"chat": policy}, {"chat": [Replica(gateway="http://gw", error="not answering")]}, {}, []
    )
    assert report.health.unknown == 2 and report.health.healthy == 0
    assert report.services[0].tier is None and report.active_fallbacks == {}
    text = render_status(report)
    assert "? chat: no gateway replica answered (http://gw: not answering)" in text
    view = chain_view(policy, [Replica(gateway="http://gw", error="not answering")])
    assert view.current_tier is None and "no tier marked" in render_chain_view(view)


def test_replicas_that_disagree_show_the_worst_tier() -> None:
    policy = policy_for()
    a = Replica(gateway="http://a", state=gw_state())
    b = Replica(gateway="http://b", state=gw_state(tier_0_primary="open"))
    report = status_report(NOW, {"chat": policy}, {"chat": [a, b]}, {}, [])
    assert report.services[0].tier is FallbackTier.TIER_1_SECONDARY and report.services[0].disagree
    assert report.circuit_breakers[0].replicas == {"http://a": "closed", "http://b": "open"}


def test_traffic_over_the_thresholds_degrades_a_dependency_and_recovery_shows_as_such() -> None:
    policy = policy_for()
    slow = StatsWindow(window_s=30, tiers={"tier_0_primary": TierStats(requests=50, errors=1, error_rate=0.02)})
    report = status_report(
        NOW, {"chat": policy}, {"chat": [Replica(gateway="g", state=gw_state(), stats=slow)]}, {}, []
    )
    assert {d.dependency: d.status for d in report.dependencies}["primary-llm"] is HealthStatus.DEGRADED
    ramping = incident(phase=RecoveryPhase.GRADUAL_RESTORE)
    plan = recovery_plan(ramping, policy, NOW)
    report = status_report(
        NOW, {"chat": policy}, {"chat": [Replica(gateway="g", state=gw_state())]}, {}, [(ramping, plan)]
    )
    primary = next(d for d in report.dependencies if d.dependency == "primary-llm")
    assert primary.status is HealthStatus.RECOVERING and primary.icon == "↻" and primary.alert_level == "INFO"
    assert report.health.recovering == 1


def test_chain_view_marks_the_current_tier_and_each_breaker() -> None:
    policy = policy_for()
    replica = Replica(gateway="g", state=gw_state(pinned="tier_1_secondary", weight=10, tier_0_primary="half_open"))
    view = chain_view(policy, [replica])
    assert view.current_tier is FallbackTier.TIER_1_SECONDARY
    assert [t.current for t in view.tiers] == [False, True, False, False, False]
    text = render_chain_view(view)
    lines = text.splitlines()
    assert "  → TIER 1: secondary-llm (http://127.0.0.1:9102)  [✓ breaker CLOSED]" in lines
    assert "    TIER 0: primary-llm (http://127.0.0.1:9101)  [◐ breaker HALF_OPEN]" in lines
    assert text.count("↓ (on failure)") == len(policy.chain) - 1
    assert "ramp: 10% of requests go to the primary first" in text
