"""CloudEvents 1.0 in structured mode (`application/cloudevents+json`), signed with HMAC-SHA256.

https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md : required `specversion`, `id`, `source`, `type`;
`id` is unique per `source`, so a receiver deduplicates on (source, id) and id is our idempotency key.
Signed as the webhook channel signs (Standard Webhooks: `webhook-id` = the event's `id`, `webhook-timestamp`,
`webhook-signature`), with the secret from the environment variable the channel's `secret_env` names; the body-only
`X-Governor-Signature: sha256=<hex>` is still sent for one release (deprecated).
"""

from __future__ import annotations

import re
from typing import Any

from activities.notify.base import (
    HttpChannel,
    http_url,
    json_bytes,
    now_rfc3339,
    redact,
    standard_webhook_headers,
)
from governor.actions import ChannelDelivery, NotifyInput
from governor.policy import ChannelSpec

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TYPE_PREFIX = "dev.fallbackgovernor.incident."


def event_type(event: str) -> str:
    """`dev.fallbackgovernor.incident.<event>`, the event reduced to lowercase letters, digits, `_`, `-`, `.`."""
    slug = re.sub(r"[^a-z0-9_.-]+", "_", event.strip().lower()).strip("._-") or "event"
    return TYPE_PREFIX + slug


def event_source(input: NotifyInput) -> str:
    service = input.details.get("service")
    return f"/fallback-governor/services/{service}" if service else "/fallback-governor"


def cloud_event(input: NotifyInput) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": input.idempotency_key,
        "source": event_source(input),
        "type": event_type(input.event),
        "subject": input.incident_id,
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
        # extension attributes: lowercase letters and digits only (spec: attribute naming)
        "audience": input.audience.value,
        "occurrence": input.occurrence or input.incident_id,
        "data": {
            "incident_id": input.incident_id,
            "occurrence": input.occurrence or input.incident_id,
            "event": input.event,
            "audience": input.audience.value,
            "severity": input.severity.value if input.severity else None,
            "title": input.title,
            "message": input.message,
            "details": input.details,
            "idempotency_key": input.idempotency_key,
        },
    }
    if input.severity:
        event["severity"] = input.severity.value
    return event


class CloudEventsChannel(HttpChannel):
    """POST one structured-mode CloudEvent; refuses to send unsigned (a `secret_env` is required)."""

    type = "cloudevents"

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = http_url(spec)
        body = json_bytes(cloud_event(input))
        headers = {
            **self.base_headers(input),
            "Content-Type": CONTENT_TYPE,
            **standard_webhook_headers(spec, input.idempotency_key, body, now=self.clock(), required=True),
        }
        response = await self.request("POST", url, content=body, headers=headers)
        return self.delivered(spec, response, redact(url))
