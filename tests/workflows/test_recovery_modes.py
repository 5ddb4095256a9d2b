"""Transition modes and the blast radius in the recovery workflow (time-skipping server, scripted activities).

Every fake here returns or raises at once (`primary_down` instead of `primary_fixed`): nothing can hang."""

from __future__ import annotations

import contextlib

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from cli.render import render_incident
from governor.audit import AuditAction
from governor.blast_radius import AffectedService, BlastRadius
from governor.details import details_markdown
from governor.enums import FailureType, FallbackTier, NotificationAudience, RecoveryPhase, Severity, TransitionMode
from governor.incident import ApprovalInput, ForceTierInput, IncidentState, Names
from governor.postmortem import postmortem_json, render_postmortem
from tests.workflows.fakes import FakeWorld, policy_for
from tests.workflows.test_recovery_controls import update
from workflows.recovery import IncidentRecoveryWorkflow

ROUTES = {
    "oncall": [{"type": "webhook", "url": "http://127.0.0.1:1/oncall"}],
    "leadership": [{"type": "webhook", "url": "http://127.0.0.1:1/leadership"}],
    "internal": [{"type": "webhook", "url": "http://127.0.0.1:1/internal"}],
}


@pytest.fixture
async def incident(incident):
    """The shared factory, plus a teardown that ends each incident even when its test failed half-way: a workflow
    left retrying a down primary would otherwise hold up the time-skipping server for the tests after it."""
    made = []

    async def make(world: FakeWorld | None = None):
        inc = await incident(world)
        made.append(inc)
        return inc

    yield make
    for inc in made:
        inc.world.primary_down, inc.world.tiers_down = False, {}
        with contextlib.suppress(Exception):
            await inc.env.client.get_workflow_handle(inc.workflow_id).terminate("test over")


def world_with(gates: list[str] | None = None, routes: dict | None = None) -> FakeWorld:
    return FakeWorld(
        policy_for(
            approvals={"approvers": ["alice", "bob"], "gates": gates or [], "timeout_s": 300},
            notifications={"routes": routes if routes is not None else ROUTES},
        )
    )


def modes(state: IncidentState) -> list[tuple[str, str | None, str]]:
    return [(s.tier.value, s.mode.value if s.mode else None, s.actor) for s in state.tiers]


def transition_sends(world: FakeWorld) -> list[tuple[str, str]]:
    return [(str(n.audience), n.title) for n in world.notifications if n.event == "transition"]


def two_services(dependency: str = "primary-llm") -> BlastRadius:
    return BlastRadius(
        dependency=dependency,
        hosts=["127.0.0.1:9101"],
        services=[
            AffectedService(service="chat", dependencies=[dependency], traffic_share=1.0, rps_at_risk=20.0),
            AffectedService(
                service="search",
                dependencies=["shared-model"],
                why="the same upstream host 127.0.0.1:9101",
                traffic_share=0.5,
                rps_at_risk=4.0,
                features=["search"],
            ),
        ],
    )


async def test_automatic_fallback_and_restore_are_recorded_and_told_on_monitoring(incident) -> None:
    world = world_with()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.result()
    assert state.outcome == "recovered"
    assert modes(state) == [("tier_1_secondary", "automatic", "system"), ("tier_0_primary", "automatic", "system")]
    assert not any(s.human for s in state.tiers)
    tier_audits = [e for e in state.audit if e.action == AuditAction.TIER]
    assert [e.details["mode"] for e in tier_audits] == ["automatic", "automatic"]
    # the seed's channel for automatic is monitoring: the internal audience, as the policy routes it
    assert [a for a, _ in transition_sends(world)] == ["internal", "internal"]
    assert "automatic transition to tier_1_secondary" in transition_sends(world)[0][1]


async def test_no_route_for_the_modes_audience_means_no_transition_send(incident) -> None:
    world = world_with(routes={"oncall": ROUTES["oncall"]})
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.result()
    assert state.outcome == "recovered" and transition_sends(world) == []
    assert not [n for n in state.notifications if n.event == "transition"], "nothing recorded as failed either"


