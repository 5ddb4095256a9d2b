"""The recovery workflow's blast radius: at isolation, which other services and features the failed dependency hits.

A mixin of IncidentRecoveryWorkflow. The assessment is advice, never a blocker: two attempts at most, and a failure is
audited and the incident goes on. Two or more services hit raise the severity one step (said so in the audit).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from governor.actions import Activity, BlastRadiusInput
    from governor.audit import AuditAction
    from governor.blast_radius import RAISE_AT_SERVICES, BlastRadius, raised_severity

from workflows.runbook import Runbook

BLAST_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)


class BlastRadiusStep(Runbook):
    async def _assess_blast_radius(self) -> None:
        assert self.policy
        prefetched = self._prefetched_radius()  # pin first assessed it already
        radius, error = prefetched if prefetched is not None else (None, "")
        if prefetched is None:
            try:
                radius = await workflow.execute_activity(
                    Activity.ASSESS_BLAST_RADIUS,
                    BlastRadiusInput(policy=self.policy, dependency=self.s.dependency),
                    result_type=BlastRadius,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=BLAST_RETRY,
                    summary=f"assess the blast radius of {self.s.dependency}",
                )
            except ActivityError as err:
                error = str(err.cause or err)
        if radius is None:
            self._audit(AuditAction.ACTIVITY_FAILED, details={"activity": Activity.ASSESS_BLAST_RADIUS, "error": error})
            return
        self.s.blast_radius = radius
        details: dict[str, object] = {
            "summary": radius.summary(),
            "services": [s.service for s in radius.services],
            "rps_at_risk": round(radius.rps_at_risk, 2),
        }
        if radius.errors:
            details["errors"] = radius.errors
        raised = raised_severity(self.s.severity, radius)
        if raised is not None:
            details["severity_raised"] = f"{self.s.severity} -> {raised}"
            details["why"] = f"{len(radius.services)} services hit (>= {RAISE_AT_SERVICES})"
            self.s.severity = raised
        self._audit(AuditAction.BLAST_RADIUS, details=details)
        self._update_impact()
        self._publish()
