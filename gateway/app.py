"""The fallback gateway: a raw ASGI app serving every service's tier chain, its admin API, metrics, flags and status.

`ANY /{service}/{path}` walks the chain primary > secondary > cache > degraded > static > explicit 503, honouring
breakers, the pinned tier and the primary weight; every answer says which tier served it (`X-Governor-Tier`) and why
(`X-Governor-Reason`). The governor steers it through `/admin` (bearer token). No Temporal here, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.breaker import DENY, PROBE, BreakerConfig
from gateway.cache import cache_key
from gateway.client import UpstreamError
from gateway.ofrep import OfrepHandler
from gateway.service import STATUS_COMPONENT_VALUES, Link, ServiceRuntime
from gateway.status import StateCollector, render_status_html, status_json
from governor.enums import DegradationLevel, FallbackTier, FeatureFlag
from governor.policy import ServicePolicy

log = structlog.get_logger("gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

RESERVED = frozenset({"admin", "metrics", "healthz", "status", "status.json", "ofrep"})
HOP_BY_HOP = frozenset(
    {
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authorization",
        b"expect",
    }
)
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}
JSON_CT = b"application/json"
SSE_CT = b"text/event-stream"
MAX_CACHED_STREAM = 1 << 20
ERROR_TIER = FallbackTier.TIER_5_ERROR.value


@dataclass
class GatewaySettings:
    max_body_bytes: int = 1 << 20
    breaker: BreakerConfig = BreakerConfig()  # noqa: RUF009 (frozen dataclass)


class BadInput(Exception):
    def __init__(self, field: str, message: str, status: int = 422) -> None:
        if field not in message:
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON_CT,
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _error(
    send: Send,
    status: int,
    kind: str,
    message: str,
    field: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    err: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        err["field"] = field
    await _respond(send, status, _json_bytes({"error": err}), headers)


class _Attempt:
    """What happened on one tier for one request: an answer to send, or a reason to fall through."""

    __slots__ = ("body", "content_type", "headers", "reason", "retry_after", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.content_type = b""
        self.reason = ""
        self.retry_after = 0.0


class GatewayApp:
    """The ASGI application. Build it with `create_app`."""

    def __init__(self, policies: dict[str, ServicePolicy], admin_token: str, settings: GatewaySettings) -> None:
        if not admin_token:
            raise ValueError("the gateway needs a non-empty admin token (GOVERNOR_GATEWAY_TOKEN)")
        for name in policies:
            if name in RESERVED:
                raise ValueError(f"service name {name!r} collides with a gateway route ({', '.join(sorted(RESERVED))})")
        self.settings = settings
        self.services = {name: ServiceRuntime(p, settings.breaker) for name, p in policies.items()}
        self._token = admin_token.encode()
        self.started = asyncio.Event()
        self.registry = CollectorRegistry()
        self.m_attempts = Counter(
            "governor_gateway_tier_attempts",
            "Requests tried on a tier, by outcome",
            ["service", "tier", "outcome"],
            registry=self.registry,
        )
        self.m_served = Counter(
            "governor_gateway_responses",
            "Responses by the tier that served them",
            ["service", "tier"],
            registry=self.registry,
        )
        self.m_latency = Histogram(
            "governor_gateway_tier_latency_seconds",
            "Time to an answer (or failure) per tier attempt",
            ["service", "tier"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.registry.register(StateCollector(self.services))
        self._attempt_children: dict[tuple[str, str, str], Any] = {}
        self._served_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self.ofrep = OfrepHandler(self.services)

    # --- ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.started.set()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        for service in self.services.values():
            await service.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        head, _, rest = path[1:].partition("/")
        service = self.services.get(head)
        try:
            if service is not None:
                await self._data_plane(service, "/" + rest, scope, receive, send)
            elif head == "admin":
                await self._admin(rest, scope, receive, send)
            elif head == "healthz":
                await _respond(send, 200, _json_bytes({"status": "ok", "services": sorted(self.services)}))
            elif head == "metrics":
                await self._metrics(send)
            elif head == "status" and not rest:
                await _respond(
                    send,
                    200,
                    render_status_html(self.services).encode(),
                    [(b"cache-control", b"no-cache")],
                    b"text/html; charset=utf-8",
                )
            elif head == "status.json":
                await _respond(send, 200, _json_bytes(status_json(self.services)), [(b"cache-control", b"no-cache")])
            elif head == "ofrep":
                body = await self._read_body(scope, receive)
                status, payload, headers = self.ofrep.handle(scope["method"], rest, body, scope)
                if status == 304:
                    await send({"type": "http.response.start", "status": 304, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                else:
                    await _respond(send, status, _json_bytes(payload), headers)
            else:
                known = ", ".join(sorted(self.services)) or "none"
                await _error(send, 404, "unknown_service", f"no service {head!r} (known: {known})", "service")
        except BadInput as bad:
            await _error(
                send,
                bad.status,
                "invalid_request" if bad.status == 422 else "request_too_large",
                bad.message,
                bad.field,
            )
        except Exception:
            # Never a bare 500: log it and answer explicitly (the data plane answers its own 503 before this).
            log.exception("gateway_internal_error", path=path)
            with contextlib.suppress(Exception):
                await _error(send, 500, "gateway_error", "the gateway failed to handle this request; see its logs")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise BadInput("content-length", "content-length is not a number", 400) from None
                if declared > limit:
                    raise BadInput("body", f"body of {declared} bytes exceeds the {limit}-byte limit", 413)
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body"):
            return body
        parts = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BadInput("body", f"body exceeds the {limit}-byte limit", 413)
            parts.append(chunk)
        return b"".join(parts)

    # --- metrics helpers (label children cached: the hot path never builds label tuples twice)

    def _count_attempt(self, service: str, tier: str, outcome: str, elapsed: float) -> None:
        key = (service, tier, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.m_attempts.labels(service, tier, outcome)
        child.inc()
        lkey = (service, tier)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.m_latency.labels(service, tier)
        hist.observe(elapsed)

    def _count_served(self, service: str, tier: str) -> None:
        key = (service, tier)
        child = self._served_children.get(key)
        if child is None:
            child = self._served_children[key] = self.m_served.labels(service, tier)
        child.inc()

    async def _metrics(self, send: Send) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        await _respond(send, 200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())

    # --- data plane

    async def _data_plane(self, svc: ServiceRuntime, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope, receive)
        except BadInput as bad:
            await _error(
                send,
                bad.status,
                "request_too_large" if bad.status == 413 else "invalid_request",
                bad.message,
                bad.field,
                [(b"x-governor-tier", ERROR_TIER.encode())],
            )
            return
        method: str = scope["method"]
        qs: bytes = scope["query_string"]
        if qs:
            path = path + "?" + qs.decode("latin-1")
        fwd = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        stream = b'"stream"' in body and _wants_stream(body)
        start, entry_reason = svc.plan()
        tried: list[dict[str, str]] = []
        if entry_reason is not None and start > 0:
            skipped = f"skipped: {entry_reason}"
            tried.extend({"tier": link.name, "reason": skipped} for link in svc.links[:start])
        hints: list[float] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + svc.deadline_s
        links = svc.links
        try:
            for i in range(start, len(links)):
                link = links[i]
                tier = link.tier
                if link.breaker is not None:
                    outcome = await self._try_upstream(
                        svc, link, method, path, fwd, body, stream, deadline, send, tried, hints
                    )
                    if outcome:
                        return
                elif tier is FallbackTier.TIER_2_CACHE:
                    if await self._try_cache(svc, link, method, path, body, send, tried):
                        return
                elif tier is FallbackTier.TIER_4_STATIC:
                    await self._serve_static(svc, link, stream, send, tried)
                    return
        except Exception as err:  # a gateway bug must still end in the explicit answer, never a bare 500
            log.exception("data_plane_error", service=svc.name)
            tried.append({"tier": "gateway", "reason": f"gateway_error: {type(err).__name__}"})
        await self._no_tier(svc, tried, hints, send)

    async def _try_upstream(
        self,
        svc: ServiceRuntime,
        link: Link,
        method: str,
        path: str,
        fwd: list[tuple[bytes, bytes]],
        body: bytes,
        stream: bool,
        deadline: float,
        send: Send,
        tried: list[dict[str, str]],
        hints: list[float],
    ) -> bool:
        breaker = link.breaker
        assert breaker is not None
        ticket = breaker.allow()
        if ticket == DENY:
            tried.append({"tier": link.name, "reason": "breaker_open"})
            return False
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        attempt_deadline = min(t0 + link.timeout_s, deadline)
        if attempt_deadline <= t0:
            if ticket == PROBE:
                breaker.probes = max(0, breaker.probes - 1)
            tried.append({"tier": link.name, "reason": "deadline_exceeded"})
            return False
        if link.cap_tokens is not None:
            body = _cap_tokens(body, link.cap_tokens)
        window = link.window
        window.in_flight += 1
        resp = None
        try:
            resp = await link.upstream_pool().request(method, path, fwd, body, attempt_deadline)
            status = resp.status
            ctype = resp.header(b"content-type") or b""
            if stream and 200 <= status < 300 and ctype.startswith(SSE_CT):
                return await self._relay_stream(svc, link, resp, ticket, t0, tried, send, method, path, body)
            data = await resp.read(attempt_deadline)
        except UpstreamError as err:
            if resp is not None:
                resp.release()
            elapsed = loop.time() - t0
            window.in_flight -= 1
            window.record(elapsed, error=True)
            breaker.record(False, ticket == PROBE)
            self._count_attempt(svc.name, link.name, err.kind, elapsed)
            tried.append({"tier": link.name, "reason": err.kind})
            return False
        elapsed = loop.time() - t0
        window.in_flight -= 1
        if status >= 500 or status == 429:
            limited = status == 429
            if limited:
                ra = resp.header(b"retry-after")
                if ra is not None and ra.strip().isdigit():
                    hints.append(float(ra))
            window.record(elapsed, error=True, rate_limited=limited)
            breaker.record(False, ticket == PROBE)
            reason = "rate_limited" if limited else f"http_{status}"
            self._count_attempt(svc.name, link.name, reason, elapsed)
            tried.append({"tier": link.name, "reason": reason})
            return False
        if 200 <= status < 300 and (ctype.startswith(JSON_CT) or b"+json" in ctype) and not _is_json(data):
            window.record(elapsed, error=True)
            breaker.record(False, ticket == PROBE)
            self._count_attempt(svc.name, link.name, "bad_body", elapsed)
            tried.append({"tier": link.name, "reason": "bad_body"})
            return False
        # A usable answer: 2xx, or a client error (4xx) passed through unchanged; the upstream itself is healthy.
        window.record(elapsed)
        breaker.record(True, ticket == PROBE)
        self._count_attempt(svc.name, link.name, "ok" if status < 400 else "client_error", elapsed)
        headers = [(k, v) for k, v in resp.headers if k.lower() not in RESPONSE_DROP]
        headers.append((b"content-length", str(len(data)).encode()))
        headers.append((b"x-governor-tier", link.name_b))
        if tried:
            headers.append((b"x-governor-reason", _reason(tried)))
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        self._count_served(svc.name, link.name)
        if svc.cache is not None and 200 <= status < 300 and link.cap_tokens is None:
            svc.cache.put(cache_key(method, path, body), status, ctype or JSON_CT, data, link.name)
        return True

    async def _relay_stream(
        self,
        svc: ServiceRuntime,
        link: Link,
        resp: Any,
        ticket: int,
        t0: float,
        tried: list[dict[str, str]],
        send: Send,
        method: str,
        path: str,
        body: bytes,
    ) -> bool:
        """Pass server-sent events through; fall through if the stream dies before its first event,
        end with an explicit error event if it dies after."""
        loop = asyncio.get_running_loop()
        breaker, window = link.breaker, link.window
        assert breaker is not None
        chunks = resp.iter_chunks(link.timeout_s)
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = b""
        except UpstreamError as err:
            elapsed = loop.time() - t0
            window.in_flight -= 1
            window.record(elapsed, error=True)
            breaker.record(False, ticket == PROBE)
            self._count_attempt(svc.name, link.name, f"stream_{err.kind}", elapsed)
            tried.append({"tier": link.name, "reason": f"stream_failed_before_first_event: {err.kind}"})
            return False
        ttfb = loop.time() - t0
        headers = [(k, v) for k, v in resp.headers if k.lower() not in RESPONSE_DROP]
        headers.append((b"x-governor-tier", link.name_b))
        headers.append((b"x-accel-buffering", b"no"))
        if tried:
            headers.append((b"x-governor-reason", _reason(tried)))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        kept: list[bytes] | None = [first] if svc.cache is not None and link.cap_tokens is None else None
        size = len(first)
        failed: UpstreamError | None = None
        try:
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if kept is not None:
                    size += len(chunk)
                    kept = kept if size <= MAX_CACHED_STREAM else None
                    if kept is not None:
                        kept.append(chunk)
        except UpstreamError as err:
            failed = err
            event = {
                "error": {
                    "type": "upstream_stream_failed",
                    "service": svc.name,
                    "tier": link.name,
                    "reason": err.kind,
                    "message": f"the {link.name} stream ended early: {err}",
                }
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": b"event: error\ndata: " + _json_bytes(event) + b"\n\n",
                    "more_body": True,
                }
            )
        finally:
            window.in_flight -= 1
        await send({"type": "http.response.body", "body": b""})
        window.record(ttfb, error=failed is not None)
        breaker.record(failed is None, ticket == PROBE)
        self._count_attempt(svc.name, link.name, "ok" if failed is None else f"stream_{failed.kind}", ttfb)
        self._count_served(svc.name, link.name)
        if failed is None and kept is not None and 200 <= resp.status < 300:
            svc.cache.put(cache_key(method, path, body), resp.status, SSE_CT, b"".join(kept), link.name)  # type: ignore[union-attr]
        return True

    async def _try_cache(
        self,
        svc: ServiceRuntime,
        link: Link,
        method: str,
        path: str,
        body: bytes,
        send: Send,
        tried: list[dict[str, str]],
    ) -> bool:
        assert svc.cache is not None
        t0 = time.perf_counter()
        found = svc.cache.get(cache_key(method, path, body))
        elapsed = time.perf_counter() - t0
        if found is None:
            link.window.record(elapsed)  # a miss is not an error of the cache tier
            self._count_attempt(svc.name, link.name, "miss", elapsed)
            tried.append({"tier": link.name, "reason": "cache_miss"})
            return False
        entry, age = found
        link.window.record(elapsed)
        self._count_attempt(svc.name, link.name, "hit", elapsed)
        headers = [
            (b"x-governor-tier", link.name_b),
            (b"x-governor-reason", _reason(tried)),
            (b"age", str(int(age)).encode()),
            (b"x-governor-cache-source", entry.source_tier.encode()),
        ]
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        await _respond(send, entry.status, entry.body, headers, entry.content_type)
        self._count_served(svc.name, link.name)
        return True

    async def _serve_static(
        self, svc: ServiceRuntime, link: Link, stream: bool, send: Send, tried: list[dict[str, str]]
    ) -> None:
        spec = link.spec
        body = link.static_body or b""
        ctype = spec.content_type.encode()
        if stream and isinstance(spec.body, dict) and "choices" in spec.body:
            body, ctype = _completion_as_sse(spec.body), SSE_CT
        link.window.record(0.0)
        self._count_attempt(svc.name, link.name, "ok", 0.0)
        headers = [(b"x-governor-tier", link.name_b), (b"x-governor-reason", _reason(tried))]
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        await _respond(send, spec.status, body, headers, ctype)
        self._count_served(svc.name, link.name)

    async def _no_tier(self, svc: ServiceRuntime, tried: list[dict[str, str]], hints: list[float], send: Send) -> None:
        retry = svc.retry_after_s(hints)
        payload = {
            "error": {
                "type": "no_tier_available",
                "service": svc.name,
                "tiers_tried": tried,
                "retry_after_s": retry,
                "message": f"no tier of {svc.name!r} could answer; retry in {retry} s",
            }
        }
        svc.error_window.record(0.0, error=True)
        self._count_served(svc.name, ERROR_TIER)
        headers = [
            (b"retry-after", str(retry).encode()),
            (b"x-governor-tier", ERROR_TIER.encode()),
            (b"x-governor-reason", _reason(tried)),
        ]
        await _respond(send, 503, _json_bytes(payload), headers)

    # --- admin API

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

    async def _admin(self, rest: str, scope: Scope, receive: Receive, send: Send) -> None:
        denied = self._authorize(scope)
        if denied is not None:
            status, message = denied
            extra = [(b"www-authenticate", b'Bearer realm="governor-gateway"')] if status == 401 else None
            await _error(send, status, "unauthorized" if status == 401 else "forbidden", message, headers=extra)
            return
        method: str = scope["method"]
        parts = [p for p in rest.split("/") if p]
        if parts == ["services"]:
            if method != "GET":
                await _error(send, 405, "method_not_allowed", "use GET /admin/services")
                return
            await _respond(send, 200, _json_bytes({"services": sorted(self.services)}))
            return
        if len(parts) < 2 or parts[0] != "services":
            await _error(send, 404, "not_found", f"no admin route /admin/{rest}")
            return
        svc = self.services.get(parts[1])
        if svc is None:
            known = ", ".join(sorted(self.services)) or "none"
            await _error(send, 404, "unknown_service", f"no service {parts[1]!r} (known: {known})", "service")
            return
        incident = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-governor-incident"), None)
        action = parts[2:]
        if action == [] and method == "GET":
            await _respond(send, 200, _json_bytes(svc.state()))
        elif action == ["stats"] and method == "GET":
            window = _query_int(scope, "window", 30, 1, 300)
            await _respond(send, 200, _json_bytes(svc.stats(window)))
        elif action == ["audit"] and method == "GET":
            await _respond(send, 200, _json_bytes({"service": svc.name, "changes": list(svc.audit)}))
        elif action == ["route"] and method == "PUT":
            body = _json_object(await self._read_body(scope, receive))
            fields = _parse_route(svc, body)
            svc.record_change("route", body, incident, svc.set_route(fields))
            await _respond(send, 200, _json_bytes(svc.state()))
        elif len(action) == 2 and action[0] == "breakers" and method == "PUT":
            tier = _parse_tier(action[1], "tier")
            link = svc.link(tier)
            if link is None or link.breaker is None:
                with_breakers = [lk.name for lk in svc.links if lk.breaker is not None]
                raise BadInput("tier", f"{tier.value} has no breaker in {svc.name!r} (breakers: {with_breakers})", 404)
            body = _json_object(await self._read_body(scope, receive))
            _only(body, {"mode"})
            mode = body.get("mode")
            if mode not in ("open", "closed", "auto"):
                raise BadInput("mode", f"mode must be 'open', 'closed' or 'auto', got {mode!r}")
            svc.record_change(f"breaker:{tier.value}", body, incident, svc.set_breaker(tier, mode))
            await _respond(send, 200, _json_bytes(svc.state()))
        elif action == ["degradation"] and method == "PUT":
            body = _json_object(await self._read_body(scope, receive))
            level, flags = _parse_degradation(svc, body)
            svc.record_change("degradation", body, incident, svc.set_degradation(level, flags))
            await _respond(send, 200, _json_bytes(svc.state()))
        elif action == ["status"] and method == "PUT":
            body = _json_object(await self._read_body(scope, receive))
            _only(body, {"component", "message"})
            component = body.get("component")
            if component not in STATUS_COMPONENT_VALUES:
                raise BadInput(
                    "component", f"component must be one of {', '.join(STATUS_COMPONENT_VALUES)}, got {component!r}"
                )
            message = body.get("message", "")
            if not isinstance(message, str) or len(message) > 2000:
                raise BadInput("message", "message must be a string of at most 2000 characters")
            svc.record_change("status", body, incident, svc.set_status(component, message))
            await _respond(send, 200, _json_bytes(svc.state()))
        else:
            await _error(
                send, 404 if method in ("GET", "PUT") else 405, "not_found", f"no admin route {method} /admin/{rest}"
            )


# --- request parsing helpers


def _wants_stream(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


def _is_json(data: bytes) -> bool:
    """A cheap shape check for bodies that claim to be JSON: a complete object or array (the HTTP framing already
    guarantees we have every byte). Catches HTML error pages, empty bodies and binary garbage without a full parse."""
    stripped = data.strip()
    return (stripped[:1] == b"{" and stripped[-1:] == b"}") or (stripped[:1] == b"[" and stripped[-1:] == b"]")


def _cap_tokens(body: bytes, cap: int) -> bytes:
    """The degraded tier's request cap: `max_tokens` (and `max_completion_tokens`) at most `cap`."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if not isinstance(parsed, dict):
        return body
    capped = False
    for key in ("max_tokens", "max_completion_tokens"):
        value = parsed.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            parsed[key] = min(value, cap)
            capped = True
    if not capped:
        parsed["max_tokens"] = cap
    return _json_bytes(parsed)


