"""Pin first: from the report to the pinned fallback tier in two workflow tasks and two activities (PIN_FIRST_PATCH)."""

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
from workflows.controls import PIN_FIRST_PATCH
from workflows.recovery import IncidentRecoveryWorkflow


async def _before_the_pin(inc: Any) -> dict[str, Any]:
    """What the history holds before the pin's activity is scheduled: activities, workflow tasks, upserts, markers."""
    assert inc.handle is not None
    history = await inc.handle.fetch_history()
    seen: dict[str, Any] = {"activities": [], "workflow_tasks": 0, "upserts": 0, "local_activities": 0}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            seen["activities"].append(name)
            if name == Activity.APPLY_GATEWAY_CHANGE:
                input_ = event.activity_task_scheduled_event_attributes.input.payloads[0].data
                if b'"pinned_tier":"tier_' in input_.replace(b" ", b""):
                    seen["pin_priority"] = event.activity_task_scheduled_event_attributes.priority.priority_key
                    return seen
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            seen["workflow_tasks"] += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            seen["upserts"] += set(fields) != {"TemporalChangeVersion"}  # the SDK's own, one per patch first used
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            seen["local_activities"] += event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    raise AssertionError(f"no pin in the history; before it: {seen}")


async def test_the_report_reaches_the_pinned_tier_in_two_workflow_tasks_and_one_gateway_change(incident) -> None:
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE, message="5xx from primary")
    state = await inc.result()

    assert state.outcome == "recovered" and [p.phase for p in state.phases] == list(RecoveryPhase)
    # the gateway heard one change before serving the fallback: the failed tier's breaker and the pin together
    pin = world.changes[0]
    assert pin.breaker and pin.breaker.mode == "open" and pin.breaker.tier is FallbackTier.TIER_0_PRIMARY
    assert pin.route and pin.route.pinned_tier is FallbackTier.TIER_1_SECONDARY and pin.degradation
    # after the policy, confirmation, blast radius and tier check ran in one workflow task, as local activities
    before = await _before_the_pin(inc)
    assert before["activities"] == [Activity.LOAD_POLICY, Activity.APPLY_GATEWAY_CHANGE]
    assert before["workflow_tasks"] == 2 and before["local_activities"] == 3
    assert before["upserts"] == 1  # the governor's: detection, isolation and fallback published once
    assert before["pin_priority"] == 1  # ahead of other incidents' soaks and notifications on the task queue
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in (await inc.handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    background = {
        a.priority.priority_key for a in scheduled if a.activity_type.name in (Activity.NOTIFY, Activity.READ_STATS)
    }
    assert background == {5}
    # the record is whole all the same: the breaker, the blast radius and the tier check are in the audit trail
    actions = [str(e.action) for e in state.audit]
    assert actions.index("failure_confirmed") < actions.index("blast_radius") < actions.index("breaker_opened")
    assert actions.index("breaker_opened") < actions.index("tier")
    assert state.blast_radius is not None and verify_chain(state.audit) is None
    # and the new sequence replays deterministically (a worker restarted mid-incident rebuilds it from history)
    replayer = Replayer(workflows=[IncidentRecoveryWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(await inc.handle.fetch_history())).replay_failure is None
    attrs = (await inc.handle.describe()).search_attributes
    assert attrs["RecoveryPhase"] == ["post_mortem"] and attrs["FallbackTier"] == ["tier_0_primary"]


async def test_without_the_patch_the_old_sequence_runs(incident, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history recorded before pin first replays its own sequence: four activities and tasks before the pin."""
    patched = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id != PIN_FIRST_PATCH and patched(patch_id))
    world = FakeWorld()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE, message="5xx from primary")
    state = await inc.result()

    assert state.outcome == "recovered"
    assert world.changes[0].route is None and world.changes[0].breaker  # the breaker alone, then the pin
    before = await _before_the_pin(inc)
    assert before["local_activities"] == 0 and before["workflow_tasks"] >= 4
    assert Activity.LOAD_POLICY in before["activities"] and Activity.CONFIRM_FAILURE in before["activities"]