async def test_a_gated_fallback_approved_by_on_call_is_approval_required_and_tells_management(incident) -> None:
    world = world_with(gates=["enter:tier_1_secondary"])
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.pending("enter:tier_1_secondary") is not None, step_s=1)

    await update(inc, Names.APPROVE, ApprovalInput(gate="enter:tier_1_secondary", approver="alice", reason="ok"))
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_1_SECONDARY, step_s=1)
    span = state.tiers[-1]
    assert (span.mode, span.actor, span.human) == (TransitionMode.APPROVAL_REQUIRED, "alice", True)
    assert not state.approved_into, "the approval is spent on the transition it held"
    await inc.until(lambda s: any(a == "leadership" for a, _ in transition_sends(world)), step_s=1, limit=20)
    details = details_markdown(state, world.policy)
    assert (
        "**Transition** into `tier_1_secondary`: `approval_required` by alice (human; told on `management`)" in details
    )
    world.primary_down = False
    state = await inc.result()
    assert modes(state)[-1] == ("tier_0_primary", "automatic", "system")
    shown = render_incident(state)
    assert "Tier transitions" in shown
    row = next(line for line in shown.splitlines() if "approval_required" in line)
    assert "tier_1_secondary" in row and "alice" in row and "yes" in row and "management" in row
    md = render_postmortem(state, world.policy)
    assert "## Tier transitions" in md
    assert "| tier_1_secondary | tier_0_primary | approval_required | alice | yes | management |" in md, md
    (first, second) = postmortem_json(state, world.policy)["tier_transitions"]
    assert first["mode"] == "approval_required" and first["human"] and second["channel"] == "monitoring"


async def test_force_tier_is_manual_by_the_human_who_forced_it_and_pages_on_call(incident) -> None:
    world = world_with()
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    await update(inc, Names.FORCE_TIER, ForceTierInput(tier=FallbackTier.TIER_2_CACHE, actor="bob", reason="flaky"))
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_2_CACHE, step_s=1)
    assert modes(state)[-1] == ("tier_2_cache", "manual", "bob") and state.tiers[-1].human
    await inc.until(
        lambda s: ("oncall", "chat: manual transition to tier_2_cache") in transition_sends(world), step_s=1
    )
    world.primary_down = False
    assert (await inc.result()).outcome == "recovered"


async def test_landing_on_static_is_an_emergency_told_on_every_internal_channel(incident) -> None:
    world = world_with()
    world.primary_down = True
    world.tiers_down = {t: "down" for t in ("tier_1_secondary", "tier_2_cache", "tier_3_degraded")}
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_4_STATIC, step_s=1)
    assert modes(state) == [("tier_4_static", "emergency", "system")]
    state = await inc.until(lambda s: len(transition_sends(world)) >= 3, step_s=1, limit=20)
    assert sorted(a for a, _ in transition_sends(world)) == ["internal", "leadership", "oncall"]
    world.primary_down, world.tiers_down = False, {}
    assert (await inc.result()).outcome == "recovered"


async def test_two_services_hit_raise_the_severity_one_step_and_the_incident_says_so(incident) -> None:
    world = world_with()
    world.classification = world.classification.model_copy(update={"severity": Severity.HIGH})  # type: ignore[union-attr]
    world.blast = two_services()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.result()
    assert state.severity is Severity.CRITICAL
    assert state.blast_radius is not None and [s.service for s in state.blast_radius.services] == ["chat", "search"]
    (entry,) = [e.details for e in state.audit if e.action == AuditAction.BLAST_RADIUS]
    assert entry["severity_raised"] == "HIGH -> CRITICAL" and entry["rps_at_risk"] == 24.0
    assert "2 services hit" in entry["why"]
    assert state.impact is not None and "2 services hit, 24.0 req/s at risk" in state.impact.description
    assert state.failure_type is FailureType.ERROR_SPIKE  # the fake classifies it so
    assert state.impact.estimated_recovery_minutes == FailureType.ERROR_SPIKE.typical_recovery_minutes
    assert state.impact.affected_features == [], "restored: the primary limits nothing"
    shown = render_incident(state)
    assert "blast radius" in shown and "2 services hit (chat 100%, search 50% of traffic); 24.0 req/s at risk" in shown
    assert "estimated recovery" in shown and "impact" in shown
    search = next(line for line in shown.splitlines() if line.strip().startswith("search"))
    assert "the same upstream host 127.0.0.1:9101" in search and "50%" in search and "4.00" in search
    md = render_postmortem(state, world.policy)
    assert "## Impact and blast radius" in md and "| search | the same upstream host 127.0.0.1:9101 |" in md
    assert "- Blast radius: 2 services hit" in md and "(estimated 3 min)" in md
    assert "**Blast radius**: 2 services hit" in details_markdown(state, world.policy)
    assert postmortem_json(state, world.policy)["blast_radius"]["services"][1]["service"] == "search"


