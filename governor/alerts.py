"""Alertmanager's webhook payload (version 4) and how a firing alert becomes an `IncidentReport`.

Labels the governor reads from an alert: `service` and `dependency` (required; `governor_service` /
`governor_dependency` win when both are set), `failure_type` (a seed value; else guessed from `alertname`),
`severity` (`critical`, `high`, `warning`/`medium`, `info`/`low`, or a seed value). Resolved alerts report nothing:
the recovery workflow decides by its own checks when a dependency is healthy again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from governor.enums import FailureType, Severity
from governor.incident import IncidentReport


class AlertError(ValueError):
    """An alert the governor cannot turn into a report; `field` is the JSON path of what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names, camelCase as sent
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerWebhook(BaseModel):
    """https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (payload version 4)."""

    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[Alert]


_SEVERITY_LABELS = {
    "critical": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "info": Severity.LOW,
    "low": Severity.LOW,
    "none": Severity.LOW,
}

# alertname words -> failure type, for alerts that carry no `failure_type` label
_ALERTNAME_HINTS: list[tuple[tuple[str, ...], FailureType]] = [
    (("burn", "errorrate", "error_rate", "errors", "5xx", "errorspike"), FailureType.ERROR_SPIKE),
    (("latency", "slow", "p99"), FailureType.HIGH_LATENCY),
    (("ratelimit", "rate_limit", "429", "throttl"), FailureType.RATE_LIMITED),
    (("timeout",), FailureType.TIMEOUT),
    (("queue", "saturat", "capacity", "inflight", "in_flight"), FailureType.CAPACITY_EXCEEDED),
    (("partition", "unreachable", "dns"), FailureType.NETWORK_PARTITION),
    (("corrupt", "checksum", "schema"), FailureType.DATA_CORRUPTION),
    (("config", "auth", "credential", "unauthor"), FailureType.CONFIGURATION_ERROR),
    (("heartbeat", "absent", "targetdown"), FailureType.DEPENDENCY_DOWN),
    (("down", "unavailable", "health"), FailureType.MODEL_UNAVAILABLE),
]


def severity_of(label: str | None) -> Severity | None:
    if not label:
        return None
    return _SEVERITY_LABELS.get(label.lower()) or Severity.__members__.get(label.upper())


def failure_type_of(labels: dict[str, str], where: str) -> FailureType | None:
    given = labels.get("failure_type")
    if given is not None:
        try:
            return FailureType(given)
        except ValueError:
            known = ", ".join(t.value for t in FailureType)
            raise AlertError(f"{where}.labels.failure_type", f"{given!r} is not a failure type ({known})") from None
    name = labels.get("alertname", "").lower()
    for words, ftype in _ALERTNAME_HINTS:
        if any(w in name for w in words):
            return ftype
    return None


def alert_dedup_key(alert: Alert) -> str:
    """One firing of one alert: Alertmanager re-sends it every `repeat_interval`; the key stays the same."""
    ident = alert.fingerprint or ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    return f"alertmanager:{ident}:{alert.startsAt.isoformat()}"


def reports_from_webhook(payload: AlertmanagerWebhook) -> list[IncidentReport]:
    """Every firing alert as a report (resolved ones are skipped); raises AlertError naming the first bad field."""
    reports: list[IncidentReport] = []
    for i, alert in enumerate(payload.alerts):
        where = f"alerts[{i}]"
        if alert.status != "firing":
            continue
        labels = {**payload.commonLabels, **alert.labels}
        service = labels.get("governor_service") or labels.get("service")
        dependency = labels.get("governor_dependency") or labels.get("dependency")
        if not service:
            raise AlertError(f"{where}.labels.service", "missing: label the alert with the governed service")
        if not dependency:
            raise AlertError(f"{where}.labels.dependency", "missing: label the alert with the failing dependency")
        annotations = {**payload.commonAnnotations, **alert.annotations}
        message = annotations.get("summary") or annotations.get("description") or labels.get("alertname", "")
        reports.append(
            IncidentReport(
                service=service,
                dependency=dependency,
                failure_type=failure_type_of(labels, where),
                severity=severity_of(labels.get("severity")),
                source=f"alertmanager:{labels.get('alertname', payload.receiver)}",
                message=message,
                reported_at=alert.startsAt,
                dedup_key=alert_dedup_key(alert),
            )
        )
    return reports
