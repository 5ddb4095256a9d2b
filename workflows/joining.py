"""The recovery workflow's other failures: one incident per service, whatever else fails while it is open.

A mixin of IncidentRecoveryWorkflow. The incident owns the service's gateway route (its workflow id is per service),
so a failure of another dependency joins it instead of opening a second writer: the `report` signal queues it as a
suspect, and the runbook confirms it here at its next safe point (detection's re-probe), opens the failed tier's
breaker and moves the service off that tier if it serves. A report of the dependency being restored, arriving
while it is validated or ramped, is confirmed the same way: a confirmed failure then rolls back at once and counts
as a flap. After `recovery_checks.max_flaps` flaps the incident stops retrying: `flapping`, escalated, waiting for a
human to declare the dependency fixed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.actions import (
        Activity,
        BreakerChange,
        ConfirmFailureInput,
        ConfirmFailureResult,
        StatusChange,
    )
    from governor.audit import AuditAction
    from governor.enums import FallbackTier, NotificationAudience
    from governor.incident import RECOVERING_PHASES
    from governor.pin_first import route_for

from workflows.runbook import Runbook

SERVICE_INCIDENT_PATCH = "service-incident"
"""workflow.patched id: histories recorded before incidents were per service replay without joined failures."""


class FailedAgain(Exception):
    """The dependency being restored failed again (confirmed) during validation or the ramp; `metrics` are the
    confirmation's (the rollback's audit entry carries them, as a regressed ramp step's does)."""

    def __init__(self, reason: str, metrics: dict[str, float]) -> None:
        super().__init__(reason)
        self.metrics = metrics


