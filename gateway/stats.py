"""Stats windows per tier: per-second buckets of counts and a log-bucketed latency histogram (bounded memory).

Percentiles come from histogram bins 5 % wide, good enough to judge a ramp step and cheap on the hot path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_WINDOW_S = 300
_BASE = 1.05
_LOG_BASE = math.log(_BASE)
_MIN_MS = 0.01


def _bin(latency_ms: float) -> int:
    if latency_ms <= _MIN_MS:
        return 0
    return int(math.log(latency_ms / _MIN_MS) / _LOG_BASE) + 1


def _bin_value(index: int) -> float:
    """The upper bound of a bin, in ms."""
    return _MIN_MS * _BASE**index


class _Second:
    __slots__ = ("causes", "errors", "hist", "rate_limited", "requests", "second", "served", "skip_causes", "skips")

    def __init__(self, second: int) -> None:
        self.second = second
        self.requests = 0
        self.errors = 0
        self.rate_limited = 0
        self.served = 0
        self.hist: dict[int, int] = {}
        # Made on the first failure or skip of the second, so a healthy second costs nothing more.
        self.causes: dict[str, int] | None = None
        self.skips: dict[str, int] | None = None
        self.skip_causes: dict[str, int] | None = None


def _add(counts: dict[str, int], into: dict[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n


class TierWindow:
    """Attempts on one tier (requests, errors by cause, 429s, latency, requests in flight), the requests it
    skipped (breaker open, deadline) with the failure cause behind each skip, and the answers it served."""

    __slots__ = ("_clock", "_ring", "in_flight")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ring: list[_Second | None] = [None] * MAX_WINDOW_S
        self.in_flight = 0

    def _bucket(self) -> _Second:
        second = int(self._clock())
        slot = second % MAX_WINDOW_S
        bucket = self._ring[slot]
        if bucket is None or bucket.second != second:
            bucket = self._ring[slot] = _Second(second)
        return bucket

    def record(
        self, latency_s: float, error: bool = False, rate_limited: bool = False, cause: str | None = None
    ) -> None:
        """One attempt; a failed one names its cause (connect_error, timeout, http_5xx, rate_limited, bad_body...)."""
        second = int(self._clock())
        slot = second % MAX_WINDOW_S
        bucket = self._ring[slot]
        if bucket is None or bucket.second != second:
            bucket = self._ring[slot] = _Second(second)
        bucket.requests += 1
        if error:
            bucket.errors += 1
            if cause is not None:
                causes = bucket.causes
                if causes is None:
                    causes = bucket.causes = {}
                causes[cause] = causes.get(cause, 0) + 1
        if rate_limited:
            bucket.rate_limited += 1
        b = _bin(latency_s * 1000.0)
        hist = bucket.hist
        hist[b] = hist.get(b, 0) + 1

    def serve(self) -> None:
        """A client's answer came from this tier (whatever tiers it tried first): what clients actually get."""
        self._bucket().served += 1

    def skip(self, reason: str, cause: str) -> None:
        """A request this tier did not try: why (breaker_open, breaker_forced_open, deadline) and the failure cause
        behind it (the cause that opened the breaker, `deadline`, or `operator` for a breaker forced open)."""
        bucket = self._bucket()
        if bucket.skips is None:
            bucket.skips, bucket.skip_causes = {}, {}
        skips, skip_causes = bucket.skips, bucket.skip_causes
        assert skip_causes is not None
        skips[reason] = skips.get(reason, 0) + 1
        skip_causes[cause] = skip_causes.get(cause, 0) + 1

    def window(self, window_s: int) -> dict[str, object]:
        now = int(self._clock())
        requests = errors = rate_limited = served = 0
        causes: dict[str, int] = {}
        skips: dict[str, int] = {}
        skip_causes: dict[str, int] = {}
        hist: dict[int, int] = {}
        for bucket in self._ring:
            if bucket is None or not now - window_s < bucket.second <= now:
                continue
            requests += bucket.requests
            errors += bucket.errors
            rate_limited += bucket.rate_limited
            served += bucket.served
            if bucket.causes:
                _add(bucket.causes, causes)
            if bucket.skips:
                _add(bucket.skips, skips)
                _add(bucket.skip_causes or {}, skip_causes)
            for b, n in bucket.hist.items():
                hist[b] = hist.get(b, 0) + n
        return {
            "requests": requests,
            "errors": errors,
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "rate_limited": rate_limited,
            "in_flight": self.in_flight,
            "p50_ms": _percentile(hist, requests, 0.50),
            "p95_ms": _percentile(hist, requests, 0.95),
            "p99_ms": _percentile(hist, requests, 0.99),
            "rps": round(requests / window_s, 3),
            "causes": causes,
            "skipped": sum(skips.values()),
            "skipped_by": skips,
            "skipped_causes": skip_causes,
            "served": served,
        }


def _percentile(hist: dict[int, int], total: int, q: float) -> float:
    if not total:
        return 0.0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return round(_bin_value(b), 3)
    return 0.0
