"""Plain JSON webhook: the whole notification as JSON, with `Idempotency-Key` so the receiver can deduplicate."""

from __future__ import annotations

from typing import Any

from activities.notify.base import (
    SIGNATURE_HEADER,
    HttpChannel,
    http_url,
    json_bytes,
    now_rfc3339,
    read_secret,
    redact,
    sign,
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
    """POST the notification as JSON; signed like the CloudEvents channel when `secret_env` is set."""

    type = "webhook"

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = http_url(spec)
        body = json_bytes(webhook_payload(input))
        headers = {**self.base_headers(input), "Content-Type": "application/json"}
        if spec.secret_env:
            headers[SIGNATURE_HEADER] = sign(read_secret(spec, "signing secret"), body)
        response = await self.request("POST", url, content=body, headers=headers)
        return self.delivered(spec, response, redact(url))
