"""Alertmanager webhook (v4) -> incident reports: labels read, resolved alerts skipped, bad fields named."""

from __future__ import annotations

from typing import Any

import pytest

from governor.alerts import AlertError, AlertmanagerWebhook, alert_dedup_key, reports_from_webhook
from governor.enums import FailureType, Severity


def webhook(*alerts: dict[str, Any], common: dict[str, str] | None = None) -> AlertmanagerWebhook:
    return AlertmanagerWebhook.model_validate(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "status": "firing",
            "receiver": "governor",
            "commonLabels": common or {},
            "alerts": [{"status": "firing", "startsAt": "2026-01-01T00:00:00Z", **a} for a in alerts],
        }
    )


def test_labels_map_to_the_report() -> None:
    [report] = reports_from_webhook(
        webhook(
            {
                "labels": {
                    "alertname": "X",
                    "failure_type": "rate_limited",
                    "severity": "warning",
                    "dependency": "primary-llm",
                },
                "fingerprint": "abc",
            },
            common={"service": "chat"},
        )
    )
    assert (report.service, report.dependency) == ("chat", "primary-llm")
    assert report.failure_type is FailureType.RATE_LIMITED and report.severity is Severity.MEDIUM
    assert report.dedup_key == "alertmanager:abc:2026-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("alertname", "expected"),
    [
        ("ChatErrorBudgetBurn", FailureType.ERROR_SPIKE),
        ("PrimaryLatencyHigh", FailureType.HIGH_LATENCY),
        ("Upstream429s", FailureType.RATE_LIMITED),
        ("ModelDown", FailureType.MODEL_UNAVAILABLE),
        ("SomethingOdd", None),
    ],
)
def test_alertname_hints_when_no_failure_type_label(alertname: str, expected: FailureType | None) -> None:
    labels = {"alertname": alertname, "service": "chat", "dependency": "primary-llm"}
    [report] = reports_from_webhook(webhook({"labels": labels}))
    assert report.failure_type is expected


def test_resolved_alerts_report_nothing_and_keys_are_stable() -> None:
    payload = webhook({"labels": {"service": "chat", "dependency": "d"}, "status": "resolved"})
    assert reports_from_webhook(payload) == []
    assert alert_dedup_key(payload.alerts[0]) == alert_dedup_key(payload.alerts[0].model_copy())


def test_bad_failure_type_names_the_field() -> None:
    with pytest.raises(AlertError) as err:
        reports_from_webhook(
            webhook(
                {"labels": {"service": "c", "dependency": "d"}},
                {"labels": {"service": "c", "dependency": "d", "failure_type": "boom"}},
            )
        )
    assert err.value.field == "alerts[1].labels.failure_type"
