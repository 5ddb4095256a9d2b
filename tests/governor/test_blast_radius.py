"""Blast radius at detection (governor/blast_radius.py): who else a failed dependency hits, and how much traffic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from governor.blast_radius import assess, find_dependents, host_of, impact_of, raised_severity, upstream_hosts
from governor.enums import FailureType, FallbackTier, Severity
from governor.models import StatsWindow, TierStats
from governor.policy import ServicePolicy, parse_policy


def policy(
    service: str, primary: str, secondary: str = "http://127.0.0.1:9202", dep: str = "primary-llm"
) -> ServicePolicy:
    data: dict[str, Any] = {
        "service": service,
        "gateways": ["http://127.0.0.1:9"],
        "dependencies": [
            {"name": dep, "tier": "tier_0_primary", "health_url": f"{primary}/health"},
            {"name": "secondary-llm", "tier": "tier_1_secondary", "health_url": f"{secondary}/health"},
        ],
        "chain": [
            {"tier": "tier_0_primary", "upstream": primary},
            {"tier": "tier_1_secondary", "upstream": secondary},
            {"tier": "tier_4_static", "body": {"m": "limited"}},
        ],
    }
    return parse_policy(data, service)


POLICIES = {
    "chat": policy("chat", "http://127.0.0.1:9101"),
    "search": policy("search", "http://127.0.0.1:9101", dep="shared-model"),  # another name, the same host
    "billing": policy("billing", "http://127.0.0.1:9301", dep="billing-llm"),  # nothing in common but 127.0.0.1
    "assist": policy("assist", "http://10.0.0.5:9101"),  # the same dependency name
}


def window(**tiers: tuple[int, int]) -> StatsWindow:
    """tier -> (requests, skipped) over a 10 s window."""
    return StatsWindow(window_s=10, tiers={t: TierStats(requests=r, skipped=s) for t, (r, s) in tiers.items()})


def test_hosts_are_host_and_port_so_other_services_on_localhost_are_not_hit() -> None:
    assert host_of("http://127.0.0.1:9101/health") == "127.0.0.1:9101"
    assert host_of("https://API.example.com/v1") == "api.example.com:443"
    assert host_of(None) == "" and host_of("not a url") == ""
    assert upstream_hosts(POLICIES["chat"], "primary-llm") == ["127.0.0.1:9101"]


def test_the_services_on_the_same_dependency_or_host_are_found_the_incidents_own_first() -> None:
    found = find_dependents(POLICIES, "chat", "primary-llm")
    assert [a.service for a in found] == ["chat", "assist", "search"]
    by = {a.service: a for a in found}
    assert "same upstream host 127.0.0.1:9101" in by["search"].why and by["search"].dependencies == ["shared-model"]
    assert by["assist"].why == "the same dependency"
    assert by["chat"].tiers == [FallbackTier.TIER_0_PRIMARY]
    # falling to the secondary (degraded_l1) disables analytics and recommendations, reduces quality
    assert {"analytics", "recommendations", "response_quality"} <= set(by["chat"].features)
    assert "authentication" not in by["chat"].features


def test_traffic_share_and_requests_per_second_come_from_each_services_stats() -> None:
    windows: dict[str, StatsWindow | str] = {
        "chat": window(tier_0_primary=(150, 50), tier_1_secondary=(50, 0)),
        "search": window(tier_0_primary=(30, 0)),
        "assist": "gateway http://127.0.0.1:9 unreachable",
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    radius = assess(POLICIES, "chat", "primary-llm", windows, at=at)
    by = {s.service: s for s in radius.services}
    assert by["chat"].traffic_share == 1.0 and by["chat"].rps_at_risk == 20.0
    assert by["search"].traffic_share == 1.0 and by["search"].rps_at_risk == 3.0
    assert by["assist"].traffic_share is None and "unreachable" in by["assist"].stats_error
    assert radius.rps_at_risk == 23.0
    assert any("assist: stats unreadable" in e for e in radius.errors)
    assert radius.summary().startswith("3 services hit (chat 100%, assist (no stats), search 100% of traffic)")


def test_a_secondary_failing_hits_only_the_share_of_traffic_that_fails_over() -> None:
    windows: dict[str, StatsWindow | str] = {"chat": window(tier_0_primary=(100, 0), tier_1_secondary=(25, 0))}
    radius = assess({"chat": POLICIES["chat"]}, "chat", "secondary-llm", windows)
    (chat,) = radius.services
    assert chat.tiers == [FallbackTier.TIER_1_SECONDARY] and chat.traffic_share == 0.25 and chat.rps_at_risk == 2.5


def test_severity_rises_one_step_only_when_two_or_more_services_are_hit() -> None:
    several = assess(POLICIES, "chat", "primary-llm", {})
    alone = assess({"chat": POLICIES["chat"]}, "chat", "primary-llm", {})
    assert raised_severity(Severity.HIGH, several) is Severity.CRITICAL
    assert raised_severity(Severity.LOW, several) is Severity.MEDIUM
    assert raised_severity(Severity.CRITICAL, several) is None, "nothing above critical"
    assert raised_severity(Severity.HIGH, alone) is None
    assert raised_severity(None, several) is None


def test_the_impact_names_the_features_the_tier_served_limits_and_the_typical_recovery() -> None:
    detected = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    radius = assess(POLICIES, "chat", "primary-llm", {})
    impact = impact_of(
        service="chat",
        tier=FallbackTier.TIER_1_SECONDARY,
        policy=POLICIES["chat"],
        critical=False,
        typical_minutes=FailureType.MODEL_UNAVAILABLE.typical_recovery_minutes,
        detected_at=detected,
        radius=radius,
    )
    assert impact.affected_features == ["analytics", "feature_richness", "recommendations", "response_quality"]
    assert impact.description.startswith("chat served by tier_1_secondary at degraded_l1 (80% of features")
    assert "3 services hit" in impact.description
    minutes = FailureType.MODEL_UNAVAILABLE.typical_recovery_minutes
    assert impact.estimated_recovery_minutes == minutes
    assert (
        impact.estimated_recovery_at is not None and (impact.estimated_recovery_at - detected).seconds == 60 * minutes
    )
    critical = impact_of(
        service="chat",
        tier=FallbackTier.TIER_1_SECONDARY,
        policy=POLICIES["chat"],
        critical=True,
        typical_minutes=None,
        detected_at=None,
        radius=None,
    )
    assert "search" in critical.affected_features and critical.estimated_recovery_at is None  # the L2 floor
