"""Slack incoming webhooks with Block Kit, kept inside Slack's documented limits.

https://api.slack.com/reference/block-kit/blocks : header text <= 150 chars (plain_text), section text <= 3000 chars,
section fields <= 10 items of <= 2000 chars each, context <= 10 elements, <= 50 blocks per message; the top-level
`text` is the notification fallback. mrkdwn text escapes `&`, `<` and `>`.
"""

from __future__ import annotations

import json
from typing import Any

from activities.notify.base import HttpChannel, event_kind, http_url, json_bytes, redact
from governor.actions import ChannelDelivery, NotifyInput
from governor.enums import Severity
from governor.policy import ChannelSpec

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
CONTEXT_ELEMENTS_MAX = 10
BLOCKS_MAX = 50
FALLBACK_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75
URL_MAX = 3000
BUTTON_VALUE_MAX = 2000
APPROVE_ACTION = "governor_approve"
REJECT_ACTION = "governor_reject"
GATE_BLOCK_ID = "governor_gate"

SEVERITY_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":large_blue_circle:",
}

# details keys shown as fields, in this order, with their labels
_FIELD_KEYS = (
    ("service", "Service"),
    ("dependency", "Dependency"),
    ("failure_type", "Failure"),
    ("phase", "Phase"),
    ("tier", "Tier"),
    ("degradation_level", "Degradation"),
)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escaped(text: str, limit: int) -> str:
    """Escape, then fit in `limit` characters without leaving half an entity at the cut."""
    out = escape(text)
    if len(out) <= limit:
        return out
    out = out[: limit - 1]
    amp = out.rfind("&", max(0, len(out) - 5))
    if amp != -1 and ";" not in out[amp:]:
        out = out[:amp]
    return out + "…"


def mrkdwn(text: str, limit: int) -> dict[str, str]:
    return {"type": "mrkdwn", "text": escaped(text, limit)}


def mrkdwn_field(label: str, value: str) -> dict[str, str]:
    """`*label*` over the value, the whole text within the 2000-character field limit."""
    head = f"*{escaped(label, 100)}*\n"
    return {"type": "mrkdwn", "text": head + escaped(value, FIELD_TEXT_MAX - len(head))}


def gate_buttons(input: NotifyInput) -> list[dict[str, Any]]:
    """Approve / Reject for a gate's request: each value names the incident, the gate and the request's id, so a click
    decides exactly the request this message announced (workers/slack_actions.py receives it)."""
    gate, gate_id = input.details.get("gate"), input.details.get("gate_id")
    if input.event != "approval_requested" or not isinstance(gate, str):
        return []
    value = json.dumps(
        {"incident_id": input.incident_id, "gate": gate, "gate_id": gate_id if isinstance(gate_id, str) else None},
        separators=(",", ":"),
    )
    if len(value) > BUTTON_VALUE_MAX:
        return []
    return [
        {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": text},
            "style": style,
            "value": value,
        }
        for action_id, text, style in (
            (APPROVE_ACTION, truncate(f"Approve {gate}", BUTTON_TEXT_MAX), "primary"),
            (REJECT_ACTION, truncate(f"Reject {gate}", BUTTON_TEXT_MAX), "danger"),
        )
    ]


def slack_message(input: NotifyInput) -> dict[str, Any]:
    details = input.details
    resolved = event_kind(input.event) == "resolve"
    icon = (
        ":white_check_mark:" if resolved else SEVERITY_ICON.get(input.severity, ":warning:") if input.severity else ""
    )
    header = f"{icon} {input.title}".strip() if icon else input.title
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(header, HEADER_MAX), "emoji": True}}
    ]
    if input.message:
        blocks.append({"type": "section", "text": mrkdwn(input.message, SECTION_TEXT_MAX)})

    fields: list[tuple[str, str]] = [("Event", input.event)]
    if input.severity:
        fields.append(("Severity", input.severity.value))
    fields += [(label, str(details[key])) for key, label in _FIELD_KEYS if details.get(key) is not None]
    extra = details.get("fields")
    if isinstance(extra, dict):
        fields += [(str(k), str(v)) for k, v in extra.items()]
    shown = fields[:FIELDS_MAX]
    if len(fields) > FIELDS_MAX:  # the last slot says what did not fit, rather than dropping it silently
        shown[-1] = ("More", ", ".join(f"{k}: {v}" for k, v in fields[FIELDS_MAX - 1 :]))
    blocks.append(
        {
            "type": "section",
            "fields": [mrkdwn_field(k, v) for k, v in shown],
        }
    )

    buttons = gate_buttons(input)
    url = details.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) <= URL_MAX:
        buttons.append(
            {
                "type": "button",
                "text": {"type": "plain_text", "text": truncate("Open incident", BUTTON_TEXT_MAX)},
                "url": url,
            }
        )
    if buttons:
        blocks.append({"type": "actions", "block_id": GATE_BLOCK_ID, "elements": buttons})
    blocks.append(
        {
            "type": "context",
            "elements": [
                mrkdwn(f"Incident `{input.incident_id}` · audience {input.audience.value}", SECTION_TEXT_MAX),
                mrkdwn(f"Idempotency key `{input.idempotency_key}`", SECTION_TEXT_MAX),
            ][:CONTEXT_ELEMENTS_MAX],
        }
    )
    fallback = f"{header}: {input.message}" if input.message else header
    return {"text": truncate(fallback, FALLBACK_TEXT_MAX), "blocks": blocks[:BLOCKS_MAX]}


class SlackChannel(HttpChannel):
    """POST a Block Kit message to an incoming webhook URL (the URL is the secret; it is never logged)."""

    type = "slack"

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        url = http_url(spec)
        headers = {**self.base_headers(input), "Content-Type": "application/json; charset=utf-8"}
        response = await self.request("POST", url, content=json_bytes(slack_message(input)), headers=headers)
        return self.delivered(spec, response, redact(url))
