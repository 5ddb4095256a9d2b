"""PagerDuty Events API v2: trigger, acknowledge or resolve one alert per incident occurrence (dedup_key = occurrence).

https://developer.pagerduty.com/docs/events-api-v2/trigger-events/ : `routing_key`, `event_action`, and for a trigger
`payload.summary` (<= 1024 chars), `payload.source`, `payload.severity` (critical, error, warning, info).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from activities.notify.base import HttpChannel, config_error, event_kind, http_url, json_bytes, now_rfc3339, redact
from governor.actions import ChannelDelivery, NotifyInput
from governor.enums import Severity
from governor.policy import ChannelSpec

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255

PAGERDUTY_SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
}
UNCLASSIFIED_SEVERITY = "error"
"""An incident not classified yet still pages as an error."""


def dedup_key(incident_id: str) -> str:
    """The occurrence (or incident id), so every event of one occurrence lands on one PagerDuty alert and the next
    incident on the same dependency opens a new one (hashed if over 255 chars)."""
    if len(incident_id) <= DEDUP_KEY_MAX:
        return incident_id
    return incident_id[: DEDUP_KEY_MAX - 17] + "-" + hashlib.sha256(incident_id.encode()).hexdigest()[:16]


def event_action(input: NotifyInput) -> str:
    override = input.details.get("pagerduty_action")
    if override is not None:
        if override not in {"trigger", "acknowledge", "resolve"}:
            raise ValueError(f"details.pagerduty_action {override!r} is not trigger, acknowledge or resolve")
        return str(override)
    return event_kind(input.event)


def pagerduty_event(input: NotifyInput, routing_key: str) -> dict[str, Any]:
    action = event_action(input)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(input.occurrence or input.incident_id),
    }
    if action != "trigger":
        return event  # acknowledge and resolve need only the key; PagerDuty ignores a payload on them
    details = input.details
    summary = input.title if not input.message else f"{input.title}: {input.message}"
    service = details.get("service")
    event["payload"] = {
        "summary": summary if len(summary) <= SUMMARY_MAX else summary[: SUMMARY_MAX - 1] + "…",
        "source": str(details.get("source") or (f"fallback-governor/{service}" if service else "fallback-governor")),
        "severity": PAGERDUTY_SEVERITY[input.severity] if input.severity else UNCLASSIFIED_SEVERITY,
        "timestamp": now_rfc3339(),
        "component": str(details.get("dependency") or service or input.incident_id),
        "group": str(service or "fallback-governor"),
        "class": str(details.get("failure_type") or input.event),
        "custom_details": {
            "incident_id": input.incident_id,
            "occurrence": input.occurrence or input.incident_id,
            "event": input.event,
            "audience": input.audience.value,
            "idempotency_key": input.idempotency_key,
            "message": input.message,
            **{k: v for k, v in details.items() if k not in {"pagerduty_action"}},
        },
    }
    event["client"] = "Fallback Governor"
    if details.get("url"):
        event["client_url"] = str(details["url"])
        event["links"] = [{"href": str(details["url"]), "text": f"Incident {input.incident_id}"}]
    return event


class PagerDutyChannel(HttpChannel):
    """POST an Events API v2 event; the routing key comes from `secret_env` (preferred) or `routing_key`."""

    type = "pagerduty"

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = http_url(spec)
        if spec.secret_env:
            routing_key = os.environ.get(spec.secret_env, "")
            if not routing_key:
                raise config_error(spec, f"environment variable {spec.secret_env} (its routing key) is not set")
        elif spec.routing_key:
            routing_key = spec.routing_key
        else:
            raise config_error(
                spec, "needs a routing key: set secret_env (an environment variable name) or routing_key"
            )
        try:
            event = pagerduty_event(input, routing_key)
        except ValueError as err:
            raise config_error(spec, str(err)) from None
        headers = {**self.base_headers(input), "Content-Type": "application/json"}
        response = await self.request("POST", url, content=json_bytes(event), headers=headers)
        return self.delivered(spec, response, redact(url))
