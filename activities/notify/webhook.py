"""Plain JSON webhook: the whole notification as JSON, signed per Standard Webhooks when `secret_env` is set.

`webhook-id` is the notification's idempotency key (the same on every retry, so a receiver deduplicates on it),
`webhook-timestamp` the send time in Unix seconds, and `webhook-signature` `v1,<base64 HMAC-SHA256>` of
`{id}.{timestamp}.{body}`: a receiver that checks the timestamp's age (the standard's libraries allow 5 minutes)
refuses a replayed message. The body-only `X-Governor-Signature` is still sent for one release (deprecated).
"""

from __future__ import annotations

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


def webhook_payload(input: NotifyInput) -> dict[str, Any]:
    return {
        "id": input.idempotency_key,
        "idempotency_key": input.idempotency_key,
        "incident_id": input.incident_id,
        "occurrence": input.occurrence or input.incident_id,
        "event": input.event,
        "audience": input.audience.value,
        "sla_minutes": input.audience.sla_minutes,
        "severity": input.severity.value if input.severity else None,
        "title": input.title,
        "message": input.message,
        "details": input.details,
        "sent_at": now_rfc3339(),
    }


class WebhookChannel(HttpChannel):
    """POST the notification as JSON; Standard Webhooks headers always, the signature when `secret_env` is set."""

    type = "webhook"

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = http_url(spec)
        body = json_bytes(webhook_payload(input))
        headers = {
            **self.base_headers(input),
            "Content-Type": "application/json",
            **standard_webhook_headers(spec, input.idempotency_key, body, now=self.clock()),
        }
        response = await self.request("POST", url, content=body, headers=headers)
        return self.delivered(spec, response, redact(url))
