"""The seed's enums and tables, copied verbatim from seed/000_d6c1af2395e57b8a.txt (FALLBACK.GOVERNANCE.OS.EXE).

The domain tests compare governor's enums and policy defaults against these, so a typo in either is caught. Only the
seed's own code is here (lines 63-390 of the seed, and its engines' class-level tables); do not edit it to make a test
pass.
"""
# ruff: noqa
# mypy: ignore-errors

from enum import Enum
from typing import Optional


class FailureType(Enum):
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
        """Primary detection method."""
        methods = {
            "model_unavailable": "health_check",
            "high_latency": "latency_monitor",
            "error_spike": "error_rate_tracker",
            "capacity_exceeded": "queue_depth",
            "dependency_down": "heartbeat",
            "timeout": "request_timeout",
            "rate_limited": "429_response",
            "network_partition": "connectivity_check",
            "data_corruption": "checksum_validation",
            "configuration_error": "config_validator",
        }
        return methods.get(self.value, "health_check")

    @property
    def typical_recovery_minutes(self) -> int:
        """Typical recovery time in minutes."""
        times = {
            "model_unavailable": 5,
            "high_latency": 2,
            "error_spike": 3,
            "capacity_exceeded": 10,
            "dependency_down": 15,
            "timeout": 1,
            "rate_limited": 5,
            "network_partition": 20,
            "data_corruption": 60,
            "configuration_error": 10,
        }
        return times.get(self.value, 5)

    @property
    def requires_manual_intervention(self) -> bool:
        """Whether manual intervention may be needed."""
        manual = {"data_corruption", "configuration_error", "network_partition"}
        return self.value in manual


class FallbackTier(Enum):
    """Fallback tier levels."""

    TIER_0_PRIMARY = "tier_0_primary"
    TIER_1_SECONDARY = "tier_1_secondary"
    TIER_2_CACHE = "tier_2_cache"
    TIER_3_DEGRADED = "tier_3_degraded"
    TIER_4_STATIC = "tier_4_static"
    TIER_5_ERROR = "tier_5_error"

    @property
    def quality_percentage(self) -> int:
        """Expected quality percentage."""
        quality = {
            "tier_0_primary": 100,
            "tier_1_secondary": 90,
            "tier_2_cache": 80,
            "tier_3_degraded": 60,
            "tier_4_static": 30,
            "tier_5_error": 0,
        }
        return quality.get(self.value, 0)

    @property
    def latency_multiplier(self) -> float:
        """Latency multiplier compared to primary."""
        multipliers = {
            "tier_0_primary": 1.0,
            "tier_1_secondary": 1.2,
            "tier_2_cache": 0.5,
            "tier_3_degraded": 0.8,
            "tier_4_static": 0.1,
            "tier_5_error": 0.0,
        }
        return multipliers.get(self.value, 1.0)

    @property
    def requires_approval_to_exit(self) -> bool:
        """Whether approval needed to exit this tier."""
        approval_needed = {"tier_3_degraded", "tier_4_static"}
        return self.value in approval_needed

    @property
    def next_tier(self) -> Optional[str]:
        """Next fallback tier."""
        sequence = [
            "tier_0_primary",
            "tier_1_secondary",
            "tier_2_cache",
            "tier_3_degraded",
            "tier_4_static",
            "tier_5_error",
        ]
        try:
            idx = sequence.index(self.value)
            return sequence[idx + 1] if idx < len(sequence) - 1 else None
        except ValueError:
            return None


class DegradationLevel(Enum):
    """Service degradation levels."""

    NORMAL = "normal"
    DEGRADED_L1 = "degraded_l1"
    DEGRADED_L2 = "degraded_l2"
    MINIMAL = "minimal"
    EMERGENCY = "emergency"
    OFFLINE = "offline"

    @property
    def feature_availability(self) -> float:
        """Percentage of features available."""
        availability = {
            "normal": 1.0,
            "degraded_l1": 0.8,
            "degraded_l2": 0.5,
            "minimal": 0.2,
            "emergency": 0.1,
            "offline": 0.0,
        }
        return availability.get(self.value, 0.0)

    @property
    def user_notification_required(self) -> bool:
        """Whether users should be notified."""
        notify = {"degraded_l2", "minimal", "emergency", "offline"}
        return self.value in notify

    @property
    def sla_impact(self) -> str:
        """Impact on SLA."""
        impacts = {
            "normal": "NONE",
            "degraded_l1": "MINOR",
            "degraded_l2": "MODERATE",
            "minimal": "SIGNIFICANT",
            "emergency": "SEVERE",
            "offline": "CRITICAL",
        }
        return impacts.get(self.value, "UNKNOWN")


