"""write_postmortem: the Markdown and JSON files an SRE reads after the incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.recovery import RecoveryActivities
from governor.actions import PostmortemInput
from governor.audit import append_entry
from governor.enums import FailureType, FallbackTier, NotificationAudience, RecoveryPhase, Severity
from governor.incident import (
    Decision,
    IncidentReport,
    IncidentState,
    NotificationRecord,
    PhaseSpan,
    RollbackRecord,
    TierSpan,
)
from governor.postmortem import incident_metrics, postmortem_json, render_postmortem
from governor.settings import WorkerSettings
from tests.activities.conftest import make_policy

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def recovered_incident() -> IncidentState:
    """Reported at T0, detected +30 s, fallback +45 s, one rollback, recovered +1 h, closed +1 h 1 min."""
    state = IncidentState(
        incident_id="recovery-chat",
        service="chat",
        dependency="primary-llm",
        failure_type=FailureType.ERROR_SPIKE,
        severity=Severity.CRITICAL,
        reason="error rate 42.0% > 5.0%",
        phase=RecoveryPhase.POST_MORTEM,
        outcome="recovered",
        attempt=2,
        reports=[IncidentReport(service="chat", dependency="primary-llm", source="watchdog", reported_at=at(0))],
        detected_at=at(30),
        mitigated_at=at(45),
        recovered_at=at(3600),
        closed_at=at(3660),
    )
    state.phases = [
        PhaseSpan(phase=RecoveryPhase.DETECTION, entered_at=at(30), left_at=at(40)),
        PhaseSpan(phase=RecoveryPhase.FALLBACK_ACTIVE, entered_at=at(40), left_at=at(60)),
        PhaseSpan(phase=RecoveryPhase.REMEDIATION, entered_at=at(60), left_at=at(1000)),
        PhaseSpan(phase=RecoveryPhase.GRADUAL_RESTORE, entered_at=at(1000), left_at=at(1300)),
        PhaseSpan(phase=RecoveryPhase.REMEDIATION, entered_at=at(1300), left_at=at(2000)),
        PhaseSpan(phase=RecoveryPhase.GRADUAL_RESTORE, entered_at=at(2000), left_at=at(3600)),
        PhaseSpan(phase=RecoveryPhase.POST_MORTEM, entered_at=at(3600)),
    ]
    state.tiers = [
        TierSpan(tier=FallbackTier.TIER_0_PRIMARY, entered_at=at(0), left_at=at(45)),
        TierSpan(tier=FallbackTier.TIER_1_SECONDARY, entered_at=at(45), left_at=at(3600)),
        TierSpan(tier=FallbackTier.TIER_0_PRIMARY, entered_at=at(3600)),
    ]
    state.decisions = [
        Decision(gate="ramp:10", approved=True, approver="alice", reason="primary looks stable", at=at(990)),
    ]
    state.rollbacks = [
        RollbackRecord(
            at=at(1300),
            attempt=1,
            percent=25,
            reason="error rate 12.0% > 5.0% at 25%",
            metrics={"error_rate": 0.12, "p99_ms": 840.0, "requests": 50.0},
        )
    ]
    state.notifications = [
        NotificationRecord(
            audience=NotificationAudience.ONCALL,
            channel="webhook",
            event="fallback",
            idempotency_key="k1",
            due_at=at(45),
            sent_at=at(44),
            ok=True,
        ),
        NotificationRecord(
            audience=NotificationAudience.CUSTOMERS,
            channel="status_page",
            event="fallback",
            idempotency_key="k2",
            due_at=at(345),
            sent_at=at(400),
            ok=True,
        ),
        NotificationRecord(
            audience=NotificationAudience.LEADERSHIP,
            channel="email",
            event="fallback",
            idempotency_key="k3",
            due_at=at(945),
            ok=False,
            error="SMTP 554",
        ),
    ]
    state.notes = [{"author": "bob", "text": "provider confirmed a bad deploy", "at": at(500).isoformat()}]
    append_entry(state.audit, at=at(30), action="confirmed", details={"failure_type": "error_spike"})
    append_entry(state.audit, at=at(990), actor="alice", action="approve", details={"gate": "ramp:10"})
    append_entry(state.audit, at=at(1300), action="rollback", previous_state="25%", new_state="0%")
    return state


async def test_postmortem_files_tell_the_story(acts: RecoveryActivities, settings: WorkerSettings) -> None:
    policy = make_policy("http://127.0.0.1:9/health")
    result = await ActivityEnvironment().run(
        acts.write_postmortem, PostmortemInput(state=recovered_incident(), policy=policy)
    )
    md_path = settings.postmortem_dir / "recovery-chat.md"
    assert result.markdown_path == str(md_path)
    md = md_path.read_text()
    assert md == result.markdown
    assert md.startswith("# Post-mortem: chat: error_spike on primary-llm (CRITICAL)")
    # key times, measured from the failure's start (here the watchdog's report time), each saying what it measures
    assert "| failure started | 2026-03-01 12:00:00 UTC | 2026-03-01 12:00:00 UTC | the earliest sign" in md
    assert "here: watchdog: reported at |" in md
    assert "| MTTD (time to detect) | 30.0s | 2026-03-01 12:00:30 UTC | failure started -> the governor confirmed" in md
    assert "| time to mitigate | 45.0s | 2026-03-01 12:00:45 UTC | failure started -> a fallback tier served" in md
    assert "| MTTR (time to restore) | 1h 00m 00s |" in md
    assert "| total duration | 1h 01m 00s | 2026-03-01 13:01:00 UTC | failure started -> the incident closed" in md
    assert "open for" not in md
    # remediation entered twice: 940 s + 700 s
    assert "| remediation | 27m 20s |" in md
    assert "| tier_1_secondary | 90% | 59m 15s |" in md
    assert "| ramp:10 | approved | alice |" in md and "primary looks stable" in md
    assert "| 25% | error rate 12.0% > 5.0% at 25% | error_rate 12.0%, p99_ms 840, requests 50 |" in md
    assert "| met |" in md and "missed by 55.0s" in md and "FAILED: SMTP 554" in md
    assert "1/3 notifications met their audience's SLA." in md
    assert "**bob**" in md and "bad deploy" in md
    assert "Review why the ramp rolled back 1 time(s)" in md
    assert "hash chain intact" in md and "| alice | approve |" in md

    data = json.loads((settings.postmortem_dir / "recovery-chat.json").read_text())
    assert data["metrics"] == {"mttd_s": 30.0, "time_to_mitigate_s": 45.0, "mttr_s": 3600.0, "duration_s": 3660.0}
    assert data["open"] is False and data["metrics_measure"]["duration_s"].endswith(
        "the incident closed (post-mortem written)"
    )
    assert data["time_in_phase_s"]["remediation"] == 1640.0
    assert [n["within_sla"] for n in data["notifications"]] == [True, False, False]
    assert data["audit_chain_intact"] is True
    assert data["state"]["incident_id"] == "recovery-chat"


async def test_a_tampered_audit_trail_shows_in_the_postmortem(acts: RecoveryActivities) -> None:
    state = recovered_incident()
    state.audit[1].actor = "mallory"
    result = await ActivityEnvironment().run(
        acts.write_postmortem, PostmortemInput(state=state, policy=make_policy("http://127.0.0.1:9/health"))
    )
    assert "hash chain BROKEN at entry 1" in result.markdown


async def test_unwritable_postmortem_folder_is_non_retryable(
    acts: RecoveryActivities, settings: WorkerSettings
) -> None:
    settings.postmortem_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.postmortem_dir.write_text("a file where the folder should be")
    with pytest.raises(ApplicationError, match="GOVERNOR_POSTMORTEM_DIR") as err:
        await ActivityEnvironment().run(
            acts.write_postmortem,
            PostmortemInput(state=recovered_incident(), policy=make_policy("http://127.0.0.1:9/health")),
        )
    assert err.value.non_retryable


def key_times(md: str) -> dict[str, list[str]]:
    """The post-mortem's key-times table: figure -> [value, at, what it measures]."""
    table = md.split("## Key times", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in table.splitlines() if line.startswith("| ")][1:]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_figures_count_from_the_watchdogs_first_failing_check() -> None:
    """A watchdog confirms a failure some checks after the first bad one: the figures count from that first check,
    so they add up with the demo's `fault -> ...` lines (fault -> first check, plus the figure)."""
    state = recovered_incident()
    state.reports = [
        IncidentReport(
            service="chat", dependency="primary-llm", source="watchdog", failing_since=at(-2), reported_at=at(0)
        )
    ]
    md = render_postmortem(state, make_policy("http://127.0.0.1:9/health"))
    times = key_times(md)
    assert times["failure started"][0] == "2026-03-01 11:59:58 UTC"
    assert times["failure started"][2].endswith("here: watchdog: first failing check")
    assert times["MTTD (time to detect)"][0] == "32.0s" and times["time to mitigate"][0] == "47.0s"
    assert incident_metrics(state)["mttd_s"] == 32.0
    for figure, (_value, _at, measures) in times.items():
        assert measures, f"{figure} says nothing about what it measures"


