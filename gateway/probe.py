"""Synthetic requests through the data path, for validation (`POST /admin/services/{service}/probe`).

Each probe goes to one upstream tier exactly as a client's request would (the tier's provider translation, its key,
its model, the degraded tier's token cap) and is judged as the chain judges an answer (status, and a 2xx body of
the shape the endpoint promises), but outside the tier's stats window and breaker: a forced-open breaker does not
stop it, and probes never count as client traffic the watchdog reads. A tier with `deployments` has each of them
probed in turn (probe i goes to deployment i mod n, each outcome naming it, no failover between them), so validation
passes only when every deployment answers: a primary is restored whole, not on whichever region came back first.
"""

from __future__ import annotations

import asyncio
import json
import time

from gateway.client import UpstreamError
from gateway.deployments import Deployment
from gateway.http import JSON_CT
from gateway.providers import TranslationError
from gateway.providers.anthropic import translate_response
from gateway.service import Link, ServiceRuntime
from gateway.shaping import CHAT_SUFFIX, body_problem, cap_tokens, for_upstream
from governor.gateway_api import ProbeCall, ProbeOutcome, ProbeReport


async def probe_tier(svc: ServiceRuntime, link: Link, call: ProbeCall) -> ProbeReport:
    """`call.count` probes one after another (a recovering upstream is not load-tested here: the ramp does that)."""
    body = b"" if call.body is None else json.dumps(call.body, separators=(",", ":")).encode()
    deps = link.deployments
    outcomes = [await _one(link, deps[i % len(deps)], call.method, call.path, body) for i in range(call.count)]
    return ProbeReport(service=svc.name, tier=call.tier, outcomes=outcomes)


async def _one(link: Link, dep: Deployment, method: str, path: str, body: bytes) -> ProbeOutcome:
    outcome = await _judged(link, dep, method, path, body)
    outcome.deployment = dep.name
    return outcome


async def _judged(link: Link, dep: Deployment, method: str, path: str, body: bytes) -> ProbeOutcome:
    chat = path.endswith(CHAT_SUFFIX)
    if link.cap_tokens is not None:
        body = cap_tokens(body, link.cap_tokens)
    try:
        up_path, up_body, translate = for_upstream(dep, chat, path, body)
    except TranslationError as bad:
        return ProbeOutcome(ok=False, latency_ms=0.0, reason=f"untranslatable: {bad}")
    headers = [(b"content-type", b"application/json"), *dep.auth]
    p0 = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + link.timeout_s
    try:
        resp = await dep.upstream_pool().request(method, up_path, headers, up_body, deadline)
        data = await resp.read(deadline)
    except UpstreamError as err:
        return ProbeOutcome(ok=False, latency_ms=_ms(p0), reason=err.kind)
    latency, status = _ms(p0), resp.status
    ctype = resp.header(b"content-type") or b""
    if not 200 <= status < 300:
        return ProbeOutcome(status=status, ok=False, latency_ms=latency, reason=f"http_{status}")
    if translate:
        try:
            data, ctype = translate_response(data), JSON_CT
        except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
            return ProbeOutcome(status=status, ok=False, latency_ms=latency, reason="bad_body: not_a_message")
    problem = body_problem(link, data, ctype, chat)
    if problem is not None:
        return ProbeOutcome(status=status, ok=False, latency_ms=latency, reason=f"bad_body: {problem}")
    return ProbeOutcome(status=status, ok=True, latency_ms=latency)


def _ms(p0: float) -> float:
    return round((time.perf_counter() - p0) * 1000, 3)
