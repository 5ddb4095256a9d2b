"""Pure decisions the workflows and activities share: classify, pick a tier, judge a check or a ramp step.

No I/O and no clock here, so each is unit-tested on its own and is deterministic inside a workflow.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from governor.enums import DegradationLevel, FailureType, FallbackTier, HealthStatus, NotificationAudience, Severity
from governor.models import Classification, ProbeResult, StatsWindow, TierStats
from governor.policy import RecoveryChecks, Rollback, Thresholds

BASE_SEVERITY: dict[FailureType, Severity] = {t: t.base_severity for t in FailureType}
"""Base severity per failure type (README: "Severity rules"; the table is governor.enums.FAILURE_FACTS)."""


def health_status_of(ok: bool, latency_ms: float, thresholds: Thresholds) -> HealthStatus:
    """The seed's check_health rule: latency above warning is degraded, above critical unhealthy."""
    if not ok or latency_ms > thresholds.latency_critical_ms:
        return HealthStatus.UNHEALTHY
    if latency_ms > thresholds.latency_warning_ms:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def classify_probe(probe: ProbeResult, others_answer: bool = False) -> Classification | None:
    """Classify a failed health probe; `others_answer` says whether the service's other dependencies respond."""
    if probe.ok and probe.status is not HealthStatus.UNHEALTHY:
        return None
    kind = probe.error_kind
    where = f"{probe.dependency} ({probe.url})"
    if kind == "auth":
        ftype, reason = FailureType.CONFIGURATION_ERROR, f"{where} refused our credentials (HTTP {probe.status_code})"
    elif kind == "bad_body":
        ftype, reason = FailureType.DATA_CORRUPTION, f"{where} answered a body that failed its check: {probe.error}"
    elif kind in {"dns", "unreachable"}:
        if others_answer:
            ftype, reason = (
                FailureType.NETWORK_PARTITION,
                f"{where} unreachable ({kind}) while other dependencies answer",
            )
        else:
            ftype, reason = FailureType.DEPENDENCY_DOWN, f"{where} unreachable ({kind})"
    elif kind == "refused" or kind == "http_status":
        if kind == "refused":
            detail = "connection refused"
        elif probe.status_code is not None:
            detail = f"HTTP {probe.status_code}"
        else:  # the connection broke off before an answer (reset, closed mid-response)
            detail = probe.error or "no answer"
        ftype, reason = FailureType.MODEL_UNAVAILABLE, f"{where} health check failed: {detail}"
    elif kind == "timeout":
        ftype, reason = FailureType.TIMEOUT, f"{where} did not answer within its timeout"
    elif kind == "rate_limited":
        ftype, reason = FailureType.RATE_LIMITED, f"{where} answered 429 Too Many Requests"
    else:  # answered, but too slowly
        ftype, reason = FailureType.HIGH_LATENCY, f"{where} answered in {probe.latency_ms:.0f} ms"
    return Classification(
        failure_type=ftype,
        severity=BASE_SEVERITY[ftype],
        reason=reason,
        metrics={"latency_ms": probe.latency_ms, "status_code": float(probe.status_code or 0)},
    )


def classify_stats(stats: TierStats, thresholds: Thresholds, min_samples: int) -> Classification | None:
    """The seed's detect_failure on a gateway stats window; fewer than `min_samples` requests never classify."""
    metrics = {
        "error_rate": stats.error_rate,
        "p99_ms": stats.p99_ms,
        "in_flight": float(stats.in_flight),
        "requests": float(stats.requests),
        "rate_limited": float(stats.rate_limited),
    }
    if stats.in_flight > thresholds.queue_depth_critical:
        return Classification(
            failure_type=FailureType.CAPACITY_EXCEEDED,
            severity=Severity.HIGH,
            reason=f"{stats.in_flight} requests in flight > {thresholds.queue_depth_critical}",
            metrics=metrics,
        )
    if stats.requests < min_samples:
        return None
    rate_limited_share = stats.rate_limited / stats.requests
    if stats.p99_ms > thresholds.latency_critical_ms:
        ftype, reason = FailureType.HIGH_LATENCY, f"p99 {stats.p99_ms:.0f} ms > {thresholds.latency_critical_ms:.0f} ms"
    elif rate_limited_share > thresholds.rate_limited_share:
        ftype = FailureType.RATE_LIMITED
        reason = f"{rate_limited_share:.0%} of requests answered 429 > {thresholds.rate_limited_share:.0%}"
    elif stats.error_rate > thresholds.error_rate_critical:
        ftype = FailureType.ERROR_SPIKE
        reason = f"error rate {stats.error_rate:.1%} > {thresholds.error_rate_critical:.1%}"
    else:
        return None
    severity = BASE_SEVERITY[ftype]
    if stats.error_rate >= 0.5:
        severity = Severity.CRITICAL
    return Classification(failure_type=ftype, severity=severity, reason=reason, metrics=metrics)


