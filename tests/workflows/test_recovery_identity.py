"""Every occurrence of an incident, a gate request and a notification has its own identity: nothing is skipped as a
duplicate, nothing old is replayed, no report is lost (time-skipping server, scripted activities)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from governor.audit import verify_chain
from governor.enums import FailureType, RecoveryPhase
from governor.incident import ApprovalInput, ControlResult, IncidentReport, Names
from tests.workflows.fakes import FakeWorld, failing, healthy, policy_for


def gated(*gates: str, four_eyes: bool = False, **overrides) -> FakeWorld:
    approvals = {"approvers": ["alice", "bob"], "gates": list(gates), "timeout_s": 300, "four_eyes": four_eyes}
    return FakeWorld(policy_for(approvals=approvals, **overrides))


async def approve(inc, gate: str, approver: str, gate_id: str | None, via: str = "update") -> ControlResult | None:
    arg = ApprovalInput(gate=gate, approver=approver, reason="looks fine", gate_id=gate_id)
    if via == "signal":
        await inc.handle.signal(Names.APPROVE, arg)
        return None
    return await inc.handle.execute_update(Names.APPROVE, arg, result_type=ControlResult)


async def test_a_replayed_approval_from_the_first_attempt_cannot_open_the_second(incident) -> None:
    """Finding 5: the same approval bytes, sent again for the second request of `ramp:10` after a rollback, are refused
    (answered for the update, audited for the signal); so is an approval without the id. Finding 4: the second
    request and the second rollback are paged again, each under its own key."""
    world = gated("ramp:10")
    world.stats = lambda w: failing(0.2) if w.weight == 25 and w.rollback_count < 2 else healthy()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    first = (await inc.until(lambda s: s.awaiting_approval)).pending_gates[0]
    assert len(first.gate_id) == 12 and first.instance == 1
    with pytest.raises(WorkflowUpdateFailedError) as no_id:
        await approve(inc, "ramp:10", "alice", None)
    assert f'"gate_id": "{first.gate_id}"' in str(no_id.value.cause)
    await approve(inc, "ramp:10", "alice", first.gate_id)
    state = await inc.until(lambda s: bool(s.rollbacks))
    world.rollback_count = 1

    second = (await inc.until(lambda s: s.awaiting_approval)).pending_gates[0]
    assert second.gate == "ramp:10" and second.gate_id != first.gate_id and second.instance == 2
    with pytest.raises(WorkflowUpdateFailedError) as replayed:
        await approve(inc, "ramp:10", "alice", first.gate_id)
    assert "stale or replayed approve" in str(replayed.value.cause)
    assert "an earlier, already decided request" in str(replayed.value.cause)
    await approve(inc, "ramp:10", "alice", first.gate_id, via="signal")
    state = await inc.until(lambda s: any(e.action == "refused" for e in s.audit))
    refused = next(e for e in state.audit if e.action == "refused")
    assert refused.actor == "alice" and "stale or replayed approve" in refused.details["reason"]
    assert state.pending_gates[0].gate_id == second.gate_id  # the replay opened nothing
    await approve(inc, "ramp:10", "bob", second.gate_id)

    await inc.until(lambda s: len(s.rollbacks) == 2)
    world.rollback_count = 2
    third = (await inc.until(lambda s: s.awaiting_approval)).pending_gates[0]
    await approve(inc, "ramp:10", "alice", third.gate_id)
    state = await inc.result()
    assert state.outcome == "recovered" and [d.gate_id for d in state.decisions] == [
        first.gate_id,
        second.gate_id,
        third.gate_id,
    ]

    occurrence = state.occurrence_id
    assert occurrence.startswith(f"{inc.workflow_id}/")
    keys = [n.idempotency_key for n in world.notifications]
    assert len(keys) == len(set(keys)), "every send has its own key"
    asked = [k for k in keys if ":approval_requested:" in k]
    assert asked == [f"{occurrence}:approval_requested:ramp:10:{i}:oncall" for i in (1, 2, 3)]
    rolled = [k for k in keys if ":rolled_back:" in k]
    assert rolled == [f"{occurrence}:rolled_back:{i}:oncall" for i in (1, 2)]  # internal has no route here
    assert all(n.occurrence == occurrence for n in world.notifications)
    paged = [n for n in world.notifications if n.event == "approval_requested"]
    assert [p.message.split("--gate-id ")[1].split()[0] for p in paged] == [
        first.gate_id,
        second.gate_id,
        third.gate_id,
    ]
    assert verify_chain(state.audit) is None


async def test_four_eyes_needs_two_distinct_approvers_for_a_gate_the_system_opened(incident) -> None:
    inc = await incident(gated("ramp:10", four_eyes=True))
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    gate = (await inc.until(lambda s: s.awaiting_approval)).pending_gates[0]
    assert gate.requested_by == "system"
    result = await approve(inc, "ramp:10", "alice", gate.gate_id)
    assert result is not None and result.pending_gates == ["ramp:10"] and "1 of 2" in result.message
    assert inc.world.weight == 0  # one pair of eyes opens nothing
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await approve(inc, "ramp:10", "alice", gate.gate_id)
    assert "a second, different approver" in str(again.value.cause)
    state = await inc.state()
    assert state.pending_gates[0].approved_by == ["alice"] and state.decisions == []
    await approve(inc, "ramp:10", "bob", gate.gate_id)
    state = await inc.result()
    assert state.outcome == "recovered"
    assert state.decisions[0].approved_by == ["alice", "bob"] and state.decisions[0].approver == "bob"
    approvals = [e for e in state.audit if e.action == "approved"]
    assert [(e.actor, e.details["approvals"]) for e in approvals] == [("alice", "1 of 2"), ("bob", "2 of 2")]


async def test_each_occurrence_has_its_own_identity_and_notification_keys(incident) -> None:
    """Finding 4: two incidents on the same dependency (same workflow id) share no notification key."""
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    one = await inc.result()
    sent_first = len(world.notifications)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    two = await inc.result()
    assert one.occurrence_id != two.occurrence_id
    assert one.occurrence_id.startswith(inc.workflow_id) and two.occurrence_id.startswith(inc.workflow_id)
    first_keys = {n.idempotency_key for n in world.notifications[:sent_first]}
    second_keys = {n.idempotency_key for n in world.notifications[sent_first:]}
    assert first_keys and second_keys and not first_keys & second_keys
    assert {n.occurrence for n in world.notifications[sent_first:]} == {two.occurrence_id}


async def test_a_crashed_delivery_re_sends_only_its_own_channel(incident) -> None:
    """Finding 4: each channel's delivery is its own activity: when one channel's attempt dies (a worker crash, a bug),
    the retry re-sends that channel only, never the channels already delivered."""
    routes = {
        "oncall": [
            {"type": "webhook", "url": "http://127.0.0.1:1/pager"},
            {"type": "webhook", "url": "http://127.0.0.1:1/chat"},
        ],
        "leadership": [{"type": "webhook", "url": "http://127.0.0.1:1/leadership"}],
    }
    world = FakeWorld(policy_for(notifications={"routes": routes}))
    world.flaky_channels["http://127.0.0.1:1/chat"] = 1
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.result()
    first_oncall = next(n for n in state.notifications if n.audience == "oncall")
    assert first_oncall.ok, first_oncall.error
    tries = [url for url, key in world.sends if key == first_oncall.idempotency_key]
    assert sorted(tries) == ["http://127.0.0.1:1/chat", "http://127.0.0.1:1/chat", "http://127.0.0.1:1/pager"]
    assert all(len(n.channels) == 1 for n in world.notifications)


@pytest.mark.parametrize("during", ["full_restore", "post_mortem"])
async def test_a_report_during_the_restore_opens_the_next_occurrence(incident, during: str) -> None:
    """Finding 2: a report arriving once the full restore began is not counted into the closing occurrence and lost:
    that occurrence closes as recovered (its post-mortem says so), and the report opens the next occurrence, which
    confirms the failure again and falls back again."""
    world = FakeWorld()
    inc = await incident(world)
    late = IncidentReport(
        service=inc.service, dependency=inc.dependency, source="alertmanager", message="down again", coalesced=3
    )
    phases: list[RecoveryPhase] = []

    async def arrive() -> None:  # from inside the restore's (or the post-mortem's) activity: the phase is `during`
        assert inc.handle
        phases.append((await inc.state()).phase)
        await inc.handle.signal(Names.REPORT, late)

    if during == "full_restore":
        world.on_restore = arrive
    else:
        world.on_postmortem = arrive
    handle = await inc.report(failure_type=FailureType.ERROR_SPIKE)
    first = await inc.until(lambda s: s.occurrence_id != "", step_s=1)
    following = await inc.until(
        lambda s: s.occurrence_id != first.occurrence_id and s.phase is not RecoveryPhase.DETECTION, step_s=2
    )
    assert phases == [RecoveryPhase(during)]
    assert following.follows == first.occurrence_id
    assert following.report_count == 3 and following.reports[0].message == "down again"
    assert following.failure_type is FailureType.ERROR_SPIKE  # detection confirmed it again
    done = world.postmortems[0].state
    assert done.occurrence_id == first.occurrence_id and done.outcome == "recovered"
    if during == "full_restore":  # the post-mortem's own input was taken before a report during it arrived
        assert done.late_report_count == 3
        assert any(e.details.get("late") for e in done.audit if e.action == "report_joined")
    final = await handle.result()  # the next occurrence runs its own course (the fake primary recovers again)
    assert final.outcome == "recovered" and final.occurrence_id == following.occurrence_id
    assert len(world.postmortems) == 2
    assert world.pinned is None and world.weight == 100


async def test_a_report_of_another_dependency_during_a_false_alarm_opens_the_next_occurrence(incident) -> None:
    """A report that reached the incident while detection was re-probing is not dropped with the false alarm: the
    primary's report did not reproduce, but the secondary's report that arrived meanwhile is confirmed next."""
    world = FakeWorld()
    world.answering = {"primary-llm"}
    inc = await incident(world)

    async def secondary_fails(_: object) -> None:
        assert inc.handle
        down = IncidentReport(service=inc.service, dependency="secondary-llm", source="watchdog", message="refused")
        await inc.handle.signal(Names.REPORT, down)

    world.on_confirm = secondary_fails
    handle = await inc.report(failure_type=FailureType.ERROR_SPIKE)
    first = await inc.until(lambda s: s.occurrence_id != "", step_s=1)
    following = await inc.until(
        lambda s: s.occurrence_id != first.occurrence_id and s.phase is not RecoveryPhase.DETECTION, step_s=2
    )
    assert all(p.state.occurrence_id != first.occurrence_id for p in world.postmortems), "a false alarm writes none"
    assert following.follows == first.occurrence_id and following.dependency == "secondary-llm"
    final = await handle.result()
    assert final.outcome == "recovered" and final.occurrence_id == following.occurrence_id
    assert final.restored_dependencies == ["secondary-llm"], "the secondary's failure was confirmed and restored"


async def test_a_second_report_of_the_same_dependency_during_a_false_alarm_is_checked_again(incident) -> None:
    """The first re-probe found the primary answering; a second report of it arrived while that probe ran, and the
    primary is down by then: detection probes once more instead of closing a real outage as a false alarm."""
    world = FakeWorld()
    world.answering = {"primary-llm"}
    inc = await incident(world)

    async def primary_dies(_: object) -> None:
        assert inc.handle
        again = IncidentReport(service=inc.service, dependency="primary-llm", source="alertmanager", message="5xx")
        await inc.handle.signal(Names.REPORT, again)
        world.answering = set()  # the probe that already ran saw it answering

    world.on_confirm = primary_dies
    handle = await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.until(lambda s: s.phase is not RecoveryPhase.DETECTION or s.closed_at is not None, step_s=1)
    assert state.outcome != "false_alarm" and state.failed_dependencies == ["primary-llm"]
    assert (await handle.result()).outcome == "recovered"


async def test_a_false_alarm_with_no_report_meanwhile_closes_once(incident) -> None:
    world = FakeWorld()
    world.answering = {"primary-llm"}
    inc = await incident(world)
    handle = await inc.report(failure_type=FailureType.ERROR_SPIKE)
    final = await handle.result()
    assert final.outcome == "false_alarm" and final.follows is None and world.confirms == 1
