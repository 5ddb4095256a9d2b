"""The data plane: one request walks a service's chain primary > secondary > cache > degraded > static > explicit 503.

Breakers, the pinned tier and the primary weight decide where a request enters; each upstream attempt either
answers the client or records why it fell through (`_fell_through`: stats window, breaker, metrics, the reason
header) and the walk moves on. Every answer says which tier served it (`X-Governor-Tier`) and why
(`X-Governor-Reason`). A tier with `deployments` tries them in weighted order first (gateway/deployment_walk.py);
a tier without is one deployment sharing the tier's breaker and window. Hot path: no pydantic here, label children,
links and deployments are precomputed.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import structlog

from gateway.breaker import DENY, PROBE
from gateway.cache import cache_key
from gateway.client import UpstreamError
from gateway.credentials import CLIENT_AUTH_HEADERS
from gateway.deployment_walk import note, try_deployments
from gateway.deployments import Deployment
from gateway.http import (
    JSON_CT,
    SSE_CT,
    BadInput,
    Receive,
    Scope,
    Send,
    completion_as_sse,
    error,
    json_bytes,
    read_body,
    respond,
)
from gateway.metrics import GatewayMetrics
from gateway.providers import TranslationError, stream_translator
from gateway.providers.anthropic import translate_error, translate_response, translate_stream
from gateway.retry import RetryCounter, Walk, context_exceeded, header_delay_s, plan_retry
from gateway.service import Link, ServiceRuntime
from gateway.shaping import CHAT_SUFFIX, body_problem, cap_tokens, for_upstream
from gateway.stats import TierWindow
from governor.enums import DegradationLevel, FallbackTier
from governor.models import DEADLINE_CAUSE, OPERATOR_CAUSE

log = structlog.get_logger("gateway")

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
REQUEST_DROP = HOP_BY_HOP | CLIENT_AUTH_HEADERS  # the client's key never goes upstream; each tier sends its own
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server"}
RESPONSE_DROP_TRANSLATED = RESPONSE_DROP | {b"content-type"}
MAX_CACHED_STREAM = 1 << 20
ERROR_TIER = FallbackTier.TIER_5_ERROR.value

Tried = list[dict[str, str]]


class ChainWalk:
    """Serves `ANY /{service}/{path}` for every service, counting into one set of metrics."""

    def __init__(self, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.retries = RetryCounter(metrics.registry)

    async def serve(self, svc: ServiceRuntime, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BadInput as bad:
            await error(
                send,
                bad.status,
                "request_too_large" if bad.status == 413 else "invalid_request",
                bad.message,
                bad.field,
                [(b"x-governor-tier", ERROR_TIER.encode())],
            )
            return
        method: str = scope["method"]
        chat = path.endswith(CHAT_SUFFIX)
        qs: bytes = scope["query_string"]
        if qs:
            path = path + "?" + qs.decode("latin-1")
        fwd = [(k, v) for k, v in scope["headers"] if k not in REQUEST_DROP]
        stream = b'"stream"' in body and _wants_stream(body)
        start, entry_reason = svc.plan()
        deadline = asyncio.get_running_loop().time() + svc.deadline_s
        walk = Walk(svc, method, path, fwd, body, stream, chat, deadline, send)
        tried = walk.tried
        if entry_reason is not None and start > 0:
            skipped = f"skipped: {entry_reason}"
            tried.extend({"tier": link.name, "reason": skipped} for link in svc.links[:start])
        links = svc.links
        try:
            for i in range(start, len(links)):
                link = links[i]
                tier = link.tier
                if link.breaker is not None:
                    floor = walk.context_floor
                    if floor is not None and (link.spec.context_window or 0) <= floor:
                        tried.append({"tier": link.name, "reason": "context_window_too_small"})
                        continue
                    if await self._try_tier(link, walk):
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
        await self._no_tier(svc, tried, walk.hints, send)

    def _fell_through(
        self,
        link: Link,
        dep: Deployment,
        walk: Walk,
        ticket: int,
        elapsed: float,
        outcome: str,
        cause: str,
        reason: str | None = None,
        retry_after_s: float = 0.0,
    ) -> None:
        """The one place a failed upstream attempt is written down: the deployment's window and breaker (with its
        cause; a tier's only deployment shares the tier's), metrics (by outcome), the reason header."""
        dep.window.record(elapsed, error=True, rate_limited=cause == "rate_limited", cause=cause)
        dep.breaker.record(False, ticket == PROBE, cause, retry_after_s)
        self.metrics.count_attempt(walk.svc.name, link.name, outcome, elapsed)
        walk.cause = cause
        note(walk.tried, link, dep, reason or outcome)

    def _skipped(
        self, link: Link, dep: Deployment | None, walk: Walk, reason: str, cause: str, shown: str | None = None
    ) -> None:
        """A request this tier (or deployment) did not try, counted with the failure cause behind the skip."""
        (link.window if dep is None else dep.window).skip(reason, cause)
        self.metrics.count_skipped(walk.svc.name, link.name, reason, cause)
        walk.cause, walk.skipped = cause, reason
        note(walk.tried, link, dep, shown or reason)

    async def _try_tier(self, link: Link, walk: Walk) -> bool:
        """One tier: its attempt (inside its bulkhead, if any), retried on transient failures as the tier's `retry`
        policy allows (gateway/retry.py); True once an answer was sent."""
        svc, tried = walk.svc, walk.tried
        walk.attempt = 0
        only = link.only
        while True:
            walk.delay = None
            if link.bulkhead is not None:
                done = await self._try_admitted(link, walk)
            elif only is not None:
                done = await self._try_upstream(link, only, walk)
            else:
                done = await try_deployments(self, link, walk)
            if done or walk.delay is None:
                return done
            tried[-1]["reason"] += f", retried in {walk.delay * 1000:.0f} ms"
            self.retries.count(svc.name, link.name, tried[-1]["reason"].split(",")[0])
            await asyncio.sleep(walk.delay)
            walk.attempt += 1

    def _plan_retry(self, link: Link, walk: Walk, outcome: str, asked_s: float, deadline: float) -> None:
        """Sets `walk.delay`: how long before this tier is tried again (None: fall through)."""
        walk.delay = plan_retry(
            link.spec.retry, outcome, asked_s, walk.attempt, asyncio.get_running_loop().time(), deadline, link.timeout_s
        )

    async def _try_admitted(self, link: Link, walk: Walk) -> bool:
        """`_try_upstream` inside the tier's bulkhead (gateway/admission.py): a request that finds it full skips the
        tier (cause `bulkhead_full` / `bulkhead_queue_timeout`), or is shed with the explicit 503 (`when_full: shed`).
        An open breaker is not queued for: it skips at once."""
        bulkhead, breaker, only = link.bulkhead, link.breaker, link.only
        assert bulkhead is not None and breaker is not None
        if breaker.mode == "open" or ((wait := breaker.retry_in_s()) is not None and wait > 0):
            if only is None:
                return await try_deployments(self, link, walk)
            return await self._try_upstream(link, only, walk)
        refused = await bulkhead.enter(walk.deadline)
        if refused is not None:
            self._skipped(link, None, walk, refused, refused)
            if bulkhead.shed:
                walk.hints.append(1.0)
                await self._no_tier(walk.svc, walk.tried, walk.hints, walk.send)
                return True
            return False
        try:
            if only is None:
                return await try_deployments(self, link, walk)
            return await self._try_upstream(link, only, walk)
        finally:
            bulkhead.leave()

    async def _try_upstream(self, link: Link, dep: Deployment, walk: Walk) -> bool:
        """One attempt on one deployment (a tier's only one, or one of its `deployments`); True once answered."""
        svc, method, path, body, chat, deadline, tried = (
            walk.svc, walk.method, walk.path, walk.body, walk.chat, walk.deadline, walk.tried
        )  # fmt: skip
        breaker = dep.breaker
        ticket = breaker.allow()
        if ticket == DENY:
            if breaker.mode == "open":
                self._skipped(link, dep, walk, "breaker_forced_open", OPERATOR_CAUSE)
            else:
                self._skipped(link, dep, walk, "breaker_open", breaker.open_cause or "unknown")
            return False
        loop = asyncio.get_running_loop()
        t0 = loop.time()  # deadlines are on the loop's clock (its timers); durations on perf_counter (uvloop: 1 ms)
        p0 = time.perf_counter()
        attempt_deadline = min(t0 + link.timeout_s, deadline)
        if attempt_deadline <= t0:
            if ticket == PROBE:
                breaker.probes = max(0, breaker.probes - 1)
            self._skipped(link, dep, walk, "deadline", DEADLINE_CAUSE, "deadline_exceeded")
            return False
        if link.cap_tokens is not None:
            body = cap_tokens(body, link.cap_tokens)
        try:
            up_path, up_body, translate = for_upstream(dep, chat, path, body)
        except TranslationError as bad:
            if ticket == PROBE:
                breaker.probes = max(0, breaker.probes - 1)
            self._skipped(link, dep, walk, "untranslatable", "untranslatable", f"untranslatable: {bad}")
            return False
        walk.attempted = True
        window = dep.window
        window.in_flight += 1
        resp = None
        headers_out = walk.fwd + dep.auth if dep.auth else walk.fwd
        try:
            resp = await dep.upstream_pool().request(method, up_path, headers_out, up_body, attempt_deadline)
            status = resp.status
            ctype = resp.header(b"content-type") or b""
            if walk.stream and 200 <= status < 300 and ctype.startswith(SSE_CT):
                served = await self._relay_stream(link, dep, walk, resp, ticket, p0, translate)
                if not served:  # died before its first event: nothing sent yet, so it may be retried
                    self._plan_retry(link, walk, tried[-1]["reason"].rpartition(" ")[2], 0.0, deadline)
                return served
            data = await resp.read(attempt_deadline)
        except UpstreamError as err:
            if resp is not None:
                resp.release()
            window.in_flight -= 1
            self._fell_through(link, dep, walk, ticket, time.perf_counter() - p0, err.kind, err.kind)
            self._plan_retry(link, walk, err.kind, 0.0, deadline)
            return False
        except asyncio.CancelledError:
            # The client disconnected (gateway/server.py cancels its request): the upstream attempt ends with it,
            # counted nowhere (neither the upstream's failure nor a success), its probe slot given back.
            if resp is not None:
                resp.release()
            if not walk.relaying:
                window.in_flight -= 1
            if ticket == PROBE:
                breaker.probes = max(0, breaker.probes - 1)
            raise
        elapsed = time.perf_counter() - p0
        window.in_flight -= 1
        if status == 429:
            retry_after = header_delay_s(resp.headers)
            if retry_after:
                walk.hints.append(retry_after)
            self._fell_through(link, dep, walk, ticket, elapsed, "rate_limited", "rate_limited", None, retry_after)
            return False
        if status == 529:  # Anthropic's overloaded_error: the next tier, never a retry
            retry_after = header_delay_s(resp.headers)
            if retry_after:
                walk.hints.append(retry_after)
            self._fell_through(link, dep, walk, ticket, elapsed, "overloaded", "overloaded", None, retry_after)
            return False
        if status >= 500:
            self._fell_through(link, dep, walk, ticket, elapsed, f"http_{status}", "http_5xx")
            self._plan_retry(link, walk, f"http_{status}", header_delay_s(resp.headers), deadline)
            return False
        window_size = link.spec.context_window
        if (
            status in (400, 413)
            and window_size is not None
            and walk.context_floor is None
            and context_exceeded(data)
            and any(
                (later.spec.context_window or 0) > window_size
                for later in svc.links[svc.links.index(link) + 1 :]
                if later.breaker is not None
            )
        ):
            # Too long for this model, not a failure of it: a tier with a larger context window gets the request.
            window.record(elapsed)
            breaker.record(True, ticket == PROBE)
            self.metrics.count_attempt(svc.name, link.name, "context_window_exceeded", elapsed)
            note(tried, link, dep, "context_window_exceeded")
            walk.context_floor = window_size
            return False
        if translate:
            if 200 <= status < 300:
                try:
                    data = translate_response(data)
                except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
                    self._fell_through(
                        link, dep, walk, ticket, elapsed, "bad_body", "bad_body", "bad_body: not_a_message"
                    )
                    return False
            else:
                data = translate_error(data)
            ctype = JSON_CT
        head = method == "HEAD"  # an answer without a body: nothing to check, its Content-Length passed through
        if 200 <= status < 300 and not head and (problem := body_problem(link, data, ctype, chat)) is not None:
            self._fell_through(link, dep, walk, ticket, elapsed, "bad_body", "bad_body", f"bad_body: {problem}")
            return False
        # A usable answer: 2xx, or a client error (4xx) passed through unchanged; the upstream itself is healthy.
        window.record(elapsed)
        breaker.record(True, ticket == PROBE)
        self.metrics.count_attempt(svc.name, link.name, "ok" if status < 400 else "client_error", elapsed)
        drop = RESPONSE_DROP_TRANSLATED if translate else RESPONSE_DROP
        headers = [(k, v) for k, v in resp.headers if k.lower() not in drop]
        if translate:
            headers.append((b"content-type", JSON_CT))
        length = resp.header(b"content-length") if head else None
        headers.append((b"content-length", length if length is not None else str(len(data)).encode()))
        headers.append((b"x-governor-tier", link.name_b))
        if dep.name is not None:
            headers.append((b"x-governor-deployment", dep.name.encode()))
        if tried:
            headers.append((b"x-governor-reason", _reason(tried)))
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        walk.served_ok, walk.answered_at = True, p0 + elapsed
        await walk.send({"type": "http.response.start", "status": status, "headers": headers})
        await walk.send({"type": "http.response.body", "body": data})
        self._served(svc, link.name, link.window)
        if svc.cache is not None and 200 <= status < 300 and link.cap_tokens is None and not head:
            svc.cache.put(cache_key(method, path, body), status, ctype or JSON_CT, data, link.name)
        return True

    async def _relay_stream(
        self, link: Link, dep: Deployment, walk: Walk, resp: Any, ticket: int, p0: float, translate: bool = False
    ) -> bool:
        """Pass server-sent events through; fall through if the stream dies before its first event,
        end with an explicit error event if it dies after. `translate`: the upstream's Anthropic events are translated to chat completion chunks as they arrive."""
        svc, tried, send = walk.svc, walk.tried, walk.send
        breaker, window = dep.breaker, dep.window
        chunks = resp.iter_chunks(link.timeout_s)
        if translate:
            chunks = translate_stream(chunks, stream_translator(walk.body))
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = b""
        except UpstreamError as err:
            window.in_flight -= 1
            reason = f"stream_failed_before_first_event: {err.kind}"
            self._fell_through(
                link, dep, walk, ticket, time.perf_counter() - p0, f"stream_{err.kind}", err.kind, reason
            )
            return False
        ttfb = time.perf_counter() - p0
        walk.answered_at = p0 + ttfb
        walk.relaying = True  # from here the finally below owns `in_flight`
        headers = [(k, v) for k, v in resp.headers if k.lower() not in RESPONSE_DROP]
        headers.append((b"x-governor-tier", link.name_b))
        if dep.name is not None:
            headers.append((b"x-governor-deployment", dep.name.encode()))
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
                    "body": b"event: error\ndata: " + json_bytes(event) + b"\n\n",
                    "more_body": True,
                }
            )
        finally:
            window.in_flight -= 1
        await send({"type": "http.response.body", "body": b""})
        cause = None if failed is None else failed.kind
        walk.served_ok, walk.cause = failed is None, cause
        window.record(ttfb, error=failed is not None, cause=cause)
        breaker.record(failed is None, ticket == PROBE, cause)
        self.metrics.count_attempt(svc.name, link.name, "ok" if failed is None else f"stream_{failed.kind}", ttfb)
        self._served(svc, link.name, link.window)
        if failed is None and kept is not None and 200 <= resp.status < 300:
            key = cache_key(walk.method, walk.path, walk.body)
            svc.cache.put(key, resp.status, SSE_CT, b"".join(kept), link.name)  # type: ignore[union-attr]
        return True

    async def _try_cache(
        self, svc: ServiceRuntime, link: Link, method: str, path: str, body: bytes, send: Send, tried: Tried
    ) -> bool:
        assert svc.cache is not None
        t0 = time.perf_counter()
        found = svc.cache.get(cache_key(method, path, body))
        elapsed = time.perf_counter() - t0
        if found is None:
            link.window.record(elapsed)  # a miss is not an error of the cache tier
            self.metrics.count_attempt(svc.name, link.name, "miss", elapsed)
            tried.append({"tier": link.name, "reason": "cache_miss"})
            return False
        entry, age = found
        link.window.record(elapsed)
        self.metrics.count_attempt(svc.name, link.name, "hit", elapsed)
        headers = [
            (b"x-governor-tier", link.name_b),
            (b"x-governor-reason", _reason(tried)),
            (b"age", str(int(age)).encode()),
            (b"x-governor-cache-source", entry.source_tier.encode()),
        ]
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        await respond(send, entry.status, entry.body, headers, entry.content_type)
        self._served(svc, link.name, link.window)
        return True

    async def _serve_static(self, svc: ServiceRuntime, link: Link, stream: bool, send: Send, tried: Tried) -> None:
        spec = link.spec
        body = link.static_body or b""
        ctype = spec.content_type.encode()
        if stream and isinstance(spec.body, dict) and "choices" in spec.body:
            body, ctype = completion_as_sse(spec.body), SSE_CT
        link.window.record(0.0)
        self.metrics.count_attempt(svc.name, link.name, "ok", 0.0)
        headers = [(b"x-governor-tier", link.name_b), (b"x-governor-reason", _reason(tried))]
        if svc.level is not DegradationLevel.NORMAL:
            headers.append((b"x-governor-degradation", svc.level.value.encode()))
        await respond(send, spec.status, body, headers, ctype)
        self._served(svc, link.name, link.window)

    def _served(self, svc: ServiceRuntime, tier: str, window: TierWindow) -> None:
        """The answer came from `tier`: its window's served count (what the governor shows) and the metric."""
        window.serve()
        self.metrics.count_served(svc.name, tier)

    async def _no_tier(self, svc: ServiceRuntime, tried: Tried, hints: list[float], send: Send) -> None:
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
        self._served(svc, ERROR_TIER, svc.error_window)
        headers = [
            (b"retry-after", str(retry).encode()),
            (b"x-governor-tier", ERROR_TIER.encode()),
            (b"x-governor-reason", _reason(tried)),
        ]
        await respond(send, 503, json_bytes(payload), headers)


# --- request and answer helpers


def _wants_stream(body: bytes) -> bool:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


def _reason(tried: Tried) -> bytes:
    return "; ".join(
        f"{t['tier']}[{t['deployment']}]={t['reason']}" if "deployment" in t else f"{t['tier']}={t['reason']}"
        for t in tried
    ).encode("latin-1", "replace")
