"""Pin first: from the report to the pinned fallback tier in one workflow task and one activity (PIN_FIRST_PATCH)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from governor.actions import Activity
from governor.audit import verify_chain
from governor.enums import FailureType, FallbackTier, RecoveryPhase
from tests.workflows.fakes import FakeWorld
from workflows.pin_first import PIN_FIRST_PATCH
from workflows.recovery import IncidentRecoveryWorkflow


async def _history(inc: Any) -> dict[str, Any]:
    """Per activity scheduled, in order: its name, priority key, and the workflow tasks and governor upserts (not the
    SDK's TemporalChangeVersion, one per patch first used) completed before it."""
    assert inc.handle is not None
    seen: dict[str, Any] = {"scheduled": [], "workflow_tasks": 0, "upserts": 0}
    for event in (await inc.handle.fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            seen["scheduled"].append(
                (attrs.activity_type.name, attrs.priority.priority_key, seen["workflow_tasks"], seen["upserts"])
            )
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            seen["workflow_tasks"] += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            seen["upserts"] += set(fields) != {"TemporalChangeVersion"}
    return seen


async def test_the_report_reaches_the_pinned_tier_in_one_workflow_task_and_one_activity(incident) -> None:
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE, message="5xx from primary")
    state = await inc.result()

    assert state.outcome == "recovered" and [p.phase for p in state.phases] == list(RecoveryPhase)
    # the gateway heard one change before serving the fallback: the failed tier's breaker and the pin together
    pin = world.changes[0]
    assert pin.breaker and pin.breaker.mode == "open" and pin.breaker.tier is FallbackTier.TIER_0_PRIMARY
    assert pin.route and pin.route.pinned_tier is FallbackTier.TIER_1_SECONDARY and pin.degradation and pin.status
    # made inside the first activity, scheduled by the first workflow task, before any upsert, at priority 1
    seen = await _history(inc)
    first, *rest = seen["scheduled"]
    assert first == (Activity.FALL_BACK_FIRST, 1, 1, 0)
    assert world.first_pins == 1 and world.confirms == 1 and world.assessments >= 1
    names = [name for name, *_ in rest]
    assert Activity.LOAD_POLICY not in names and Activity.CONFIRM_FAILURE not in names
    assert Activity.ASSESS_BLAST_RADIUS not in names
    assert names.count(Activity.APPLY_GATEWAY_CHANGE) == len(world.changes) - 1  # all but the first
    # the next workflow task records detection, isolation and fallback and publishes them with one upsert
    assert rest[0][0] == Activity.GATHER_EVIDENCE and rest[0][2:] == (2, 1)
    background = {prio for name, prio, *_ in rest if name in (Activity.NOTIFY, Activity.READ_STATS)}
    assert background == {5}  # behind other incidents' pins on the task queue
    # the record is whole all the same: each step is in the audit trail as the step-by-step path writes it
    actions = [str(e.action) for e in state.audit]
    for step in ("failure_confirmed", "breaker_opened", "blast_radius", "tier"):
        assert step in actions, step
    assert actions.index("failure_confirmed") < actions.index("breaker_opened") < actions.index("tier")
    assert actions.index("failure_confirmed") < actions.index("blast_radius") < actions.index("tier")
    assert [p.phase for p in state.phases[:3]] == [
        RecoveryPhase.DETECTION,
        RecoveryPhase.ISOLATION,
        RecoveryPhase.FALLBACK_ACTIVE,
    ]
    assert state.blast_radius is not None and verify_chain(state.audit) is None
    assert state.mitigated_at is not None and state.tiers[0].tier is FallbackTier.TIER_1_SECONDARY
    # the new sequence replays deterministically (a worker restarted mid-incident rebuilds it from history)
    replayer = Replayer(workflows=[IncidentRecoveryWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(await inc.handle.fetch_history())).replay_failure is None
    attrs = (await inc.handle.describe()).search_attributes
    assert attrs["RecoveryPhase"] == ["post_mortem"] and attrs["FallbackTier"] == ["tier_0_primary"]


async def test_a_first_change_the_gateway_refuses_is_applied_again_by_the_workflow(incident) -> None:
    world = FakeWorld()
    world.gateway_failures = 1  # the one change inside pin first fails; the workflow's own activities then apply
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.result()

    assert state.outcome == "recovered" and state.tiers[0].tier is FallbackTier.TIER_1_SECONDARY
    breaker, pin = world.changes[:2]  # the step-by-step path: isolation's breaker, then fallback's pin
    assert breaker.breaker and breaker.breaker.mode == "open" and breaker.route is None
    assert pin.route and pin.route.pinned_tier is FallbackTier.TIER_1_SECONDARY and pin.breaker is None
    assert world.confirms == 1 and world.first_pins == 1  # confirmed once: the failure is not probed again
    actions = [str(e.action) for e in state.audit]
    assert actions.count("breaker_opened") == 1 and "activity_failed" not in actions


async def test_a_false_alarm_changes_no_gateway_and_closes(incident) -> None:
    world = FakeWorld()
    world.confirmed = False
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.result()

    assert state.outcome == "false_alarm" and world.changes == [] and world.first_pins == 1
    attrs = (await inc.handle.describe()).search_attributes  # published at the close, though held while recorded
    assert attrs["RecoveryPhase"] == ["detection"]


async def test_a_blast_radius_that_fails_is_audited_and_the_pin_goes_on(incident) -> None:
    world = FakeWorld()
    world.blast_fails = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.result()

    assert state.outcome == "recovered" and world.changes[0].route and world.changes[0].breaker
    failed = [e for e in state.audit if str(e.action) == "activity_failed"]
    assert [e.details["activity"] for e in failed] == [Activity.ASSESS_BLAST_RADIUS]
    assert failed[0].details["error"] == "gateway unreachable" and state.blast_radius is None


async def test_without_the_patch_the_old_sequence_runs(incident, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history recorded before pin first replays its own sequence: the policy, then each step, then the pin."""
    patched = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id != PIN_FIRST_PATCH and patched(patch_id))
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE, message="5xx from primary")
    state = await inc.result()

    assert state.outcome == "recovered" and world.first_pins == 0
    assert world.changes[0].route is None and world.changes[0].breaker  # the breaker alone, then the pin
    scheduled = (await _history(inc))["scheduled"]
    assert [name for name, *_ in scheduled[:2]] == [Activity.LOAD_POLICY, Activity.CONFIRM_FAILURE]
    assert {prio for _, prio, *_ in scheduled} == {0}, "no priorities in a history recorded before them"