def _completion_as_sse(completion: dict[str, Any]) -> bytes:
    """A canned chat completion replayed as server-sent events, for clients that asked for a stream."""
    choices = completion.get("choices") or [{}]
    message = (choices[0] or {}).get("message") or {}
    base = {k: completion.get(k) for k in ("id", "model", "created") if k in completion}
    base["object"] = "chat.completion.chunk"
    events = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": message.get("content", "")},
                    "finish_reason": None,
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + _json_bytes(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _reason(tried: list[dict[str, str]]) -> bytes:
    return "; ".join(f"{t['tier']}={t['reason']}" for t in tried).encode("latin-1", "replace")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise BadInput("body", f"body is not valid JSON ({err})") from None
    if not isinstance(parsed, dict):
        raise BadInput("body", f"body must be a JSON object, got {type(parsed).__name__}")
    return parsed


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    for key in body:
        if key not in allowed:
            raise BadInput(key, f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")


def _parse_tier(value: Any, field: str) -> FallbackTier:
    try:
        return FallbackTier(value)
    except ValueError:
        raise BadInput(field, f"{value!r} is not a tier ({', '.join(t.value for t in FallbackTier)})") from None


def _parse_route(svc: ServiceRuntime, body: dict[str, Any]) -> dict[str, Any]:
    _only(body, {"pinned_tier", "primary_weight"})
    fields: dict[str, Any] = {}
    if "pinned_tier" in body:
        raw = body["pinned_tier"]
        if raw is None:
            fields["pinned_tier"] = None
        else:
            tier = _parse_tier(raw, "pinned_tier")
            if tier not in svc.index and tier is not FallbackTier.TIER_5_ERROR:
                raise BadInput(
                    "pinned_tier",
                    f"{tier.value} is not in {svc.name!r}'s chain ({', '.join(lk.name for lk in svc.links)})",
                )
            fields["pinned_tier"] = tier
    if "primary_weight" in body:
        weight = body["primary_weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            raise BadInput("primary_weight", f"primary_weight must be a number from 0 to 100, got {weight!r}")
        fields["primary_weight"] = int(weight) if float(weight).is_integer() else weight
    elif "pinned_tier" in fields:
        # A pin without a weight means the pin: all traffic to a pinned fallback tier, all to the primary otherwise.
        pinned = fields["pinned_tier"]
        fields["primary_weight"] = 100 if pinned is None or pinned is FallbackTier.TIER_0_PRIMARY else 0
    return fields


def _parse_degradation(svc: ServiceRuntime, body: dict[str, Any]) -> tuple[DegradationLevel, dict[str, FeatureFlag]]:
    _only(body, {"level", "flags"})
    if "level" not in body:
        raise BadInput("level", f"level is required ({', '.join(lv.value for lv in DegradationLevel)})")
    try:
        level = DegradationLevel(body["level"])
    except ValueError:
        raise BadInput(
            "level", f"{body['level']!r} is not a degradation level ({', '.join(lv.value for lv in DegradationLevel)})"
        ) from None
    raw = body.get("flags") or {}
    if not isinstance(raw, dict):
        raise BadInput("flags", "flags must be an object of feature -> flag state")
    known = svc.policy.degradation.features
    flags: dict[str, FeatureFlag] = {}
    for feature, value in raw.items():
        if feature not in known:
            raise BadInput(f"flags.{feature}", f"unknown feature {feature!r} (known: {', '.join(known)})")
        try:
            flags[feature] = FeatureFlag(value)
        except ValueError:
            raise BadInput(
                f"flags.{feature}", f"{value!r} is not a flag state ({', '.join(f.value for f in FeatureFlag)})"
            ) from None
    return level, flags


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


# --- factory and runners


def create_app(
    policies: dict[str, ServicePolicy], admin_token: str, settings: GatewaySettings | None = None
) -> GatewayApp:
    """One ASGI app serving every service in `policies` (as `governor.policy.load_policy_dir` returns them)."""
    return GatewayApp(policies, admin_token, settings or GatewaySettings())


@dataclass
class RunningGateway:
    app: GatewayApp
    url: str
    port: int


def uvicorn_config(app: GatewayApp, **kwargs: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the gateway forwards headers as they are; skips a middleware per request
        log_config=None,
        timeout_graceful_shutdown=2,
        **kwargs,
    )


def _embedded_server_class() -> Any:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """uvicorn without its signal handlers: the host process (pytest, the launcher) owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return EmbeddedServer


@contextlib.asynccontextmanager
async def run_gateway(
    policies: dict[str, ServicePolicy],
    admin_token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: GatewaySettings | None = None,
) -> AsyncIterator[RunningGateway]:
    """Serve the gateway in this event loop on an ephemeral port (tests, the embedded stack)."""
    app = create_app(policies, admin_token, settings)
    _EmbeddedServer = _embedded_server_class()
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when it sees TCP (without it,
    # Nagle + delayed ACKs add ~40 ms to every kept-alive request); set it on the listener too, accepted sockets
    # inherit it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue here until uvicorn serves them
    server = _EmbeddedServer(uvicorn_config(app, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    started = asyncio.ensure_future(app.started.wait())
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
        raise RuntimeError("the gateway stopped during start-up")
    bound = sock.getsockname()[1]
    try:
        yield RunningGateway(app=app, url=f"http://{host}:{bound}", port=bound)
    finally:
        server.should_exit = True
        await task
        sock.close()