def test_a_reporter_clock_ahead_never_moves_the_start_after_the_report_arrived() -> None:
    state = recovered_incident()
    state.reports = [IncidentReport(service="chat", dependency="primary-llm", source="client", reported_at=at(20))]
    state.audit = []
    append_entry(state.audit, at=at(5), actor="client", action="reported", details={})
    times = key_times(render_postmortem(state, make_policy("http://127.0.0.1:9/health")))
    assert times["failure started"][0] == "2026-03-01 12:00:05 UTC"
    assert times["failure started"][2].endswith("here: first report received")
    assert times["MTTD (time to detect)"][0] == "25.0s"


def test_failure_started_is_known_without_report_times() -> None:
    """Reports from clients often carry no time: the arrival of the first report is the start, never `-`."""
    state = recovered_incident()
    state.reports = [IncidentReport(service="chat", dependency="primary-llm", source="client")]
    state.audit = []
    append_entry(state.audit, at=at(3), actor="client", action="reported", details={})
    times = key_times(render_postmortem(state, make_policy("http://127.0.0.1:9/health")))
    assert times["failure started"][:2] == ["2026-03-01 12:00:03 UTC", "2026-03-01 12:00:03 UTC"]
    state.reports, state.audit = [], []  # nothing at all: detection is the start
    times = key_times(render_postmortem(state, make_policy("http://127.0.0.1:9/health")))
    assert times["failure started"][0] == "2026-03-01 12:00:30 UTC" and times["MTTD (time to detect)"][0] == "0.0s"


