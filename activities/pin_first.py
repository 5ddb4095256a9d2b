"""Pin first: a new incident's report -> pinned tier in one activity, so a storm's pins wait for one round trip
through the task queue instead of five (load_policy, confirm_failure, the breaker beside assess_blast_radius,
assess_tiers, the pin).

The steps are the recovery activities themselves, called in order inside this one attempt: any `PinFirstSteps`
(the real `RecoveryActivities`, or the workflow tests' and the benchmark's fakes), so all three take the same path.
Nothing changes in a gateway until the failure is confirmed and the tiers are known; the one gateway change (the
failed tier's breaker open, and the best tier's pin with its degradation and status page when that tier needs no
approval) comes last and is read back from every replica. A failed change is returned, not retried here: the
workflow applies it again as its own activity (with that activity's errors and retries), so a retry of this activity
never re-decides after a gateway was changed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import structlog
from temporalio import activity

from governor.actions import (
    Activity,
    AssessTiersInput,
    BlastRadiusInput,
    ConfirmFailureInput,
    ConfirmFailureResult,
    FallBackFirstInput,
    FallBackFirstResult,
    GatewayChange,
    GatewayChangeResult,
    LoadPolicyInput,
)
from governor.blast_radius import BlastRadius
from governor.pin_first import plan_first_pin
from governor.policy import ServicePolicy
from governor.tier_health import TierAssessment


class PinFirstSteps(Protocol):
    """The activities pin first runs, by their own contracts."""

    async def load_policy(self, request: LoadPolicyInput) -> ServicePolicy: ...

    async def confirm_failure(self, request: ConfirmFailureInput) -> ConfirmFailureResult: ...

    async def assess_blast_radius(self, request: BlastRadiusInput) -> BlastRadius: ...

    async def assess_tiers(self, request: AssessTiersInput) -> TierAssessment: ...

    async def apply_gateway_change(self, change: GatewayChange) -> GatewayChangeResult: ...


async def run_pin_first(steps: PinFirstSteps, request: FallBackFirstInput) -> FallBackFirstResult:
    """Policy, confirmation, blast radius beside the tier check, then one gateway change; what each found."""
    log = structlog.get_logger("governor.activities").bind(
        incident_id=request.incident_id, service=request.service, dependency=request.dependency, activity="pin_first"
    )
    policy = await steps.load_policy(LoadPolicyInput(service=request.service))
    result = FallBackFirstResult(policy=policy)
    if request.dependency not in {d.name for d in policy.dependencies}:
        return result  # the workflow fails the incident, naming the dependencies the policy knows
    report = request.report
    if report.manual:  # `governor failover`: a human saw it fail
        result.confirmation = ConfirmFailureResult(confirmed=True, reason=f"manual report from {report.source}")
    else:
        result.confirmation = await steps.confirm_failure(
            ConfirmFailureInput(policy=policy, dependency=request.dependency, report=report)
        )
    if not result.confirmation.confirmed:
        return result
    radius, assessment = await asyncio.gather(
        steps.assess_blast_radius(BlastRadiusInput(policy=policy, dependency=request.dependency)),
        steps.assess_tiers(AssessTiersInput(policy=policy)),
        return_exceptions=True,
    )
    if isinstance(assessment, BaseException):
        raise assessment  # nothing changed yet: the activity retries
    result.assessment = assessment
    if isinstance(radius, BaseException):  # advice, never a blocker: recorded, and the pin goes on
        result.radius_error = str(radius) or type(radius).__name__
        log.warning("blast radius not assessed; pinning without it", error=result.radius_error)
    else:
        result.radius = radius
    plan = plan_first_pin(
        policy, request.dependency, report, result.confirmation.classification, result.radius, assessment
    )
    result.change = GatewayChange(
        gateways=policy.gateways,
        service=request.service,
        incident_id=request.incident_id,
        breaker=plan.breaker,
        route=plan.route,
        degradation=plan.degradation,
        status=plan.status,
    )
    try:
        result.applied = await steps.apply_gateway_change(result.change)
    except Exception as err:  # the workflow applies it again as its own activity, which retries or fails loudly
        result.change_error = str(err) or type(err).__name__
        log.warning("first gateway change failed; the workflow applies it again", error=result.change_error)
        return result
    log.info("pinned first", tier=str(plan.tier) if plan.tier else None, breaker=str(plan.breaker.tier))
    return result


class PinFirstActivities:
    """A mixin of `RecoveryActivities`: the pin first activity over its own steps."""

    @activity.defn(name=Activity.FALL_BACK_FIRST)
    async def fall_back_first(self, request: FallBackFirstInput) -> FallBackFirstResult:
        """A new incident's report -> pinned tier in one round trip (the module's docstring says how)."""
        return await run_pin_first(cast(PinFirstSteps, self), request)
