"""Failure detection, pure: evaluate one observation, hysteresis over evaluations, severity, SLO burn rates.

The watchdog activity and workflow call these; no I/O and no clock here (times come in as arguments), so the
same evaluation runs in a unit test, inside the probing activity and, for missed heartbeats, inside the workflow.
Severity rules are written out in docs/detection.md.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from governor.decisions import BASE_SEVERITY, classify_probe, classify_stats
from governor.enums import FailureType, FallbackTier, Severity
from governor.incident import IncidentReport
from governor.models import NOT_BLAMED, Classification, ProbeResult, TierStats
from governor.policy import ServicePolicy, Thresholds

WATCHDOG_WORKFLOW_NAME = "WatchdogWorkflow"


def watchdog_id(service: str, dependency: str) -> str:
    """One watchdog per service dependency: the workflow id."""
    return f"watchdog-{service}-{dependency}"


class WatchdogNames:
    """Signal and query names of the watchdog workflow."""

    UPDATE_POLICY = "update_policy"
    STOP = "stop"
    STATE = "state"


class WatchActivity:
    """Activity names the watchdog workflow calls."""

    WATCH = "watch_dependency"
    REPORT = "report_watchdog_failure"


# --------------------------------------------------------------------------- settings


class BurnRateRule(BaseModel):
    """One multi-window burn-rate alert: both windows must burn faster than `factor` (Google SRE workbook, ch. 5)."""

    model_config = ConfigDict(frozen=True)

    name: str
    factor: float = Field(gt=0)
    long_window_s: int = Field(gt=0)
    short_window_s: int = Field(gt=0)
    severity: Severity


def page_rules(scale: float = 1.0) -> list[BurnRateRule]:
    """The workbook's paging pair: 14.4x over 1 h and 5 min (2 % of a 30-day budget in an hour), 6x over 6 h and
    30 min (5 % in six hours). `scale` < 1 shrinks every window by that factor, for tests and demos only."""

    def s(seconds: int) -> int:
        return max(1, round(seconds * scale))

    return [
        BurnRateRule(
            name="fast", factor=14.4, long_window_s=s(3600), short_window_s=s(300), severity=Severity.CRITICAL
        ),
        BurnRateRule(name="slow", factor=6.0, long_window_s=s(21600), short_window_s=s(1800), severity=Severity.HIGH),
    ]


class BurnRateConfig(BaseModel):
    """Optional SLO burn-rate detection from Prometheus; the SLO target is the dependency's `sla_target`."""

    prometheus_url: str
    requests_metric: str = "governor_gateway_tier_attempts_total"
    """The gateway's counter of tier attempts, labelled `service`, `tier` and `outcome`."""
    good_outcomes: str = "ok|client_error|hit|miss"
    """Outcomes that spend no error budget (a regex); every other outcome (timeout, http_5xx, rate_limited,
    connect_error, bad_body, ...) is an error."""
    skipped_metric: str | None = "governor_gateway_tier_skipped_total"
    """The gateway's counter of requests a tier skipped (labelled `reason` and `cause`): each one an error, except
    the governor's own forced breaker and deadlines spent elsewhere, so an open breaker never hides a burn."""
    rules: list[BurnRateRule] = Field(default_factory=page_rules)
    every_s: float = Field(default=15.0, gt=0)
    """Query Prometheus at most this often (its data moves at scrape speed anyway)."""


class WatchdogConfig(BaseModel):
    """How a watchdog watches: probe cadence and hysteresis. The same for every dependency unless overridden."""

    interval_s: float = Field(default=1.0, gt=0)
    """Probe interval while healthy."""
    suspect_interval_s: float = Field(default=0.2, gt=0)
    """Probe interval once an evaluation looked bad (and while failing): confirm or dismiss quickly."""
    confirm_after: int = Field(default=3, ge=1)
    """Consecutive bad evaluations that confirm a failure."""
    clear_after: int = Field(default=3, ge=1)
    """Consecutive good evaluations that clear it."""
    stats_window_s: int = Field(default=10, gt=0)
    min_samples: int = Field(default=20, ge=1)
    """Requests a stats window needs before it may classify anything (a quiet service never pages)."""
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    """Missed-heartbeat deadline; default: the dependency's probe timeout plus two intervals plus 2 s."""
    evaluations_per_run: int = Field(default=600, ge=1)
    """The probing activity returns after this many evaluations, so the workflow can continue as new."""
    burn_rate: BurnRateConfig | None = None

    def heartbeat_timeout(self, probe_timeout_ms: int) -> float:
        if self.heartbeat_timeout_s is not None:
            return self.heartbeat_timeout_s
        return probe_timeout_ms / 1000 + 2 * self.interval_s + 2.0


# --------------------------------------------------------------------------- evaluation


