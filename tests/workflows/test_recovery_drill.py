"""Drills (`governor simulate --drill`) on the time-skipping server, with scripted activities.

A drill's report opens an incident the workflow confirms by injecting the failure itself (the failed tier's breaker
forced open), runs every phase, tells on-call and internal only, never touches the status page (unless the policy
lets it), hands the breaker back when the drill's duration is up and records what the drill found.
"""

from __future__ import annotations

from governor import search_attributes as sa
from governor.drill import DrillRequest, drill_findings
from governor.enums import FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import Names
from governor.models import TierStats
from tests.workflows.fakes import FakeWorld, policy_for

EVERYONE = {
    a: [{"type": "webhook", "url": f"http://127.0.0.1:1/{a}"}]
    for a in ("oncall", "internal", "customers", "users", "leadership", "public")
}


def drill_world(**overrides: object) -> FakeWorld:
    world = FakeWorld(policy_for(notifications={"routes": EVERYONE}, **overrides))
    world.confirmed = False  # the primary is healthy: probing alone would call the report a false alarm
    world.other_tiers = {"tier_5_error": TierStats(requests=0), "tier_1_secondary": TierStats(requests=900)}
    return world


async def test_drill_injects_contains_restores_on_its_own_and_reports_findings(incident) -> None:
    world = drill_world()
    inc = await incident(world)
    await inc.report(
        failure_type=FailureType.MODEL_UNAVAILABLE,
        severity=Severity.CRITICAL,
        drill=DrillRequest(duration_s=120, requested_by="alice"),
    )
    state = await inc.result()

    assert state.outcome == "recovered" and [p.phase for p in state.phases] == list(RecoveryPhase)
    d = state.drill_run
    assert d is not None and d.requested_by == "alice" and d.duration_s == 120
    # the injection: the primary's breaker forced open before anything else, then pinned to the fallback
    first = world.changes[0]
    assert first.breaker and first.breaker.mode == "open" and first.breaker.tier is FallbackTier.TIER_0_PRIMARY
    assert [t.tier for t in state.tiers] == [FallbackTier.TIER_1_SECONDARY, FallbackTier.TIER_0_PRIMARY]
    assert state.drill and [str(t.mode) for t in state.tiers] == ["scheduled", "scheduled"]  # the transition modes
    # restored on its own once the duration was up, and only then probed, validated and ramped
    assert d.restored_at is not None and (d.restored_at - d.injected_at).total_seconds() >= 120
    actions = [str(e.action) for e in state.audit]
    assert actions.index("drill_started") < actions.index("failure_confirmed")
    assert actions.index("drill_restored") < actions.index("primary_healthy") < actions.index("validation")
    handed_back = [c for c in world.changes if c.breaker and c.breaker.mode == "auto"]
    assert handed_back and world.pinned is None and world.weight == 100
    # the status page never moved; only on-call and internal heard of it, each message marked as a drill
    assert all(c.status is None for c in world.changes)
    assert {str(n.audience) for n in world.notifications} == {"oncall", "internal"}
    assert all(n.title.startswith("[DRILL] ") for n in world.notifications)
    assert {"customers", "leadership"} <= set(d.suppressed)
    # what it found: detection at once, the fallback right after, no client errors, no gate
    found = drill_findings(state)
    assert found and found["time_to_detect_s"] == 0 and found["time_to_fallback_s"] is not None
    assert found["client_errors"] == 0 and found["requests"]["tier_1_secondary"] == 900
    assert found["gates"] == [] and found["fallback_tier"] == "tier_1_secondary"
    assert world.postmortems and world.postmortems[0].state.drill_run is not None
    # the search attribute says so, for `governor list` and the Temporal UI's filters
    described = await inc.env.client.get_workflow_handle(inc.workflow_id).describe()
    assert described.typed_search_attributes.get(sa.DRILL) is True


async def test_drill_gates_wait_as_usual_and_the_findings_name_them(incident) -> None:
    world = drill_world(approvals={"approvers": ["alice", "bob"], "gates": ["ramp:10"], "timeout_s": 3600})
    world.other_tiers["tier_5_error"] = TierStats(requests=3)
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE, drill=DrillRequest(duration_s=30))
    waiting = await inc.until(lambda s: bool(s.pending_gates))
    assert waiting.drill_run and waiting.drill_run.restored_at is not None  # the gate comes after the fault is cleared
    await inc.env.sleep(600)
    handle = inc.env.client.get_workflow_handle(inc.workflow_id)
    approval = {"gate": "ramp:10", "gate_id": waiting.pending_gates[0].gate_id, "approver": "bob", "reason": "drill"}
    await handle.signal(Names.APPROVE, approval)
    state = await inc.until(lambda s: s.closed_at is not None)
    found = drill_findings(state)
    assert found is not None and found["client_errors"] == 3
    [gate] = found["gates"]
    assert gate["gate"] == "ramp:10" and gate["decision"] == "approved" and gate["waited_s"] >= 600


