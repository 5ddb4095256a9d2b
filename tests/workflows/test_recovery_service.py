"""One incident per service: a second dependency failing joins it, and the incident restores each failed tier
before it closes (time-skipping server, scripted activities; the real stack in tests/e2e/test_compound.py)."""

from __future__ import annotations

from governor.audit import AuditAction
from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase
from governor.incident import ControlInput, IncidentState, Names
from governor.policy import parse_policy
from tests.workflows.fakes import FakeWorld, policy_for
from tests.workflows.test_recovery_tiers import pins, served


def actions(state: IncidentState, action: AuditAction) -> list[dict[str, object]]:
    return [e.details for e in state.audit if e.action == action]


def breakers(world: FakeWorld) -> list[tuple[str, str]]:
    return [(str(c.breaker.tier), c.breaker.mode) for c in world.changes if c.breaker is not None]


async def test_the_secondary_failing_too_joins_the_incident_and_is_restored_after_the_primary(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"reassess_s": 10, "stable_s": 30}))
    world.primary_down = True
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert world.pinned == "tier_1_secondary"
    # the secondary dies too: its report reaches the same incident (one writer of the route), not a second one
    world.tiers_down = {"tier_1_secondary": "secondary-llm probe: refused"}
    world.deps_down = {"secondary-llm"}
    await inc.report(dependency="secondary-llm", failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_2_CACHE, step_s=2, limit=30)
    assert state.failed_dependencies == ["primary-llm", "secondary-llm"]
    assert ("tier_1_secondary", "open") in breakers(world) and world.pinned == "tier_2_cache"
    assert [d["dependency"] for d in actions(state, AuditAction.FAILURE_CONFIRMED) if d.get("joined")] == [
        "secondary-llm"
    ]
    assert state.degradation_level is DegradationLevel.DEGRADED_L2
    # the primary comes back first: it is validated, ramped from the cache and serves; the secondary stays isolated
    world.primary_down = False
    state = await inc.until(lambda s: s.restored_dependencies == ["primary-llm"], limit=100)
    assert state.closed_at is None and state.phase is RecoveryPhase.REMEDIATION
    assert state.failed_dependencies == ["secondary-llm"] and state.failed_tier is FallbackTier.TIER_1_SECONDARY
    assert world.pinned is None and world.weight == 100 and state.tier is FallbackTier.TIER_0_PRIMARY
    assert state.degradation_level is DegradationLevel.NORMAL
    assert breakers(world)[-1] == ("tier_0_primary", "auto"), "the secondary's breaker stays forced open"
    # then the secondary: validated, its breaker handed back; no second ramp (it carries no share of traffic)
    world.deps_down, world.tiers_down = set(), {}
    state = await inc.result()
    assert state.outcome == "recovered" and state.failed_dependencies == []
    assert world.validated == ["primary-llm", "secondary-llm"]
    assert breakers(world)[-1] == ("tier_1_secondary", "auto")
    assert [d["percent"] for d in actions(state, AuditAction.RAMP_STEP)] == [10, 25, 50, 100]
    assert served(state) == [FallbackTier.TIER_1_SECONDARY, FallbackTier.TIER_2_CACHE, FallbackTier.TIER_0_PRIMARY]


async def test_a_secondary_only_failure_never_takes_traffic_off_the_healthy_primary(incident) -> None:
    world = FakeWorld()
    world.deps_down = {"secondary-llm"}
    inc = await incident(world)
    await inc.report(dependency="secondary-llm", failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert state.failed_tier is FallbackTier.TIER_1_SECONDARY and state.tier is FallbackTier.TIER_0_PRIMARY
    assert world.weight == 100 and world.pinned is None, "a pinned primary with weight 0 sends all to the secondary"
    assert state.degradation_level is DegradationLevel.NORMAL
    assert ("tier_1_secondary", "open") in breakers(world)
    world.deps_down = set()
    state = await inc.result()
    assert state.outcome == "recovered" and world.validated == ["secondary-llm"]
    assert not actions(state, AuditAction.RAMP_STEP), "nothing to ramp: the primary served all along"
    assert all(c.route is None or c.route.primary_weight in (None, 100) for c in world.changes)
    assert "tier_1_secondary" not in pins(world)


async def test_the_primary_failing_during_a_secondary_incident_becomes_what_is_restored_first(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"reassess_s": 10}))
    world.deps_down = {"secondary-llm"}
    world.tiers_down = {"tier_1_secondary": "refused"}
    inc = await incident(world)
    await inc.report(dependency="secondary-llm", failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    world.primary_down = True
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.tier is FallbackTier.TIER_2_CACHE, step_s=2, limit=30)
    assert state.failed_tier is FallbackTier.TIER_0_PRIMARY and state.restoring == "primary-llm"
    assert state.failed_dependencies == ["primary-llm", "secondary-llm"]
    world.primary_down = False
    world.deps_down, world.tiers_down = set(), {}
    state = await inc.result()
    assert state.outcome == "recovered" and state.failed_dependencies == []
    assert world.validated[0] == "primary-llm" and "secondary-llm" in state.restored_dependencies


