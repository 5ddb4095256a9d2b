"""Gates, controls, rollbacks and escalation of the recovery workflow (time-skipping server, scripted activities)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from governor.audit import verify_chain
from governor.enums import FailureType, FallbackTier, RecoveryPhase
from governor.incident import ApprovalInput, ControlInput, ControlResult, ForceTierInput, Names, NoteInput
from tests.workflows.fakes import FakeWorld, failing, healthy, policy_for


def gated(*gates: str, four_eyes: bool = False, timeout_s: float = 300) -> FakeWorld:
    return FakeWorld(
        policy_for(
            approvals={
                "approvers": ["alice", "bob"],
                "gates": list(gates),
                "timeout_s": timeout_s,
                "four_eyes": four_eyes,
            }
        )
    )


async def with_gate_id(inc, arg):
    """A decision names the pending request of its gate: fill in the id the incident shows, as on-call would."""
    if isinstance(arg, ApprovalInput) and arg.gate_id is None:
        pending = (await inc.state()).pending(arg.gate)
        if pending is not None:
            arg = arg.model_copy(update={"gate_id": pending.gate_id})
    return arg


async def update(inc, name: str, arg) -> ControlResult:
    return await inc.handle.execute_update(name, await with_gate_id(inc, arg), result_type=ControlResult)


async def signal(inc, name: str, arg) -> None:
    await inc.handle.signal(name, await with_gate_id(inc, arg))


async def test_gate_approved_by_update_lets_the_ramp_go_on(incident) -> None:
    inc = await incident(gated("ramp:10"))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.until(lambda s: s.awaiting_approval)
    assert state.phase is RecoveryPhase.GRADUAL_RESTORE and state.pending_gates[0].gate == "ramp:10"
    assert inc.world.weight == 0  # nothing ramps before the approval
    result = await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="alice", reason="flat errors"))
    assert result.accepted and result.pending_gates == []
    state = await inc.result()
    assert state.outcome == "recovered"
    approval = next(e for e in state.audit if e.action == "approved")
    assert approval.actor == "alice" and approval.details == {
        "gate": "ramp:10",
        "reason": "flat errors",
        "gate_id": state.decisions[0].gate_id,
    }
    assert len(state.decisions[0].gate_id) == 12
    assert verify_chain(state.audit) is None


async def test_unknown_approver_is_refused_by_update_and_by_signal(incident) -> None:
    inc = await incident(gated("ramp:10"))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.awaiting_approval)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="mallory", reason="trust me"))
    assert "'mallory' may not approve ramp:10" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as not_pending:
        await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:50", approver="alice"))
    assert "not pending" in str(not_pending.value.cause)
    await signal(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="mallory", reason="trust me"))
    state = await inc.until(lambda s: any(e.action == "refused" for e in s.audit))
    refusal = next(e for e in state.audit if e.action == "refused")
    assert refusal.actor == "mallory" and "may not approve" in refusal.details["reason"]
    assert state.pending_gates and state.decisions == []  # the refusal changed nothing
    await signal(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="bob", reason="ok"))
    assert (await inc.result()).outcome == "recovered"


async def test_rejected_gate_rolls_back_and_waits_for_a_human(incident) -> None:
    inc = await incident(gated("ramp:10"))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.awaiting_approval)
    await update(inc, Names.REJECT, ApprovalInput(gate="ramp:10", approver="bob", reason="vendor says not yet"))
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION and bool(s.rollbacks))
    assert state.rollbacks[0].actor == "bob" and inc.world.pinned == "tier_1_secondary"
    await update(inc, Names.DECLARE_REMEDIATED, ControlInput(actor="bob", reason="vendor fixed it"))
    state = await inc.until(lambda s: s.awaiting_approval)
    await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="alice", reason="now"))
    assert (await inc.result()).outcome == "recovered"


async def test_gate_past_its_deadline_escalates_to_leadership_and_keeps_waiting(incident) -> None:
    inc = await incident(gated("ramp:10", timeout_s=120))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.awaiting_approval)
    state = await inc.until(lambda s: any(e.action == "escalated" for e in s.audit), step_s=30)
    assert state.pending_gates[0].escalated and state.awaiting_approval
    leadership = [n for n in inc.world.notifications if n.audience == "leadership" and n.event == "escalation"]
    assert leadership and "ramp:10" in leadership[0].message
    await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="alice", reason="late but fine"))
    assert (await inc.result()).outcome == "recovered"


async def test_four_eyes_stops_the_requester_approving_their_own_promote(incident) -> None:
    inc = await incident(gated("promote", four_eyes=True))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.ramp_percent == 10)
    await update(inc, Names.PROMOTE, ControlInput(actor="alice", reason="looks great"))
    await inc.until(lambda s: s.awaiting_approval)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(inc, Names.APPROVE, ApprovalInput(gate="promote", approver="alice"))
    assert "four-eyes" in str(refused.value.cause)
    await update(inc, Names.APPROVE, ApprovalInput(gate="promote", approver="bob", reason="agree"))
    state = await inc.result()
    weights = [c.route.primary_weight for c in inc.world.changes if c.route and c.route.primary_weight is not None]
    assert 50 not in weights and weights[-1] == 100  # skipped the remaining steps
    assert any(e.action == "promoted" and e.actor == "alice" for e in state.audit)


async def test_regression_at_25_rolls_back_then_the_next_attempt_succeeds(incident) -> None:
    world = FakeWorld()

    def stats(w: FakeWorld):
        if w.weight == 25 and not w.rollback_count:
            return failing(0.2)
        return healthy()

    world.stats = stats
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.until(lambda s: bool(s.rollbacks))
    world.rollback_count = 1
    rb = state.rollbacks[0]
    assert rb.percent == 25 and rb.metrics["error_rate"] == pytest.approx(0.2) and "20.0% > 5.0%" in rb.reason
    state = await inc.result()
    assert state.outcome == "recovered" and state.attempt == 2
    weights = [c.route.primary_weight for c in inc.world.changes if c.route and c.route.primary_weight is not None]
    assert weights == [0, 10, 25, 0, 10, 25, 50, 100, 100]
    phases = [p.phase for p in state.phases]
    assert phases.count(RecoveryPhase.REMEDIATION) == 2 and phases.count(RecoveryPhase.GRADUAL_RESTORE) == 2


async def test_low_traffic_never_fails_a_step(incident) -> None:
    world = FakeWorld()
    world.stats = lambda w: failing(0.5, requests=3) if w.weight == 10 and w.rollback_count == 0 else healthy()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.until(lambda s: s.ramp_percent == 10 and bool(s.last_judgement))
    assert state.last_judgement["verdict"] == "wait"
    world.rollback_count = 1  # traffic arrives and is healthy
    state = await inc.result()
    assert state.rollbacks == [] and state.outcome == "recovered"


async def test_max_attempts_then_waits_for_a_human(incident) -> None:
    world = FakeWorld(policy_for(rollback={"error_rate": 0.05, "max_attempts": 2}))
    world.stats = lambda w: failing(0.3) if w.weight == 10 and w.rollback_count == 0 else healthy()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.until(lambda s: s.awaiting_human, step_s=10)
    assert len(state.rollbacks) == 2 and state.phase is RecoveryPhase.REMEDIATION
    probes_before = world.probe_started
    await inc.env.sleep(3600)  # an hour later nothing moved on its own
    state = await inc.state()
    assert state.awaiting_human and len(state.rollbacks) == 2 and world.probe_started == probes_before
    assert any(n.event == "escalation" for n in world.notifications)
    world.rollback_count = 1
    await update(inc, Names.DECLARE_REMEDIATED, ControlInput(actor="alice", reason="hotfix deployed"))
    state = await inc.result()
    assert state.outcome == "recovered" and state.attempt == 3


async def test_force_tier_pins_the_chosen_tier_and_refuses_one_outside_the_chain(incident) -> None:
    world = FakeWorld(
        policy_for(
            chain=[
                {"tier": "tier_0_primary", "upstream": "http://127.0.0.1:9101"},
                {"tier": "tier_1_secondary", "upstream": "http://127.0.0.1:9102"},
                {"tier": "tier_4_static", "body": {"answer": "later"}},
            ]
        )
    )
    world.primary_fixed.clear()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(inc, Names.FORCE_TIER, ForceTierInput(tier=FallbackTier.TIER_3_DEGRADED, actor="alice"))
    assert "not in chat's chain" in str(refused.value.cause)
    await update(
        inc, Names.FORCE_TIER, ForceTierInput(tier=FallbackTier.TIER_4_STATIC, actor="alice", reason="secondary flaky")
    )
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_4_STATIC)
    assert world.pinned == "tier_4_static" and state.degradation_level == "emergency"
    world.primary_fixed.set()
    state = await inc.result()
    assert state.outcome == "recovered"


async def test_pause_holds_the_ramp_resume_continues_abort_rolls_back(incident) -> None:
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.ramp_percent == 10)
    await update(inc, Names.PAUSE, ControlInput(actor="alice", reason="deploy freeze"))
    with pytest.raises(WorkflowUpdateFailedError):
        await update(inc, Names.PAUSE, ControlInput(actor="alice"))  # already paused
    await inc.env.sleep(1800)
    state = await inc.state()
    assert state.paused and state.ramp_percent == 10
    await update(inc, Names.RESUME, ControlInput(actor="alice"))
    await inc.until(lambda s: s.ramp_percent == 25)
    await update(inc, Names.ABORT, ControlInput(actor="bob", reason="customer complaints"))
    state = await inc.until(lambda s: bool(s.rollbacks))
    assert state.rollbacks[0].actor == "bob" and "aborted by bob" in state.rollbacks[0].reason
    assert world.pinned == "tier_1_secondary" and world.weight == 0
    await update(inc, Names.NOTE, NoteInput(author="bob", text="customers told"))
    state = await inc.result()
    assert state.outcome == "recovered" and state.notes[0]["text"] == "customers told"
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await update(inc, Names.ABORT, ControlInput(actor="bob"))  # a closed incident takes no more controls


async def test_abort_outside_the_ramp_is_refused(incident) -> None:
    world = FakeWorld()
    world.primary_fixed.clear()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(inc, Names.ABORT, ControlInput(actor="bob"))
    assert "applies to the ramp" in str(refused.value.cause)
    world.primary_fixed.set()
    assert (await inc.result()).outcome == "recovered"


async def test_each_step_is_judged_on_its_own_traffic_only(incident) -> None:
    """The stats window never reaches back before the step began (the outage's errors must not roll it back)."""
    world = FakeWorld(
        policy_for(
            ramp={
                "steps": [{"percent": 10, "soak_s": 40}, {"percent": 100, "soak_s": 0}],
                "sample_interval_s": 10,
                "stats_window_s": 30,
            }
        )
    )
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    assert (await inc.result()).outcome == "recovered"
    assert world.windows[:4] == [10, 20, 30, 30]


async def test_bad_control_input_is_refused_and_the_incident_keeps_answering(incident) -> None:
    """No input, null, a list, wrong types, a huge value, two inputs: each is audited as refused, nothing wedges."""
    inc = await incident(gated("ramp:10"))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    await inc.until(lambda s: s.awaiting_approval)
    bad_inputs: list[tuple] = [
        (),
        (None,),
        (["ramp:10"],),
        ({"gate": 10, "approver": None},),
        ({"gate": "ramp:10", "approver": "alice", "reason": "x" * 100_000},),
        ({"gate": "ramp:10", "approver": "alice"}, {"gate": "ramp:10", "approver": "bob"}),
        ("not json",),
    ]
    for args in bad_inputs:
        await inc.handle.signal(Names.APPROVE, args=list(args))
        await inc.handle.signal(Names.NOTE, args=list(args))
    state = await inc.until(lambda s: sum(e.action == "refused" for e in s.audit) >= 2 * len(bad_inputs))
    reasons = [e.details["reason"] for e in state.audit if e.action == "refused"]
    assert "approve needs input" in reasons[0] and "got none" in reasons[0]
    assert any("got null" in r for r in reasons)
    assert any("gate: Input should be a valid string" in r for r in reasons)
    assert any("limit 16384" in r for r in reasons)
    assert any("got 2 inputs" in r for r in reasons)
    assert all(len(r) < 1200 for r in reasons)  # a huge input is never echoed into the audit
    assert state.pending_gates and state.decisions == [] and state.notes == []
    for args in bad_inputs:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await inc.handle.execute_update(Names.APPROVE, args=list(args), result_type=ControlResult)
        assert "approve" in str(refused.value.cause)
    await update(inc, Names.APPROVE, ApprovalInput(gate="ramp:10", approver="alice", reason="ok"))
    state = await inc.result()
    assert state.outcome == "recovered" and verify_chain(state.audit) is None