class HealthStatus(Enum):
    """System health status."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    RECOVERING = "recovering"

    @property
    def allows_traffic(self) -> bool:
        """Whether status allows traffic routing."""
        allow = {"healthy", "degraded", "recovering"}
        return self.value in allow

    @property
    def icon(self) -> str:
        """Status icon."""
        icons = {
            "healthy": "âœ“",
            "degraded": "â—",
            "unhealthy": "âœ—",
            "critical": "ðŸ”´",
            "unknown": "?",
            "recovering": "â†»",
        }
        return icons.get(self.value, "?")

    @property
    def alert_level(self) -> str:
        """Alert level for status."""
        levels = {
            "healthy": "NONE",
            "degraded": "WARNING",
            "unhealthy": "ALERT",
            "critical": "CRITICAL",
            "unknown": "WARNING",
            "recovering": "INFO",
        }
        return levels.get(self.value, "WARNING")


class RecoveryPhase(Enum):
    """Recovery process phases."""

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
    def next_phase(self) -> Optional[str]:
        """Next recovery phase."""
        sequence = [
            "detection",
            "isolation",
            "fallback_active",
            "diagnosis",
            "remediation",
            "validation",
            "gradual_restore",
            "full_restore",
            "post_mortem",
        ]
        try:
            idx = sequence.index(self.value)
            return sequence[idx + 1] if idx < len(sequence) - 1 else None
        except ValueError:
            return None

    @property
    def automated(self) -> bool:
        """Whether phase can be automated."""
        automated = {"detection", "isolation", "fallback_active", "validation"}
        return self.value in automated


class TransitionMode(Enum):
    """Tier transition modes."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"
    APPROVAL_REQUIRED = "approval_required"
    EMERGENCY = "emergency"
    SCHEDULED = "scheduled"

    @property
    def requires_human(self) -> bool:
        """Whether human involvement required."""
        human = {"manual", "approval_required"}
        return self.value in human

    @property
    def notification_channel(self) -> str:
        """Primary notification channel."""
        channels = {
            "automatic": "monitoring",
            "manual": "oncall",
            "approval_required": "management",
            "emergency": "all_channels",
            "scheduled": "calendar",
        }
        return channels.get(self.value, "monitoring")


class NotificationAudience(Enum):
    """Notification audience types."""

    USERS = "users"
    CUSTOMERS = "customers"
    INTERNAL = "internal"
    LEADERSHIP = "leadership"
    ONCALL = "oncall"
    PUBLIC = "public"

    @property
    def channel(self) -> str:
        """Communication channel."""
        channels = {
            "users": "in_app",
            "customers": "status_page",
            "internal": "slack",
            "leadership": "email",
            "oncall": "pagerduty",
            "public": "twitter",
        }
        return channels.get(self.value, "email")

    @property
    def sla_minutes(self) -> int:
        """SLA for notification in minutes."""
        slas = {"users": 0, "customers": 5, "internal": 0, "leadership": 15, "oncall": 0, "public": 30}
        return slas.get(self.value, 5)


class CircuitState(Enum):
    """Circuit breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def allows_requests(self) -> bool:
        """Whether requests are allowed."""
        return self.value in ["closed", "half_open"]

    @property
    def probe_interval_seconds(self) -> int:
        """Interval for probe requests."""
        intervals = {"closed": 0, "open": 30, "half_open": 5}
        return intervals.get(self.value, 30)


class FeatureFlag(Enum):
    """Feature flag states."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    DEGRADED = "degraded"
    CANARY = "canary"

    @property
    def traffic_percentage(self) -> int:
        """Traffic percentage for feature."""
        percentages = {"enabled": 100, "disabled": 0, "degraded": 50, "canary": 10}
        return percentages.get(self.value, 0)


# FailureDetectorEngine.THRESHOLDS
THRESHOLDS = {
    "latency_warning_ms": 500,
    "latency_critical_ms": 2000,
    "error_rate_warning": 0.01,
    "error_rate_critical": 0.05,
    "queue_depth_warning": 100,
    "queue_depth_critical": 500,
}

# DegradationControllerEngine.DEGRADATION_RULES
DEGRADATION_RULES = {
    "normal": {"preserve": ["all"], "reduce": [], "disable": []},
    "degraded_l1": {
        "preserve": ["authentication", "core_read", "core_write"],
        "reduce": ["response_quality", "feature_richness"],
        "disable": ["analytics", "recommendations"],
    },
    "degraded_l2": {
        "preserve": ["authentication", "core_read"],
        "reduce": ["core_write"],
        "disable": ["analytics", "recommendations", "search", "notifications"],
    },
    "minimal": {"preserve": ["authentication"], "reduce": [], "disable": ["all_except_auth"]},
}

# RecoveryValidatorEngine.RECOVERY_CHECKS and RESTORATION_RAMP
RECOVERY_CHECKS = [
    {"name": "health_endpoint", "threshold": 3, "method": "consecutive_passes"},
    {"name": "latency", "threshold": 500, "method": "p99_under"},
    {"name": "error_rate", "threshold": 0.01, "method": "under_threshold"},
    {"name": "throughput", "threshold": 100, "method": "rps_above"},
]

RESTORATION_RAMP = [
    {"step": 1, "traffic_percent": 10, "duration_minutes": 5},
    {"step": 2, "traffic_percent": 25, "duration_minutes": 5},
    {"step": 3, "traffic_percent": 50, "duration_minutes": 10},
    {"step": 4, "traffic_percent": 100, "duration_minutes": 0},
]

# DegradedModeConfig.get_user_message templates
templates = {
    "normal": "",
    "degraded_l1": "Running in backup mode, full functionality",
    "degraded_l2": "Some features temporarily limited",
    "minimal": "Service operating in minimal mode",
    "emergency": "Emergency mode - critical functions only",
    "offline": "Service temporarily unavailable",
}

# CircuitBreaker defaults
CIRCUIT_BREAKER = {"failure_threshold": 5, "success_threshold": 3, "timeout_seconds": 60}

# RecoveryValidatorEngine.should_rollback: error_rate > 0.05
ROLLBACK_ERROR_RATE = 0.05
