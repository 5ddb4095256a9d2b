"""Prometheus alert rules written from the policies: the same burn-rate pair the watchdog evaluates, and the
governor's own health (approvals waiting, notification SLAs missed, rollbacks, a worker that stopped reporting).

`governor alert-rules --policy-dir deploy/policies > deploy/prometheus/alerts.yml` writes the file docker-compose's
Prometheus loads; `promtool check rules` and `promtool test rules` check it (tests/deploy/test_alert_rules.py).
Pure: no Temporal import, no I/O.

Routing (deploy/alertmanager/alertmanager.yml): alerts labelled `governor_report="true"` are failures of a governed
dependency and go to the intake's `/v1/alertmanager`, which opens or joins the incident; the others are about the
governor itself and go to on-call's pager.
"""

from __future__ import annotations

from typing import Any

import yaml

from governor.detection import BurnRateConfig, error_ratio_query, page_rules, window_label
from governor.policy import ServicePolicy

APPROVAL_WAIT_WARNING_S = 900
"""An approval pending longer than this (15 min) pages on-call about the wait itself."""


def burn_rate_rules(policies: dict[str, ServicePolicy], config: BurnRateConfig | None = None) -> list[dict[str, Any]]:
    """One alert per service, dependency and rule of the paging pair: both windows above the rule's burn factor."""
    config = config or BurnRateConfig(prometheus_url="http://prometheus:9090")
    rules: list[dict[str, Any]] = []
    for service, policy in sorted(policies.items()):
        for dep in policy.dependencies:
            tier = policy.failed_tier(dep.name)
            budget = 1 - dep.sla_target / 100
            for rule in config.rules or page_rules():
                long_q = error_ratio_query(config, service, tier, rule.long_window_s)
                short_q = error_ratio_query(config, service, tier, rule.short_window_s)
                threshold = f"{rule.factor * budget:.6g}"
                rules.append(
                    {
                        "alert": f"GovernorErrorBudgetBurn{rule.name.capitalize()}",
                        "expr": f"({long_q}) > {threshold}\nand\n({short_q}) > {threshold}",
                        "labels": {
                            "severity": rule.severity.value,
                            "service": service,
                            "dependency": dep.name,
                            "failure_type": "error_spike",
                            "governor_report": "true",
                        },
                        "annotations": {
                            "summary": (
                                f"{service}/{dep.name} burns its {dep.sla_target}% SLO error budget at over {rule.factor}x, "
                                f"over both {window_label(rule.long_window_s)} and {window_label(rule.short_window_s)}"
                            ),
                        },
                    }
                )
    return rules


def governor_rules() -> list[dict[str, Any]]:
    """The governor's own health, from the worker's metrics (governor_* series, workers/governor_metrics.py)."""
    return [
        {
            "alert": "GovernorApprovalWaitingTooLong",
            "expr": f"max by (service) (governor_approval_wait_seconds) > {APPROVAL_WAIT_WARNING_S}",
            "labels": {"severity": "HIGH"},
            "annotations": {
                "summary": "{{ $labels.service }}: an approval has waited {{ $value | humanizeDuration }}",
                "description": "governor list --awaiting shows it; governor approve INCIDENT --gate GATE answers it.",
            },
        },
        {
            "alert": "GovernorNotificationSlaMissed",
            "expr": "sum by (service, audience) (increase(governor_notification_sla_missed_total[15m])) > 0",
            "labels": {"severity": "HIGH"},
            "annotations": {
                "summary": "{{ $labels.service }}: a notification to {{ $labels.audience }} missed its SLA",
            },
        },
        {
            "alert": "GovernorRepeatedRollbacks",
            "expr": "sum by (service, dependency) (increase(governor_rollbacks_total[30m])) >= 2",
            "labels": {"severity": "MEDIUM"},
            "annotations": {
                "summary": (
                    '{{ $labels.service }}/{{ $labels.dependency }} rolled back {{ $value | printf "%.0f" }} times in 30 min'
                ),
            },
        },
        {
            "alert": "GovernorWorkerMetricsAbsent",
            "expr": "absent(governor_metrics_collected)",
            "for": "5m",
            "labels": {"severity": "HIGH"},
            "annotations": {"summary": "no governor worker has reported its metrics for 5 minutes"},
        },
    ]


HEADER = (
    "# Written by `governor alert-rules --policy-dir deploy/policies --output deploy/prometheus/alerts.yml`:\n"
    "# edit the policies, not this file (tests/deploy/test_alert_rules.py fails when the two disagree).\n"
)


def prometheus_rules(policies: dict[str, ServicePolicy], config: BurnRateConfig | None = None) -> dict[str, Any]:
    """The whole rule file: one group of burn-rate alerts, one of the governor's own."""
    return {
        "groups": [
            {"name": "governor-burn-rate", "rules": burn_rate_rules(policies, config)},
            {"name": "governor-health", "rules": governor_rules()},
        ]
    }


def render_rules(rules: dict[str, Any]) -> str:
    """The rule file (`prometheus_rules`) as Prometheus loads it: YAML, with the header saying where it comes from."""
    return HEADER + yaml.dump(rules, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def rule_count(rules: dict[str, Any]) -> int:
    return sum(len(group["rules"]) for group in rules["groups"])


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the file reads like PromQL written by hand."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
