"""The seed's vocabulary: every enum with its business rules, values are the seed's strings."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class FailureType(StrEnum):
    """Types of system failures."""

    MODEL_UNAVAILABLE = "model_unavailable"
    HIGH_LATENCY = "high_latency"
    ERROR_SPIKE = "error_spike"
    CAPACITY_EXCEEDED = "capacity_exceeded"
    DEPENDENCY_DOWN = "dependency_down"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    NETWORK_PARTITION = "network_partition"
    DATA_CORRUPTION = "data_corruption"
    CONFIGURATION_ERROR = "configuration_error"

    @property
    def detection_method(self) -> str:
        return FAILURE_FACTS[self].detection_method

    @property
    def typical_recovery_minutes(self) -> int:
        return FAILURE_FACTS[self].typical_recovery_minutes

    @property
    def base_severity(self) -> Severity:
        return FAILURE_FACTS[self].base_severity

    @property
    def requires_manual_intervention(self) -> bool:
        return FAILURE_FACTS[self].manual


class Severity(StrEnum):
    """Incident severity, as the seed's FailureEvent uses it."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class FailureFacts(NamedTuple):
    """What the seed says about one failure type, in one row."""

    detection_method: str
    typical_recovery_minutes: int
    base_severity: Severity
    """README "Severity rules": the severity before the thresholds raise it."""
    manual: bool
    """Needs a human to remediate (the seed's requires_manual_intervention)."""


S = Severity
FAILURE_FACTS: dict[FailureType, FailureFacts] = {  # (detection method, minutes, base severity, manual)
    FailureType.MODEL_UNAVAILABLE: FailureFacts("health_check", 5, S.CRITICAL, False),
    FailureType.HIGH_LATENCY: FailureFacts("latency_monitor", 2, S.HIGH, False),
    FailureType.ERROR_SPIKE: FailureFacts("error_rate_tracker", 3, S.CRITICAL, False),
    FailureType.CAPACITY_EXCEEDED: FailureFacts("queue_depth", 10, S.HIGH, False),
    FailureType.DEPENDENCY_DOWN: FailureFacts("heartbeat", 15, S.HIGH, False),
    FailureType.TIMEOUT: FailureFacts("request_timeout", 1, S.HIGH, False),
    FailureType.RATE_LIMITED: FailureFacts("429_response", 5, S.MEDIUM, False),
    FailureType.NETWORK_PARTITION: FailureFacts("connectivity_check", 20, S.HIGH, True),
    FailureType.DATA_CORRUPTION: FailureFacts("checksum_validation", 60, S.CRITICAL, True),
    FailureType.CONFIGURATION_ERROR: FailureFacts("config_validator", 10, S.HIGH, True),
}
"""Each failure type's facts (the seed's FailureType properties and the README's base severity) in one table."""
del S


class FallbackTier(StrEnum):
    """Fallback tier levels, best first."""

    TIER_0_PRIMARY = "tier_0_primary"
    TIER_1_SECONDARY = "tier_1_secondary"
    TIER_2_CACHE = "tier_2_cache"
    TIER_3_DEGRADED = "tier_3_degraded"
    TIER_4_STATIC = "tier_4_static"
    TIER_5_ERROR = "tier_5_error"

    @property
    def rank(self) -> int:
        return list(FallbackTier).index(self)

    @property
    def quality_percentage(self) -> int:
        return {0: 100, 1: 90, 2: 80, 3: 60, 4: 30, 5: 0}[self.rank]

    @property
    def latency_multiplier(self) -> float:
        return {0: 1.0, 1: 1.2, 2: 0.5, 3: 0.8, 4: 0.1, 5: 0.0}[self.rank]

    @property
    def requires_approval_to_exit(self) -> bool:
        return self in {FallbackTier.TIER_3_DEGRADED, FallbackTier.TIER_4_STATIC}

    @property
    def next_tier(self) -> FallbackTier | None:
        tiers = list(FallbackTier)
        return tiers[self.rank + 1] if self.rank + 1 < len(tiers) else None


class DegradationLevel(StrEnum):
    """Service degradation levels, least degraded first."""

    NORMAL = "normal"
    DEGRADED_L1 = "degraded_l1"
    DEGRADED_L2 = "degraded_l2"
    MINIMAL = "minimal"
    EMERGENCY = "emergency"
    OFFLINE = "offline"

    @property
    def rank(self) -> int:
        return list(DegradationLevel).index(self)

    @property
    def feature_availability(self) -> float:
        return {0: 1.0, 1: 0.8, 2: 0.5, 3: 0.2, 4: 0.1, 5: 0.0}[self.rank]

    @property
    def user_notification_required(self) -> bool:
        return self.rank >= DegradationLevel.DEGRADED_L2.rank

    @property
    def sla_impact(self) -> str:
        return ["NONE", "MINOR", "MODERATE", "SIGNIFICANT", "SEVERE", "CRITICAL"][self.rank]

    @property
    def user_message(self) -> str:
        """The seed's DegradedModeConfig message template for this level."""
        return _USER_MESSAGES[self]