async def test_a_report_of_an_unknown_dependency_is_refused_and_the_incident_goes_on(incident) -> None:
    world = FakeWorld()
    world.primary_fixed.clear()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    await inc.report(dependency="no-such-db", failure_type=FailureType.TIMEOUT)
    state = await inc.until(lambda s: any("no-such-db" in str(d) for d in actions(s, AuditAction.REFUSED)), step_s=1)
    assert state.failed_dependencies == ["primary-llm"] and not state.suspects
    world.primary_fixed.set()
    assert (await inc.result()).outcome == "recovered"


async def test_a_flapping_primary_stops_being_retried_and_waits_for_a_human(incident) -> None:
    world = FakeWorld(policy_for(recovery_checks={"max_flaps": 3}))
    world.validations = [world.validation.FAIL] * 3
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.flapping, limit=100)
    assert state.flaps == 3 and state.awaiting_human and state.phase is RecoveryPhase.REMEDIATION
    assert actions(state, AuditAction.FLAPPING)
    assert any(n.event == "escalation" and "flapping" in n.message for n in world.notifications)
    assert not actions(state, AuditAction.RAMP_STEP), "never ramped while it flapped"
    await inc.env.sleep(600)
    assert len(world.validated) == 3, "no retry without a human"
    assert inc.handle is not None
    await inc.handle.signal(Names.DECLARE_REMEDIATED, ControlInput(actor="alice", reason="vendor fixed it"))
    state = await inc.result()
    assert state.outcome == "recovered" and not state.flapping


async def test_a_critical_failure_degrades_to_at_least_l2_unless_the_policy_relaxes_it(incident) -> None:
    world = FakeWorld()  # classifies CRITICAL
    world.primary_fixed.clear()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert state.tier is FallbackTier.TIER_1_SECONDARY and state.degradation_level is DegradationLevel.DEGRADED_L2
    world.primary_fixed.set()
    await inc.result()
    relaxed = FakeWorld(policy_for(degradation={"critical_floor": None}))
    relaxed.primary_fixed.clear()
    inc = await incident(relaxed)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    assert state.degradation_level is DegradationLevel.DEGRADED_L1
    relaxed.primary_fixed.set()
    await inc.result()


async def test_two_failed_dependencies_behind_the_primary_are_both_probed_before_one_ramp(incident) -> None:
    data = policy_for().model_dump(mode="json")
    data["dependencies"].append({"name": "vector-db", "type": "database", "health_url": "http://127.0.0.1:9/health"})
    world = FakeWorld(parse_policy(data, "test-policy"))
    world.deps_down = {"vector-db"}
    world.primary_fixed.clear()
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    await inc.until(lambda s: s.phase is RecoveryPhase.REMEDIATION)
    await inc.report(dependency="vector-db", failure_type=FailureType.DEPENDENCY_DOWN)
    state = await inc.until(lambda s: "vector-db" in s.failed_dependencies, step_s=1)
    world.primary_fixed.set()  # the model is back, its database is not: no validation, no ramp yet
    state = await inc.until(lambda s: s.healthy_again == ["primary-llm"], step_s=1)
    await inc.env.sleep(120)
    state = await inc.state()
    assert state.phase is RecoveryPhase.REMEDIATION and world.validated == []
    world.deps_down = set()
    state = await inc.result()
    assert state.outcome == "recovered" and sorted(state.restored_dependencies) == ["primary-llm", "vector-db"]
    assert [d["percent"] for d in actions(state, AuditAction.RAMP_STEP)] == [10, 25, 50, 100]
