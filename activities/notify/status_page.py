"""The gateway's status page: PUT `/admin/services/{service}/status` on every gateway replica.

The component is a Statuspage value (operational, degraded_performance, partial_outage, major_outage) and the message
is the seed's user message for the degradation level (`DegradationLevel.user_message`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from activities.notify.base import (
    STATUS_COMPONENTS,
    DeliveryError,
    HttpChannel,
    config_error,
    degradation_level,
    event_kind,
    http_url,
    json_bytes,
    redact,
)
from governor.actions import ChannelDelivery, NotifyInput
from governor.decisions import status_component
from governor.policy import ChannelSpec, PolicyError, find_policy

TOKEN_ENV = "GOVERNOR_GATEWAY_TOKEN"


def status_change(input: NotifyInput) -> dict[str, str]:
    """`{"component", "message"}`: details.component wins, else the degradation level's, else a resolve event's
    `operational`; the message is details.user_message or the level's seed message."""
    details = input.details
    level = degradation_level(input)
    component = details.get("component")
    if component is not None:
        if component not in STATUS_COMPONENTS:
            raise DeliveryError(
                f"details.component {component!r} is not a status component ({', '.join(STATUS_COMPONENTS)})",
                retryable=False,
            )
    elif level is not None:
        component = status_component(level)
    elif event_kind(input.event) == "resolve":
        component = "operational"
    else:
        raise DeliveryError(
            "status_page needs details.degradation_level (or details.component) to know what to show",
            retryable=False,
        )
    message = details.get("user_message")
    if message is None:
        message = level.user_message if level is not None else ""
    return {"component": str(component), "message": str(message)}


class StatusPageChannel(HttpChannel):
    """Set the status component and message on every gateway replica (spec.url, details.gateways, or the policy's)."""

    type = "status_page"

    def __init__(
        self, http: httpx.AsyncClient, gateway_token: str | None = None, policy_dir: Path | None = None
    ) -> None:
        super().__init__(http)
        self._gateway_token = gateway_token
        self._policy_dir = policy_dir

    def _gateways(self, spec: ChannelSpec, input: NotifyInput, service: str) -> list[str]:
        """spec.url, else details.gateways, else the `gateways` of the service's policy file on this worker."""
        if spec.url:
            return [spec.url]
        listed = input.details.get("gateways")
        if isinstance(listed, list) and listed:
            return [str(g) for g in listed]
        if self._policy_dir is not None:
            try:
                return list(find_policy(self._policy_dir, service).gateways)
            except PolicyError as err:
                raise config_error(spec, f"no url or details.gateways, and the policy gives none: {err}") from None
        raise config_error(spec, "set its url to the gateway admin base URL, or pass details.gateways")

    def _token(self, spec: ChannelSpec) -> str:
        if spec.secret_env:
            token = os.environ.get(spec.secret_env, "")
            if not token:
                raise config_error(spec, f"environment variable {spec.secret_env} (the gateway token) is not set")
            return token
        token = self._gateway_token or os.environ.get(TOKEN_ENV, "")
        if not token:
            raise config_error(spec, f"no gateway token: set {TOKEN_ENV} or the channel's secret_env")
        return token

    async def send(self, input: NotifyInput, spec: ChannelSpec) -> ChannelDelivery:
        service = input.details.get("service")
        if not service:
            raise config_error(spec, "details.service is required (the gateway service whose status changes)")
        bases = [http_url(spec, g) for g in self._gateways(spec, input, str(service))]
        change = status_change(input)
        body = json_bytes(change)
        headers = {
            **self.base_headers(input),
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._token(spec)}",
        }
        status_code: int | None = None
        for base in bases:  # PUT is idempotent: a retry may safely repeat replicas that already took it
            url = base.copy_with(path=f"{base.path.rstrip('/')}/admin/services/{service}/status", query=None)
            response = await self.request("PUT", url, content=body, headers=headers)
            _verify(response, change, redact(base))
            status_code = response.status_code
        return ChannelDelivery(
            channel=spec.type,
            ok=True,
            status_code=status_code,
            target=", ".join(redact(b) for b in bases) + f" {service}={change['component']}",
        )


def _verify(response: httpx.Response, change: dict[str, str], target: str) -> None:
    """Read back: the service state the gateway returns must show the component we set."""
    try:
        state: Any = response.json()
    except json.JSONDecodeError:
        return
    status = state.get("status") if isinstance(state, dict) else None
    if isinstance(status, dict) and status.get("component") not in (None, change["component"]):
        raise DeliveryError(
            f"{target}: gateway still shows status {status.get('component')!r} after setting {change['component']!r}",
            retryable=True,
            status_code=response.status_code,
            target=target,
        )