class Observation(BaseModel):
    """What one evaluation saw: the health probe, the gateway's stats window, burn rates, and what it concluded."""

    at: datetime
    probe: ProbeResult | None = None
    stats: TierStats | None = None
    others_answer: bool = False
    burn_rates: dict[str, float] = Field(default_factory=dict)
    """Burn rate per window (`1h`, `5m`, ...), when burn-rate detection is on."""
    classification: Classification | None = None

    @property
    def bad(self) -> bool:
        return self.classification is not None


def classify_observation(
    probe: ProbeResult | None,
    stats: TierStats | None,
    thresholds: Thresholds,
    *,
    min_samples: int,
    others_answer: bool = False,
    burn: Classification | None = None,
) -> Classification | None:
    """Combine the probe's, the stats window's and the burn rate's verdicts into one classification (or None).

    A failing probe names the cause most precisely (refused, DNS, 401, bad body), so it wins unless the traffic
    shows something more severe; among the rest the most severe wins, then the earliest (stats before burn).
    """
    found: list[Classification] = []
    if probe is not None:
        c = classify_probe(probe, others_answer=others_answer)
        if c is not None:
            found.append(c)
    if stats is not None:
        c = classify_traffic(stats, thresholds, min_samples)
        if c is not None:
            found.append(c)
    if burn is not None:
        found.append(burn)
    if not found:
        return None
    best = found[0]
    for c in found[1:]:
        if c.severity.rank > best.severity.rank:
            best = c
    return best


CAUSE_TYPES: dict[str, FailureType] = {
    "rate_limited": FailureType.RATE_LIMITED,
    "bad_body": FailureType.DATA_CORRUPTION,
    "connect_error": FailureType.MODEL_UNAVAILABLE,
    "disconnected": FailureType.MODEL_UNAVAILABLE,
    "timeout": FailureType.TIMEOUT,
    "bulkhead_full": FailureType.CAPACITY_EXCEEDED,
    "bulkhead_queue_timeout": FailureType.CAPACITY_EXCEEDED,
    "overloaded": FailureType.CAPACITY_EXCEEDED,
}
"""What the majority cause of a tier's failures says it is (docs/detection.md); any other cause (http_5xx,
protocol_error, a stream cut) is an error_spike."""


def classify_causes(stats: TierStats, thresholds: Thresholds, min_samples: int) -> Classification | None:
    """Classify a stats window by the causes the gateway counted: every failed attempt and every request an open
    breaker skipped (for the cause that opened it), so a breaker can never hide a failure.

    Fires when the failed share is above `error_rate_critical` with 95 % confidence, or the 429 share above
    `rate_limited_share`; the failure type is the commonest cause's (ties: the order of CAUSE_TYPES)."""
    observed = stats.observed
    if observed < min_samples:
        return None
    counts = stats.failure_causes()
    failed = sum(counts.values())
    if failed == 0:
        return None
    limited = counts.get("rate_limited", 0)
    spiking = wilson_lower_bound(failed, observed) > thresholds.error_rate_critical
    if not spiking and not wilson_lower_bound(limited, observed) > thresholds.rate_limited_share:
        return None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], _cause_rank(kv[0])))
    cause = ranked[0][0]
    ftype = CAUSE_TYPES.get(cause, FailureType.ERROR_SPIKE)
    share = failed / observed
    severity = BASE_SEVERITY[ftype]
    if share >= 0.5:  # the rule classify_stats applies: half the traffic failing is critical
        severity = Severity.CRITICAL
    skipped = stats.observed - stats.requests
    described = ", ".join(f"{k} {v}" for k, v in ranked)
    reason = (
        f"{failed} of {observed} requests failed ({share:.0%}: {described})"
        + (f", {skipped} of them skipped by an open breaker" if skipped else "")
        + f"; most are {cause}"
    )
    metrics = {
        "error_rate": round(share, 4),
        "requests": float(stats.requests),
        "skipped": float(skipped),
        "p99_ms": stats.p99_ms,
        "rate_limited": float(limited),
        **{f"cause_{k}": float(v) for k, v in counts.items()},
    }
    return Classification(failure_type=ftype, severity=severity, reason=reason, metrics=metrics)


def _cause_rank(cause: str) -> int:
    order = list(CAUSE_TYPES)
    return order.index(cause) if cause in order else len(order)


def classify_traffic(stats: TierStats, thresholds: Thresholds, min_samples: int) -> Classification | None:
    """The stats window's verdict: failures by cause first (`classify_causes`), then what the counts alone show
    (queue depth, latency, an error share) for windows without causes (older gateways)."""
    c = classify_causes(stats, thresholds, min_samples)
    if c is not None:
        return c
    c = classify_stats(stats, thresholds, min_samples)
    if c is None or not _significant(c, stats, thresholds):
        return None
    if c.failure_type in {FailureType.RATE_LIMITED, FailureType.ERROR_SPIKE} and stats.failure_causes():
        return None  # the causes were counted and judged above: not significant
    return c


