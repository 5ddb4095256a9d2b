"""Client authentication on the data plane: virtual keys (governor/client_keys.py), checked before the chain walk.

`Authorization: Bearer <key>` is looked up by its SHA-256 in the key file: no key or an unknown one is 401, a key not
allowed for the service 403, one over its rate (token bucket) or its concurrency cap 429 with `Retry-After`. Each
answer is an OpenAI-style error (`{"error": {"message", "type", "param", "code"}}`), so the OpenAI SDKs raise their
AuthenticationError, PermissionDeniedError or RateLimitError. Keys are never logged and never forwarded upstream (the
client's Authorization header is dropped once keys are on). The file is re-read when it changes (checked at most once
a second), so `python -m gateway keys create` takes effect without a restart; a broken file keeps the last good keys.
"""

from __future__ import annotations

import hmac
import math
import os
import time
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter

from gateway.http import Send, json_bytes, respond
from governor.client_keys import ClientKey, KeyFileError, hash_key, load_keys

log = structlog.get_logger("gateway")

RELOAD_EVERY_S = 1.0
BEARER = b"bearer "


class KeyState:
    """One key's live limits: its token bucket and requests in flight."""

    __slots__ = ("burst", "in_flight", "key", "rate", "tokens", "updated")

    def __init__(self, key: ClientKey, now: float) -> None:
        self.key = key
        self.rate = key.rate_limit_rps
        self.burst = float(key.burst or max(1, math.ceil(key.rate_limit_rps or 1)))
        self.tokens = self.burst
        self.updated = now
        self.in_flight = 0

    def take(self, now: float) -> float:
        """0 when a request may go now (a token taken), else the seconds until the next token."""
        if self.rate is None:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after_s = status, code, message, retry_after_s


class ClientAuth:
    """The key file's keys by hash, their limits, and the counters of admitted and refused requests."""

    def __init__(self, path: str | Path, registry: CollectorRegistry, clock: object = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._by_hash: dict[str, KeyState] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self.refused = Counter(
            "governor_gateway_client_refused",
            "Data-plane requests refused by client authentication, by why",
            ["service", "code"],
            registry=registry,
        )
        self.admitted = Counter(
            "governor_gateway_client_requests",
            "Data-plane requests admitted, by the client key's name",
            ["service", "key"],
            registry=registry,
        )
        self._load()  # a bad file at start-up is the operator's error: KeyFileError, the gateway does not start

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime_ns if self.path.exists() else None
        keys = load_keys(self.path)
        now = self._now()
        old = self._by_hash
        fresh: dict[str, KeyState] = {}
        for key in keys.keys:
            state = old.get(key.sha256)
            if state is not None and state.key == key:
                fresh[key.sha256] = state  # keep its bucket and in-flight count across reloads
            else:
                fresh[key.sha256] = KeyState(key, now)
        self._by_hash = fresh
        self._mtime = mtime
        log.info("client_keys_loaded", path=str(self.path), keys=len(fresh))

    def maybe_reload(self) -> None:
        now = self._now()
        if now - self._checked < RELOAD_EVERY_S:
            return
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as err:
            log.error("client_keys_unreadable", path=str(self.path), error=str(err), detail="keeping the last keys")
            return
        if mtime == self._mtime:
            return
        try:
            self._load()
        except KeyFileError as err:
            self._mtime = mtime  # do not re-parse a broken file every second; a fix changes the mtime again
            log.error("client_keys_invalid", error=str(err), detail="keeping the last good keys")

    def admit(self, service: str, headers: list[tuple[bytes, bytes]]) -> KeyState:
        """The key's state for a request it may make now (its in-flight count taken: call `release`), or Denied."""
        self.maybe_reload()
        presented: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                presented = value
                break
        if presented is None:
            raise Denied(
                401,
                "missing_api_key",
                "no API key: send your gateway key as `Authorization: Bearer <key>` "
                "(make one with `python -m gateway keys create`)",
            )
        if presented[:7].lower() != BEARER or not presented[7:].strip():
            raise Denied(401, "invalid_api_key", "the Authorization header must be `Bearer <key>`")
        digest = hash_key(presented[7:].strip().decode("latin-1"))
        state = self._by_hash.get(digest)
        if state is None or not hmac.compare_digest(state.key.sha256, digest):
            raise Denied(
                401, "invalid_api_key", "unknown API key: it is not in the gateway's key file (or was revoked)"
            )
        key = state.key
        if not key.allows(service):
            raise Denied(
                403,
                "service_not_allowed",
                f"key {key.name!r} may not call service {service!r} (allowed: {', '.join(key.services)})",
            )
        cap = key.max_concurrent
        if cap is not None and state.in_flight >= cap:
            raise Denied(
                429,
                "concurrency_limit_exceeded",
                f"key {key.name!r} has {state.in_flight} requests in flight, its limit is {cap}",
                1.0,
            )
        wait = state.take(self._now())
        if wait > 0:
            raise Denied(
                429,
                "rate_limit_exceeded",
                f"key {key.name!r} is over its rate limit of {key.rate_limit_rps:g} requests/s; retry in {wait:.2f} s",
                wait,
            )
        state.in_flight += 1
        self.admitted.labels(service, key.name).inc()
        return state

    async def refuse(self, service: str, denied: Denied, send: Send) -> None:
        self.refused.labels(service, denied.code).inc()
        kind = {401: "authentication_error", 403: "permission_error"}.get(denied.status, "rate_limit_error")
        body = {"error": {"message": denied.message, "type": kind, "param": None, "code": denied.code}}
        headers = [(b"x-governor-tier", b"gateway")]
        if denied.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="fallback-gateway"'))
        if denied.retry_after_s > 0:
            headers.append((b"retry-after", str(max(1, math.ceil(denied.retry_after_s))).encode()))
        await respond(send, denied.status, json_bytes(body), headers)


def without_authorization(scope: dict[str, object]) -> dict[str, object]:
    """The request's scope minus its Authorization header: the client's gateway key never goes upstream."""
    headers = scope["headers"]
    return {**scope, "headers": [(k, v) for k, v in headers if k != b"authorization"]}  # type: ignore[attr-defined]
