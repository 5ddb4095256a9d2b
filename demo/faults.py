"""The fault switches of the demo's fake models (demo/upstream.py), as `PUT /control` sets them.

    {"error_rate": 0..1, "latency_ms": 0, "outage": false, "outage_mode": "close" | "503",
     "rate_limit": false, "retry_after_s": 1, "garbage": false, "garbage_kind": "binary",
     "stream_cut_after": null, "stream_interval_ms": 0,
     "flap_period_s": 0, "flap_down_s": 0, "slow_rate": 0, "slow_ms": 0}

`flap_period_s`/`flap_down_s` make the model flap: down (as `outage` would be) for the first `flap_down_s` seconds of
every `flap_period_s` seconds of wall-clock time, up the rest. `slow_rate`/`slow_ms` make it noisy: that share of
completions answers `slow_ms` late (on top of `latency_ms`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["GARBAGE", "Faults"]


@dataclass
class Faults:
    """The fault switches of one upstream; `PUT /control` changes any subset of them."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    outage: bool = False
    outage_mode: str = "close"
    rate_limit: bool = False
    retry_after_s: int = 1
    garbage: bool = False
    garbage_kind: str = "binary"
    stream_cut_after: int | None = None
    stream_interval_ms: float = 0.0
    flap_period_s: float = 0.0
    flap_down_s: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial change; raises ValueError naming the bad field."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in _FAULT_TYPES:
                raise ValueError(f"{name}: unknown fault (known: {', '.join(_FAULT_TYPES)})")
            checked[name] = _check_fault(name, value)
        period = checked.get("flap_period_s", self.flap_period_s)
        down = checked.get("flap_down_s", self.flap_down_s)
        if period and down >= period:
            raise ValueError(f"flap_down_s: must be shorter than flap_period_s ({period}), got {down}")
        for name, value in checked.items():
            setattr(self, name, value)

    def down(self, now: float | None = None) -> bool:
        """Whether the model is down now: `outage`, or inside a flap's down-window."""
        if self.outage:
            return True
        if self.flap_period_s <= 0 or self.flap_down_s <= 0:
            return False
        return ((time.time() if now is None else now) % self.flap_period_s) < self.flap_down_s

    def delay_s(self) -> float:
        """How late this answer comes: `latency_ms`, plus `slow_ms` for a `slow_rate` share of answers."""
        ms = self.latency_ms
        if self.slow_rate and random.random() < self.slow_rate:
            ms += self.slow_ms
        return ms / 1000


_FAULT_TYPES = {f.name: f.type for f in fields(Faults)}


def _check_fault(name: str, value: Any) -> Any:
    if name in {"outage", "rate_limit", "garbage"}:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: must be true or false, got {value!r}")
        return value
    if name == "garbage_kind":
        if value not in GARBAGE:
            raise ValueError(f"garbage_kind: must be one of {', '.join(GARBAGE)}, got {value!r}")
        return value
    if name == "outage_mode":
        if value not in {"close", "503"}:
            raise ValueError(f"outage_mode: must be 'close' or '503', got {value!r}")
        return value
    if name == "stream_cut_after" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if name in {"error_rate", "slow_rate"} and not 0 <= value <= 1:
        raise ValueError(f"{name}: must be between 0 and 1, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: must not be negative, got {value!r}")
    if name in {"stream_cut_after", "retry_after_s"}:
        return int(value)
    return float(value)


GARBAGE = {
    "binary": (b"<html><body>502 Bad Gateway</body></html>\x00\xff", b"application/json"),
    "html": (b"<!doctype html><html><body><h1>Service temporarily unavailable</h1></body></html>", b"text/html"),
    "json_error": (
        b'{"error":{"type":"insufficient_quota","message":"You exceeded your current quota."}}',
        b"application/json",
    ),
    "broken_json": (b"{<html><body>upstream proxy error</body></html>}", b"application/json"),
    "sse": (
        b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
        b"data: [DONE]\n\n",
        b"text/event-stream",
    ),
}
"""The 200s that are not completions (`garbage_kind`): body and content type."""
