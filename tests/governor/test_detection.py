"""Pure detection rules: hysteresis never flaps, every observable failure type classifies, burn rates fire right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from governor.detection import (
    BurnRateConfig,
    Hysteresis,
    WatchdogConfig,
    adjust_severity,
    burn_rate,
    classify_observation,
    error_ratio_query,
    evaluate_burn,
    missed_heartbeat,
    page_rules,
    step,
    wilson_lower_bound,
    window_label,
)
from governor.enums import FailureType, FallbackTier, HealthStatus, Severity
from governor.models import Classification, ProbeErrorKind, ProbeResult, TierStats
from governor.policy import Thresholds, load_policy

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "chat.yaml")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BAD = Classification(failure_type=FailureType.MODEL_UNAVAILABLE, severity=Severity.CRITICAL, reason="refused")


def probe(kind: ProbeErrorKind | None = None, latency_ms: float = 5, code: int | None = 200) -> ProbeResult:
    ok = kind is None
    status = HealthStatus.UNHEALTHY if not ok or latency_ms > 2000 else HealthStatus.HEALTHY
    return ProbeResult(
        dependency="primary-llm",
        url="http://127.0.0.1:1/health",
        ok=ok,
        status=status,
        latency_ms=latency_ms,
        status_code=code,
        error_kind=kind,
        checked_at=T0,
    )


def run(observations: list[bool], config: WatchdogConfig) -> tuple[Hysteresis, list[tuple[int, str]]]:
    h = Hysteresis()
    transitions: list[tuple[int, str]] = []
    for i, bad in enumerate(observations):
        h, t = step(h, BAD if bad else None, T0 + timedelta(seconds=i), config)
        if t:
            transitions.append((i, t))
    return h, transitions


def test_n_consecutive_bad_evaluations_confirm_and_n_good_clear() -> None:
    h, transitions = run([True, True, True, False, False, False], WatchdogConfig(confirm_after=3, clear_after=3))
    assert transitions == [(2, "confirmed"), (5, "cleared")]
    assert not h.failing and h.suspect is None


def test_alternating_noise_never_confirms_nor_clears() -> None:
    noise = [True, False, True, True, False] * 20
    _, transitions = run(noise, WatchdogConfig(confirm_after=3, clear_after=3))
    assert transitions == []
    # once failing, isolated good evaluations do not clear it
    _, transitions = run([True] * 3 + [False, False, True] * 10, WatchdogConfig(confirm_after=3, clear_after=3))
    assert transitions == [(2, "confirmed")]


def test_confirmation_keeps_the_worst_classification_and_the_first_bad_time() -> None:
    cfg = WatchdogConfig(confirm_after=2)
    slow = Classification(failure_type=FailureType.HIGH_LATENCY, severity=Severity.HIGH, reason="slow")
    h, _ = step(Hysteresis(), BAD, T0, cfg)
    h, t = step(h, slow, T0 + timedelta(seconds=1), cfg)
    assert t == "confirmed" and h.suspect == BAD and h.first_bad_at == T0
    assert h.confirmed_at == T0 + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("kind", "others", "expected"),
    [
        ("refused", False, FailureType.MODEL_UNAVAILABLE),
        ("http_status", False, FailureType.MODEL_UNAVAILABLE),
        ("timeout", False, FailureType.TIMEOUT),
        ("rate_limited", False, FailureType.RATE_LIMITED),
        ("dns", True, FailureType.NETWORK_PARTITION),
        ("unreachable", True, FailureType.NETWORK_PARTITION),
        ("unreachable", False, FailureType.DEPENDENCY_DOWN),
        ("bad_body", False, FailureType.DATA_CORRUPTION),
        ("auth", False, FailureType.CONFIGURATION_ERROR),
    ],
)
def test_probe_failures_classify(kind: ProbeErrorKind, others: bool, expected: FailureType) -> None:
    c = classify_observation(probe(kind), None, Thresholds(), min_samples=20, others_answer=others)
    assert c is not None and c.failure_type is expected


def test_stats_window_failures_classify() -> None:
    th = Thresholds()
    cases = {
        FailureType.ERROR_SPIKE: TierStats(requests=100, errors=10, error_rate=0.1),
        FailureType.HIGH_LATENCY: TierStats(requests=100, p99_ms=2500),
        FailureType.RATE_LIMITED: TierStats(requests=100, rate_limited=40, errors=40, error_rate=0.04),
        FailureType.CAPACITY_EXCEEDED: TierStats(requests=5, in_flight=600),
    }
    for expected, stats in cases.items():
        c = classify_observation(probe(), stats, th, min_samples=20)
        assert c is not None and c.failure_type is expected, expected
    # a healthy probe with a slow-but-under-critical answer is not a failure
    assert classify_observation(probe(latency_ms=900), TierStats(requests=100, p99_ms=900), th, min_samples=20) is None


def test_a_quiet_window_never_pages() -> None:
    few = TierStats(requests=3, errors=3, error_rate=1.0)
    assert classify_observation(probe(), few, Thresholds(), min_samples=20) is None


def test_missed_heartbeat_is_dependency_down() -> None:
    c = missed_heartbeat("primary-llm", 6.0)
    assert c.failure_type is FailureType.DEPENDENCY_DOWN and "6.0 s" in c.reason


def test_severity_rules_follow_the_tier_the_dependency_backs() -> None:
    spike = Classification(failure_type=FailureType.RATE_LIMITED, severity=Severity.MEDIUM, reason="429s")
    assert adjust_severity(spike, POLICY, "primary-llm").severity is Severity.MEDIUM
    assert adjust_severity(spike, POLICY, "secondary-llm").severity is Severity.LOW
    only_primary = POLICY.model_copy(
        update={
            "chain": [
                t
                for t in POLICY.chain
                if t.tier is not FallbackTier.TIER_1_SECONDARY and t.tier is not FallbackTier.TIER_3_DEGRADED
            ],
            "dependencies": [POLICY.dependency("primary-llm")],
        }
    )
    assert adjust_severity(spike, only_primary, "primary-llm").severity is Severity.HIGH


def test_burn_rate_is_error_ratio_over_budget() -> None:
    assert burn_rate(0.0144, 99.9) == pytest.approx(14.4)
    assert burn_rate(0.001, 99.9) == pytest.approx(1.0)


def test_multiwindow_burn_needs_both_windows() -> None:
    rules = page_rules()
    # 2 % errors against a 99.9 % SLO burns 20x: fast burn only if the short window still burns
    hot: dict[int, float | None] = {3600: 0.02, 300: 0.02, 21600: 0.002, 1800: 0.002}
    c, rates = evaluate_burn(hot, 99.9, rules, "primary-llm")
    assert c is not None and c.severity is Severity.CRITICAL and "fast burn" in c.reason
    assert rates["1h"] == pytest.approx(20.0)
    over: dict[int, float | None] = {3600: 0.02, 300: 0.0001, 21600: 0.002, 1800: 0.0001}  # the spike is over: no page
    assert evaluate_burn(over, 99.9, rules, "primary-llm")[0] is None
    slow: dict[int, float | None] = {3600: 0.008, 300: 0.008, 21600: 0.008, 1800: 0.008}  # 8x: slow burn only
    c, _ = evaluate_burn(slow, 99.9, rules, "primary-llm")
    assert c is not None and c.severity is Severity.HIGH and "slow burn" in c.reason
    assert evaluate_burn({3600: None, 300: 0.5}, 99.9, rules, "primary-llm")[0] is None


def test_scaled_windows_and_query() -> None:
    fast, slow = page_rules(scale=1 / 360)
    assert (fast.long_window_s, fast.short_window_s, slow.long_window_s, slow.short_window_s) == (10, 1, 60, 5)
    assert [window_label(s) for s in (3600, 300, 45)] == ["1h", "5m", "45s"]
    q = error_ratio_query(BurnRateConfig(prometheus_url="http://x"), "chat", FallbackTier.TIER_0_PRIMARY, 300)
    assert 'service="chat",tier="tier_0_primary"' in q and "[5m]" in q
    assert 'governor_gateway_tier_skipped_total{service="chat",tier="tier_0_primary",cause!~"deadline|operator"}' in q
    bare = BurnRateConfig(prometheus_url="http://x", skipped_metric=None)
    assert "skipped" not in error_ratio_query(bare, "chat", FallbackTier.TIER_0_PRIMARY, 300)


def test_error_share_pages_only_when_significant() -> None:
    th = Thresholds()
    noise = TierStats(requests=100, errors=6, error_rate=0.06)  # above 5 %, but within the noise of 100 samples
    assert classify_observation(probe(), noise, th, min_samples=20) is None
    spike = TierStats(requests=20, errors=8, error_rate=0.4)
    c = classify_observation(probe(), spike, th, min_samples=20)
    assert c is not None and c.failure_type is FailureType.ERROR_SPIKE
    assert wilson_lower_bound(0, 100) == 0.0 and 0.05 < wilson_lower_bound(11, 100) < 0.11
