"""A small client for the gateway's admin API (DESIGN.md, "Gateway admin API"), with errors sorted for Temporal.

Connect errors, timeouts, 429 and 5xx raise `GatewayUnavailable` (an ordinary exception: the activity retries);
a bad token (401/403), an unknown service (404) or a refused body (400/422) raise a non-retryable `ApplicationError`,
because retrying a configuration mistake only delays the page to a human.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from governor.gateway_api import ProbeCall, ProbeReport, ServiceState, StatsWindow

M = TypeVar("M", bound=BaseModel)


class GatewayUnavailable(Exception):
    """A replica did not answer, or answered 5xx/429: transient, the activity's retry policy retries it."""


class GatewayChangeNotApplied(Exception):
    """A replica accepted a change but its state read back differs: retried (every change is idempotent)."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return str(body)[:300]


class GatewayAdmin:
    """Calls one or more gateway replicas' `/admin` API with the worker's bearer token."""

    def __init__(self, client: httpx.AsyncClient, token: str, timeout_s: float = 5.0) -> None:
        self._client = client
        self._token = token
        self._timeout = httpx.Timeout(timeout_s)

    def _headers(self, incident_id: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        if incident_id:
            headers["X-Governor-Incident"] = incident_id
        return headers

    async def _call(
        self,
        method: str,
        base: str,
        path: str,
        *,
        service: str,
        incident_id: str | None = None,
        body: BaseModel | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        url = base.rstrip("/") + path
        try:
            response = await self._client.request(
                method,
                url,
                content=None if body is None else body.model_dump_json().encode(),
                params=params,
                headers=self._headers(incident_id),
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"gateway {base}: {method} {path} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            try:
                data = response.json()
            except ValueError:
                raise GatewayUnavailable(
                    f"gateway {base}: {method} {path} answered {status} with a non-JSON body"
                ) from None
            if not isinstance(data, dict):
                raise GatewayUnavailable(
                    f"gateway {base}: {method} {path} answered {status} with {type(data).__name__}"
                )
            return data
        detail = _detail(response)
        if status in (401, 403):
            raise ApplicationError(
                f"gateway {base} refused the admin token (HTTP {status} on {method} {path}): "
                f"check GOVERNOR_GATEWAY_TOKEN against the gateway's token. {detail}",
                type="GatewayAuthError",
                non_retryable=True,
            )
        if status == 404:
            raise ApplicationError(
                f"gateway {base} answered 404 on {method} {path} ({detail}): it does not serve service {service!r} "
                "as the policy describes it; check the policy's `gateways` list and the gateway's policy folder",
                type="GatewayUnknownService",
                non_retryable=True,
            )
        if status == 429 or status >= 500:
            raise GatewayUnavailable(f"gateway {base}: {method} {path} answered HTTP {status}: {detail}")
        raise ApplicationError(
            f"gateway {base} rejected {method} {path} with HTTP {status}: {detail} (body sent: {None if body is None else body.model_dump_json()})",
            type="GatewayRejectedChange",
            non_retryable=True,
        )

    async def service_state(self, base: str, service: str, incident_id: str | None = None) -> ServiceState:
        data = await self._call("GET", base, f"/admin/services/{service}", service=service, incident_id=incident_id)
        return _parse(ServiceState, data, base, f"state of {service!r}")

    async def put(self, base: str, service: str, path: str, body: BaseModel, incident_id: str | None) -> ServiceState:
        """PUT one change (a contract model); the answer is the service's state after it."""
        data = await self._call(
            "PUT", base, f"/admin/services/{service}/{path}", service=service, incident_id=incident_id, body=body
        )
        return _parse(ServiceState, data, base, f"state of {service!r}")

    async def stats(self, base: str, service: str, window_s: int) -> StatsWindow:
        data = await self._call(
            "GET", base, f"/admin/services/{service}/stats", service=service, params={"window": window_s}
        )
        return _parse(StatsWindow, data, base, f"stats for {service!r}")

    async def probe(self, base: str, service: str, call: ProbeCall) -> ProbeReport:
        """Synthetic requests through one replica's data path to one upstream tier (outside its stats)."""
        data = await self._call("POST", base, f"/admin/services/{service}/probe", service=service, body=call)
        return _parse(ProbeReport, data, base, f"probe of {service!r}")


def _parse(model: type[M], data: dict[str, Any], base: str, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValueError as exc:
        raise ApplicationError(
            f"gateway {base} answered {what} in an unknown shape: {exc}",
            type="GatewayContractError",
            non_retryable=True,
        ) from None