def pick_tier(
    chain: list[FallbackTier],
    unavailable: set[FallbackTier],
    health: dict[FallbackTier, HealthStatus] | None = None,
) -> FallbackTier:
    """The highest tier of the chain that is not known bad; the explicit error tier when none is left.

    Cache and static tiers have no upstream to fail, so they count as available unless marked otherwise.
    """
    health = health or {}
    for tier in chain:
        if tier in unavailable:
            continue
        if not health.get(tier, HealthStatus.HEALTHY).allows_traffic:
            continue
        return tier
    return FallbackTier.TIER_5_ERROR


class CheckResult(BaseModel):
    name: str
    passed: bool
    threshold: float
    actual: float | None


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WAIT = "wait"  # not enough data yet: never pass or fail on a handful of requests


class ValidationResult(BaseModel):
    verdict: Verdict
    checks: list[CheckResult] = Field(default_factory=list)
    reason: str = ""


def run_recovery_checks(
    consecutive_passes: int, sample: TierStats, checks: RecoveryChecks, *, check_throughput: bool = False
) -> ValidationResult:
    """The seed's RECOVERY_CHECKS on probe results (and, once traffic flows, on live throughput)."""
    if sample.requests < checks.min_samples:
        return ValidationResult(verdict=Verdict.WAIT, reason=f"{sample.requests} samples < {checks.min_samples} needed")
    results = [
        CheckResult(
            name="health_endpoint",
            passed=consecutive_passes >= checks.health_passes,
            threshold=checks.health_passes,
            actual=consecutive_passes,
        ),
        CheckResult(
            name="latency", passed=sample.p99_ms <= checks.p99_ms, threshold=checks.p99_ms, actual=sample.p99_ms
        ),
        CheckResult(
            name="error_rate",
            passed=sample.error_rate <= checks.error_rate,
            threshold=checks.error_rate,
            actual=sample.error_rate,
        ),
    ]
    if check_throughput:
        results.append(
            CheckResult(
                name="throughput",
                passed=sample.rps >= checks.throughput_bar,
                threshold=checks.throughput_bar,
                actual=sample.rps,
            )
        )
    failed = [r for r in results if not r.passed]
    if not failed:
        return ValidationResult(verdict=Verdict.PASS, checks=results, reason="all recovery checks passed")
    reason = "; ".join(f"{r.name} {r.actual} vs {r.threshold}" for r in failed)
    return ValidationResult(verdict=Verdict.FAIL, checks=results, reason=reason)


class StepJudgement(BaseModel):
    verdict: Verdict
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)


THROUGHPUT_SHARE = 0.5
"""A ramp step's throughput check: the primary must carry at least this share of its part of the throughput bar
(`recovery_checks.throughput_bar * percent / 100`): the weighted split is random, so an exact bar would wait on
noise, while a primary answering far fewer requests than it is sent (a stalled pool, a half-dead replica) waits."""


def throughput_needed(checks: RecoveryChecks, percent: float, offered_rps: float | None = None) -> float:
    """Requests per second the primary must carry at `percent` % for a ramp sample to pass; 0 (not judged) unless
    the policy says the service's usual traffic (`normal_rps`): without it a quiet service would wait forever on
    the seed's 100 rps bar. With `offered_rps` (what clients sent in the window, `offered_rps(window)`) the bar is
    never above the traffic there is: a service quieter than usual (at night, in a lull) is judged on its share of
    the traffic it has, not held at a step forever."""
    if checks.normal_rps is None:
        return 0.0
    bar = checks.throughput_bar if offered_rps is None else min(checks.throughput_bar, offered_rps)
    return bar * percent / 100.0 * THROUGHPUT_SHARE