_USER_MESSAGES = {
    DegradationLevel.NORMAL: "",
    DegradationLevel.DEGRADED_L1: "Running in backup mode, full functionality",
    DegradationLevel.DEGRADED_L2: "Some features temporarily limited",
    DegradationLevel.MINIMAL: "Service operating in minimal mode",
    DegradationLevel.EMERGENCY: "Emergency mode - critical functions only",
    DegradationLevel.OFFLINE: "Service temporarily unavailable",
}


class HealthStatus(StrEnum):
    """System health status."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    RECOVERING = "recovering"

    @property
    def allows_traffic(self) -> bool:
        return self in {HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.RECOVERING}

    @property
    def icon(self) -> str:
        return {
            HealthStatus.HEALTHY: "✓",
            HealthStatus.DEGRADED: "◐",
            HealthStatus.UNHEALTHY: "✗",
            HealthStatus.CRITICAL: "🔴",
            HealthStatus.UNKNOWN: "?",
            HealthStatus.RECOVERING: "↻",
        }[self]

    @property
    def alert_level(self) -> str:
        return {
            HealthStatus.HEALTHY: "NONE",
            HealthStatus.DEGRADED: "WARNING",
            HealthStatus.UNHEALTHY: "ALERT",
            HealthStatus.CRITICAL: "CRITICAL",
            HealthStatus.UNKNOWN: "WARNING",
            HealthStatus.RECOVERING: "INFO",
        }[self]


class RecoveryPhase(StrEnum):
    """Recovery process phases, in order."""

    DETECTION = "detection"
    ISOLATION = "isolation"
    FALLBACK_ACTIVE = "fallback_active"
    DIAGNOSIS = "diagnosis"
    REMEDIATION = "remediation"
    VALIDATION = "validation"
    GRADUAL_RESTORE = "gradual_restore"
    FULL_RESTORE = "full_restore"
    POST_MORTEM = "post_mortem"

    @property
    def next_phase(self) -> RecoveryPhase | None:
        phases = list(RecoveryPhase)
        i = phases.index(self)
        return phases[i + 1] if i + 1 < len(phases) else None

    @property
    def automated(self) -> bool:
        return self in {
            RecoveryPhase.DETECTION,
            RecoveryPhase.ISOLATION,
            RecoveryPhase.FALLBACK_ACTIVE,
            RecoveryPhase.VALIDATION,
        }


class TransitionMode(StrEnum):
    """Tier transition modes."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"
    APPROVAL_REQUIRED = "approval_required"
    EMERGENCY = "emergency"
    SCHEDULED = "scheduled"

    @property
    def requires_human(self) -> bool:
        return self in {TransitionMode.MANUAL, TransitionMode.APPROVAL_REQUIRED}

    @property
    def notification_channel(self) -> str:
        return {
            TransitionMode.AUTOMATIC: "monitoring",
            TransitionMode.MANUAL: "oncall",
            TransitionMode.APPROVAL_REQUIRED: "management",
            TransitionMode.EMERGENCY: "all_channels",
            TransitionMode.SCHEDULED: "calendar",
        }[self]


class NotificationAudience(StrEnum):
    """Notification audience types."""

    USERS = "users"
    CUSTOMERS = "customers"
    INTERNAL = "internal"
    LEADERSHIP = "leadership"
    ONCALL = "oncall"
    PUBLIC = "public"

    @property
    def channel(self) -> str:
        return {
            NotificationAudience.USERS: "in_app",
            NotificationAudience.CUSTOMERS: "status_page",
            NotificationAudience.INTERNAL: "slack",
            NotificationAudience.LEADERSHIP: "email",
            NotificationAudience.ONCALL: "pagerduty",
            NotificationAudience.PUBLIC: "twitter",
        }[self]

    @property
    def sla_minutes(self) -> int:
        return {
            NotificationAudience.USERS: 0,
            NotificationAudience.CUSTOMERS: 5,
            NotificationAudience.INTERNAL: 0,
            NotificationAudience.LEADERSHIP: 15,
            NotificationAudience.ONCALL: 0,
            NotificationAudience.PUBLIC: 30,
        }[self]


class CircuitState(StrEnum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def allows_requests(self) -> bool:
        return self in {CircuitState.CLOSED, CircuitState.HALF_OPEN}

    @property
    def probe_interval_seconds(self) -> int:
        return {CircuitState.CLOSED: 0, CircuitState.OPEN: 30, CircuitState.HALF_OPEN: 5}[self]


class FeatureFlag(StrEnum):
    """Feature flag states."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    DEGRADED = "degraded"
    CANARY = "canary"

    @property
    def traffic_percentage(self) -> int:
        return {
            FeatureFlag.ENABLED: 100,
            FeatureFlag.DISABLED: 0,
            FeatureFlag.DEGRADED: 50,
            FeatureFlag.CANARY: 10,
        }[self]
