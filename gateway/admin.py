"""The admin API (`/admin`, bearer token): the governor's hands on the gateway. Bodies are validated and answers
built with the contract in governor/gateway_api.py, the same models the activities send and read."""

from __future__ import annotations

import hmac
from typing import Any, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ValidationError

from gateway.http import BadInput, Receive, Scope, Send, error, read_body, respond
from gateway.probe import probe_tier
from gateway.service import ServiceRuntime
from governor.enums import FallbackTier
from governor.gateway_api import (
    AuditLog,
    BreakerModeChange,
    DegradationChange,
    ProbeCall,
    RouteChange,
    ServiceList,
    StatusChange,
    first_error,
)

M = TypeVar("M", bound=BaseModel)


class AdminAPI:
    def __init__(self, services: dict[str, ServiceRuntime], token: str, max_body_bytes: int) -> None:
        if not token:
            raise ValueError("the gateway needs a non-empty admin token (GOVERNOR_GATEWAY_TOKEN)")
        self.services = services
        self._token = token.encode()
        self.max_body_bytes = max_body_bytes

    def _authorize(self, scope: Scope) -> tuple[int, str] | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer" or not token.strip():
                    return 401, "use Authorization: Bearer <token>"
                if hmac.compare_digest(token.strip(), self._token):
                    return None
                return 403, "the bearer token is not valid for this gateway"
        return 401, "missing Authorization: Bearer <token>"

    async def handle(self, rest: str, scope: Scope, receive: Receive, send: Send) -> None:
        denied = self._authorize(scope)
        if denied is not None:
            status, message = denied
            extra = [(b"www-authenticate", b'Bearer realm="governor-gateway"')] if status == 401 else None
            await error(send, status, "unauthorized" if status == 401 else "forbidden", message, headers=extra)
            return
        method: str = scope["method"]
        parts = [p for p in rest.split("/") if p]
        if parts == ["services"]:
            if method != "GET":
                await error(send, 405, "method_not_allowed", "use GET /admin/services")
                return
            await _answer(send, ServiceList(services=sorted(self.services)))
            return
        if len(parts) < 2 or parts[0] != "services":
            await error(send, 404, "not_found", f"no admin route /admin/{rest}")
            return
        svc = self.services.get(parts[1])
        if svc is None:
            known = ", ".join(sorted(self.services)) or "none"
            await error(send, 404, "unknown_service", f"no service {parts[1]!r} (known: {known})", "service")
            return
        incident = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-governor-incident"), None)
        action = parts[2:]
        if action == [] and method == "GET":
            await _answer(send, svc.state())
        elif action == ["stats"] and method == "GET":
            window = _query_int(scope, "window", 30, 1, 300)
            await _answer(send, svc.stats(window))
        elif action == ["audit"] and method == "GET":
            await _answer(send, AuditLog(service=svc.name, changes=list(svc.audit)))
        elif action == ["route"] and method == "PUT":
            route = await self._body(scope, receive, RouteChange)
            fields = _route_fields(svc, route)
            svc.record_change("route", route.model_dump(mode="json"), incident, svc.set_route(fields))
            await _answer(send, svc.state())
        elif len(action) == 2 and action[0] == "breakers" and method == "PUT":
            tier = _parse_tier(action[1], "tier")
            link = svc.link(tier)
            if link is None or link.breaker is None:
                with_breakers = [lk.name for lk in svc.links if lk.breaker is not None]
                raise BadInput("tier", f"{tier.value} has no breaker in {svc.name!r} (breakers: {with_breakers})", 404)
            change = await self._body(scope, receive, BreakerModeChange)
            svc.record_change(
                f"breaker:{tier.value}", change.model_dump(mode="json"), incident, svc.set_breaker(tier, change.mode)
            )
            await _answer(send, svc.state())
        elif len(action) == 3 and action[0] == "breakers" and method == "PUT":
            tier = _parse_tier(action[1], "tier")
            link = svc.link(tier)
            named = {} if link is None or link.only is not None else {str(d.name): d for d in link.deployments}
            dep = named.get(action[2])
            if dep is None:
                raise BadInput(
                    "deployment",
                    f"{tier.value} of {svc.name!r} has no deployment {action[2]!r} (deployments: {sorted(named)})",
                    404,
                )
            change = await self._body(scope, receive, BreakerModeChange)
            before = dep.breaker.mode
            dep.breaker.set_mode(change.mode)
            what = f"breaker:{tier.value}[{dep.name}]"
            svc.record_change(what, change.model_dump(mode="json"), incident, before != change.mode)
            await _answer(send, svc.state())
        elif action == ["degradation"] and method == "PUT":
            degradation = await self._body(scope, receive, DegradationChange)
            features = svc.policy.degradation.features
            for feature in degradation.flags:
                if feature not in features:
                    raise BadInput(f"flags.{feature}", f"unknown feature {feature!r} (known: {', '.join(features)})")
            changed = svc.set_degradation(degradation.level, degradation.flags)
            svc.record_change("degradation", degradation.model_dump(mode="json", exclude_unset=True), incident, changed)
            await _answer(send, svc.state())
        elif action == ["probe"] and method == "POST":
            call = await self._body(scope, receive, ProbeCall)
            link = svc.link(call.tier)
            if link is None or link.breaker is None:
                upstreams = [lk.name for lk in svc.links if lk.breaker is not None]
                raise BadInput("tier", f"{call.tier.value} is no upstream tier of {svc.name!r} ({upstreams})", 404)
            await _answer(send, await probe_tier(svc, link, call))
        elif action == ["status"] and method == "PUT":
            page = await self._body(scope, receive, StatusChange)
            changed = svc.set_status(page.component, page.message)
            svc.record_change("status", page.model_dump(mode="json", exclude_unset=True), incident, changed)
            await _answer(send, svc.state())
        else:
            await error(
                send,
                404 if method in ("GET", "PUT", "POST") else 405,
                "not_found",
                f"no admin route {method} /admin/{rest}",
            )

    async def _body(self, scope: Scope, receive: Receive, model: type[M]) -> M:
        raw = await read_body(scope, receive, self.max_body_bytes)
        try:
            return model.model_validate_json(raw or b"null")
        except ValidationError as err:
            field, message = first_error(err)
            raise BadInput(field, message) from None


