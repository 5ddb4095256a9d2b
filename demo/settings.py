"""How the demo plays (DemoSettings) and what it saw (DemoResult), with its fixed names and ports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from demo.traffic import TrafficReport
from governor.detection import WatchdogConfig
from governor.enums import RecoveryPhase
from governor.incident import IncidentState
from governor.postmortem import failure_started_at

DEMO_POLICY_DIR = Path(__file__).resolve().parent / "policies"
DEMO_SERVICE = "chat"
DEMO_APPROVER = "demo-bot"
DEMO_WATCHDOG = WatchdogConfig(interval_s=0.25, suspect_interval_s=0.2, stats_window_s=5, min_samples=10)
"""Watchdogs for the demo: probe 4 times a second, judge the gateway's last 5 s (the demo sends 40 req/s)."""


class DemoFailed(RuntimeError):
    """An unattended demo did not end with a recovered incident and its post-mortem; the message says where it stopped."""


@dataclass
class DemoSettings:
    """How the demo plays. The defaults are `governor up --demo`'s."""

    auto_approve: bool = False
    approver: str = DEMO_APPROVER
    approve_after_s: float = 3.0
    """With auto_approve: how long a gate stays pending before demo-bot approves it (so it can be seen)."""
    rps: float = 40.0
    baseline_s: float = 5.0
    """Healthy traffic before the fault."""
    outage_s: float = 12.0
    """How long the primary stays down once the traffic is on the fallback tier."""
    regression_error_rate: float = 0.2
    """Errors injected on the primary at 25 %: above the rollback bar (5 %), below the breaker's 50 %."""
    remind_every_s: float = 20.0
    """Without auto_approve: how often to remind that a gate still waits for a human."""
    fix_after_s: float = 2.0
    """After the rollback, how long until "the fix" is deployed (the fault cleared)."""
    settle_s: float = 4.0
    """After the post-mortem: how long to watch the clients on the restored primary before the summary."""
    parts_echoed: bool = True
    """Whether the launcher shows the parts' output; if not, the demo says where their logs are."""
    unattended: bool = False
    """Bounded waits, and raise DemoFailed unless the incident ends recovered with a post-mortem."""
    step_timeout_s: float = 180.0
    """Unattended: the longest any single step may take."""
    started_at: float | None = None
    """time.monotonic() when `governor up` started, to report the time from a cold start to the first incident."""
    traffic_file: Path | None = None
    """Where the traffic process writes its per-second timeline; default <state>/demo/traffic.jsonl."""


@dataclass
class DemoResult:
    """What happened, for the summary and the end-to-end test."""

    incident: IncidentState
    traffic: TrafficReport
    fault_at: datetime
    primary_back_at: datetime | None = None
    regression_at: datetime | None = None
    fixed_at: datetime | None = None
    first_incident_after_start_s: float | None = None
    pages: list[dict[str, Any]] = field(default_factory=list)
    postmortem: Path | None = None

    @property
    def recovered(self) -> bool:
        s = self.incident
        return s.phase is RecoveryPhase.POST_MORTEM and s.outcome == "recovered" and s.postmortem_path is not None

    def seconds_after_fault(self, at: datetime | None) -> float | None:
        return None if at is None else (at - self.fault_at).total_seconds()

    @property
    def started_after_s(self) -> float | None:
        """Fault -> the failure's start as the post-mortem counts it (the watchdog's first failing check)."""
        return self.seconds_after_fault(failure_started_at(self.incident))

    @property
    def reported_after_s(self) -> float | None:
        """Fault -> the first report (a watchdog's) reached the governor."""
        first = next((e.at for e in self.incident.audit if e.action == "reported"), None)
        return self.seconds_after_fault(first)

    @property
    def detected_after_s(self) -> float | None:
        """Fault -> the governor confirmed the failure (the end point of the post-mortem's MTTD)."""
        return self.seconds_after_fault(self.incident.detected_at)

    @property
    def fallback_after_s(self) -> float | None:
        """Fault -> a fallback tier served the traffic (the end point of the post-mortem's time to mitigate)."""
        return self.seconds_after_fault(self.incident.mitigated_at)

    @property
    def recovered_after_s(self) -> float | None:
        return self.seconds_after_fault(self.incident.recovered_at)

    @property
    def closed_after_s(self) -> float | None:
        return self.seconds_after_fault(self.incident.closed_at)


def traffic_file(state_dir: Path) -> Path:
    return state_dir.resolve() / "demo" / "traffic.jsonl"
