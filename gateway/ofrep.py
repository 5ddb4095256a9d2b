"""OpenFeature Remote Evaluation Protocol (OFREP v1): apps read the degradation flags with any OpenFeature SDK.

Flag keys, per service (the service may also come from the evaluation context's `service` attribute, or be left out
when the gateway serves a single service):
  `<service>.<feature>`          string: the feature's FeatureFlag value (enabled / degraded / disabled / canary)
  `<service>.<feature>.enabled`  boolean: false only when the feature is disabled
  `<service>.degradation_level`  string: the service's DegradationLevel value
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from gateway.service import ServiceRuntime
from governor.enums import FeatureFlag

Result = tuple[int, Any, list[tuple[bytes, bytes]]]


def _error(status: int, key: str | None, code: str, details: str) -> Result:
    body: dict[str, Any] = {"errorCode": code, "errorDetails": details}
    if key is not None:
        body["key"] = key
    return status, body, []


class OfrepHandler:
    def __init__(self, services: dict[str, ServiceRuntime]) -> None:
        self.services = services

    def handle(self, method: str, rest: str, body: bytes, scope: dict[str, Any]) -> Result:
        parts = [p for p in rest.split("/") if p]
        if parts[:3] != ["v1", "evaluate", "flags"] or len(parts) > 4:
            return 404, {"errorCode": "GENERAL", "errorDetails": f"no OFREP route /ofrep/{rest}"}, []
        if method != "POST":
            return 405, {"errorCode": "GENERAL", "errorDetails": "OFREP evaluation uses POST"}, []
        key = parts[3] if len(parts) == 4 else None
        try:
            request = json.loads(body) if body else {}
        except (ValueError, UnicodeDecodeError) as err:
            return _error(400, key, "PARSE_ERROR", f"body is not valid JSON ({err})")
        context = request.get("context", {}) if isinstance(request, dict) else None
        if not isinstance(context, dict):
            return _error(400, key, "INVALID_CONTEXT", "context must be a JSON object")
        if key is None:
            return self._bulk(context, scope)
        return self._single(key, context)

    def _service_for(self, key: str, context: dict[str, Any]) -> tuple[ServiceRuntime | None, str]:
        head, _, tail = key.partition(".")
        if head in self.services and tail:
            return self.services[head], tail
        wanted = context.get("service")
        if isinstance(wanted, str) and wanted in self.services:
            return self.services[wanted], key
        if len(self.services) == 1:
            return next(iter(self.services.values())), key
        return None, key

    def _evaluate(self, svc: ServiceRuntime, name: str) -> dict[str, Any] | None:
        meta: dict[str, Any] = {
            "service": svc.name,
            "degradation_level": svc.level.value,
            "updated_at": svc.flags_updated_at,
        }
        if name == "degradation_level":
            return {"value": svc.level.value, "variant": svc.level.value, "metadata": meta}
        feature, _, suffix = name.partition(".")
        flag = svc.flags.get(feature)
        if flag is None or suffix not in ("", "enabled"):
            return None
        meta["traffic_percentage"] = flag.traffic_percentage
        if suffix == "enabled":
            on = flag is not FeatureFlag.DISABLED
            return {"value": on, "variant": flag.value, "metadata": meta}
        return {"value": flag.value, "variant": flag.value, "metadata": meta}

    def _single(self, key: str, context: dict[str, Any]) -> Result:
        svc, name = self._service_for(key, context)
        if svc is None:
            return _error(
                404,
                key,
                "FLAG_NOT_FOUND",
                f"flag {key!r} names no service; use <service>.<feature> ({', '.join(self.services)})",
            )
        found = self._evaluate(svc, name)
        if found is None:
            features = ", ".join(svc.flags)
            return _error(404, key, "FLAG_NOT_FOUND", f"{svc.name!r} has no flag {name!r} (features: {features})")
        return 200, {"key": key, "reason": "STATIC", **found}, []

    def _bulk(self, context: dict[str, Any], scope: dict[str, Any]) -> Result:
        wanted = context.get("service")
        services = (
            [self.services[wanted]]
            if isinstance(wanted, str) and wanted in self.services
            else list(self.services.values())
        )
        flags = []
        for svc in services:
            for name in ["degradation_level", *svc.flags, *(f"{f}.enabled" for f in svc.flags)]:
                found = self._evaluate(svc, name)
                if found is not None:
                    flags.append({"key": f"{svc.name}.{name}", "reason": "STATIC", **found})
        etag = '"' + hashlib.sha1(json.dumps(flags, sort_keys=True).encode()).hexdigest()[:16] + '"'
        for name, value in scope["headers"]:
            if name == b"if-none-match" and value.decode("latin-1") == etag:
                return 304, None, [(b"etag", etag.encode())]
        return 200, {"flags": flags}, [(b"etag", etag.encode())]
