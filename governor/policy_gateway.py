"""Policy types of the gateway's admission control and error handling, per upstream tier (TierSpec fields)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from governor.policy_types import _Strict


class Bulkhead(_Strict):
    """At most `max_concurrent` requests in flight on the tier; up to `max_queue` more wait for a slot at most
    `queue_timeout_ms` (and never past the request's deadline). What finds the queue full, or waits too long, falls
    through to the next tier (`when_full: fall_through`) or gets the explicit 503 with Retry-After at once (`shed`).
    Counted as skips of the tier with cause `bulkhead_full` / `bulkhead_queue_timeout` (docs/gateway.md)."""

    max_concurrent: int = Field(strict=True, ge=1, le=100_000)
    max_queue: int = Field(default=0, strict=True, ge=0, le=100_000)
    queue_timeout_ms: int = Field(default=100, strict=True, ge=1, le=60_000)
    when_full: Literal["fall_through", "shed"] = "fall_through"


class TierRetry(_Strict):
    """Same-tier retries of transient failures (connect error, dropped connection, 502/503/504, and a timeout when
    `timeouts`), before the request falls through. The gateway's only retry count: `DependencySpec.retries` is not
    read by the gateway. Each retry waits `backoff_ms * 2**n` (at most `max_backoff_ms`, with jitter: half of it
    fixed, half random), or longer when the upstream's Retry-After says so; a Retry-After above `max_backoff_ms`, or a
    wait the request's deadline cannot afford, falls through instead. 429 and 529 are never retried here."""

    attempts: int = Field(default=0, strict=True, ge=0, le=10)
    """Retries after the first attempt (0: fall through at once, the default)."""
    backoff_ms: int = Field(default=100, strict=True, ge=1, le=10_000)
    max_backoff_ms: int = Field(default=1000, strict=True, ge=1, le=60_000)
    timeouts: bool = True
    """Retry a timed-out attempt too (only when the deadline leaves room for a whole new attempt)."""


def _one_token_chat() -> dict[str, Any]:
    return {"model": "governor-probe", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


class ProbeRequest(_Strict):
    """Validation's synthetic request through the data path: the gateway sends it to the recovering tier's upstream
    as it would a client's (its provider, key, model and body expectation), so a primary whose /health answers while
    its completions fail never passes validation. Default: a one-token chat completion."""

    method: Literal["POST", "GET"] = "POST"
    path: str = Field(default="/v1/chat/completions", pattern=r"^/[A-Za-z0-9/_.~-]{0,200}$")
    body: dict[str, Any] | None = Field(default_factory=_one_token_chat)
