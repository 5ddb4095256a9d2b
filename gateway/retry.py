"""Error classes on the data plane: which failed attempts are retried on the same tier, how long to wait, and which
answers mean "too long for this model's context window" (then a tier with a larger one is tried).

Retried (policy `chain[].retry`): connect errors, dropped connections, 502/503/504 and (if `timeouts`) timeouts,
within the request's deadline, honouring Retry-After / retry-after-ms. Never retried: 429 and Anthropic's 529
(`overloaded_error`), which fall through to the next tier at once.
"""

from __future__ import annotations

import json
import random
import re
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from gateway.http import Send
    from gateway.service import ServiceRuntime

RETRYABLE = frozenset({"connect_error", "disconnected", "http_502", "http_503", "http_504", "timeout"})
CONTEXT_PHRASES = ("context_length_exceeded", "maximum context length", "prompt is too long", "context window")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Walk:
    """One request's walk down the chain: the request itself (service, method, path, headers to forward, body,
    whether it streams, its deadline, where the answer goes), what the walk wrote down (`tried`: the reason header's
    entries; `hints`: the Retry-After values heard), and the state the attempts share: the retry the last failure
    asked for, the attempt number, the context window a tier refused as too small, and what the last attempt did
    (for a tier's deployments: whether one was sent, the cause of its failure or skip, whether the answer served
    ended well)."""

    __slots__ = (
        "answered_at",
        "attempt",
        "attempted",
        "body",
        "cause",
        "chat",
        "context_floor",
        "deadline",
        "delay",
        "fwd",
        "hints",
        "method",
        "path",
        "relaying",
        "send",
        "served_ok",
        "skipped",
        "stream",
        "svc",
        "tried",
    )

    def __init__(
        self,
        svc: ServiceRuntime,
        method: str,
        path: str,
        fwd: list[tuple[bytes, bytes]],
        body: bytes,
        stream: bool,
        chat: bool,
        deadline: float,
        send: Send,
    ) -> None:
        self.svc, self.method, self.path, self.fwd, self.body = svc, method, path, fwd, body
        self.stream, self.chat, self.deadline, self.send = stream, chat, deadline, send
        self.tried: list[dict[str, str]] = []
        self.hints: list[float] = []
        self.attempt = 0
        self.delay: float | None = None
        self.context_floor: int | None = None
        self.attempted = False
        self.cause: str | None = None
        self.skipped = ""
        self.served_ok = False
        self.answered_at = 0.0
        """perf_counter() when the answer served began (a tier with deployments: its latency, a stream's TTFB)."""
        self.relaying = False
        """A stream's first event arrived and its relay began (the relay then accounts for the attempt)."""


class RetryCounter:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "governor_gateway_tier_retries",
            "Same-tier retries, by the cause of the failed attempt",
            ["service", "tier", "cause"],
            registry=registry,
        )
        self._children: dict[tuple[str, str, str], object] = {}

    def count(self, service: str, tier: str, cause: str) -> None:
        key = (service, tier, cause)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.counter.labels(service, tier, cause)
        child.inc()  # type: ignore[attr-defined]


def header_delay_s(headers: list[tuple[bytes, bytes]]) -> float:
    """How long the upstream asks us to wait: retry-after-ms, Retry-After (seconds or an HTTP date), or OpenAI's
    x-ratelimit-reset-requests / -tokens durations ("1s", "6m0s", "20ms"); 0 when none says."""
    found = 0.0
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        value = raw_value.decode("latin-1").strip()
        if name == b"retry-after-ms":
            try:
                ms = float(value)
            except ValueError:
                continue
            if 0 < ms < 1e9:
                return ms / 1000
        elif name == b"retry-after":
            found = max(found, _retry_after(value))
        elif name in (b"x-ratelimit-reset-requests", b"x-ratelimit-reset-tokens"):
            found = max(found, _duration(value))
    return found


def _retry_after(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        import time

        return max(0.0, when.timestamp() - time.time())
    return seconds if 0 < seconds < float("inf") else 0.0


def _duration(value: str) -> float:
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return 0.0
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def backoff_s(backoff_ms: int, max_backoff_ms: int, retry: int) -> float:
    """The wait before retry `retry` (0-based): exponential, capped, half fixed and half random (equal jitter)."""
    ceiling = min(max_backoff_ms, backoff_ms * (2**retry)) / 1000
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def plan_retry(
    spec: object, outcome: str, asked_s: float, retry: int, now: float, deadline: float, timeout_s: float
) -> float | None:
    """The wait before retrying a failed attempt on the same tier, or None to fall through."""
    attempts: int = spec.attempts  # type: ignore[attr-defined]
    if retry >= attempts or outcome not in RETRYABLE:
        return None
    if outcome == "timeout" and not spec.timeouts:  # type: ignore[attr-defined]
        return None
    if asked_s * 1000 > spec.max_backoff_ms:  # type: ignore[attr-defined]
        return None  # the upstream wants more time than a retry may wait: the next tier answers sooner
    delay = max(asked_s, backoff_s(spec.backoff_ms, spec.max_backoff_ms, retry))  # type: ignore[attr-defined]
    need = timeout_s if outcome == "timeout" else 0.001  # a retried timeout needs room for a whole attempt
    if now + delay + need > deadline:
        return None
    return delay


def context_exceeded(data: bytes) -> bool:
    """Whether an error body says the prompt does not fit the model's context window (OpenAI's
    `context_length_exceeded` code or message, Anthropic's "prompt is too long", vLLM's "maximum context length")."""
    if len(data) > 64 * 1024:
        return False
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict):
        return False
    if err.get("code") == "context_length_exceeded":
        return True
    message = str(err.get("message", "")).lower()
    return any(phrase in message for phrase in CONTEXT_PHRASES)