def offered_rps(window: StatsWindow) -> float:
    """Client requests a second the service got in the window: each is answered by exactly one tier (a failed
    attempt falls through and is counted again where it lands) or by the explicit error tier."""
    answered = 0.0
    for name, t in window.tiers.items():
        answered += t.rps if name == FallbackTier.TIER_5_ERROR.value else t.rps * (1.0 - t.error_rate)
    return answered


def judge_ramp_step(
    primary: TierStats, percent: int, rollback: Rollback, checks: RecoveryChecks, offered: float | None = None
) -> StepJudgement:
    """One sample of the primary during a ramp step: FAIL rolls back, WAIT means too little traffic to tell.

    Rollback needs `min_samples` requests in the window, so three unlucky requests never roll back a ramp;
    a healthy window with too little traffic for the step's share of normal throughput is WAIT, not PASS.
    """
    metrics = {
        "error_rate": primary.error_rate,
        "p99_ms": primary.p99_ms,
        "requests": float(primary.requests),
        "rps": primary.rps,
        "percent": float(percent),
    }
    if primary.requests < checks.min_samples:
        return StepJudgement(
            verdict=Verdict.WAIT,
            reason=f"{primary.requests} requests at {percent}% < {checks.min_samples} needed to judge",
            metrics=metrics,
        )
    if primary.error_rate > rollback.error_rate:
        return StepJudgement(
            verdict=Verdict.FAIL,
            reason=f"error rate {primary.error_rate:.1%} > {rollback.error_rate:.1%} at {percent}%",
            metrics=metrics,
        )
    if rollback.p99_ms is not None and primary.p99_ms > rollback.p99_ms:
        return StepJudgement(
            verdict=Verdict.FAIL,
            reason=f"p99 {primary.p99_ms:.0f} ms > {rollback.p99_ms:.0f} ms at {percent}%",
            metrics=metrics,
        )
    needed = throughput_needed(checks, percent, offered)
    metrics["rps_needed"] = needed
    if offered is not None:
        metrics["rps_offered"] = offered
    if primary.rps < needed:
        bar = checks.throughput_bar if offered is None else min(checks.throughput_bar, offered)
        return StepJudgement(
            verdict=Verdict.WAIT,
            reason=f"throughput {primary.rps:.1f} rps at {percent}% < {needed:.1f} rps needed (half its share of "
            f"{bar:g} rps)",
            metrics=metrics,
        )
    return StepJudgement(
        verdict=Verdict.PASS,
        reason=f"error rate {primary.error_rate:.1%}, p99 {primary.p99_ms:.0f} ms, {primary.rps:.1f} rps",
        metrics=metrics,
    )


def audiences_for(level: DegradationLevel, severity: Severity | None) -> list[NotificationAudience]:
    """Who hears about an incident at this degradation level (README: "Who is told").

    On-call and the internal channel always; customers (status page) once anything is degraded; users (in-app)
    when the seed's level says users must be notified; leadership for critical incidents or emergency levels;
    the public from emergency on.
    """
    audiences = [NotificationAudience.ONCALL, NotificationAudience.INTERNAL]
    if level is not DegradationLevel.NORMAL:
        audiences.append(NotificationAudience.CUSTOMERS)
    if level.user_notification_required:
        audiences.append(NotificationAudience.USERS)
    if severity is Severity.CRITICAL or level.rank >= DegradationLevel.EMERGENCY.rank:
        audiences.append(NotificationAudience.LEADERSHIP)
    if level.rank >= DegradationLevel.EMERGENCY.rank:
        audiences.append(NotificationAudience.PUBLIC)
    return audiences


def status_component(level: DegradationLevel) -> str:
    """Statuspage component status for a degradation level."""
    if level is DegradationLevel.NORMAL:
        return "operational"
    if level.rank <= DegradationLevel.DEGRADED_L2.rank:
        return "degraded_performance"
    if level.rank <= DegradationLevel.EMERGENCY.rank:
        return "partial_outage"
    return "major_outage"
