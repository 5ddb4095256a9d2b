"""The recovery workflow's drills (game days), a mixin of IncidentRecoveryWorkflow (governor/drill.py tells the what).

A report carrying a `DrillRequest` opens a drill: detection injects the failure itself (the failed tier's breaker
forced open in every gateway replica, so real traffic moves down the chain at once) and records `state.drill_run`;
every other phase runs as in a real incident. While `state.drill_run` is set, notifications reach on-call and internal
audiences only and gateway changes leave the status page alone (unless `drills.status_page`); remediation waits out
the drill's duration, then hands the breaker back to its rules, so the probes, validation and the ramp (with its
gates) run for real; the full restore reads the gateways' stats for what clients saw during the drill.

Everything here runs only behind `workflow.patched(DRILL_PATCH)` on the drill's first report: histories recorded
before drills never set `state.drill_run`, so they replay unchanged.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from governor.actions import (
        Activity,
        BreakerChange,
        ConfirmFailureResult,
        DrillFaultInput,
        DrillFaultResult,
        ReadStatsInput,
    )
    from governor.audit import AuditAction
    from governor.drill import DRILL_PATCH, DrillRecord
    from governor.enums import FallbackTier
    from governor.models import StatsWindow

from workflows.runbook import Runbook

MAX_STATS_WINDOW_S = 300
"""The gateway's longest stats window (gateway/admin.py)."""


class Drilling(Runbook):
    """Inject, contain and restore a drill; the hooks the rest of the workflow calls are no-ops outside drills."""

    async def _start_drill(self) -> ConfirmFailureResult | None:
        """Detection of a drill's first report: inject the failure and confirm it; None when this is no drill."""
        assert self.policy
        if self.s.drill_run is not None:  # injected already (a continued run): confirmed as the first run was
            if self.s.drill_run.fault_url is not None:
                return None
            return ConfirmFailureResult(confirmed=True, reason=f"drill: {self.s.drill_run.injection}")
        request = self.s.reports[0].drill if self.s.reports else None
        if request is None or not workflow.patched(DRILL_PATCH):
            return None
        tier = self.policy.failed_tier(self.s.dependency)
        fault = self.policy.drills.faults.get(self.s.dependency)
        if fault is not None:  # the upstream's own control API: detection then probes the failure for real
            await self._act(
                Activity.DRILL_FAULT,
                DrillFaultInput(url=str(fault.url), body=fault.inject),
                DrillFaultResult,
                f"drill: inject {fault.inject} through {fault.url}",
            )
            injection = f"fault {json.dumps(fault.inject, sort_keys=True)} injected through {fault.url}"
        else:
            await self._gateway(
                f"drill: force the breaker of {tier} open", breaker=BreakerChange(tier=tier, mode="open")
            )
            injection = f"breaker {tier} forced open in {len(self.policy.gateways)} gateway replica(s)"
        now = workflow.now()
        self.s.drill = True  # every tier transition of a drill is `scheduled` (governor/transitions.py)
        self.s.drill_run = DrillRecord(
            requested_by=request.requested_by,
            duration_s=request.duration_s,
            injection=injection,
            fault_url=str(fault.url) if fault is not None else None,
            fault_clear=dict(fault.clear) if fault is not None else {},
            injected_at=now,
            ends_at=now + timedelta(seconds=request.duration_s),
            status_page=self.policy.drills.status_page,
        )
        self._audit(
            AuditAction.DRILL_STARTED,
            actor=request.requested_by,
            details={"injection": self.s.drill_run.injection, "duration_s": request.duration_s, "tier": str(tier)},
        )
        if fault is not None:
            return None  # probed like any report: the drill finds out whether detection sees the fault
        return ConfirmFailureResult(
            confirmed=True, reason=f"drill by {request.requested_by}: {self.s.drill_run.injection}"
        )

    async def _drill_not_detected(self) -> None:
        """Detection did not confirm a fault injected through a control API: clear it before the incident closes."""
        d = self.s.drill_run
        if d is None or d.restored_at is not None:
            return
        d.detected = False
        await self._clear_drill_fault(d)

    async def _drill_window(self) -> None:
        """Remediation of a drill: the injected failure lasts its duration (or until on-call declares it fixed), then
        the breaker is handed back to its rules and remediation probes the (healthy) dependency as usual."""
        d = self.s.drill_run
        if d is None or d.restored_at is not None:
            return
        while self.s.remediated_by is None and (left := (d.ends_at - workflow.now()).total_seconds()) > 0:
            try:
                await workflow.wait_condition(
                    lambda: self.s.remediated_by is not None or self.s.forced_tier is not None,
                    timeout=timedelta(seconds=left),
                )
            except TimeoutError:  # asyncio.TimeoutError is TimeoutError on 3.11
                break
            await self._apply_forced_tier()  # on-call may move the drill to another tier meanwhile
        if self.s.remediated_by is not None and workflow.now() < d.ends_at:
            d.ended_early_by = self.s.remediated_by
        await self._clear_drill_fault(d)

    async def _clear_drill_fault(self, d: DrillRecord) -> None:
        """Undo the injection: the control API's `clear` body, or the breaker handed back to its rules."""
        if d.fault_url is not None:
            await self._act(
                Activity.DRILL_FAULT,
                DrillFaultInput(url=d.fault_url, body=d.fault_clear),
                DrillFaultResult,
                f"drill over: clear the fault through {d.fault_url}",
            )
            cleared = f"fault cleared through {d.fault_url}"
        else:
            await self._gateway(
                f"drill over: breaker of {self.s.failed_tier} back to its rules",
                breaker=BreakerChange(tier=self.s.failed_tier, mode="auto"),
            )
            cleared = f"breaker {self.s.failed_tier} back to auto"
        d.restored_at = workflow.now()
        self._audit(AuditAction.DRILL_RESTORED, details={"cleared": cleared, "ended_early_by": d.ended_early_by})

    async def _drill_findings(self) -> None:
        """Full restore of a drill: what the gateways served over the drill, and the requests that failed clients."""
        assert self.policy
        d = self.s.drill_run
        if d is None:
            return
        window = max(1, min(MAX_STATS_WINDOW_S, int((workflow.now() - d.injected_at).total_seconds()) + 1))
        d.stats_window_s = window
        try:
            stats = await self._act(
                Activity.READ_STATS,
                ReadStatsInput(
                    gateways=[str(g) for g in self.policy.gateways], service=self.s.service, window_s=window
                ),
                StatsWindow,
                "drill: what clients saw",
            )
        except ActivityError as err:  # the findings say the stats were unreadable; the drill still closes
            d.stats_error = str(getattr(err, "cause", None) or err)[:500]
        else:
            errors = stats.tiers.get(FallbackTier.TIER_5_ERROR.value)
            d.client_errors = errors.requests if errors is not None else 0
            d.requests = {t: s.requests for t, s in stats.tiers.items() if t != FallbackTier.TIER_5_ERROR.value}
        self._audit(
            AuditAction.DRILL_FINDINGS,
            details={"client_errors": d.client_errors, "requests": d.requests, "window_s": window},
        )

    def _drill_change(self, change: dict[str, Any]) -> dict[str, Any]:
        """A gateway change during a drill: the status page is left alone unless the policy lets drills change it."""
        d = self.s.drill_run
        if d is not None and not d.status_page and change.get("status") is not None:
            return {k: v for k, v in change.items() if k != "status"}
        return change
