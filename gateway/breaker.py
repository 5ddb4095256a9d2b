"""Circuit breakers per upstream: the seed's consecutive-failure rule plus a sliding-window failure rate.

closed --(5 consecutive failures, or >= 50 % failures over >= 20 calls in the last 30 s)--> open
open --(60 s, or as long as a failure's Retry-After says, bounded by max_retry_after_s)--> half_open
half_open --(3 successes)--> closed;  half_open --(any failure)--> open
The breaker remembers the causes of its recent failures; `open_cause` names the commonest when it opens (of the
consecutive failures that opened it, when they did: not a noisy past still in the window), so the requests it
then skips are counted for that cause (an open breaker never hides a failure from the watchdog).
Half-open admits a bounded number of probes at a time. An operator (the governor) may force the breaker open or
closed; `auto` hands it back to the rules, starting closed with clean counters.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from governor.enums import CircuitState
from governor.gateway_api import BreakerMode

__all__ = ["DENY", "PASS", "PROBE", "Breaker", "BreakerConfig", "BreakerMode"]


DENY, PASS, PROBE = 0, 1, 2


@dataclass(frozen=True)
class BreakerConfig:
    """Seed defaults: 5 failures to open, 3 successes to close, 60 s open before half-open."""

    failure_threshold: int = 5
    success_threshold: int = 3
    open_s: float = 60.0
    window_s: int = 30
    failure_rate: float = 0.5
    min_calls: int = 20
    half_open_probes: int = 3
    max_retry_after_s: float = 300.0
    """A Retry-After on a failure holds an opening breaker open that long, at most this long (policy)."""


class Breaker:
    __slots__ = (
        "_buckets",
        "_causes",
        "_clock",
        "_on_change",
        "_streak",
        "config",
        "failures",
        "hold_until",
        "mode",
        "open_cause",
        "opened_at",
        "probes",
        "state",
        "successes",
        "window_calls",
        "window_failures",
    )

    def __init__(
        self,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState, CircuitState, str], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self.mode: BreakerMode = "auto"
        self._reset()

    def _reset(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.successes = 0
        self.probes = 0
        self.opened_at = 0.0
        self.hold_until = 0.0
        self.open_cause: str | None = None
        self._causes: dict[str, int] = {}
        self._streak: dict[str, int] = {}
        """The causes of the current run of consecutive failures (a success clears it)."""
        self._buckets: deque[list[int]] = deque()
        self.window_calls = 0
        self.window_failures = 0

    def _move(self, new: CircuitState, why: str) -> None:
        old, self.state = self.state, new
        if new is CircuitState.OPEN:
            self.opened_at = self._clock()
            # Opened by consecutive failures: they name the cause, not older failures still in the window.
            causes = self._streak if self.failures >= self.config.failure_threshold else self._causes
            causes = causes or self._causes
            self.open_cause = max(causes, key=causes.__getitem__) if causes else None
        elif new is CircuitState.CLOSED:
            self.open_cause = None
            self.hold_until = 0.0
            self._causes = {}
            self._streak = {}
        self.successes = 0
        self.probes = 0
        if self._on_change is not None and old is not new:
            self._on_change(old, new, why)

    def set_mode(self, mode: BreakerMode) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        if mode == "auto":
            self._reset()

    def effective_state(self) -> CircuitState:
        if self.mode == "open":
            return CircuitState.OPEN
        if self.mode == "closed":
            return CircuitState.CLOSED
        if self.state is CircuitState.OPEN and self._clock() >= self.reopens_at():
            return CircuitState.HALF_OPEN
        return self.state

    def reopens_at(self) -> float:
        """When an open breaker admits probes: its open time, or later when a Retry-After said so."""
        return max(self.opened_at + self.config.open_s, self.hold_until)

    def retry_in_s(self) -> float | None:
        """Seconds until an open breaker admits probes (None when it is not open)."""
        if self.mode == "open" or (self.mode == "auto" and self.state is CircuitState.OPEN):
            if self.mode == "open":
                return None
            return max(0.0, self.reopens_at() - self._clock())
        return None

    def allow(self) -> int:
        """DENY, PASS, or PROBE (a half-open trial the caller must report with `record(..., probe=True)`)."""
        mode = self.mode
        if mode == "closed":
            return PASS
        if mode == "open":
            return DENY
        state = self.state
        if state is CircuitState.CLOSED:
            return PASS
        if state is CircuitState.OPEN:
            if self._clock() < self.reopens_at():
                return DENY
            self._move(CircuitState.HALF_OPEN, f"{self.reopens_at() - self.opened_at:g} s open elapsed")
        if self.probes >= self.config.half_open_probes:
            return DENY
        self.probes += 1
        return PROBE

    def record(self, ok: bool, probe: bool = False, cause: str | None = None, retry_after_s: float = 0.0) -> None:
        """One call's outcome; a failure names its cause (what an opening breaker says opened it) and may carry
        the upstream's Retry-After, which holds the breaker open at least that long once it opens."""
        cfg = self.config
        now_s = int(self._clock())
        buckets = self._buckets
        if not buckets or buckets[-1][0] != now_s:
            horizon = now_s - cfg.window_s
            while buckets and buckets[0][0] <= horizon:
                _, calls, fails = buckets.popleft()
                self.window_calls -= calls
                self.window_failures -= fails
            if self.window_failures == 0:
                self._causes.clear()
            buckets.append([now_s, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        self.window_calls += 1
        if ok:
            self.failures = 0
            self._streak = {}
        else:
            bucket[2] += 1
            self.window_failures += 1
            self.failures += 1
            if cause is not None:
                self._causes[cause] = self._causes.get(cause, 0) + 1
                self._streak[cause] = self._streak.get(cause, 0) + 1
            if retry_after_s > 0:
                hold = self._clock() + min(retry_after_s, cfg.max_retry_after_s)
                if hold > self.hold_until:
                    self.hold_until = hold
        if self.mode != "auto":
            return
        if probe and self.state is CircuitState.HALF_OPEN:
            self.probes = max(0, self.probes - 1)
            if not ok:
                self._move(CircuitState.OPEN, "a half-open probe failed")
                return
            self.successes += 1
            if self.successes >= cfg.success_threshold:
                self._move(CircuitState.CLOSED, f"{cfg.success_threshold} probes succeeded")
                self.failures = 0
            return
        if ok or self.state is not CircuitState.CLOSED:
            return
        if self.failures >= cfg.failure_threshold:
            self._move(CircuitState.OPEN, f"{self.failures} consecutive failures")
        elif self.window_calls >= cfg.min_calls and self.window_failures / self.window_calls >= cfg.failure_rate:
            rate = self.window_failures / self.window_calls
            self._move(CircuitState.OPEN, f"failure rate {rate:.0%} over {self.window_calls} calls in {cfg.window_s} s")

    def snapshot(self) -> dict[str, object]:
        calls = self.window_calls
        return {
            "state": self.effective_state().value,
            "mode": self.mode,
            "failures": self.failures,
            "window_calls": calls,
            "window_failure_rate": round(self.window_failures / calls, 4) if calls else 0.0,
            "retry_in_s": None if (r := self.retry_in_s()) is None else round(r, 3),
            "open_cause": self.open_cause if self.state is not CircuitState.CLOSED else None,
        }
