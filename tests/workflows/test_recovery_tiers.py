"""The tier served is the highest tier healthy now, never one known down (time-skipping server, scripted activities).

`FakeWorld.tiers_down` is what `assess_tiers` finds (the real activity is tested against the real gateway and demo
models in tests/activities/test_tiers.py).
"""

from __future__ import annotations

from typing import Any

from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase
from governor.incident import ApprovalInput, IncidentState, Names
from tests.workflows.fakes import FakeWorld, policy_for

STATIC_BODY = {"choices": [{"message": {"role": "assistant", "content": "limited mode"}}]}


def pins(world: FakeWorld) -> list[str | None]:
    """Every tier the workflow pinned, in order."""
    return [
        str(c.route.pinned_tier) if c.route.pinned_tier else None
        for c in world.changes
        if c.route is not None and "pinned_tier" in c.route.model_fields_set
    ]


def served(state: IncidentState) -> list[FallbackTier]:
    return [t.tier for t in state.tiers]


async def approve(inc: Any, gate: str) -> None:
    """Approve the pending request of `gate` by its id, as the CLI does."""
    pending = (await inc.state()).pending(gate)
    assert pending is not None, f"{gate} is not pending"
    approval = ApprovalInput(gate=gate, gate_id=pending.gate_id, approver="alice", reason="nothing better")
    await inc.handle.signal(Names.APPROVE, approval)


async def test_primary_and_secondary_down_ends_on_static_through_its_enter_gate(incident) -> None:
    world = FakeWorld(
        policy_for(
            approvals={"approvers": ["alice"], "gates": ["enter:tier_4_static"], "timeout_s": 300},
        )
    )
    world.tiers_down = {
        "tier_1_secondary": "secondary-llm probe: refused",
        "tier_2_cache": "gateway: error_spike",
        "tier_3_degraded": "gateway: model_unavailable",
    }
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.awaiting_approval)
    assert [g.gate for g in state.pending_gates] == ["enter:tier_4_static"]
    assert pins(world) == []  # never pinned the dead secondary while the gate waits
    await approve(inc, "enter:tier_4_static")
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert served(state) == [FallbackTier.TIER_4_STATIC] and world.pinned == "tier_4_static"
    assert state.degradation_level is DegradationLevel.EMERGENCY
    assert set(state.tiers_down) == {"tier_1_secondary", "tier_2_cache", "tier_3_degraded"}
    assert any(e.action == "tiers_checked" for e in state.audit)
    world.primary_down = False
    world.tiers_down = {}
    state = await inc.result()
    assert state.outcome == "recovered" and "tier_1_secondary" not in pins(world)


async def test_secondary_recovering_first_moves_the_service_up_once_stable(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"stable_s": 60, "reassess_s": 10}))
    world.tiers_down = {"tier_1_secondary": "refused", "tier_2_cache": "down", "tier_3_degraded": "down"}
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert world.pinned == "tier_4_static"
    world.tiers_down = {}  # the secondary (and the rest) come back while the primary is still down
    await inc.env.sleep(35)
    assert world.pinned == "tier_4_static", "moved up before the secondary was stable for stable_s"
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_1_SECONDARY, step_s=5, limit=20)
    assert world.pinned == "tier_1_secondary" and state.phase is RecoveryPhase.REMEDIATION
    # (degradation there: see test_recovery_severity)
    world.primary_down = False
    state = await inc.result()
    assert state.outcome == "recovered"
    assert served(state) == [FallbackTier.TIER_4_STATIC, FallbackTier.TIER_1_SECONDARY, FallbackTier.TIER_0_PRIMARY]


async def test_a_flapping_secondary_is_never_moved_up_to(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"stable_s": 30, "reassess_s": 10}))
    world.down = lambda w: {"tier_1_secondary": "refused"} if w.assessments % 2 else {}  # down one check, up the next
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    await inc.env.sleep(600)
    assert world.assessments > 30
    assert "tier_1_secondary" not in pins(world) and world.pinned == "tier_2_cache"
    world.primary_down = False
    assert (await inc.result()).outcome == "recovered"


async def test_the_pinned_tier_failing_during_remediation_moves_the_service_down(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"reassess_s": 10}))
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert world.pinned == "tier_1_secondary"
    world.tiers_down = {"tier_1_secondary": "gateway: error_spike, error rate 40%"}
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_2_CACHE, limit=10)
    assert world.pinned == "tier_2_cache" and state.tiers_down == world.tiers_down
    world.primary_down = False
    world.tiers_down = {}
    assert (await inc.result()).outcome == "recovered"


