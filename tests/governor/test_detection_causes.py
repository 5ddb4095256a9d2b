"""The stats window's verdict from the gateway's causes (governor/detection.py, docs/detection.md)."""

from __future__ import annotations

import pytest

from governor.detection import classify_causes, classify_observation, classify_traffic
from governor.enums import FailureType, Severity
from governor.models import TierStats
from governor.policy import Thresholds

T = Thresholds()


def window(requests: int, causes: dict[str, int], skipped_causes: dict[str, int] | None = None) -> TierStats:
    skipped_causes = skipped_causes or {}
    errors = sum(causes.values())
    return TierStats(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        rate_limited=causes.get("rate_limited", 0),
        causes=causes,
        skipped=sum(skipped_causes.values()),
        skipped_by={"breaker_open": sum(skipped_causes.values())} if skipped_causes else {},
        skipped_causes=skipped_causes,
    )


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        ("rate_limited", FailureType.RATE_LIMITED),
        ("bad_body", FailureType.DATA_CORRUPTION),
        ("connect_error", FailureType.MODEL_UNAVAILABLE),
        ("disconnected", FailureType.MODEL_UNAVAILABLE),
        ("timeout", FailureType.TIMEOUT),
        ("http_5xx", FailureType.ERROR_SPIKE),
        ("protocol_error", FailureType.ERROR_SPIKE),
    ],
)
def test_the_majority_cause_names_the_failure(cause: str, expected: FailureType) -> None:
    c = classify_causes(window(100, {cause: 60, "http_5xx" if cause != "http_5xx" else "timeout": 10}), T, 20)
    assert c is not None and c.failure_type is expected
    assert c.severity is Severity.CRITICAL  # 70 % failing
    assert c.metrics[f"cause_{cause}"] == 60


def test_an_open_breaker_hides_nothing() -> None:
    # 5 attempts (all 429) and 95 requests the open breaker skipped for the same cause
    stats = window(5, {"rate_limited": 5}, {"rate_limited": 95})
    assert stats.observed == 100
    c = classify_causes(stats, T, 20)
    assert c is not None and c.failure_type is FailureType.RATE_LIMITED
    assert "95 of them skipped by an open breaker" in c.reason
    # the old count-only rule could not see it: 5 requests is below min_samples
    assert classify_traffic(window(5, {"rate_limited": 5}), T, 20) is None


def test_the_governors_own_breaker_and_spent_deadlines_are_not_failures() -> None:
    stats = TierStats(
        requests=0,
        skipped=80,
        skipped_by={"breaker_forced_open": 50, "deadline": 30},
        skipped_causes={"operator": 50, "deadline": 30},
    )
    assert stats.observed == 0 and stats.failure_causes() == {}
    assert classify_causes(stats, T, 20) is None


def test_noise_and_quiet_windows_stay_quiet() -> None:
    assert classify_causes(window(100, {"http_5xx": 3}), T, 20) is None  # 3 % < 5 % critical
    assert classify_causes(window(10, {"bad_body": 10}), T, 20) is None  # below min_samples
    assert classify_causes(window(200, {}), T, 20) is None


def test_a_429_share_above_its_threshold_is_rate_limited_even_below_the_error_threshold() -> None:
    thresholds = Thresholds(error_rate_critical=0.9, rate_limited_share=0.2)
    c = classify_causes(window(1000, {"rate_limited": 400}), thresholds, 20)
    assert c is not None and c.failure_type is FailureType.RATE_LIMITED


def test_latency_without_failures_still_comes_from_the_counts() -> None:
    stats = TierStats(requests=100, p99_ms=5000)
    c = classify_observation(None, stats, T, min_samples=20)
    assert c is not None and c.failure_type is FailureType.HIGH_LATENCY


def test_replica_windows_merge_their_causes() -> None:
    merged = TierStats.merge(
        [window(5, {"bad_body": 5}, {"bad_body": 20}), window(10, {"bad_body": 2, "timeout": 1}, {"bad_body": 3})]
    )
    assert merged.causes == {"bad_body": 7, "timeout": 1}
    assert merged.skipped_causes == {"bad_body": 23} and merged.skipped == 23
    assert merged.observed == 38
