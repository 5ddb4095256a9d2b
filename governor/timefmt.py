"""How the governor writes times and durations, one way everywhere: the CLI, the post-mortem, the demo."""

from __future__ import annotations

from datetime import datetime, timedelta


def format_duration(value: float | timedelta | None, missing: str = "n/a") -> str:
    """`1h 02m 03s`, `4m 05s`, `12.3s` (negative with a leading `-`); `missing` when unknown."""
    if value is None:
        return missing
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{sign}{minutes}m {secs:02d}s"


def format_time(at: datetime | None, missing: str = "n/a") -> str:
    """`2026-11-30 04:00:00 UTC` (the wall time as recorded; the workflow records UTC); `missing` when unknown."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else missing