async def test_auto_failover_off_asks_before_pinning_the_fallback(incident) -> None:
    world = FakeWorld(policy_for(auto_failover=False))
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.awaiting_approval)
    assert [g.gate for g in state.pending_gates] == ["enter:tier_1_secondary"] and pins(world) == []
    await approve(inc, "enter:tier_1_secondary")
    state = await inc.result()
    assert state.outcome == "recovered" and pins(world)[0] == "tier_1_secondary"


async def cache_pinned(incident: Any, world: FakeWorld) -> tuple[Any, IncidentState]:
    """The primary and the secondary down: the cache pinned, and nothing shown as served below it yet."""
    world.tiers_down = {"tier_1_secondary": "secondary-llm probe: refused"}
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert world.pinned == "tier_2_cache" and state.served_tier is None
    return inc, state


async def test_clients_served_below_the_pin_are_what_the_incident_shows_and_the_gate_is_asked(incident) -> None:
    """The cache pinned but missing: the gateway answers most requests from the degraded tier on its own, so the
    level, status and notifications follow that tier and its enter gate is asked; the route stays the pin."""
    world = FakeWorld(
        policy_for(
            approvals={"approvers": ["alice"], "gates": ["enter:tier_3_degraded"], "timeout_s": 300},
            # Off the 10 s grid of the probe's retries (QUICK's maximum interval): with both at 10 s the probe's last
            # retry succeeded a few ms before the re-check timer was due, the workflow task cancelled that timer after
            # it fired, and the time-skipping server refused the completion and stranded the run ("invalid history
            # builder state for action", temporalio/sdk-java#3088; 1 run in 6 on a loaded machine). A real server
            # takes that cancel.
            recovery_checks={"reassess_s": 13},
        )
    )
    inc, state = await cache_pinned(incident, world)
    cache_level = state.degradation_level
    world.served = {"tier_2_cache": 20, "tier_3_degraded": 180}
    state = await inc.until(lambda s: s.awaiting_approval, limit=10)
    assert [g.gate for g in state.pending_gates] == ["enter:tier_3_degraded"]
    degraded = world.policy.degradation.level_for(FallbackTier.TIER_3_DEGRADED, critical=False)
    assert state.served_tier is FallbackTier.TIER_3_DEGRADED and state.degradation_level is degraded
    assert degraded is not cache_level and world.pinned == "tier_2_cache"  # shown, not re-pinned
    shown = world.changes[-1]
    assert shown.route is None and shown.degradation and shown.degradation.level is degraded and shown.status
    assert any(e.action == "tier_served" and e.details["served"] == "tier_3_degraded" for e in state.audit)
    assert any(n.event == "served:tier_3_degraded" for n in state.notifications)
    await approve(inc, "enter:tier_3_degraded")
    world.served = {"tier_2_cache": 150, "tier_3_degraded": 10}  # the cache warmed up: the pin serves again
    state = await inc.until(lambda s: s.served_tier is None, limit=10)
    assert state.degradation_level is cache_level and state.pending_gates == []
    world.primary_down = False
    world.tiers_down = {}
    assert (await inc.result()).outcome == "recovered"


async def test_answers_the_failed_tiers_gave_before_they_failed_do_not_hide_what_clients_get(incident) -> None:
    """Pin first pins seconds after the report, so the gateways' window still holds the answers the primary gave while
    it was healthy: they are left out, and the tier clients get now shows at the first re-check."""
    world = FakeWorld(policy_for(recovery_checks={"reassess_s": 13}))  # off the probe retries' 10 s grid
    inc, state = await cache_pinned(incident, world)
    world.served = {"tier_0_primary": 150, "tier_3_degraded": 100}  # the primary's answers are from before it failed
    state = await inc.until(lambda s: s.served_tier is not None, limit=4)
    assert state.served_tier is FallbackTier.TIER_3_DEGRADED and world.pinned == "tier_2_cache"
    shown = next(e for e in state.audit if e.action == "tier_served")
    assert shown.details["served"] == "tier_3_degraded" and shown.details["answers"]["tier_0_primary"] == 150
    world.primary_down = False
    world.tiers_down = {}
    world.served = {"tier_0_primary": 100}
    assert (await inc.result()).outcome == "recovered"
