"""Activity contracts: one model in, one out, for every side effect the recovery workflow asks for.

The names are the activity names registered on the worker; workflows call them by name with these models,
so `activities/` and `workflows/` can change on their own as long as this file holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from governor.blast_radius import BlastRadius
from governor.decisions import ValidationResult
from governor.enums import FallbackTier, NotificationAudience, Severity
from governor.gateway_api import BreakerChange, DegradationChange, RouteChange, StatusChange
from governor.incident import IncidentReport, IncidentState
from governor.models import Classification, ProbeResult, StatsWindow, TierStats
from governor.policy import ChannelSpec, DependencySpec, RecoveryChecks, ServicePolicy, Thresholds
from governor.tier_health import TierAssessment, TierHealth

__all__ = [
    "BreakerChange",
    "DegradationChange",
    "RouteChange",
    "StatusChange",
    "TierAssessment",
    "TierHealth",
]  # re-exported: the contract


class Activity:
    LOAD_POLICY = "load_policy"
    CONFIRM_FAILURE = "confirm_failure"
    APPLY_GATEWAY_CHANGE = "apply_gateway_change"
    READ_STATS = "read_stats"
    GATHER_EVIDENCE = "gather_evidence"
    WAIT_FOR_HEALTHY = "wait_for_healthy"
    VALIDATE_PRIMARY = "validate_primary"
    ASSESS_TIERS = "assess_tiers"
    ASSESS_BLAST_RADIUS = "assess_blast_radius"
    NOTIFY = "notify"
    WRITE_POSTMORTEM = "write_postmortem"
    DRILL_FAULT = "drill_fault"
    FALL_BACK_FIRST = "fall_back_first"


class DrillFaultInput(BaseModel):
    """PUT `body` to an upstream's control API (a drill injecting or clearing its fault)."""

    url: str
    body: dict[str, Any]


class DrillFaultResult(BaseModel):
    status_code: int
    answer: str = ""
    """The control API's answer, cut to 500 characters."""


class LoadPolicyInput(BaseModel):
    service: str


class ConfirmFailureInput(BaseModel):
    """Detection: re-probe the dependency (and read the gateway's stats) to confirm a report and classify it."""

    policy: ServicePolicy
    dependency: str
    report: IncidentReport
    attempts: int = 3


class ConfirmFailureResult(BaseModel):
    confirmed: bool
    classification: Classification | None = None
    probes: list[ProbeResult] = Field(default_factory=list)
    stats: TierStats | None = None
    reason: str = ""


class GatewayChange(BaseModel):
    """One change applied to every gateway replica of a service, then read back to verify."""

    gateways: list[str]
    service: str
    incident_id: str
    route: RouteChange | None = None
    breaker: BreakerChange | None = None
    degradation: DegradationChange | None = None
    status: StatusChange | None = None


class GatewayChangeResult(BaseModel):
    replicas: dict[str, dict[str, Any]]
    """Each replica's service state after the change, by admin base URL."""


class ReadStatsInput(BaseModel):
    gateways: list[str]
    service: str
    window_s: int = 30


class EvidenceInput(BaseModel):
    policy: ServicePolicy
    dependency: str
    incident_id: str


class Evidence(BaseModel):
    probes: list[ProbeResult] = Field(default_factory=list)
    stats: StatsWindow | None = None
    gateway_state: dict[str, Any] = Field(default_factory=dict)
    dependencies: dict[str, str] = Field(default_factory=dict)
    """Every dependency of the service and its health status now."""
    summary: str = ""


class WaitForHealthyInput(BaseModel):
    """Remediation: probe until `passes` consecutive healthy probes (heartbeats carry the progress)."""

    dependency: DependencySpec
    thresholds: Thresholds
    interval_s: float = 1.0
    passes: int = 3


class WaitForHealthyResult(BaseModel):
    consecutive_passes: int
    probes: int
    last: ProbeResult | None = None


class ValidatePrimaryInput(BaseModel):
    """Validation: the recovery checks against the primary with synthetic probes (no user traffic yet)."""

    dependency: DependencySpec
    thresholds: Thresholds
    checks: RecoveryChecks
    service: str = ""
    gateways: list[str] = Field(default_factory=list)
    tier: FallbackTier | None = None
    """The upstream tier the dependency backs: with `checks.probe_request`, validation also sends synthetic requests
    through the gateway to it (the data path), not only to /health. Unset (older histories, or a dependency without
    an upstream tier): health probes only."""


class ValidatePrimaryResult(BaseModel):
    result: ValidationResult
    sample: TierStats
    consecutive_passes: int


class BlastRadiusInput(BaseModel):
    """Isolation: which services and features the failed dependency hits, and their traffic (governor/blast_radius.py)."""

    policy: ServicePolicy
    dependency: str
    window_s: int = 60


class AssessTiersInput(BaseModel):
    """Which tiers are healthy now: every dependency probed once, the gateway's stats window of every tier judged."""

    policy: ServicePolicy
    window_s: int = 10
    probe_timeout_ms: int = 1000
    """Probes are capped at this (or the dependency's own timeout if shorter): the fallback waits on them."""


class NotifyInput(BaseModel):
    incident_id: str
    event: str
    audience: NotificationAudience
    channels: list[ChannelSpec]
    severity: Severity | None = None
    title: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    """`{occurrence}:{event}:{instance}:{audience}`; receivers deduplicate on it, so a retry never notifies twice,
    while a later incident, a gate's second request or a second rollback is a new notification."""
    occurrence: str = ""
    """The incident occurrence (`{workflow id}/{first run id}`): PagerDuty's dedup_key and the mail thread use it, so
    one occurrence is one alert and the next occurrence on the same dependency is a new one. Empty: the incident id."""


class ChannelDelivery(BaseModel):
    channel: str
    ok: bool
    status_code: int | None = None
    error: str = ""
    target: str = ""
    """Where it went, without secrets: `scheme://host:port` of the endpoint, or the mail recipients."""
    attempts: int = 0
    """Sends tried for this channel, over all attempts of the activity."""
    retryable: bool = False
    """For a failure: True when transient (down, 5xx, 429) and the retries ran out; False for bad configuration."""
    delivered_at: datetime | None = None


class NotifyResult(BaseModel):
    deliveries: list[ChannelDelivery] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.deliveries)


class PostmortemInput(BaseModel):
    state: IncidentState
    policy: ServicePolicy


class PostmortemResult(BaseModel):
    markdown_path: str
    json_path: str
    markdown: str


class FallBackFirstInput(BaseModel):
    """Pin first: a new incident's report -> pinned tier in one activity (activities/pin_first.py): the policy
    loaded, the failure confirmed, the blast radius and the tiers assessed, then the failed tier's breaker and the
    best tier's pin in one gateway change, read back from every replica."""

    service: str
    dependency: str
    incident_id: str
    report: IncidentReport


class FallBackFirstResult(BaseModel):
    """What each step found, for the workflow to record as if it had run them one by one."""

    policy: ServicePolicy
    confirmation: ConfirmFailureResult | None = None
    """None: the policy has no such dependency (nothing else ran)."""
    radius: BlastRadius | None = None
    radius_error: str = ""
    """Why the blast radius is missing (advice: the pin never waits for it to be retried)."""
    assessment: TierAssessment | None = None
    change: GatewayChange | None = None
    """The change applied (the breaker; and the pin when the best tier needs no approval), or None."""
    applied: GatewayChangeResult | None = None
    """Every replica's state after `change`; None when it failed (`change_error`): the workflow applies it again."""
    change_error: str = ""
