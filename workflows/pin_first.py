"""The recovery workflow's pin first, a mixin of IncidentRecoveryWorkflow (PIN_FIRST_PATCH).

A new incident's report -> pinned tier in one activity, `fall_back_first` (activities/pin_first.py: the policy, the
confirmation, the blast radius beside the tier check, then the failed tier's breaker and the best tier's pin in one
gateway change), scheduled in the workflow's first task at task queue priority 1: the report reaches the pin in one
workflow task and one activity instead of five of each.

The runbook then runs as it always has and records what it always did: detection, isolation and fallback take their
steps' answers from that activity's result (`_prefetched_*`) instead of running them, so the audit trail, phases, tier
spans and notifications are those of the step-by-step path. A step the activity did not take runs as its own activity
as before: a false alarm's re-probe, a gated tier's approval and pin, a gateway change that failed. The search
attributes of those phase and tier entries are published once, when the runbook has caught up (or waits on anything).
A drill keeps the step-by-step path (it injects its failure before detection probes it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.actions import (
        Activity,
        ConfirmFailureResult,
        FallBackFirstInput,
        FallBackFirstResult,
        GatewayChangeResult,
    )
    from governor.blast_radius import BlastRadius
    from governor.enums import RecoveryPhase
    from governor.incident import IncidentReport
    from governor.tier_health import TierAssessment

from workflows.priorities import FALLBACK_PATH
from workflows.runbook import Runbook

PIN_FIRST_PATCH = "pin-first-one-activity"
"""workflow.patched id: a new incident's report -> pin in one activity; pins go at task queue priority 1, soak samples
and notifications at 5. Histories recorded before it replay their step-by-step sequence."""
CHANGE_FIELDS = ("breaker", "route", "degradation", "status")
_RECORDING = (RecoveryPhase.DETECTION, RecoveryPhase.ISOLATION, RecoveryPhase.FALLBACK_ACTIVE)
"""The phases that record pin first's steps."""


class PinFirst(Runbook):
    _first: FallBackFirstResult | None = None
    _first_heard = 0
    """How many reports the workflow had heard when it asked for the pin (detection confirms the last of them)."""
    _first_unused: frozenset[str] = frozenset()
    """The fields of the first gateway change that no runbook step has taken yet."""

    async def _fall_back_first(self) -> None:
        """Pin first for a new incident's first report (not a drill's); sets the policy snapshot."""
        await workflow.wait_condition(lambda: self.s.report_count > 0)
        if not self.s.reports or self.s.reports[-1].drill is not None:
            return
        heard = len(self.s.reports)
        report: IncidentReport = self.s.reports[-1]
        result = await self._act(
            Activity.FALL_BACK_FIRST,
            FallBackFirstInput(
                service=self.s.service, dependency=self.s.dependency, incident_id=self.s.incident_id, report=report
            ),
            FallBackFirstResult,
            f"pin first: confirm {report.failure_type or 'failure'} on {self.s.dependency}, fall back",
            within=timedelta(seconds=120),
            priority=FALLBACK_PATH,
        )
        self.policy = result.policy
        if result.confirmation is None:
            return  # no such dependency: run() fails the incident
        self._first, self._first_heard = result, heard
        change = result.change if result.applied is not None else None
        self._first_unused = frozenset(
            f for f in CHANGE_FIELDS if change is not None and getattr(change, f) is not None
        )
        self._hold_publish()

    def _detection_report(self) -> tuple[IncidentReport, int]:
        """The report detection confirms, and how many reports were heard before it was probed."""
        if self._first is not None and self._first.confirmation is not None:
            return self.s.reports[self._first_heard - 1], self._first_heard
        return self.s.reports[-1], len(self.s.reports)

    def _prefetched_confirmation(self) -> ConfirmFailureResult | None:
        if self._first is None or self._first.confirmation is None:
            return None
        confirmation, self._first.confirmation = self._first.confirmation, None
        return confirmation

    def _prefetched_radius(self) -> tuple[BlastRadius | None, str] | None:
        """The blast radius and why it is missing, once; None when pin first did not assess it."""
        if self._first is None or (self._first.radius is None and not self._first.radius_error):
            return None
        found = self._first.radius, self._first.radius_error
        self._first.radius, self._first.radius_error = None, ""
        return found

    def _prefetched_assessment(self) -> TierAssessment | None:
        if self._first is None or self._first.assessment is None:
            return None
        assessment, self._first.assessment = self._first.assessment, None
        return assessment

    def _first_recorded(self) -> None:
        """Detection, isolation and fallback are behind: what pin first found is spent, and published once."""
        if self._first is not None and (self.s.phase not in _RECORDING or self.s.closed_at is not None):
            self._first = None
            self._release_publish()

    def _prefetched_change(self, change: dict[str, Any]) -> GatewayChangeResult | None:
        """The first change's result when it already applied exactly `change` (and no step took those fields yet)."""
        first = self._first
        if first is None or first.change is None or first.applied is None or not change:
            return None
        for name, value in change.items():
            if name not in self._first_unused or value is None:
                return None
            if getattr(first.change, name).model_dump(mode="json") != value.model_dump(mode="json"):
                return None
        self._first_unused = self._first_unused - set(change)
        return first.applied
