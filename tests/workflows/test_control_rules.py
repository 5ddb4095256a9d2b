"""The control rules and the UI's view of an incident, as pure functions (no workflow, no server)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from governor.controls import POLICY_LOADING, Control, actor_of, approvals_needed, pending_text, refusal
from governor.details import details_markdown, search_attribute_values
from governor.drill import DrillRecord
from governor.enums import FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import (
    ApprovalInput,
    ControlInput,
    Decision,
    ForceTierInput,
    IncidentState,
    Names,
    NoteInput,
    PendingGate,
)
from governor.search_attributes import ALL
from tests.workflows.fakes import policy_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def state(**fields) -> IncidentState:
    return IncidentState(incident_id="recovery-chat", service="chat", dependency="primary-llm", **fields)


def gate(name: str = "ramp:10", requested_by: str = "system") -> PendingGate:
    return PendingGate(
        gate=name, requested_at=NOW, deadline=NOW + timedelta(minutes=5), approvers=["alice", "bob"],
        requested_by=requested_by,
    )  # fmt: skip


def test_control_names_are_todays_wire_names() -> None:
    assert Names is Control
    assert [str(c) for c in Control] == [
        "report", "approve", "reject", "pause", "resume", "abort", "promote", "force_tier",
        "declare_remediated", "note", "claim", "state",
    ]  # fmt: skip
    assert f"{Control.APPROVE}" == "approve" and Control("approve") is Control.APPROVE


def test_nothing_but_a_note_before_the_policy_is_loaded() -> None:
    assert refusal(Control.PAUSE, ControlInput(actor="a"), state(), None) == POLICY_LOADING
    assert refusal(Control.NOTE, NoteInput(author="a", text="hi"), state(), None) is None


def test_a_closed_incident_takes_notes_only() -> None:
    policy, closed = policy_for(), state(closed_at=NOW, outcome="recovered", paused=True)
    assert refusal(Control.RESUME, ControlInput(actor="a"), closed, policy) == (
        "incident recovery-chat is closed (recovered)"
    )
    assert refusal(Control.NOTE, NoteInput(author="a", text="later"), closed, policy) is None


@pytest.mark.parametrize(
    ("arg", "pending", "four_eyes", "expected"),
    [
        (ApprovalInput(gate="ramp:10", approver="alice"), [gate()], False, None),
        (ApprovalInput(gate="ramp:50", approver="alice"), [gate()], False, "gate 'ramp:50' is not pending (pending: ramp:10)"),
        (ApprovalInput(gate="ramp:10", approver="alice"), [], False, "gate 'ramp:10' is not pending (pending: none)"),
        (ApprovalInput(gate="ramp:10", approver="mallory"), [gate()], False, "'mallory' may not approve ramp:10 (approvers: alice, bob)"),
        (ApprovalInput(gate="promote", approver="alice"), [gate("promote", "alice")], True, "four-eyes rule: 'alice' requested promote and cannot also decide it"),
        (ApprovalInput(gate="promote", approver="alice"), [gate("promote", "alice")], False, None),
        (ApprovalInput(gate="promote", approver="bob"), [gate("promote", "alice")], True, None),
    ],
)  # fmt: skip
def test_approval_rules(arg, pending, four_eyes, expected) -> None:
    policy = policy_for(approvals={"approvers": ["alice", "bob"], "gates": ["ramp:10"], "four_eyes": four_eyes})
    for control in (Control.APPROVE, Control.REJECT):
        assert refusal(control, arg, state(pending_gates=pending), policy) == expected


def test_an_approval_must_name_the_pending_request_of_its_gate() -> None:
    """A decision names the gate's pending request by id: a replayed one (an earlier attempt's, another incident's, or
    one without an id) is refused with the reason, for approve and reject alike."""
    policy = policy_for(approvals={"approvers": ["alice", "bob"], "gates": ["ramp:10"]})
    now = gate().model_copy(update={"gate_id": "bbbbbbbbbbbb", "instance": 2})
    earlier = Decision(gate="ramp:10", approved=True, approver="alice", reason="", at=NOW, gate_id="aaaaaaaaaaaa")
    s = state(pending_gates=[now], decisions=[earlier])
    for control in (Control.APPROVE, Control.REJECT):
        ok = ApprovalInput(gate="ramp:10", approver="alice", gate_id="bbbbbbbbbbbb")
        assert refusal(control, ok, s, policy) is None
        stale = refusal(control, ok.model_copy(update={"gate_id": "aaaaaaaaaaaa"}), s, policy)
        assert stale == (
            f"stale or replayed {control}: gate id 'aaaaaaaaaaaa' is an earlier, already decided request of ramp:10 "
            "in this incident; the pending request is 'bbbbbbbbbbbb'"
        )
        foreign = refusal(control, ok.model_copy(update={"gate_id": "cccccccccccc"}), s, policy)
        assert foreign is not None and "gate id 'cccccccccccc' is not a request of ramp:10" in foreign
        missing = refusal(control, ok.model_copy(update={"gate_id": None}), s, policy)
        assert missing is not None and '"gate_id": "bbbbbbbbbbbb"' in missing
        decided = refusal(
            control, ok.model_copy(update={"gate_id": "aaaaaaaaaaaa"}), state(decisions=[earlier]), policy
        )
        assert decided == "stale decision: ramp:10 aaaaaaaaaaaa was already decided by alice"
    assert pending_text(s) == "ramp:10 (id bbbbbbbbbbbb)"


def test_four_eyes_needs_two_distinct_approvers_for_a_gate_the_system_opened() -> None:
    policy = policy_for(approvals={"approvers": ["alice", "bob"], "gates": ["ramp:10"], "four_eyes": True})
    once = gate().model_copy(update={"gate_id": "g1", "approved_by": ["alice"]})
    again = ApprovalInput(gate="ramp:10", approver="alice", gate_id="g1")
    assert refusal(Control.APPROVE, again, state(pending_gates=[once]), policy) == (
        "four-eyes rule: 'alice' already approved ramp:10; a second, different approver must"
    )
    assert refusal(Control.REJECT, again, state(pending_gates=[once]), policy) is None  # any one may stop it
    assert (
        refusal(Control.APPROVE, again.model_copy(update={"approver": "bob"}), state(pending_gates=[once]), policy)
        is None
    )
    assert approvals_needed("system", policy) == 2 and approvals_needed("alice", policy) == 1
    assert approvals_needed("system", policy_for()) == 1


def test_pause_resume_and_ramp_only_controls() -> None:
    policy, actor = policy_for(), ControlInput(actor="a")
    assert refusal(Control.PAUSE, actor, state(), policy) is None
    assert refusal(Control.PAUSE, actor, state(paused=True), policy) == "already paused"
    assert refusal(Control.RESUME, actor, state(), policy) == "not paused"
    assert refusal(Control.RESUME, actor, state(paused=True), policy) is None
    for control in (Control.ABORT, Control.PROMOTE):
        assert refusal(control, actor, state(phase=RecoveryPhase.GRADUAL_RESTORE), policy) is None
        assert refusal(control, actor, state(phase=RecoveryPhase.REMEDIATION), policy) == (
            f"{control} applies to the ramp; the incident is in remediation"
        )


def test_force_tier_and_declare_remediated_phases() -> None:
    policy = policy_for()
    outside = next(t for t in FallbackTier if t not in policy.tiers)
    ok = ForceTierInput(tier=policy.tiers[1], actor="a")
    for phase in RecoveryPhase:
        forced = refusal(Control.FORCE_TIER, ok, state(phase=phase), policy)
        no_forcing = phase in (RecoveryPhase.DETECTION, RecoveryPhase.FULL_RESTORE, RecoveryPhase.POST_MORTEM)
        assert forced == (f"cannot force a tier during {phase}" if no_forcing else None)
        declared = refusal(Control.DECLARE_REMEDIATED, ControlInput(actor="a"), state(phase=phase), policy)
        before = phase in (RecoveryPhase.FALLBACK_ACTIVE, RecoveryPhase.DIAGNOSIS, RecoveryPhase.REMEDIATION)
        assert (declared is None) is before
    bad = refusal(
        Control.FORCE_TIER, ForceTierInput(tier=outside, actor="a"), state(phase=RecoveryPhase.REMEDIATION), policy
    )
    assert bad is not None and bad.startswith(f"tier {outside} is not in chat's chain")


def test_claim_takes_ownership_once_per_owner() -> None:
    policy = policy_for()
    assert refusal(Control.CLAIM, ControlInput(actor="alice"), state(), policy) is None
    assert refusal(Control.CLAIM, ControlInput(actor="bob"), state(owner="alice"), policy) is None  # a hand-over
    assert refusal(Control.CLAIM, ControlInput(actor="alice"), state(owner="alice"), policy) == (
        "'alice' already owns recovery-chat"
    )
    closed = state(closed_at=NOW, outcome="recovered")
    assert refusal(Control.CLAIM, ControlInput(actor="alice"), closed, policy) == (
        "incident recovery-chat is closed (recovered)"
    )


def test_actor_of_names_whoever_sent_it() -> None:
    assert actor_of(ApprovalInput(gate="g", approver="alice")) == "alice"
    assert actor_of(ControlInput(actor="bob")) == "bob"
    assert actor_of(NoteInput(author="carol", text="x")) == "carol"
    assert actor_of(None) == "unknown"


def test_search_attribute_values_cover_the_registered_names_only() -> None:
    registered = {key.name for key in ALL}
    values = search_attribute_values(state(failure_type=FailureType.ERROR_SPIKE, severity=Severity.HIGH))
    assert set(values) == registered - {"GovernorDrill"}  # only drills set it (older histories never upsert it)
    assert values["FailureType"] == "error_spike" and values["AwaitingApproval"] is False
    assert set(search_attribute_values(state())) == registered - {"FailureType", "Severity", "GovernorDrill"}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    drill = DrillRecord(requested_by="alice", duration_s=60, injection="breaker", injected_at=at, ends_at=at)
    drilled = search_attribute_values(
        state(failure_type=FailureType.ERROR_SPIKE, severity=Severity.HIGH, drill_run=drill)
    )
    assert set(drilled) == registered and drilled["GovernorDrill"] is True
    details = details_markdown(state(drill_run=drill))
    assert (
        "**DRILL** by alice: breaker; restores 00:00:00 UTC" in details and "status page is left untouched" in details
    )


def test_details_show_the_pending_gate_and_how_to_approve_it() -> None:
    text = details_markdown(state(pending_gates=[gate()], paused=True))
    assert "### Awaiting approval: `ramp:10`" in text and '"gate": "ramp:10"' in text
    assert "**Paused**" in text


def test_the_pure_modules_do_not_import_temporal() -> None:
    code = "import sys, governor.controls, governor.details; print('temporalio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