def wilson_lower_bound(hits: int, n: int, z: float = 1.96) -> float:
    """Lower end of the 95 % Wilson interval of a proportion: what the true rate is at least, given the sample."""
    if n <= 0:
        return 0.0
    p = hits / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def _significant(c: Classification, stats: TierStats, thresholds: Thresholds) -> bool:
    """An error or 429 share pages only when it is above its threshold with 95 % confidence, so a 1 % background
    of errors never adds up to a false alarm in a small window (6 errors in 100 requests is noise; 11 is not)."""
    if c.failure_type is FailureType.ERROR_SPIKE:
        return wilson_lower_bound(stats.errors, stats.requests) > thresholds.error_rate_critical
    if c.failure_type is FailureType.RATE_LIMITED:
        return wilson_lower_bound(stats.rate_limited, stats.requests) > thresholds.rate_limited_share
    return True


def missed_heartbeat(dependency: str, silent_s: float) -> Classification:
    """The probing activity went silent (the seed's `dependency_down` by heartbeat)."""
    return Classification(
        failure_type=FailureType.DEPENDENCY_DOWN,
        severity=BASE_SEVERITY[FailureType.DEPENDENCY_DOWN],
        reason=f"{dependency}: no probe heartbeat for {silent_s:.1f} s",
        metrics={"silent_s": silent_s},
    )


def adjust_severity(classification: Classification, policy: ServicePolicy, dependency: str) -> Classification:
    """Severity rules on top of the base severity per type (docs/detection.md, "Severity rules").

    - a dependency backing a lower tier than the primary (a secondary, the degraded model) is one step less urgent:
      users are still served by the primary;
    - a dependency that is the service's last upstream-backed tier is one step more urgent: nothing is left to
      fall back to except cache and static answers.
    """
    tier = policy.failed_tier(dependency)
    severity = classification.severity
    upstream_tiers = [t.tier for t in policy.chain if t.upstream]
    if tier is not FallbackTier.TIER_0_PRIMARY:
        severity = _step(severity, -1)
    if upstream_tiers and upstream_tiers == [tier]:
        severity = _step(severity, +1)
    if severity is classification.severity:
        return classification
    return classification.model_copy(update={"severity": severity})


def _step(severity: Severity, by: int) -> Severity:
    ranks = list(Severity)
    return ranks[max(0, min(len(ranks) - 1, severity.rank + by))]


# --------------------------------------------------------------------------- hysteresis

Transition = Literal["confirmed", "cleared"]


class Hysteresis(BaseModel):
    """Where a watchdog stands: healthy or failing, and the current streak towards the other side."""

    failing: bool = False
    bad_streak: int = 0
    good_streak: int = 0
    evaluations: int = 0
    suspect: Classification | None = None
    """The most severe classification of the current bad streak (or of the open failure)."""
    first_bad_at: datetime | None = None
    confirmed_at: datetime | None = None
    cleared_at: datetime | None = None

    @property
    def suspicious(self) -> bool:
        return self.failing or self.bad_streak > 0


def step(
    state: Hysteresis, observation: Classification | None, at: datetime, config: WatchdogConfig
) -> tuple[Hysteresis, Transition | None]:
    """One evaluation: N consecutive bad ones confirm a failure, N consecutive good ones clear it; never flaps."""
    s = state.model_copy(deep=True)
    s.evaluations += 1
    transition: Transition | None = None
    if observation is not None:
        s.good_streak = 0
        s.bad_streak += 1
        if s.bad_streak == 1 and not s.failing:
            s.first_bad_at = at
        if s.suspect is None or observation.severity.rank >= s.suspect.severity.rank:
            s.suspect = observation
        if not s.failing and s.bad_streak >= config.confirm_after:
            s.failing, s.confirmed_at, s.cleared_at = True, at, None
            transition = "confirmed"
    else:
        s.bad_streak = 0
        s.good_streak += 1
        if s.failing and s.good_streak >= config.clear_after:
            s.failing, s.cleared_at = False, at
            transition = "cleared"
        if not s.failing:
            s.suspect, s.first_bad_at = None, None
    return s, transition


# --------------------------------------------------------------------------- SLO burn rate