async def test_a_policy_may_let_drills_move_the_status_page(incident) -> None:
    world = drill_world(drills={"status_page": True})
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE, drill=DrillRequest(duration_s=10))
    state = await inc.result()
    assert state.drill_run and state.drill_run.status_page
    assert [c.status.component for c in world.changes if c.status] == ["degraded_performance", "operational"]


async def test_an_ordinary_incident_is_no_drill(incident) -> None:
    world = FakeWorld(policy_for(notifications={"routes": EVERYONE}))
    inc = await incident(world)
    await inc.report(failure_type=FailureType.ERROR_SPIKE)
    state = await inc.result()
    assert state.drill_run is None and drill_findings(state) is None
    assert any(c.status is not None for c in world.changes)
    assert "customers" in {str(n.audience) for n in world.notifications}
    described = await inc.env.client.get_workflow_handle(inc.workflow_id).describe()
    assert described.typed_search_attributes.get(sa.DRILL) is None


async def test_on_call_can_force_a_tier_and_end_a_drill_early(incident) -> None:
    world = drill_world()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE, drill=DrillRequest(duration_s=3600))
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    handle = inc.env.client.get_workflow_handle(inc.workflow_id)
    await handle.signal(Names.FORCE_TIER, {"tier": "tier_4_static", "actor": "bob", "reason": "try static too"})
    forced = await inc.until(lambda s: s.tier is FallbackTier.TIER_4_STATIC, step_s=1)
    assert forced.drill_run and forced.drill_run.restored_at is None  # still inside the drill
    await handle.signal(Names.DECLARE_REMEDIATED, {"actor": "carol", "reason": "seen enough"})
    state = await inc.until(lambda s: s.closed_at is not None)
    d = state.drill_run
    assert d and d.ended_early_by == "carol" and d.restored_at and d.restored_at < d.ends_at
    assert state.outcome == "recovered" and state.tier is FallbackTier.TIER_0_PRIMARY
    assert (drill_findings(state) or {})["ended_early_by"] == "carol"


CONTROL = "http://127.0.0.1:9/control"
FAULTS = {"primary-llm": {"url": CONTROL, "inject": {"outage": True}, "clear": {"outage": False}}}


async def test_a_fault_through_the_control_api_is_detected_by_probing_and_cleared_at_the_end(incident) -> None:
    world = drill_world(drills={"faults": FAULTS})
    world.confirmed = True  # the probes see the injected outage
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE, drill=DrillRequest(duration_s=60))
    state = await inc.result()
    assert state.outcome == "recovered" and state.drill_run and state.drill_run.fault_url == CONTROL
    assert [(f.url, f.body) for f in world.faults] == [(CONTROL, {"outage": True}), (CONTROL, {"outage": False})]
    # no breaker forced for the injection: isolation opens it, as for a real failure, after probing confirmed it
    assert world.changes[0].breaker and world.changes[0].breaker.mode == "open"
    actions = [str(e.action) for e in state.audit]
    assert actions.index("drill_started") < actions.index("failure_confirmed") < actions.index("drill_restored")
    assert state.failure_type is FailureType.ERROR_SPIKE  # classified by the probes, not taken from the report
    assert state.drill_run.detected and (drill_findings(state) or {})["detected"] is True


async def test_a_fault_detection_misses_is_cleared_and_reported_as_not_detected(incident) -> None:
    world = drill_world(drills={"faults": FAULTS})  # the probes see nothing
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE, drill=DrillRequest(duration_s=60))
    state = await inc.result()
    assert state.outcome == "false_alarm" and state.drill_run and not state.drill_run.detected
    assert [f.body for f in world.faults] == [{"outage": True}, {"outage": False}]
    assert world.changes == []  # nothing touched the gateway
    from governor.drill import render_drill_findings

    assert any(line.startswith("NOT DETECTED") for line in render_drill_findings(state))
