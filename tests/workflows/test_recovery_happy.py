"""The recovery workflow's paths on the time-skipping server, with scripted activities."""

from __future__ import annotations

from governor.audit import verify_chain
from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase, Severity
from tests.workflows.fakes import FakeWorld


async def test_happy_path_walks_all_nine_phases_and_ramps_back(incident) -> None:
    inc = await incident()
    await inc.report(failure_type=FailureType.ERROR_SPIKE, message="5xx from primary")
    state = await inc.result()

    assert state.outcome == "recovered"
    assert [p.phase for p in state.phases] == list(RecoveryPhase)
    assert state.failure_type is FailureType.ERROR_SPIKE and state.severity is Severity.CRITICAL
    # one gateway change opened the primary's breaker and pinned the secondary with its degradation
    first = inc.world.changes[0]
    assert first.breaker and first.breaker.mode == "open" and first.breaker.tier is FallbackTier.TIER_0_PRIMARY
    assert first.route and first.route.pinned_tier is FallbackTier.TIER_1_SECONDARY
    # the secondary's own level is degraded_l1; a CRITICAL failure takes at least degraded_l2 (the seed's rule)
    assert first.degradation and first.degradation.level is DegradationLevel.DEGRADED_L2
    weights = [c.route.primary_weight for c in inc.world.changes if c.route and c.route.primary_weight is not None]
    assert weights == [0, 10, 25, 50, 100, 100]
    assert inc.world.pinned is None and inc.world.weight == 100
    assert [t.tier for t in state.tiers] == [FallbackTier.TIER_1_SECONDARY, FallbackTier.TIER_0_PRIMARY]
    assert state.mitigated_at and state.recovered_at and state.closed_at
    assert state.postmortem_path and inc.world.postmortems
    assert verify_chain(state.audit) is None
    # on-call paged at fallback and told when it resolved; every send carries an idempotency key
    events = {(n.audience, n.event) for n in inc.world.notifications}
    assert ("oncall", "fallback_active") in events and ("oncall", "resolved") in events
    assert len({n.idempotency_key for n in inc.world.notifications}) == len(inc.world.notifications)


async def test_report_that_does_not_reproduce_closes_as_false_alarm(incident) -> None:
    world = FakeWorld()
    world.confirmed = False
    inc = await incident(world)
    await inc.report(failure_type=FailureType.MODEL_UNAVAILABLE)
    state = await inc.result()
    assert state.outcome == "false_alarm"
    assert world.changes == []  # nothing touched the gateway
    assert any(e.action == "false_alarm" for e in state.audit)


async def test_alert_storm_joins_one_incident(incident) -> None:
    world = FakeWorld()
    world.primary_fixed.clear()
    inc = await incident(world)
    first = await inc.report(failure_type=FailureType.ERROR_SPIKE)
    for _ in range(30):
        again = await inc.report(failure_type=FailureType.ERROR_SPIKE)
        assert again.result_run_id == first.result_run_id
    state = await inc.until(lambda s: s.report_count == 31)
    assert len(state.reports) == 20  # bounded, the count is exact
    world.primary_fixed.set()
    state = await inc.result()
    assert state.outcome == "recovered" and state.report_count == 31


async def test_report_for_a_dependency_the_policy_lacks_fails_with_a_clear_error(incident) -> None:
    from temporalio.client import WorkflowFailureError

    inc = await incident()
    inc.dependency = "no-such-db"
    await inc.report(failure_type=FailureType.DEPENDENCY_DOWN)
    try:
        await inc.result()
    except WorkflowFailureError as err:
        assert "has no dependency 'no-such-db'" in str(err.cause) and "primary-llm" in str(err.cause)
    else:
        raise AssertionError("the workflow should have failed")