def window_label(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def error_ratio_query(config: BurnRateConfig, service: str, tier: FallbackTier, window_s: int) -> str:
    """PromQL for the share of failed requests of one tier over one window (0 when there was no traffic)."""
    sel = f'service="{service}",tier="{tier.value}"'
    w = window_label(window_s)
    errors = f'sum(rate({config.requests_metric}{{{sel},outcome!~"{config.good_outcomes}"}}[{w}]))'
    total = f"sum(rate({config.requests_metric}{{{sel}}}[{w}]))"
    if config.skipped_metric is None:
        return f"({errors} or vector(0)) / {total}"
    blamed = f'{sel},cause!~"{"|".join(sorted(NOT_BLAMED))}"'
    skipped = f"(sum(rate({config.skipped_metric}{{{blamed}}}[{w}])) or vector(0))"
    return f"(({errors} or vector(0)) + {skipped}) / (({total} or vector(0)) + {skipped})"


def burn_rate(error_ratio: float, slo_target_pct: float) -> float:
    """How many times faster than sustainable the error budget burns (1.0 = exactly on budget)."""
    budget = 1 - slo_target_pct / 100
    if budget <= 0:
        return float("inf") if error_ratio > 0 else 0.0
    return error_ratio / budget


def evaluate_burn(
    ratios: dict[int, float | None], slo_target_pct: float, rules: list[BurnRateRule], dependency: str
) -> tuple[Classification | None, dict[str, float]]:
    """Multi-window, multi-burn-rate: a rule fires only when its long AND short windows both burn above its factor
    (the long window proves it matters, the short one that it is still happening). Missing windows never fire."""
    rates = {window_label(w): round(burn_rate(r, slo_target_pct), 3) for w, r in ratios.items() if r is not None}
    fired: Classification | None = None
    for rule in rules:
        long_r, short_r = ratios.get(rule.long_window_s), ratios.get(rule.short_window_s)
        if long_r is None or short_r is None:
            continue
        long_b, short_b = burn_rate(long_r, slo_target_pct), burn_rate(short_r, slo_target_pct)
        if long_b > rule.factor and short_b > rule.factor:
            if fired is None or rule.severity.rank > fired.severity.rank:
                fired = Classification(
                    failure_type=FailureType.ERROR_SPIKE,
                    severity=rule.severity,
                    reason=(
                        f"{dependency} burns its {slo_target_pct}% SLO budget {long_b:.1f}x over "
                        f"{window_label(rule.long_window_s)} and {short_b:.1f}x over "
                        f"{window_label(rule.short_window_s)} (> {rule.factor}x, {rule.name} burn)"
                    ),
                    metrics={"burn_long": long_b, "burn_short": short_b, "burn_factor": rule.factor},
                )
    return fired, rates


def burn_windows(rules: list[BurnRateRule]) -> list[int]:
    return sorted({w for r in rules for w in (r.long_window_s, r.short_window_s)})


# --------------------------------------------------------------------------- workflow and activity contracts


class WatchInput(BaseModel):
    """The long-running probing activity: watch one dependency until its hysteresis changes side."""

    policy: ServicePolicy
    dependency: str
    config: WatchdogConfig = Field(default_factory=WatchdogConfig)
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)


class WatchResult(BaseModel):
    transition: Transition | None = None
    """None: the run ended without a change (evaluations_per_run reached, or cancelled for a policy update)."""
    hysteresis: Hysteresis
    last: Observation | None = None
    cancelled: bool = False


class WatchdogState(BaseModel):
    """Everything the watchdog knows; the `state` query returns it and continue-as-new carries it."""

    service: str
    dependency: str
    hysteresis: Hysteresis = Field(default_factory=Hysteresis)
    last: Observation | None = None
    incidents_reported: int = 0
    last_report: IncidentReport | None = None
    last_incident_id: str | None = None
    missed_heartbeats: int = 0
    policy_updates: int = 0
    runs: int = 0
    continued: int = 0
    stopped: bool = False
    stop_reason: str = ""


class WatchdogInput(BaseModel):
    policy: ServicePolicy
    dependency: str
    config: WatchdogConfig = Field(default_factory=WatchdogConfig)
    task_queue: str | None = None
    """Task queue of the recovery workflow it starts; default: the watchdog's own."""
    state: WatchdogState | None = None


class PolicyUpdate(BaseModel):
    """Signal: a changed policy (and optionally watchdog settings) take effect at once, keeping the state."""

    policy: ServicePolicy
    config: WatchdogConfig | None = None


class StopInput(BaseModel):
    reason: str = ""


class ReportInput(BaseModel):
    report: IncidentReport
    task_queue: str


class ReportResult(BaseModel):
    incident_id: str
    run_id: str | None = None


def report_of(state: WatchdogState, classification: Classification, at: datetime) -> IncidentReport:
    """The incident report a confirmed failure sends; its dedup key names the confirmation, so retries join."""
    return IncidentReport(
        service=state.service,
        dependency=state.dependency,
        failure_type=classification.failure_type,
        severity=classification.severity,
        source="watchdog",
        message=classification.reason,
        metrics=classification.metrics,
        reported_at=at,
        failing_since=state.hysteresis.first_bad_at,
        dedup_key=f"{watchdog_id(state.service, state.dependency)}:{state.incidents_reported + 1}",
    )
