"""Observations the governor reads from the world: health probes and the gateway's stats windows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from governor.enums import FailureType, HealthStatus, Severity

ProbeErrorKind = Literal[
    "refused",  # connection refused: nothing listens
    "dns",  # the name does not resolve
    "unreachable",  # connect timed out or the network is down
    "timeout",  # connected, but no answer in time
    "http_status",  # answered with a 5xx
    "rate_limited",  # answered 429
    "auth",  # answered 401/403: credentials or configuration
    "bad_body",  # answered 2xx, but the body failed its schema or checksum check
]


class ProbeResult(BaseModel):
    """One health probe of one dependency (the seed's HealthCheck)."""

    dependency: str
    url: str
    ok: bool
    status: HealthStatus
    latency_ms: float
    status_code: int | None = None
    error_kind: ProbeErrorKind | None = None
    error: str = ""
    body_excerpt: str = ""
    checked_at: datetime

    def is_passing(self) -> bool:
        return self.status in {HealthStatus.HEALTHY, HealthStatus.RECOVERING}

    def exceeds_latency_threshold(self, threshold_ms: float) -> bool:
        return self.latency_ms > threshold_ms


SkipReason = Literal["breaker_open", "breaker_forced_open", "deadline"]
OPERATOR_CAUSE = "operator"
"""The cause of a skip by a breaker the governor forced open: its own action, never a failure of the tier."""
DEADLINE_CAUSE = "deadline"
"""The cause of a skip because the request's deadline was spent on earlier tiers: not this tier's failure."""
NOT_BLAMED = frozenset({OPERATOR_CAUSE, DEADLINE_CAUSE})


class TierStats(BaseModel):
    """One tier's stats window as the gateway's admin API reports it.

    `requests`, `errors`, `error_rate` and the latencies are about attempts; `causes` names every failed attempt's
    cause, and the `skipped*` fields count the requests the tier did not try (docs/gateway.md, "Stats")."""

    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    rate_limited: int = 0
    in_flight: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    rps: float = 0.0
    causes: dict[str, int] = Field(default_factory=dict)
    """Failed attempts by cause: connect_error, timeout, http_5xx, rate_limited, bad_body, protocol_error, ..."""
    skipped: int = 0
    """Requests this tier did not try (its breaker was open, or the request's deadline had passed)."""
    skipped_by: dict[str, int] = Field(default_factory=dict)
    """Skips by why: breaker_open, breaker_forced_open (the governor's own pin), deadline."""
    skipped_causes: dict[str, int] = Field(default_factory=dict)
    """Skips by the failure cause behind them: the cause that opened the breaker, `deadline`, or `operator`."""
    served: int = 0
    """Client answers this tier gave (whatever tiers each request tried first): what clients actually got."""

    def failure_causes(self) -> dict[str, int]:
        """Every failed attempt and every skipped request of the tier, by cause (skips for the governor's own breaker
        or a deadline spent elsewhere excluded)."""
        counts = dict(self.causes)
        for cause, n in self.skipped_causes.items():
            if cause not in NOT_BLAMED:
                counts[cause] = counts.get(cause, 0) + n
        return counts

    @property
    def observed(self) -> int:
        """Requests that reached this tier: attempts plus the skips it is blamed for (see `failure_causes`)."""
        return self.requests + self.skipped - sum(self.skipped_causes.get(c, 0) for c in NOT_BLAMED)

    @staticmethod
    def merge(parts: list[TierStats]) -> TierStats:
        """Combine the same tier's windows from several gateway replicas (latencies: worst replica)."""
        if not parts:
            return TierStats()
        requests = sum(p.requests for p in parts)
        errors = sum(p.errors for p in parts)

        def summed(name: str) -> dict[str, int]:
            out: dict[str, int] = {}
            for p in parts:
                for key, n in getattr(p, name).items():
                    out[key] = out.get(key, 0) + n
            return out

        return TierStats(
            requests=requests,
            errors=errors,
            error_rate=errors / requests if requests else 0.0,
            rate_limited=sum(p.rate_limited for p in parts),
            in_flight=sum(p.in_flight for p in parts),
            p50_ms=max(p.p50_ms for p in parts),
            p95_ms=max(p.p95_ms for p in parts),
            p99_ms=max(p.p99_ms for p in parts),
            rps=sum(p.rps for p in parts),
            causes=summed("causes"),
            skipped=sum(p.skipped for p in parts),
            skipped_by=summed("skipped_by"),
            skipped_causes=summed("skipped_causes"),
            served=sum(p.served for p in parts),
        )


class StatsWindow(BaseModel):
    """GET /admin/services/{service}/stats: every tier's window (and `tier_5_error`, the explicit 503s)."""

    service: str = ""
    window_s: float
    tiers: dict[str, TierStats] = Field(default_factory=dict)
    deployments: dict[str, dict[str, TierStats]] = Field(default_factory=dict)
    """Tiers with `deployments`: each deployment's own window (its attempts), by tier then deployment name. The tier's
    window then counts one outcome per request (a failure only when every deployment failed it)."""


class Classification(BaseModel):
    """What kind of failure an observation shows, how bad, and why we think so."""

    failure_type: FailureType
    severity: Severity
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)