def test_an_open_incident_claims_no_total_duration() -> None:
    state = recovered_incident()
    state.recovered_at = state.closed_at = None
    state.outcome = "open"
    policy = make_policy("http://127.0.0.1:9/health")

    md = render_postmortem(state, policy, now=at(300))

    times = key_times(md)
    assert "total duration" not in times
    assert times["open for"] == [
        "5m 00s so far",
        "2026-03-01 12:05:00 UTC",
        "failure started -> now: the incident is still open",
    ]
    assert times["MTTR (time to restore)"][0] == "n/a"
    data = postmortem_json(state, policy, now=at(300))
    assert data["open"] is True and data["metrics"]["duration_s"] == 300.0
    # Without a clock (a caller that passes none) it still says open, up to the last event it knows.
    assert key_times(render_postmortem(state, policy))["open for"][:2] == ["21m 40s up to its last event", "not closed"]


def test_time_in_each_tier_counts_what_clients_were_served() -> None:
    """The secondary was pinned 45 s -> 3600 s, but from 100 s to 400 s most answers came from the degraded tier."""
    from governor.postmortem import time_in_tiers

    state = recovered_incident()
    append_entry(
        state.audit,
        at=at(100),
        action="tier_served",
        details={"pinned": "tier_1_secondary", "served": "tier_3_degraded"},
    )
    append_entry(
        state.audit,
        at=at(400),
        action="tier_served",
        details={"pinned": "tier_1_secondary", "served": "tier_1_secondary"},
    )
    tiers = time_in_tiers(state)
    assert tiers == {
        FallbackTier.TIER_0_PRIMARY: 45 + 60,
        FallbackTier.TIER_1_SECONDARY: 55 + 3200,
        FallbackTier.TIER_3_DEGRADED: 300,
    }
    assert "| tier_3_degraded | 60% | 5m" in render_postmortem(state, make_policy("http://127.0.0.1:9/health"))
