"""Health probes: one GET of a dependency's health URL, turned into a `ProbeResult` that says precisely what failed.

A plain async function (no Temporal import), so the recovery activities and the watchdog share it.
"""

from __future__ import annotations

import errno
import json
import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from governor.decisions import health_status_of
from governor.models import ProbeErrorKind, ProbeResult
from governor.policy import DependencySpec, Thresholds

BODY_EXCERPT_CHARS = 500

_UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ETIMEDOUT}


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (httpx -> httpcore -> OSError), without looping."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def error_kind_of(exc: httpx.HTTPError) -> ProbeErrorKind:
    """Map a transport error to the probe vocabulary: refused, dns, unreachable or timeout."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "unreachable"
    if isinstance(exc, httpx.TimeoutException):  # read, write or pool timeout: connected, no answer in time
        return "timeout"
    causes = _causes(exc)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "dns"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "refused"
    if any(isinstance(c, OSError) and c.errno in _UNREACHABLE_ERRNOS for c in causes):
        return "unreachable"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if any(m in text for m in ("name or service not known", "nodename nor servname", "temporary failure in name")):
            return "dns"
        if "refused" in text:
            return "refused"
        return "unreachable"
    # Connected, but the answer broke off (reset, closed mid-response, malformed HTTP): the server failed us.
    return "http_status"


def _matches(expected: Any, actual: Any) -> bool:
    """`expected` is a subset of `actual`: every key present with the same value (nested mappings recurse)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _matches(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def check_body(dep: DependencySpec, body: str) -> str | None:
    """Why a 2xx health body fails `health_expect_json`, or None when it passes (or nothing is expected)."""
    if dep.health_expect_json is None:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return f"health body is not JSON (expected {json.dumps(dep.health_expect_json)})"
    for key, want in dep.health_expect_json.items():
        if not isinstance(parsed, dict) or key not in parsed:
            return f"health body lacks {key!r} (expected {json.dumps(want)})"
        if not _matches(want, parsed[key]):
            return f"health body has {key}={json.dumps(parsed[key])[:80]}, expected {json.dumps(want)}"
    return None


def _excerpt(text: str) -> str:
    return text if len(text) <= BODY_EXCERPT_CHARS else text[:BODY_EXCERPT_CHARS] + "…"


async def probe_dependency(client: httpx.AsyncClient, dep: DependencySpec, thresholds: Thresholds) -> ProbeResult:
    """GET `dep.health_url` within `dep.timeout_ms`; never raises for a failing dependency, only for bad input."""
    if not dep.health_url:
        raise ValueError(f"dependency {dep.name!r} has no health_url to probe")
    url = dep.health_url
    checked_at = datetime.now(UTC)
    started = time.perf_counter()
    status_code: int | None = None
    kind: ProbeErrorKind | None = None
    error = ""
    body = ""
    try:
        response = await client.get(url, timeout=httpx.Timeout(dep.timeout_ms / 1000))
        status_code = response.status_code
        body = response.text
    except httpx.HTTPError as exc:
        kind = error_kind_of(exc)
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    latency_ms = (time.perf_counter() - started) * 1000

    if status_code is not None:
        if status_code == 429:
            kind, error = "rate_limited", "HTTP 429 Too Many Requests"
        elif status_code in (401, 403):
            kind, error = "auth", f"HTTP {status_code}: credentials refused"
        elif not 200 <= status_code < 300:
            kind, error = "http_status", f"HTTP {status_code}"
        else:
            problem = check_body(dep, body)
            if problem is not None:
                kind, error = "bad_body", problem

    ok = kind is None
    return ProbeResult(
        dependency=dep.name,
        url=url,
        ok=ok,
        status=health_status_of(ok, latency_ms, thresholds),
        latency_ms=round(latency_ms, 3),
        status_code=status_code,
        error_kind=kind,
        error=error,
        body_excerpt=_excerpt(body),
        checked_at=checked_at,
    )
