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
from governor.settings import WorkerSettings
from tests.activities.conftest import make_policy

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def recovered_incident() -> IncidentState:
    """Reported at T0, detected +30 s, fallback +45 s, one rollback, recovered +1 h, closed +1 h 1 min."""
    state = IncidentState(
        incident_id="recovery-chat-primary-llm",
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
    md_path = settings.postmortem_dir / "recovery-chat-primary-llm.md"
    assert result.markdown_path == str(md_path)
    md = md_path.read_text()
    assert md == result.markdown
    assert md.startswith("# Post-mortem: chat: error_spike on primary-llm (CRITICAL)")
    # key times, measured from the first report
    assert "| MTTD (time to detect) | 30.0s |" in md
    assert "| time to mitigate (fallback serving) | 45.0s |" in md
    assert "| MTTR (primary fully restored) | 1h 00m 00s |" in md
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

    data = json.loads((settings.postmortem_dir / "recovery-chat-primary-llm.json").read_text())
    assert data["metrics"] == {"mttd_s": 30.0, "time_to_mitigate_s": 45.0, "mttr_s": 3600.0, "duration_s": 3660.0}
    assert data["time_in_phase_s"]["remediation"] == 1640.0
    assert [n["within_sla"] for n in data["notifications"]] == [True, False, False]
    assert data["audit_chain_intact"] is True
    assert data["state"]["incident_id"] == "recovery-chat-primary-llm"


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
