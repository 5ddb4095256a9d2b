"""governor.decisions: the pure rules the workflow follows (classify, pick a tier, judge a check or a ramp step).

Thresholds are the seed's (FailureDetectorEngine.THRESHOLDS, RECOVERY_CHECKS, should_rollback), read from the copy of
the seed in tests/governor/seed.py, so a default that drifts from the seed fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from governor.decisions import (
    BASE_SEVERITY,
    Verdict,
    audiences_for,
    classify_probe,
    classify_stats,
    health_status_of,
    judge_ramp_step,
    offered_rps,
    pick_tier,
    run_recovery_checks,
    status_component,
)
from governor.enums import (
    DegradationLevel,
    FailureType,
    FallbackTier,
    HealthStatus,
    NotificationAudience,
    Severity,
)
from governor.models import ProbeErrorKind, ProbeResult, StatsWindow, TierStats
from governor.policy import RecoveryChecks, Rollback, Thresholds
from tests.governor import seed

T = Thresholds()
CHECKS = RecoveryChecks()
ROLLBACK = Rollback()
CHAIN = list(FallbackTier)[:5]


def probe(
    ok: bool, kind: ProbeErrorKind | None = None, latency_ms: float = 10.0, code: int | None = None
) -> ProbeResult:
    return ProbeResult(
        dependency="primary-llm",
        url="http://127.0.0.1:9/health",
        ok=ok,
        status=HealthStatus.HEALTHY if ok else HealthStatus.UNHEALTHY,
        latency_ms=latency_ms,
        status_code=code,
        error_kind=kind,
        checked_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_every_failure_type_has_a_base_severity() -> None:
    assert set(BASE_SEVERITY) == set(FailureType)


@pytest.mark.parametrize(
    ("ok", "latency", "expected"),
    [
        (True, seed.THRESHOLDS["latency_warning_ms"], HealthStatus.HEALTHY),  # at the threshold: not above it
        (True, seed.THRESHOLDS["latency_warning_ms"] + 1, HealthStatus.DEGRADED),
        (True, seed.THRESHOLDS["latency_critical_ms"], HealthStatus.DEGRADED),
        (True, seed.THRESHOLDS["latency_critical_ms"] + 1, HealthStatus.UNHEALTHY),
        (False, 1, HealthStatus.UNHEALTHY),
    ],
)
def test_health_status_follows_the_seeds_latency_thresholds(ok: bool, latency: float, expected: HealthStatus) -> None:
    assert health_status_of(ok, latency, T) is expected


@pytest.mark.parametrize(
    ("kind", "code", "others", "expected"),
    [
        ("auth", 401, False, FailureType.CONFIGURATION_ERROR),
        ("bad_body", 200, False, FailureType.DATA_CORRUPTION),
        ("dns", None, False, FailureType.DEPENDENCY_DOWN),
        ("unreachable", None, False, FailureType.DEPENDENCY_DOWN),
        ("unreachable", None, True, FailureType.NETWORK_PARTITION),
        ("dns", None, True, FailureType.NETWORK_PARTITION),
        ("refused", None, False, FailureType.MODEL_UNAVAILABLE),
        ("http_status", 503, False, FailureType.MODEL_UNAVAILABLE),
        ("http_status", None, False, FailureType.MODEL_UNAVAILABLE),
        ("timeout", None, False, FailureType.TIMEOUT),
        ("rate_limited", 429, False, FailureType.RATE_LIMITED),
        (None, 200, False, FailureType.HIGH_LATENCY),
    ],
)
def test_a_failed_probe_is_classified_by_what_went_wrong(
    kind: ProbeErrorKind | None, code: int | None, others: bool, expected: FailureType
) -> None:
    c = classify_probe(probe(False, kind, latency_ms=2500, code=code), others_answer=others)
    assert c is not None
    assert c.failure_type is expected and c.severity is BASE_SEVERITY[expected]
    assert "primary-llm" in c.reason
    assert c.metrics["latency_ms"] == 2500


def test_a_healthy_probe_is_not_a_failure() -> None:
    assert classify_probe(probe(True)) is None


def test_a_broken_off_answer_says_so() -> None:
    p = probe(False, "http_status").model_copy(update={"error": "connection reset"})
    c = classify_probe(p)
    assert c is not None and "connection reset" in c.reason


def stats(**kw: float) -> TierStats:
    return TierStats(**{"requests": 100, "rps": 100, **kw})  # type: ignore[arg-type]


def test_stats_below_the_seeds_thresholds_are_no_failure() -> None:
    quiet = stats(error_rate=seed.THRESHOLDS["error_rate_critical"], p99_ms=seed.THRESHOLDS["latency_critical_ms"])
    assert classify_stats(quiet, T, min_samples=20) is None


@pytest.mark.parametrize(
    ("window", "expected", "severity"),
    [
        ({"p99_ms": 2001}, FailureType.HIGH_LATENCY, Severity.HIGH),
        ({"error_rate": 0.051}, FailureType.ERROR_SPIKE, Severity.CRITICAL),
        ({"rate_limited": 21}, FailureType.RATE_LIMITED, Severity.MEDIUM),
        ({"rate_limited": 21, "error_rate": 0.6}, FailureType.RATE_LIMITED, Severity.CRITICAL),  # half failing
        ({"in_flight": 501, "requests": 0}, FailureType.CAPACITY_EXCEEDED, Severity.HIGH),  # even with no samples
        ({"p99_ms": 2001, "error_rate": 0.9}, FailureType.HIGH_LATENCY, Severity.CRITICAL),  # latency checked first
    ],
)
def test_stats_windows_classify_as_the_seeds_detect_failure(
    window: dict[str, float], expected: FailureType, severity: Severity
) -> None:
    c = classify_stats(stats(**window), T, min_samples=20)
    assert c is not None and c.failure_type is expected and c.severity is severity


def test_too_few_requests_never_classify() -> None:
    assert classify_stats(stats(requests=19, error_rate=1.0, p99_ms=9999), T, min_samples=20) is None


def test_pick_tier_takes_the_highest_available_tier() -> None:
    assert pick_tier(CHAIN, set()) is FallbackTier.TIER_0_PRIMARY
    assert pick_tier(CHAIN, {FallbackTier.TIER_0_PRIMARY}) is FallbackTier.TIER_1_SECONDARY
    unhealthy = {FallbackTier.TIER_1_SECONDARY: HealthStatus.UNHEALTHY}
    assert pick_tier(CHAIN, {FallbackTier.TIER_0_PRIMARY}, unhealthy) is FallbackTier.TIER_2_CACHE
    recovering = {FallbackTier.TIER_1_SECONDARY: HealthStatus.RECOVERING}  # the seed lets recovering serve
    assert pick_tier(CHAIN, {FallbackTier.TIER_0_PRIMARY}, recovering) is FallbackTier.TIER_1_SECONDARY
    assert pick_tier(CHAIN, set(CHAIN)) is FallbackTier.TIER_5_ERROR
    assert pick_tier([], set()) is FallbackTier.TIER_5_ERROR


def test_recovery_checks_use_the_seeds_thresholds() -> None:
    seed_checks: list[dict[str, Any]] = seed.RECOVERY_CHECKS
    by_name: dict[str, float] = {c["name"]: c["threshold"] for c in seed_checks}
    good = stats(p99_ms=by_name["latency"], error_rate=by_name["error_rate"], rps=by_name["throughput"])
    result = run_recovery_checks(int(by_name["health_endpoint"]), good, CHECKS, check_throughput=True)
    assert result.verdict is Verdict.PASS
    assert {c.name: c.threshold for c in result.checks} == by_name


@pytest.mark.parametrize(
    ("passes", "window", "failed"),
    [
        (2, {}, "health_endpoint"),
        (3, {"p99_ms": 501}, "latency"),
        (3, {"error_rate": 0.011}, "error_rate"),
        (3, {"rps": 99}, "throughput"),
    ],
)
def test_one_failed_recovery_check_fails_validation_naming_it(
    passes: int, window: dict[str, float], failed: str
) -> None:
    result = run_recovery_checks(passes, stats(**{"rps": 100, **window}), CHECKS, check_throughput=True)
    assert result.verdict is Verdict.FAIL
    assert [c.name for c in result.checks if not c.passed] == [failed]
    assert failed in result.reason


def test_low_traffic_waits_instead_of_failing() -> None:
    result = run_recovery_checks(3, stats(requests=5, error_rate=1.0), CHECKS)
    assert result.verdict is Verdict.WAIT and "5 samples" in result.reason


def test_throughput_scales_to_the_services_normal_traffic() -> None:
    quiet = RecoveryChecks(normal_rps=5)
    assert quiet.throughput_bar == 5
    assert run_recovery_checks(3, stats(rps=6), quiet, check_throughput=True).verdict is Verdict.PASS
    assert RecoveryChecks(normal_rps=500).throughput_bar == seed.RECOVERY_CHECKS[3]["threshold"]


def test_a_ramp_step_rolls_back_above_the_seeds_error_rate() -> None:
    at = seed.ROLLBACK_ERROR_RATE
    assert judge_ramp_step(stats(error_rate=at), 10, ROLLBACK, CHECKS).verdict is Verdict.PASS
    over = judge_ramp_step(stats(error_rate=at + 0.001), 10, ROLLBACK, CHECKS)
    assert over.verdict is Verdict.FAIL and "10%" in over.reason and over.metrics["percent"] == 10


def test_a_ramp_step_rolls_back_on_p99_only_when_policy_asks() -> None:
    slow = stats(p99_ms=5000)
    assert judge_ramp_step(slow, 25, ROLLBACK, CHECKS).verdict is Verdict.PASS
    assert judge_ramp_step(slow, 25, Rollback(p99_ms=1000), CHECKS).verdict is Verdict.FAIL


def test_a_ramp_step_waits_while_the_primary_carries_too_little_of_its_share() -> None:
    checks = RecoveryChecks(normal_rps=40, min_samples=5)  # bar 40 rps: at 50 % it must carry >= 10 rps
    starved = judge_ramp_step(stats(rps=4), 50, ROLLBACK, checks)
    assert starved.verdict is Verdict.WAIT and "throughput 4.0 rps at 50% < 10.0 rps" in starved.reason
    assert judge_ramp_step(stats(rps=12), 50, ROLLBACK, checks).verdict is Verdict.PASS
    assert judge_ramp_step(stats(rps=4), 10, ROLLBACK, checks).verdict is Verdict.PASS  # 10 %: 2 rps needed


def test_a_quieter_service_is_judged_on_the_traffic_it_has_not_held_at_a_step_forever() -> None:
    """normal_rps 40, but clients send 20 rps tonight: at 100 % the primary carries 19.3 rps, which is all of it
    (found by bench/kill9.py: the ramp waited at 100 % for ever). A primary skipped for the fallback still waits."""
    checks = RecoveryChecks(normal_rps=40, min_samples=5)
    assert judge_ramp_step(stats(rps=19.3), 100, ROLLBACK, checks).verdict is Verdict.WAIT  # absolute bar 20 rps
    quiet = StatsWindow(window_s=10, tiers={"tier_0_primary": stats(rps=19.3)})
    assert offered_rps(quiet) == pytest.approx(19.3)
    judged = judge_ramp_step(stats(rps=19.3), 100, ROLLBACK, checks, offered_rps(quiet))
    assert judged.verdict is Verdict.PASS and judged.metrics["rps_needed"] == pytest.approx(9.65)
    skipped = StatsWindow(
        window_s=10,
        tiers={
            "tier_0_primary": stats(rps=2.0),
            "tier_1_secondary": stats(rps=18.0),
            "tier_5_error": stats(rps=1.0, error_rate=1.0),
        },
    )
    assert offered_rps(skipped) == pytest.approx(21.0)  # every answer once, the explicit 503s included
    assert judge_ramp_step(stats(rps=2.0), 50, ROLLBACK, checks, offered_rps(skipped)).verdict is Verdict.WAIT


def test_three_unlucky_requests_never_roll_back() -> None:
    judged = judge_ramp_step(stats(requests=3, errors=3, error_rate=1.0), 10, ROLLBACK, CHECKS)
    assert judged.verdict is Verdict.WAIT


@pytest.mark.parametrize(
    ("level", "severity", "expected"),
    [
        (DegradationLevel.NORMAL, None, {"oncall", "internal"}),
        (DegradationLevel.DEGRADED_L1, Severity.HIGH, {"oncall", "internal", "customers"}),
        (DegradationLevel.DEGRADED_L2, Severity.HIGH, {"oncall", "internal", "customers", "users"}),
        (DegradationLevel.DEGRADED_L1, Severity.CRITICAL, {"oncall", "internal", "customers", "leadership"}),
        (
            DegradationLevel.EMERGENCY,
            Severity.LOW,
            {"oncall", "internal", "customers", "users", "leadership", "public"},
        ),
    ],
)
def test_who_is_told(level: DegradationLevel, severity: Severity | None, expected: set[str]) -> None:
    got = audiences_for(level, severity)
    assert {a.value for a in got} == expected and len(got) == len(set(got))
    assert got[0] is NotificationAudience.ONCALL  # on-call first, always


def test_status_component_for_every_level() -> None:
    assert [status_component(level) for level in DegradationLevel] == [
        "operational",
        "degraded_performance",
        "degraded_performance",
        "partial_outage",
        "partial_outage",
        "major_outage",
    ]