async def _answer(send: Send, model: BaseModel) -> None:
    await respond(send, 200, model.model_dump_json().encode())


def _parse_tier(value: Any, field: str) -> FallbackTier:
    try:
        return FallbackTier(value)
    except ValueError:
        raise BadInput(field, f"{value!r} is not a tier ({', '.join(t.value for t in FallbackTier)})") from None


def _route_fields(svc: ServiceRuntime, route: RouteChange) -> dict[str, Any]:
    """The route fields to set: a tier outside the chain is refused; a pin without a weight means the pin."""
    fields: dict[str, Any] = {}
    if "pinned_tier" in route.model_fields_set:
        tier = route.pinned_tier
        if tier is not None and tier not in svc.index and tier is not FallbackTier.TIER_5_ERROR:
            raise BadInput(
                "pinned_tier", f"{tier.value} is not in {svc.name!r}'s chain ({', '.join(lk.name for lk in svc.links)})"
            )
        fields["pinned_tier"] = tier
    if "primary_weight" in route.model_fields_set:
        weight = route.primary_weight
        if weight is None:
            raise BadInput("primary_weight", "primary_weight must be a number from 0 to 100, got None")
        fields["primary_weight"] = int(weight) if float(weight).is_integer() else weight
    elif "pinned_tier" in fields:
        pinned = fields["pinned_tier"]
        fields["primary_weight"] = 100 if pinned is None or pinned is FallbackTier.TIER_0_PRIMARY else 0
    return fields


def _query_int(scope: Scope, name: str, default: int, low: int, high: int) -> int:
    values = parse_qs(scope["query_string"].decode("latin-1")).get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise BadInput(name, f"{name} must be a whole number of seconds, got {values[0]!r}") from None
    if not low <= value <= high:
        raise BadInput(name, f"{name} must be between {low} and {high}, got {value}")
    return value
