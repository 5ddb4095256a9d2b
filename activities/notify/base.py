"""The one interface every notification channel implements, and what the HTTP channels share.

A channel makes one delivery attempt: it returns a `ChannelDelivery` when the receiver accepted the message and raises
`DeliveryError` otherwise, saying whether trying again can help. Retrying is the activity's job, not the channel's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from activities.probes import error_kind_of
from governor.actions import ChannelDelivery, NotifyInput
from governor.enums import DegradationLevel
from governor.gateway_api import StatusComponent
from governor.policy import ChannelSpec

USER_AGENT = "fallback-governor/0.1"
SIGNATURE_HEADER = "X-Governor-Signature"
"""Deprecated (kept for one release): `sha256=<hex HMAC-SHA256 of the body bytes>`; no timestamp, so replayable.
Verify the Standard Webhooks headers instead (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
"""Standard Webhooks (https://www.standardwebhooks.com): `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
SECRET_PREFIX = "whsec_"
"""A Standard Webhooks secret: `whsec_` and the base64 of the key bytes. Any other value is the key as UTF-8."""

RESOLVE_EVENTS = frozenset({"resolve", "resolved", "recovered", "full_restore", "false_alarm", "closed"})
"""Events that end an incident: PagerDuty resolves the page, the status page goes back to operational."""
ACKNOWLEDGE_EVENTS = frozenset({"acknowledge", "acknowledged", "ack"})

STATUS_COMPONENTS = tuple(c.value for c in StatusComponent)
"""Statuspage component values the gateway accepts (governor/gateway_api.py)."""

_BODY_EXCERPT = 300


class DeliveryError(Exception):
    """A channel could not deliver. `retryable` says whether the same send may succeed later."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        target: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.target = target


def config_error(spec: ChannelSpec, problem: str) -> DeliveryError:
    """Bad configuration: no retry can fix it, so it fails the channel at once."""
    return DeliveryError(f"{spec.type} channel misconfigured: {problem}", retryable=False)


class Channel(ABC):
    """One way to tell an audience: a webhook, PagerDuty, Slack, CloudEvents, email, the status page."""

    type: ClassVar[str]

    @abstractmethod
    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        """Deliver once; return the delivery when accepted, raise `DeliveryError` when not."""


def event_kind(event: str) -> str:
    """`resolve`, `acknowledge` or `trigger` for an event name (the last dotted part counts: `incident.resolved`)."""
    last = event.strip().lower().rsplit(".", 1)[-1]
    if last in RESOLVE_EVENTS:
        return "resolve"
    if last in ACKNOWLEDGE_EVENTS:
        return "acknowledge"
    return "trigger"


def degradation_level(input: NotifyInput) -> DegradationLevel | None:
    raw = input.details.get("degradation_level")
    if raw is None:
        return None
    try:
        return DegradationLevel(raw)
    except ValueError:
        known = ", ".join(level.value for level in DegradationLevel)
        raise DeliveryError(
            f"details.degradation_level {raw!r} is not a degradation level ({known})", retryable=False
        ) from None


def read_secret(spec: ChannelSpec, what: str) -> str:
    """The value of the environment variable the channel's `secret_env` names; a clear error when unset."""
    if not spec.secret_env:
        raise config_error(spec, f"set secret_env to the name of the environment variable holding the {what}")
    value = os.environ.get(spec.secret_env, "")
    if not value:
        raise config_error(spec, f"environment variable {spec.secret_env} (its secret_env, the {what}) is not set")
    return value


def http_url(spec: ChannelSpec, url: str | None = None) -> httpx.URL:
    """The channel's URL, parsed; an URL that is not absolute http(s) is a configuration error."""
    raw = url if url is not None else spec.url
    if not raw:
        raise config_error(spec, "no url")
    try:
        parsed = httpx.URL(raw)
    except httpx.InvalidURL as err:
        raise config_error(spec, f"url {redact(raw)!r} is malformed ({err})") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise config_error(spec, f"url {redact(raw)!r} is not an absolute http(s) URL")
    return parsed


def redact(url: str | httpx.URL) -> str:
    """`scheme://host[:port]` and a hint of the path: webhook paths often carry tokens (Slack's do)."""
    try:
        parsed = httpx.URL(str(url))
    except httpx.InvalidURL:
        return "<malformed url>"
    if not parsed.host:
        return "<malformed url>"
    port = f":{parsed.port}" if parsed.port else ""
    path = "/…" if parsed.path not in {"", "/"} else ""
    return f"{parsed.scheme}://{parsed.host}{port}{path}"


def sign(secret: str, body: bytes) -> str:
    """The deprecated `X-Governor-Signature` value: `sha256=` and the hex HMAC-SHA256 of the body (the secret's
    UTF-8 bytes as the key, whatever its form, exactly as before)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signing_key(spec: ChannelSpec, secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks signature: `whsec_<base64>` decoded, else the secret's UTF-8 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if not key:
        raise config_error(
            spec,
            f"the secret in {spec.secret_env} starts with {SECRET_PREFIX} but what follows is not base64 key bytes",
        )
    return key


def standard_webhook_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`, as the Standard Webhooks spec signs."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def standard_webhook_headers(
    spec: ChannelSpec, msg_id: str, body: bytes, *, now: float, required: bool = False
) -> dict[str, str]:
    """`webhook-id` and `webhook-timestamp` always; with a secret (`secret_env`, or `required`) `webhook-signature`
    and, for one more release, the deprecated body-only `X-Governor-Signature`."""
    timestamp = int(now)
    headers = {WEBHOOK_ID_HEADER: msg_id, WEBHOOK_TIMESTAMP_HEADER: str(timestamp)}
    if spec.secret_env or required:
        secret = read_secret(spec, "signing secret")
        headers[WEBHOOK_SIGNATURE_HEADER] = standard_webhook_signature(
            signing_key(spec, secret), msg_id, timestamp, body
        )
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers


def json_bytes(payload: Any) -> bytes:
    """Serialize once, so a signature covers exactly the bytes on the wire."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


class HttpChannel(Channel):
    """A channel that POSTs or PUTs to an HTTP endpoint with the worker's shared `httpx.AsyncClient`."""

    def __init__(self, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self.clock = clock
        """Unix seconds for `webhook-timestamp`; tests move it to show that receivers reject old messages."""

    def base_headers(self, input: NotifyInput) -> dict[str, str]:
        return {
            "User-Agent": USER_AGENT,
            "Idempotency-Key": input.idempotency_key,
            "X-Governor-Incident": input.incident_id,
            "X-Governor-Event": input.event,
        }

    async def request(self, method: str, url: httpx.URL, *, content: bytes, headers: dict[str, str]) -> httpx.Response:
        """Send and classify: 2xx returns; connect errors, timeouts, 408, 429 and 5xx are retryable; other 4xx,
        redirects and bad URLs are not."""
        target = redact(url)
        try:
            response = await self._http.request(method, url, content=content, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as err:
            raise DeliveryError(f"{target}: bad URL ({err})", retryable=False, target=target) from None
        except httpx.TransportError as err:
            kind = error_kind_of(err)
            detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            label = {"refused": "connection refused", "dns": "name does not resolve", "timeout": "timed out"}.get(
                kind, "unreachable" if kind == "unreachable" else "connection failed"
            )
            raise DeliveryError(f"{target}: {label} ({detail})", retryable=True, target=target) from None

        status = response.status_code
        if 200 <= status < 300:
            return response
        reason = f"{target}: HTTP {status} {response.reason_phrase}".rstrip()
        body = _excerpt(response)
        if body:
            reason += f": {body}"
        if status == 429 or status == 408 or status >= 500:
            raise DeliveryError(
                reason,
                retryable=True,
                status_code=status,
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
                target=target,
            )
        if 300 <= status < 400:
            where = response.headers.get("Location", "?")
            reason = f"{target}: HTTP {status} redirect to {redact(where)}; point the channel at the final URL"
        raise DeliveryError(reason, retryable=False, status_code=status, target=target)

    def delivered(self, spec: ChannelSpec, response: httpx.Response, target: str) -> ChannelDelivery:
        return ChannelDelivery(channel=spec.type, ok=True, status_code=response.status_code, target=target)
