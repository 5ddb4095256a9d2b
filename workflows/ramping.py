"""The recovery workflow's ramp: give the primary its share step by step, soak each step, roll back on regression.

A mixin of IncidentRecoveryWorkflow (as `controls.py` is): the gradual_restore phase and its parts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.actions import Activity, BreakerChange, ReadStatsInput, RouteChange
    from governor.audit import AuditAction
    from governor.decisions import Verdict, judge_ramp_step, offered_rps, pick_tier
    from governor.enums import FallbackTier, NotificationAudience, RecoveryPhase
    from governor.incident import RollbackRecord
    from governor.models import StatsWindow, TierStats

from workflows.joining import SERVICE_INCIDENT_PATCH, FailedAgain
from workflows.priorities import BACKGROUND
from workflows.runbook import Runbook
from workflows.waits import wait_until

M = TypeVar("M", bound=BaseModel)


class RollbackNow(Exception):
    """Raised inside the ramp when a step regresses or on-call aborts."""

    def __init__(
        self, reason: str, metrics: dict[str, float], actor: str = "system", needs_human: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason, self.metrics, self.actor, self.needs_human = reason, metrics, actor, needs_human


class Ramping(Runbook):
    """The gradual_restore phase: ramp_up, its soak and its rollback."""

    async def ramp_up(self) -> None:
        """Give the primary its share step by step, soak each, roll back at once on regression."""
        assert self.policy
        self._enter(RecoveryPhase.GRADUAL_RESTORE)
        steps = self.policy.ramp.steps
        try:
            while self.s.ramp_step < len(steps):
                await self._hold_while_paused()
                if self.s.promote_requested_by is not None:
                    actor = self.s.promote_requested_by
                    self.s.promote_requested_by = None
                    if not self.policy.approvals.is_gated("promote") or await self._await_gate(
                        "promote", f"skip to 100 % (asked by {actor})", requested_by=actor
                    ):
                        self._audit(AuditAction.PROMOTED, actor=actor, details={"from_percent": self.s.ramp_percent})
                        self.s.ramp_step, self.s.soak_started_at = len(steps) - 1, None
                step = steps[self.s.ramp_step]
                if self.s.soak_started_at is None:  # a new step (a continued run resumes its soak instead)
                    gate = f"ramp:{step.percent}"
                    if self.policy.approvals.is_gated(gate) and not await self._await_gate(
                        gate, f"send {step.percent} % of traffic to the primary"
                    ):
                        decision = self.s.decisions[-1]
                        raise RollbackNow(
                            f"{decision.approver} rejected {gate}: {decision.reason}",
                            {},
                            decision.approver,
                            needs_human=True,
                        )
                    await self._set_weight(step.percent)
                    self.s.soak_started_at, self.s.soak_passes = workflow.now(), 0
                await self._soak(step.percent, step.soak_s)
                self.s.soak_started_at = None
                self.s.ramp_step += 1
        except RollbackNow as rb:
            await self._roll_back(rb)
            return
        self.s.phase = RecoveryPhase.FULL_RESTORE

    # ------------------------------------------------------------------ the ramp's parts
    async def _soak(self, percent: int, soak_s: float) -> None:
        """Sample the primary every interval; pass after the soak time with at least one judged-healthy sample."""
        assert self.policy
        ramp = self.policy.ramp
        started = self.s.soak_started_at or workflow.now()
        stalled_told = False
        while True:
            await wait_until(
                lambda: (
                    self.s.abort_requested_by is not None
                    or self.s.promote_requested_by is not None
                    or bool(self.s.suspects)
                ),
                workflow.now() + timedelta(seconds=ramp.sample_interval_s),
            )
            try:
                await self._take_suspects()  # a failure confirmed mid-ramp rolls back now, not at the next sample
            except FailedAgain as again:
                raise RollbackNow(str(again), again.metrics) from None
            if self.s.abort_requested_by is not None:
                actor, self.s.abort_requested_by = self.s.abort_requested_by, None
                raise RollbackNow(f"aborted by {actor}", {}, actor=actor)
            if self.s.promote_requested_by is not None:
                return
            await self._hold_while_paused()
            # Judge the step on its own traffic only: a window reaching back before the weight was set would
            # count the outage's errors (or the previous step's traffic) against it.
            own_s = int((workflow.now() - started).total_seconds())
            window = await self._act(
                Activity.READ_STATS,
                ReadStatsInput(
                    gateways=self.policy.gateways,
                    service=self.s.service,
                    window_s=max(1, min(ramp.stats_window_s, own_s)),
                ),
                StatsWindow,
                f"sample the primary at {percent} %",
                priority=BACKGROUND,
            )
            primary = window.tiers.get(str(FallbackTier.TIER_0_PRIMARY), TierStats())
            offered = offered_rps(window) if workflow.patched("throughput-of-offered-traffic") else None
            judgement = judge_ramp_step(primary, percent, self.policy.rollback, self.policy.recovery_checks, offered)
            self.s.last_judgement = judgement.model_dump(mode="json")
            if judgement.verdict is Verdict.FAIL:
                raise RollbackNow(judgement.reason, judgement.metrics)
            if self._history_too_long():  # the new run picks up this soak where it stands
                await self._continue_as_new()
            self.s.soak_passes += judgement.verdict is Verdict.PASS
            elapsed = (workflow.now() - started).total_seconds()
            if elapsed >= soak_s and self.s.soak_passes > 0:
                self._audit(AuditAction.RAMP_STEP_PASSED, details={"percent": percent, **judgement.metrics})
                return
            if elapsed >= 3 * max(soak_s, ramp.sample_interval_s) and not stalled_told:
                stalled_told = True
                self._escalate(f"ramp step {percent} % cannot be judged: {judgement.reason}")

    async def _roll_back(self, rb: RollbackNow) -> None:
        assert self.policy
        record = RollbackRecord(
            at=workflow.now(),
            attempt=self.s.attempt,
            percent=self.s.ramp_percent,
            reason=rb.reason,
            metrics=rb.metrics,
            actor=rb.actor,
        )
        self.s.rollbacks.append(record)
        self._count("governor_rollbacks", "Ramp rollbacks (error-rate regressions, rejections, aborts)")
        fallback = self._last_fallback_tier()
        human = rb.actor if rb.actor != "system" else None  # a rejection or an abort: a human's transition
        await self._pin(fallback, reason=f"rollback: {rb.reason}", forced_by=human)
        self._audit(AuditAction.ROLLED_BACK, actor=rb.actor, details=record.model_dump(mode="json"))
        if self._tier_health_on():  # the tier rolled back to may have failed meanwhile: move off it if so
            await self._recheck_tiers()
        self.s.attempt += 1
        if rb.actor == "system" and not rb.needs_human and workflow.patched(SERVICE_INCIDENT_PATCH):
            self._flap(f"ramp at {record.percent} %: {rb.reason}")
        if self.s.flapping:
            pass  # `_flap` escalated and waits for a human
        elif rb.needs_human:
            self.s.awaiting_human = True  # on-call said no: only a human decides when to try again
        elif self.s.attempt > self.policy.rollback.max_attempts:
            self.s.awaiting_human = True
            self._escalate(
                f"{self.policy.rollback.max_attempts} ramp attempts rolled back; waiting for a human to declare "
                "the primary fixed"
            )
        self._notify(
            "rolled_back",
            [NotificationAudience.ONCALL, NotificationAudience.INTERNAL],
            f"{self.s.service}: ramp rolled back at {record.percent} %",
            rb.reason,
        )
        self.s.ramp_step, self.s.soak_started_at = 0, None
        self.s.phase = RecoveryPhase.REMEDIATION

    def _last_fallback_tier(self) -> FallbackTier:
        for span in reversed(self.s.tiers):
            if span.tier is not FallbackTier.TIER_0_PRIMARY:
                return span.tier
        assert self.policy
        return pick_tier(self.policy.tiers, {self.s.failed_tier})

    async def _set_weight(self, percent: int) -> None:
        # Hand the breaker isolation forced open back to its rules: a forced-open breaker would turn the primary's
        # share away and leave the step with nothing to judge.
        await self._gateway(
            f"primary weight {percent} %",
            route=RouteChange(primary_weight=percent),
            breaker=BreakerChange(tier=self.s.failed_tier, mode="auto"),
        )
        self.s.ramp_percent = percent
        self._audit(AuditAction.RAMP_STEP, details={"percent": percent, "attempt": self.s.attempt})
        self._publish()