class Joining(Runbook):
    """Failures of other dependencies joining the open incident; the flap count."""

    def _mark_failed(self, dependency: str) -> None:
        """Add a confirmed failure; the list stays in tier order, so its head is the dependency to restore."""
        assert self.policy
        if dependency not in self.s.failed_dependencies:
            self.s.failed_dependencies.append(dependency)
        if dependency in self.s.restored_dependencies:
            self.s.restored_dependencies.remove(dependency)
        order = {t: i for i, t in enumerate(self.policy.tiers)}
        self.s.failed_dependencies.sort(key=lambda d: order.get(self.policy.failed_tier(d), len(order)))  # type: ignore[union-attr]
        self.s.failed_tier = self.policy.failed_tier(self.s.restoring)
        self.s.healthy_since.pop(self.policy.failed_tier(dependency), None)  # its healthy streak ended with it
        if dependency in self.s.healthy_again:
            self.s.healthy_again.remove(dependency)

    def _mark_restored(self, dependency: str) -> None:
        assert self.policy
        if dependency in self.s.failed_dependencies:
            self.s.failed_dependencies.remove(dependency)
            self.s.restored_dependencies.append(dependency)
        if self.s.failed_dependencies:
            self.s.failed_tier = self.policy.failed_tier(self.s.restoring)

    async def _take_suspects(self) -> None:
        """Confirm every queued suspect. Raises FailedAgain when the dependency being restored failed again while
        it was validated or ramped (the caller rolls back); the queue is empty when it returns."""
        if not self.s.suspects:
            return
        if not workflow.patched(SERVICE_INCIDENT_PATCH):
            self.s.suspects.clear()
            return
        assert self.policy
        failed_again: FailedAgain | None = None
        restoring_before = self.s.restoring
        while self.s.suspects:
            report = self.s.suspects.pop(0)
            dep = report.dependency
            if dep not in {d.name for d in self.policy.dependencies}:
                known = ", ".join(d.name for d in self.policy.dependencies)
                self._audit(
                    AuditAction.REFUSED,
                    actor=report.source,
                    details={"control": "report", "reason": f"{dep!r} is no dependency of {self.s.service} ({known})"},
                )
                continue
            if report.manual:
                confirmed, why, classification = True, f"manual report from {report.source}", None
            else:
                result = await self._act(
                    Activity.CONFIRM_FAILURE,
                    ConfirmFailureInput(policy=self.policy, dependency=dep, report=report),
                    ConfirmFailureResult,
                    f"confirm {report.failure_type or 'failure'} on {dep}",
                    within=timedelta(seconds=120),  # as detection's: the re-probes back off between looks
                )
                confirmed, why, classification = result.confirmed, result.reason, result.classification
            if not confirmed:
                self._audit(AuditAction.FALSE_ALARM, details={"dependency": dep, "reason": why})
                continue
            severity = classification.severity if classification else report.severity
            if severity is not None and (self.s.severity is None or severity.rank > self.s.severity.rank):
                self.s.severity = severity
            failure_type = (classification.failure_type if classification else None) or report.failure_type
            tier = self.policy.failed_tier(dep)
            self._audit(
                AuditAction.FAILURE_CONFIRMED,
                details={
                    "dependency": dep,
                    "tier": str(tier),
                    "failure_type": str(failure_type or ""),
                    "reason": (classification.reason if classification else "") or report.message or why,
                    "joined": True,
                },
            )
            if dep == restoring_before and self.s.phase in RECOVERING_PHASES:
                failed_again = FailedAgain(
                    f"{restoring_before} failed again during {self.s.phase}: "
                    + ((classification.reason if classification else "") or report.message or why),
                    dict(classification.metrics) if classification else {},
                )
            self._mark_failed(dep)
            await self._gateway(f"open breaker {tier}", breaker=BreakerChange(tier=tier, mode="open"))
            self._audit(AuditAction.BREAKER_OPENED, details={"tier": str(tier), "dependency": dep})
            self._notify(
                f"dependency_failed:{dep}",
                [NotificationAudience.ONCALL, NotificationAudience.INTERNAL],
                f"{self.s.service}: {dep} failed too",
                f"{failure_type or 'failure'} on {dep} ({tier}) joined the open incident: {why}",
            )
        if failed_again is not None:
            raise failed_again
        if self.s.tier in self._failed_tiers() and not self.s.tier_forced:
            await self._recheck_tiers()  # the tier serving failed: move off it now

    def _normal_chain(self) -> dict[str, Any]:
        """The gateway change back to the normal chain: no pin, the primary's degradation, the status page operational."""
        return {
            "route": route_for(FallbackTier.TIER_0_PRIMARY),
            "degradation": self._degradation_for(FallbackTier.TIER_0_PRIMARY),
            "status": StatusChange(component="operational", message=""),
        }

    async def _restore_dependencies(self, dependencies: list[str], route: bool = False) -> None:
        """Failed dependencies of one tier are back while another tier is still down: hand that tier's breaker back
        to its rules (and, for the primary, give it all traffic again); the incident stays open for the others."""
        assert self.policy and dependencies
        tier = self.policy.failed_tier(dependencies[0])
        change: dict[str, object] = {"breaker": BreakerChange(tier=tier, mode="auto")}
        if route:
            change |= self._normal_chain()
        await self._gateway(f"{', '.join(dependencies)} back: breaker of {tier} to auto", **change)
        if route:
            self._enter_tier(FallbackTier.TIER_0_PRIMARY, f"{', '.join(dependencies)} recovered")
            self.s.degradation_level = self.policy.degradation.level_for(FallbackTier.TIER_0_PRIMARY)
            self.s.ramp_percent = 100
        for dependency in dependencies:
            self._mark_restored(dependency)
        self._audit(
            AuditAction.DEPENDENCY_RESTORED,
            details={
                "dependency": ", ".join(dependencies),
                "tier": str(tier),
                "still_failed": ", ".join(self.s.failed_dependencies),
            },
        )
        # reports that arrived while this restore ran are not late: the incident goes on, so they join it
        late, self.s.late_reports, self.s.late_report_count = self.s.late_reports, [], 0
        for report in late:
            if self.s.needs_confirming(report):
                self.s.suspects.append(report)

    def _same_tier(self) -> list[str]:
        """The failed dependencies backing the tier being restored (a model and the database behind it, say): the
        tier is validated and restored once all of them are healthy."""
        assert self.policy
        same = [d for d in self.s.failed_dependencies if self.policy.failed_tier(d) is self.s.failed_tier]
        return same or [self.s.restoring]

    def _to_probe(self) -> str:
        """The next dependency of the tier being restored that has not passed its probes in this attempt."""
        return next((d for d in self._same_tier() if d not in self.s.healthy_again), self.s.restoring)

    def _failed_tiers(self) -> set[FallbackTier]:
        assert self.policy
        return {self.policy.failed_tier(d) for d in self.s.failed_dependencies}

    def _flap(self, why: str) -> None:
        """The tier being restored failed again after it had recovered; too many flaps wait for a human."""
        assert self.policy
        self.s.flaps += 1
        self.s.healthy_again = []  # every dependency of the tier proves itself again
        limit = self.policy.recovery_checks.max_flaps
        if self.s.flaps >= limit and not self.s.flapping:
            self.s.flapping = True
            self.s.awaiting_human = True
            self._audit(AuditAction.FLAPPING, details={"flaps": self.s.flaps, "reason": why})
            self._escalate(
                f"{self.s.restoring} is flapping ({self.s.flaps} failures after recovering, last: {why}); the "
                "governor stopped retrying: declare it fixed when it is stable"
            )
