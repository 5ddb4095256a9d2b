"""The demo's summary and the post-mortem tell the same times: both count to the same moments, the summary from the
injected fault, the post-mortem from the failure's start; and the demo policy routes every audience it notifies."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

from demo.scenario import timing_lines
from demo.settings import DEMO_POLICY_DIR, DemoResult
from demo.traffic import TrafficReport
from governor.audit import append_entry
from governor.decisions import audiences_for
from governor.enums import DegradationLevel, NotificationAudience, Severity
from governor.incident import IncidentReport, IncidentState
from governor.policy import load_policy
from governor.postmortem import incident_metrics

FAULT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def after(seconds: float) -> datetime:
    return FAULT + timedelta(seconds=seconds)


def demo_result(closed: bool = True) -> DemoResult:
    """The demo's incident as it plays: the first failing check 0.3 s after the fault, the watchdog reports at
    +0.8 s, the governor confirms at +1.0 s, falls back at +1.6 s, recovers at +61.2 s, closes at +62.0 s."""
    state = IncidentState(
        incident_id="recovery-chat",
        service="chat",
        dependency="primary-llm",
        reports=[
            IncidentReport(
                service="chat",
                dependency="primary-llm",
                source="watchdog",
                failing_since=after(0.3),
                reported_at=after(0.75),
            )
        ],
        detected_at=after(1.0),
        mitigated_at=after(1.6),
        recovered_at=after(61.2) if closed else None,
        closed_at=after(62.0) if closed else None,
    )
    append_entry(state.audit, at=after(0.8), actor="watchdog", action="reported", details={})
    return DemoResult(incident=state, traffic=TrafficReport([], [], 0, 0), fault_at=FAULT)


def seconds_in(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d) s\b", line)]


def test_each_summary_line_is_the_fault_to_start_plus_the_post_mortem_figure() -> None:
    result = demo_result()
    lines = {line[:23].strip(): line for line in timing_lines(result)}
    [start] = seconds_in(lines["fault -> failure start"])
    assert start == 0.3
    assert seconds_in(lines["fault -> report"]) == [0.8]
    figures = incident_metrics(result.incident)
    for name, figure in [
        ("fault -> detection", "mttd_s"),
        ("fault -> fallback", "time_to_mitigate_s"),
        ("fault -> recovered", "mttr_s"),
        ("fault -> closed", "duration_s"),
    ]:
        from_fault, from_start = seconds_in(lines[name])
        assert from_start == round(figures[figure] or -1, 1), (name, lines[name])
        assert abs(from_fault - (start + from_start)) <= 0.1 + 1e-9, (name, lines[name])
    assert "post-mortem MTTD 0.7 s" in lines["fault -> detection"]


def test_an_open_incident_has_no_total_duration_in_the_summary() -> None:
    closed = next(line for line in timing_lines(demo_result(closed=False)) if line.startswith("fault -> closed"))
    assert closed == "fault -> closed        - (post-mortem written; its total duration -)"


def test_the_demo_policy_routes_every_audience_the_incident_can_notify() -> None:
    policy = load_policy(DEMO_POLICY_DIR / "chat.yaml")
    routed = {audience for audience, channels in policy.notifications.routes.items() if channels}
    notified = set(policy.notifications.escalation)
    for level, severity in itertools.product(DegradationLevel, [*Severity, None]):
        notified.update(audiences_for(level, severity))
    assert NotificationAudience.LEADERSHIP in notified  # a CRITICAL outage tells leadership
    assert notified <= routed, f"no route for {sorted(notified - routed)} in {DEMO_POLICY_DIR / 'chat.yaml'}"