async def test_one_service_hit_leaves_the_severity_and_the_fallback_carries_its_limited_features(incident) -> None:
    world = world_with()
    world.classification = world.classification.model_copy(update={"severity": Severity.HIGH})  # type: ignore[union-attr]
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert state.severity is Severity.HIGH
    assert state.impact is not None and "analytics" in state.impact.affected_features
    assert state.impact.description.startswith("chat served by tier_1_secondary at degraded_l1")
    assert f"**Impact**: {state.impact.description}" in details_markdown(state, world.policy)
    assert "affected features" in render_incident(state) and "analytics" in render_incident(state)
    world.primary_down = False
    assert (await inc.result()).outcome == "recovered"


async def test_a_blast_radius_that_cannot_be_assessed_never_holds_up_the_recovery(incident) -> None:
    world = world_with()
    world.blast_fails = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.result()
    assert state.outcome == "recovered" and state.blast_radius is None
    failed = [e.details for e in state.audit if e.action == AuditAction.ACTIVITY_FAILED]
    assert failed and failed[0]["activity"] == "assess_blast_radius" and "unreachable" in failed[0]["error"]
    assert state.impact is not None, "the impact is still recorded from the tier served"


async def test_a_drill_marks_every_transition_scheduled(incident, time_skipping_env) -> None:
    from temporalio.common import WorkflowIDConflictPolicy

    from governor.incident import WORKFLOW_NAME, IncidentReport, RecoveryInput

    world = world_with()
    inc = await incident(world)
    drill = IncidentState(incident_id="drill-chat", service="chat", dependency="primary-llm", drill=True)
    handle = await time_skipping_env.client.start_workflow(
        WORKFLOW_NAME,
        RecoveryInput(service="chat", dependency="primary-llm", state=drill),
        id=inc.workflow_id,
        task_queue=inc.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=Names.REPORT,
        start_signal_args=[IncidentReport(service="chat", dependency="primary-llm", source="drill")],
        result_type=IncidentState,
    )
    state = await handle.result()
    assert [m for _, m, _ in modes(state)] == ["scheduled", "scheduled"]
    assert {a for a, _ in transition_sends(world)} == {str(NotificationAudience.INTERNAL)}, "calendar: internal only"


async def test_an_approved_exit_gate_makes_the_return_to_the_primary_approval_required(incident) -> None:

    world = world_with(gates=["exit:tier_1_secondary"])
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.pending("exit:tier_1_secondary") is not None, step_s=1)
    await update(inc, Names.APPROVE, ApprovalInput(gate="exit:tier_1_secondary", approver="bob", reason="vendor ok"))
    state = await inc.result()
    assert modes(state) == [("tier_1_secondary", "automatic", "system"), ("tier_0_primary", "approval_required", "bob")]
    assert ("leadership", "chat: approval_required transition to tier_0_primary") in transition_sends(world)


async def test_an_incident_with_modes_and_a_blast_radius_replays_deterministically(incident) -> None:
    """The new paths (the blast radius beside the breaker change, the patched transition records) replay as run."""
    world = world_with(gates=["enter:tier_1_secondary"])
    world.blast = two_services()
    inc = await incident(world)
    handle = await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.pending("enter:tier_1_secondary") is not None, step_s=1)
    await update(inc, Names.APPROVE, ApprovalInput(gate="enter:tier_1_secondary", approver="alice", reason="ok"))
    state = await inc.result()
    assert [m for _, m, _ in modes(state)] == ["approval_required", "automatic"] and state.blast_radius is not None
    history = await handle.fetch_history()
    markers = {
        payload.data
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        for payloads in e.marker_recorded_event_attributes.details.values()
        for payload in payloads.payloads
    }
    assert any(b"seed-transition-modes" in m for m in markers) and any(b"blast-radius" in m for m in markers)
    replayer = Replayer(workflows=[IncidentRecoveryWorkflow], data_converter=pydantic_data_converter)
    assert (await replayer.replay_workflow(history)).replay_failure is None
