"""IncidentRecoveryWorkflow: one durable workflow per incident, from detection to post-mortem.

It reads like the runbook it replaces: each phase is a method; decisions are pure functions from `governor`;
every side effect is an activity. Controls arrive as signals (Temporal UI, `temporal workflow signal`) or as
updates (the CLI), checked by the same rules, so a bad request is refused with a reason and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from governor import search_attributes as sa
    from governor.actions import (
        Activity,
        BreakerChange,
        ConfirmFailureInput,
        ConfirmFailureResult,
        DegradationChange,
        Evidence,
        EvidenceInput,
        GatewayChange,
        GatewayChangeResult,
        LoadPolicyInput,
        NotifyInput,
        NotifyResult,
        PostmortemInput,
        PostmortemResult,
        ReadStatsInput,
        RouteChange,
        StatusChange,
        ValidatePrimaryInput,
        ValidatePrimaryResult,
        WaitForHealthyInput,
        WaitForHealthyResult,
    )
    from governor.audit import append_entry
    from governor.decisions import Verdict, audiences_for, judge_ramp_step, pick_tier, status_component
    from governor.enums import FallbackTier, NotificationAudience, RecoveryPhase, Severity
    from governor.incident import (
        WORKFLOW_NAME,
        ApprovalInput,
        ControlInput,
        ControlResult,
        Decision,
        ForceTierInput,
        IncidentReport,
        IncidentState,
        Names,
        NoteInput,
        NotificationRecord,
        PendingGate,
        PhaseSpan,
        RecoveryInput,
        RollbackRecord,
        TierSpan,
        incident_id,
    )
    from governor.models import StatsWindow, TierStats
    from governor.policy import ServicePolicy

M = TypeVar("M", bound=BaseModel)

MAX_KEPT_REPORTS = 20

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)


class RollbackNow(Exception):
    """Raised inside the ramp when a step regresses or on-call aborts."""

    def __init__(
        self, reason: str, metrics: dict[str, float], actor: str = "system", needs_human: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason, self.metrics, self.actor, self.needs_human = reason, metrics, actor, needs_human


@workflow.defn(name=WORKFLOW_NAME)
class IncidentRecoveryWorkflow:
    @workflow.init
    def __init__(self, input: RecoveryInput) -> None:
        self.s = input.state or IncidentState(
            incident_id=incident_id(input.service, input.dependency),
            service=input.service,
            dependency=input.dependency,
        )
        self.policy: ServicePolicy | None = input.policy
        self.history_limit = input.history_limit
        self._notifications: list[asyncio.Task[None]] = []
        self._published: dict[str, Any] = {}
        """Search attribute values already upserted in this run."""

    # ------------------------------------------------------------------ run: the runbook
    @workflow.run
    async def run(self, input: RecoveryInput) -> IncidentState:
        if self.policy is None:
            self.policy = await self._act(
                Activity.LOAD_POLICY, LoadPolicyInput(service=self.s.service), ServicePolicy, "load the service policy"
            )
            if self.s.dependency not in {d.name for d in self.policy.dependencies}:
                known = ", ".join(d.name for d in self.policy.dependencies)
                raise ApplicationError(
                    f"service {self.s.service!r} has no dependency {self.s.dependency!r} in its policy (known: {known})",
                    type="UnknownDependency",
                    non_retryable=True,
                )
        await workflow.wait_condition(lambda: self.s.report_count > 0)
        phases: dict[RecoveryPhase, Callable[[], Any]] = {
            RecoveryPhase.DETECTION: self.detect,
            RecoveryPhase.ISOLATION: self.isolate,
            RecoveryPhase.FALLBACK_ACTIVE: self.fall_back,
            RecoveryPhase.DIAGNOSIS: self.diagnose,
            RecoveryPhase.REMEDIATION: self.remediate,
            RecoveryPhase.VALIDATION: self.validate,
            RecoveryPhase.GRADUAL_RESTORE: self.ramp_up,
            RecoveryPhase.FULL_RESTORE: self.restore,
            RecoveryPhase.POST_MORTEM: self.write_postmortem,
        }
        while self.s.closed_at is None:
            await self._hold_while_paused()
            await self._apply_forced_tier()
            await phases[self.s.phase]()
            if self.s.closed_at is None and self._history_too_long():
                await self._continue_as_new()
        await self._drain_notifications()
        return self.s

    async def detect(self) -> None:
        """Confirm the report by re-probing and classify it; a failure that does not reproduce is a false alarm."""
        assert self.policy
        self._enter(RecoveryPhase.DETECTION)
        report = self.s.reports[-1]
        if report.manual:
            result = ConfirmFailureResult(confirmed=True, reason=f"manual report from {report.source}")
        else:
            result = await self._act(
                Activity.CONFIRM_FAILURE,
                ConfirmFailureInput(policy=self.policy, dependency=self.s.dependency, report=report),
                ConfirmFailureResult,
                f"confirm {report.failure_type or 'failure'} on {self.s.dependency}",
                within=timedelta(seconds=120),
            )
        if not result.confirmed:
            self._audit("false_alarm", details={"reason": result.reason})
            self.s.outcome = "false_alarm"
            self._close()
            return
        c = result.classification
        self.s.failure_type = (c.failure_type if c else None) or report.failure_type
        severities = [x for x in (c.severity if c else None, report.severity) if x is not None]
        self.s.severity = max(severities, key=lambda x: x.rank) if severities else Severity.HIGH
        self.s.reason = (c.reason if c else "") or report.message or "reported failure"
        self.s.detected_at = workflow.now()
        self.s.failed_tier = self.policy.failed_tier(self.s.dependency)
        self._audit(
            "failure_confirmed",
            details={
                "failure_type": str(self.s.failure_type),
                "severity": str(self.s.severity),
                "reason": self.s.reason,
                "metrics": c.metrics if c else report.metrics,
            },
        )
        self.s.phase = RecoveryPhase.ISOLATION

    async def isolate(self) -> None:
        """Open the failed dependency's breaker in every gateway replica."""
        self._enter(RecoveryPhase.ISOLATION)
        await self._gateway(
            f"open breaker {self.s.failed_tier}",
            breaker=BreakerChange(tier=self.s.failed_tier, mode="open"),
        )
        self._audit("breaker_opened", details={"tier": str(self.s.failed_tier)})
        self.s.phase = RecoveryPhase.FALLBACK_ACTIVE

    async def fall_back(self) -> None:
        """Pin the highest healthy tier, degrade features as policy maps that tier, and tell each audience."""
        assert self.policy
        self._enter(RecoveryPhase.FALLBACK_ACTIVE)
        unavailable = {self.s.failed_tier}
        while True:
            tier = pick_tier(self.policy.tiers, unavailable)
            gate = f"enter:{tier}"
            if not self.policy.approvals.is_gated(gate) or await self._await_gate(gate, f"fall back to {tier}"):
                break
            unavailable.add(tier)  # on-call refused this tier: take the next one down
        await self._pin(tier, reason=f"{self.s.failed_tier} failed: {self.s.reason}")
        self.s.mitigated_at = self.s.mitigated_at or workflow.now()
        self._notify_level("fallback_active", f"{self.s.service} is served by {tier}")
        self.s.phase = RecoveryPhase.DIAGNOSIS

    async def diagnose(self) -> None:
        """Gather evidence: probes of every dependency, the gateway's stats and state."""
        assert self.policy
        self._enter(RecoveryPhase.DIAGNOSIS)
        evidence = await self._act(
            Activity.GATHER_EVIDENCE,
            EvidenceInput(policy=self.policy, dependency=self.s.dependency, incident_id=self.s.incident_id),
            Evidence,
            f"gather evidence on {self.s.dependency}",
        )
        self.s.evidence = {
            "summary": evidence.summary,
            "dependencies": evidence.dependencies,
            "probes": [p.model_dump(mode="json") for p in evidence.probes[:10]],
        }
        self._audit("evidence_gathered", details={"summary": evidence.summary})
        self.s.phase = RecoveryPhase.REMEDIATION

    async def remediate(self) -> None:
        """Wait until the primary is healthy again (or on-call declares it fixed); escalate past the deadline."""
        assert self.policy
        self._enter(RecoveryPhase.REMEDIATION)
        dep = self.policy.dependency(self.s.dependency)
        probing: asyncio.Task[WaitForHealthyResult] | None = None
        if not self.s.awaiting_human:
            probing = asyncio.create_task(
                self._act(
                    Activity.WAIT_FOR_HEALTHY,
                    WaitForHealthyInput(
                        dependency=dep,
                        thresholds=self.policy.thresholds,
                        interval_s=self.policy.recovery_checks.probe_interval_s,
                        passes=self.policy.recovery_checks.health_passes,
                    ),
                    WaitForHealthyResult,
                    f"probe {dep.name} until {self.policy.recovery_checks.health_passes} healthy checks",
                    within=timedelta(days=7),
                    heartbeat=timedelta(seconds=max(30, 5 * self.policy.recovery_checks.probe_interval_s)),
                )
            )
        escalate_after = self.policy.remediation.escalate_after_s or (
            60.0 * (self.s.failure_type.typical_recovery_minutes if self.s.failure_type else 5)
        )
        deadline = workflow.now() + timedelta(seconds=escalate_after)
        try:
            while True:
                done = await self._wait(
                    lambda: (
                        (probing is not None and probing.done())
                        or self.s.remediated_by is not None
                        or self.s.forced_tier is not None
                        or self._history_too_long()
                    ),
                    deadline,
                )
                if self._history_too_long():  # a long outage or an alert storm: carry on in a fresh run
                    await self._continue_as_new()
                if not done:
                    self._escalate(f"the primary is still down after {escalate_after:.0f} s of remediation")
                    deadline = workflow.now() + timedelta(seconds=escalate_after)
                    continue
                if self.s.forced_tier is not None:
                    await self._apply_forced_tier()
                    continue
                break
        finally:
            if probing is not None and not probing.done():
                probing.cancel()
        if self.s.remediated_by is not None:
            self._audit("remediation_declared", actor=self.s.remediated_by)
            self.s.remediated_by = None
        else:
            assert probing is not None
            healthy = probing.result()
            self._audit(
                "primary_healthy",
                details={"consecutive_passes": healthy.consecutive_passes, "probes": healthy.probes},
            )
        self.s.awaiting_human = False
        self.s.phase = RecoveryPhase.VALIDATION

    async def validate(self) -> None:
        """Run the recovery checks against the primary; pass the tier's exit gate before traffic returns."""
        assert self.policy
        self._enter(RecoveryPhase.VALIDATION)
        result = await self._act(
            Activity.VALIDATE_PRIMARY,
            ValidatePrimaryInput(
                dependency=self.policy.dependency(self.s.dependency),
                thresholds=self.policy.thresholds,
                checks=self.policy.recovery_checks,
            ),
            ValidatePrimaryResult,
            "recovery checks on the primary",
            within=timedelta(minutes=5),
        )
        self.s.validation = result.result.model_dump(mode="json")
        self._audit("validation", details={"verdict": str(result.result.verdict), "reason": result.result.reason})
        if result.result.verdict is not Verdict.PASS:
            self.s.phase = RecoveryPhase.REMEDIATION
            return
        exit_gate = f"exit:{self.s.tier}"
        if self.policy.approvals.is_gated(exit_gate) and not await self._await_gate(
            exit_gate, f"leave {self.s.tier} and start the ramp"
        ):
            self.s.awaiting_human = True
            self.s.phase = RecoveryPhase.REMEDIATION
            return
        self.s.ramp_step = 0
        self.s.phase = RecoveryPhase.GRADUAL_RESTORE

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
                        self._audit("promoted", actor=actor, details={"from_percent": self.s.ramp_percent})
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

    async def restore(self) -> None:
        """Primary pinned, breaker closed, degradation normal, pages resolved, status operational."""
        assert self.policy
        self._enter(RecoveryPhase.FULL_RESTORE)
        await self._gateway(
            "restore the normal chain",
            route=RouteChange(pinned_tier=None, primary_weight=100),
            breaker=BreakerChange(tier=self.s.failed_tier, mode="auto"),
            degradation=self._degradation_for(FallbackTier.TIER_0_PRIMARY),
            status=StatusChange(component="operational", message=""),
        )
        self._enter_tier(FallbackTier.TIER_0_PRIMARY, "recovered")
        self.s.degradation_level = self.policy.degradation.level_for(FallbackTier.TIER_0_PRIMARY)
        self.s.ramp_percent = 100
        self.s.recovered_at = workflow.now()
        self.s.outcome = "recovered"
        self._audit("restored", details={"attempts": self.s.attempt})
        notified = {n.audience for n in self.s.notifications}
        self._notify(
            "resolved", sorted(notified), f"{self.s.service} recovered", "Primary restored; incident resolved."
        )
        self.s.phase = RecoveryPhase.POST_MORTEM

    async def write_postmortem(self) -> None:
        assert self.policy
        self._enter(RecoveryPhase.POST_MORTEM)
        await self._drain_notifications()
        self.s.closed_at = workflow.now()
        self._audit("closed", details={"outcome": self.s.outcome})
        result = await self._act(
            Activity.WRITE_POSTMORTEM,
            PostmortemInput(state=self.s, policy=self.policy),
            PostmortemResult,
            "write the post-mortem",
        )
        self.s.postmortem_path = result.markdown_path
        self._publish()

    # ------------------------------------------------------------------ the ramp's parts
    async def _soak(self, percent: int, soak_s: float) -> None:
        """Sample the primary every interval; pass after the soak time with at least one judged-healthy sample."""
        assert self.policy
        ramp = self.policy.ramp
        started = self.s.soak_started_at or workflow.now()
        stalled_told = False
        while True:
            await self._wait(
                lambda: self.s.abort_requested_by is not None or self.s.promote_requested_by is not None,
                workflow.now() + timedelta(seconds=ramp.sample_interval_s),
            )
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
            )
            primary = window.tiers.get(str(FallbackTier.TIER_0_PRIMARY), TierStats())
            judgement = judge_ramp_step(primary, percent, self.policy.rollback, self.policy.recovery_checks)
            self.s.last_judgement = judgement.model_dump(mode="json")
            if judgement.verdict is Verdict.FAIL:
                raise RollbackNow(judgement.reason, judgement.metrics)
            if self._history_too_long():  # the new run picks up this soak where it stands
                await self._continue_as_new()
            self.s.soak_passes += judgement.verdict is Verdict.PASS
            elapsed = (workflow.now() - started).total_seconds()
            if elapsed >= soak_s and self.s.soak_passes > 0:
                self._audit("ramp_step_passed", details={"percent": percent, **judgement.metrics})
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
        fallback = self._last_fallback_tier()
        await self._pin(fallback, reason=f"rollback: {rb.reason}")
        self._audit("rolled_back", actor=rb.actor, details=record.model_dump(mode="json"))
        self.s.attempt += 1
        if rb.needs_human:
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

    # ------------------------------------------------------------------ gateway changes
    def _degradation_for(self, tier: FallbackTier) -> DegradationChange:
        assert self.policy
        level = self.policy.degradation.level_for(tier)
        return DegradationChange(level=level, flags=self.policy.degradation.flags_for(level))

    async def _pin(self, tier: FallbackTier, reason: str) -> None:
        degradation = self._degradation_for(tier)
        await self._gateway(
            f"pin {tier}",
            route=RouteChange(pinned_tier=tier, primary_weight=0),
            degradation=degradation,
            status=StatusChange(component=status_component(degradation.level), message=degradation.level.user_message),  # type: ignore[arg-type]
        )
        self.s.ramp_percent = 0
        self.s.degradation_level = degradation.level
        self._enter_tier(tier, reason)

    async def _set_weight(self, percent: int) -> None:
        # Hand the breaker isolation forced open back to its rules: a forced-open breaker would turn the primary's
        # share away and leave the step with nothing to judge.
        await self._gateway(
            f"primary weight {percent} %",
            route=RouteChange(primary_weight=percent),
            breaker=BreakerChange(tier=self.s.failed_tier, mode="auto"),
        )
        self.s.ramp_percent = percent
        self._audit("ramp_step", details={"percent": percent, "attempt": self.s.attempt})
        self._publish()

    async def _apply_forced_tier(self) -> None:
        if self.s.forced_tier is None:
            return
        tier, self.s.forced_tier = self.s.forced_tier, None
        await self._pin(tier, reason="forced by on-call")
        self._audit("tier_forced", details={"tier": str(tier)})

    async def _gateway(self, summary: str, **change: Any) -> GatewayChangeResult:
        assert self.policy
        return await self._act(
            Activity.APPLY_GATEWAY_CHANGE,
            GatewayChange(
                gateways=self.policy.gateways, service=self.s.service, incident_id=self.s.incident_id, **change
            ),
            GatewayChangeResult,
            summary,
        )

    # ------------------------------------------------------------------ approvals and waits
    async def _await_gate(self, gate: str, context: str, requested_by: str = "system") -> bool:
        """Hold until on-call approves or rejects `gate`; escalate each time the policy's timeout passes."""
        assert self.policy
        now = workflow.now()
        timeout = timedelta(seconds=self.policy.approvals.timeout_s)
        pending = PendingGate(
            gate=gate,
            requested_at=now,
            deadline=now + timeout,
            approvers=self.policy.approvals.approvers_for(gate),
            requested_by=requested_by,
            context=context,
        )
        self.s.pending_gates.append(pending)
        self._audit("approval_requested", actor=requested_by, details={"gate": gate, "context": context})
        self._publish()
        self._notify(
            f"approval_requested:{gate}",
            [NotificationAudience.ONCALL],
            f"{self.s.service}: approval needed for {gate}",
            f"{context}. Approve: governor approve {self.s.incident_id} --gate {gate} --reason '...'",
        )
        while not await self._wait(lambda: self.s.pending(gate) is None, pending.deadline):
            pending.escalated = True
            pending.deadline = workflow.now() + timeout
            self._escalate(f"approval for {gate} has waited longer than {timeout.total_seconds():.0f} s")
        decision = next(d for d in reversed(self.s.decisions) if d.gate == gate)
        self._publish()
        return decision.approved

    async def _wait(self, done: Callable[[], bool], deadline: datetime) -> bool:
        """Wait for `done` or the deadline; False when the deadline passed first."""
        remaining = (deadline - workflow.now()).total_seconds()
        if remaining <= 0:
            return done()
        try:
            await workflow.wait_condition(done, timeout=remaining)
        except TimeoutError:
            return done()
        return True

    async def _hold_while_paused(self) -> None:
        if self.s.paused:
            self._publish()
            await workflow.wait_condition(lambda: not self.s.paused)

    # ------------------------------------------------------------------ controls: one rule per control
    def _check(self, name: str, arg: Any) -> str | None:
        """Why this control must be refused now, or None when it may proceed."""
        assert self.policy or name == Names.NOTE
        s = self.s
        if s.closed_at is not None and name != Names.NOTE:
            return f"incident {s.incident_id} is closed ({s.outcome})"
        if name in (Names.APPROVE, Names.REJECT):
            assert self.policy
            pending = s.pending(arg.gate)
            if pending is None:
                waiting = ", ".join(g.gate for g in s.pending_gates) or "none"
                return f"gate {arg.gate!r} is not pending (pending: {waiting})"
            if arg.approver not in pending.approvers:
                return f"{arg.approver!r} may not approve {arg.gate} (approvers: {', '.join(pending.approvers)})"
            if self.policy.approvals.four_eyes and arg.approver == pending.requested_by:
                return f"four-eyes rule: {arg.approver!r} requested {arg.gate} and cannot also decide it"
            return None
        if name == Names.PAUSE:
            return "already paused" if s.paused else None
        if name == Names.RESUME:
            return None if s.paused else "not paused"
        if name in (Names.ABORT, Names.PROMOTE):
            if s.phase is not RecoveryPhase.GRADUAL_RESTORE:
                return f"{name} applies to the ramp; the incident is in {s.phase}"
            return None
        if name == Names.FORCE_TIER:
            assert self.policy
            if arg.tier not in self.policy.tiers:
                return f"tier {arg.tier} is not in {s.service}'s chain ({', '.join(self.policy.tiers)})"
            if s.phase in (RecoveryPhase.DETECTION, RecoveryPhase.FULL_RESTORE, RecoveryPhase.POST_MORTEM):
                return f"cannot force a tier during {s.phase}"
            return None
        if name == Names.DECLARE_REMEDIATED:
            if s.phase not in (RecoveryPhase.REMEDIATION, RecoveryPhase.DIAGNOSIS, RecoveryPhase.FALLBACK_ACTIVE):
                return f"declare_remediated applies before validation; the incident is in {s.phase}"
            return None
        return None

    def _apply(self, name: str, arg: Any) -> str:
        s, now = self.s, workflow.now()
        if name in (Names.APPROVE, Names.REJECT):
            approved = name == Names.APPROVE
            s.pending_gates = [g for g in s.pending_gates if g.gate != arg.gate]
            s.decisions.append(
                Decision(gate=arg.gate, approved=approved, approver=arg.approver, reason=arg.reason, at=now)
            )
            self._audit(
                "approved" if approved else "rejected",
                actor=arg.approver,
                details={"gate": arg.gate, "reason": arg.reason},
            )
            message = f"{arg.gate} {'approved' if approved else 'rejected'} by {arg.approver}"
        elif name == Names.NOTE:
            s.notes.append({"at": now.isoformat(), "author": arg.author, "text": arg.text})
            self._audit("note", actor=arg.author, details={"text": arg.text})
            message = "note added"
        else:
            actor = arg.actor
            if name == Names.PAUSE:
                s.paused = True
            elif name == Names.RESUME:
                s.paused = False
            elif name == Names.ABORT:
                s.abort_requested_by = actor
            elif name == Names.PROMOTE:
                s.promote_requested_by = actor
            elif name == Names.FORCE_TIER:
                s.forced_tier = arg.tier
            elif name == Names.DECLARE_REMEDIATED:
                s.remediated_by = actor
            details = {"reason": arg.reason}
            if name == Names.FORCE_TIER:
                details["tier"] = str(arg.tier)
            self._audit(name, actor=actor, details=details)
            message = f"{name} accepted from {actor}"
        self._publish()
        return message

    def _result(self, accepted: bool, message: str) -> ControlResult:
        return ControlResult(
            accepted=accepted,
            message=message,
            phase=self.s.phase,
            tier=self.s.tier,
            ramp_percent=self.s.ramp_percent,
            pending_gates=[g.gate for g in self.s.pending_gates],
        )

    def _signal(self, name: str, arg: Any) -> None:
        """A signal cannot answer; a refused one is recorded in the audit trail and changes nothing else."""
        if self.policy is None and name != Names.NOTE:
            self._audit("refused", actor=_actor(arg), details={"control": name, "reason": "policy not loaded yet"})
            return
        reason = self._check(name, arg)
        if reason is not None:
            self._audit("refused", actor=_actor(arg), details={"control": name, "reason": reason})
            self._publish()
            return
        self._apply(name, arg)

    def _validate(self, name: str, arg: Any) -> None:
        if self.policy is None and name != Names.NOTE:
            raise ValueError("the incident is still loading its policy; retry in a moment")
        reason = self._check(name, arg)
        if reason is not None:
            raise ValueError(reason)

    # signals ----------------------------------------------------------
    @workflow.signal(
        name=Names.REPORT,
        description='A failure report joins this incident. JSON: {"service": "chat", "dependency": "primary-llm", "failure_type": "error_spike", "source": "ui", "message": "..."}',
    )
    def report(self, report: IncidentReport) -> None:
        first = self.s.report_count == 0
        self.s.report_count += max(report.coalesced, 1 + len(report.also))  # a coalesced burst counts every report
        for i, one in enumerate(report.expanded()):
            if len(self.s.reports) < MAX_KEPT_REPORTS:
                self.s.reports.append(one)
                self._audit(
                    "reported" if first and i == 0 else "report_joined",
                    actor=one.source,
                    details={"failure_type": str(one.failure_type or ""), "message": one.message},
                )

    @workflow.signal(
        name=Names.APPROVE,
        description='Approve a pending gate. JSON: {"gate": "ramp:10", "approver": "alice", "reason": "error rate flat"}',
    )
    def approve_signal(self, arg: ApprovalInput) -> None:
        self._signal(Names.APPROVE, arg)

    @workflow.signal(
        name=Names.REJECT,
        description='Reject a pending gate. JSON: {"gate": "ramp:10", "approver": "alice", "reason": "..."}',
    )
    def reject_signal(self, arg: ApprovalInput) -> None:
        self._signal(Names.REJECT, arg)

    @workflow.signal(
        name=Names.PAUSE, description='Hold the recovery at its next step. JSON: {"actor": "alice", "reason": "..."}'
    )
    def pause_signal(self, arg: ControlInput) -> None:
        self._signal(Names.PAUSE, arg)

    @workflow.signal(
        name=Names.RESUME, description='Resume a paused recovery. JSON: {"actor": "alice", "reason": "..."}'
    )
    def resume_signal(self, arg: ControlInput) -> None:
        self._signal(Names.RESUME, arg)

    @workflow.signal(
        name=Names.ABORT,
        description='Abort the ramp: roll back to the fallback tier now. JSON: {"actor": "alice", "reason": "..."}',
    )
    def abort_signal(self, arg: ControlInput) -> None:
        self._signal(Names.ABORT, arg)

    @workflow.signal(
        name=Names.PROMOTE,
        description='Skip the remaining ramp steps to 100 %. JSON: {"actor": "alice", "reason": "..."}',
    )
    def promote_signal(self, arg: ControlInput) -> None:
        self._signal(Names.PROMOTE, arg)

    @workflow.signal(
        name=Names.FORCE_TIER,
        description='Manual override: serve from this tier. JSON: {"tier": "tier_1_secondary", "actor": "alice", "reason": "..."}',
    )
    def force_tier_signal(self, arg: ForceTierInput) -> None:
        self._signal(Names.FORCE_TIER, arg)

    @workflow.signal(
        name=Names.DECLARE_REMEDIATED,
        description='The primary is fixed: go on to validation. JSON: {"actor": "alice", "reason": "rolled back deploy"}',
    )
    def declare_remediated_signal(self, arg: ControlInput) -> None:
        self._signal(Names.DECLARE_REMEDIATED, arg)

    @workflow.signal(
        name=Names.NOTE, description='Add a note to the incident. JSON: {"author": "alice", "text": "..."}'
    )
    def note_signal(self, arg: NoteInput) -> None:
        self._signal(Names.NOTE, arg)

    # updates: same rules, but a refusal answers the caller and leaves no trace ------------------
    @workflow.update(
        name=Names.APPROVE,
        description='Approve a pending gate; refused with a reason if the gate is not pending or the approver is not allowed. JSON: {"gate": "ramp:10", "approver": "alice", "reason": "..."}',
    )
    def approve_update(self, arg: ApprovalInput) -> ControlResult:
        return self._result(True, self._apply(Names.APPROVE, arg))

    @approve_update.validator
    def _v_approve(self, arg: ApprovalInput) -> None:
        self._validate(Names.APPROVE, arg)

    @workflow.update(
        name=Names.REJECT,
        description='Reject a pending gate. JSON: {"gate": "ramp:10", "approver": "alice", "reason": "..."}',
    )
    def reject_update(self, arg: ApprovalInput) -> ControlResult:
        return self._result(True, self._apply(Names.REJECT, arg))

    @reject_update.validator
    def _v_reject(self, arg: ApprovalInput) -> None:
        self._validate(Names.REJECT, arg)

    @workflow.update(
        name=Names.PAUSE, description='Hold the recovery at its next step. JSON: {"actor": "alice", "reason": "..."}'
    )
    def pause_update(self, arg: ControlInput) -> ControlResult:
        return self._result(True, self._apply(Names.PAUSE, arg))

    @pause_update.validator
    def _v_pause(self, arg: ControlInput) -> None:
        self._validate(Names.PAUSE, arg)

    @workflow.update(
        name=Names.RESUME, description='Resume a paused recovery. JSON: {"actor": "alice", "reason": "..."}'
    )
    def resume_update(self, arg: ControlInput) -> ControlResult:
        return self._result(True, self._apply(Names.RESUME, arg))

    @resume_update.validator
    def _v_resume(self, arg: ControlInput) -> None:
        self._validate(Names.RESUME, arg)

    @workflow.update(
        name=Names.ABORT,
        description='Abort the ramp: roll back to the fallback tier now. JSON: {"actor": "alice", "reason": "..."}',
    )
    def abort_update(self, arg: ControlInput) -> ControlResult:
        return self._result(True, self._apply(Names.ABORT, arg))

    @abort_update.validator
    def _v_abort(self, arg: ControlInput) -> None:
        self._validate(Names.ABORT, arg)

    @workflow.update(
        name=Names.PROMOTE,
        description='Skip the remaining ramp steps to 100 %. JSON: {"actor": "alice", "reason": "..."}',
    )
    def promote_update(self, arg: ControlInput) -> ControlResult:
        return self._result(True, self._apply(Names.PROMOTE, arg))

    @promote_update.validator
    def _v_promote(self, arg: ControlInput) -> None:
        self._validate(Names.PROMOTE, arg)

    @workflow.update(
        name=Names.FORCE_TIER,
        description='Manual override: serve from this tier. JSON: {"tier": "tier_1_secondary", "actor": "alice", "reason": "..."}',
    )
    def force_tier_update(self, arg: ForceTierInput) -> ControlResult:
        return self._result(True, self._apply(Names.FORCE_TIER, arg))

    @force_tier_update.validator
    def _v_force_tier(self, arg: ForceTierInput) -> None:
        self._validate(Names.FORCE_TIER, arg)

    @workflow.update(
        name=Names.DECLARE_REMEDIATED,
        description='The primary is fixed: go on to validation. JSON: {"actor": "alice", "reason": "..."}',
    )
    def declare_remediated_update(self, arg: ControlInput) -> ControlResult:
        return self._result(True, self._apply(Names.DECLARE_REMEDIATED, arg))

    @declare_remediated_update.validator
    def _v_declare_remediated(self, arg: ControlInput) -> None:
        self._validate(Names.DECLARE_REMEDIATED, arg)

    @workflow.update(
        name=Names.NOTE, description='Add a note to the incident. JSON: {"author": "alice", "text": "..."}'
    )
    def note_update(self, arg: NoteInput) -> ControlResult:
        return self._result(True, self._apply(Names.NOTE, arg))

    @note_update.validator
    def _v_note(self, arg: NoteInput) -> None:
        self._validate(Names.NOTE, arg)

    @workflow.query(
        name=Names.STATE,
        description="The whole incident: phase, tier, degradation, ramp, pending gates, timeline and audit trail.",
    )
    def state(self) -> IncidentState:
        return self.s

    # ------------------------------------------------------------------ bookkeeping
    def _audit(self, action: str, actor: str = "system", details: dict[str, Any] | None = None) -> None:
        append_entry(
            self.s.audit, at=workflow.now(), action=action, actor=actor, details=details, new_state=str(self.s.phase)
        )

    def _enter(self, phase: RecoveryPhase) -> None:
        now = workflow.now()
        if self.s.phases and self.s.phases[-1].phase is phase and self.s.phases[-1].left_at is None:
            self._publish()
            return
        if self.s.phases and self.s.phases[-1].left_at is None:
            self.s.phases[-1].left_at = now
        previous = str(self.s.phases[-1].phase) if self.s.phases else ""
        self.s.phases.append(PhaseSpan(phase=phase, entered_at=now))
        self.s.phase = phase
        append_entry(self.s.audit, at=now, action="phase", previous_state=previous, new_state=str(phase))
        workflow.logger.info("phase %s", phase, extra={"incident_id": self.s.incident_id})
        self._publish()

    def _enter_tier(self, tier: FallbackTier, reason: str) -> None:
        """Record a tier change; re-pinning the tier already serving (a rollback) is not a change."""
        now = workflow.now()
        previous = self.s.tier
        if self.s.tiers and self.s.tiers[-1].left_at is None and self.s.tiers[-1].tier is tier:
            self._publish()
            return
        if self.s.tiers and self.s.tiers[-1].left_at is None:
            self.s.tiers[-1].left_at = now
        self.s.tiers.append(TierSpan(tier=tier, entered_at=now, reason=reason))
        self.s.tier = tier
        append_entry(
            self.s.audit,
            at=now,
            action="tier",
            previous_state=str(previous),
            new_state=str(tier),
            details={"reason": reason},
        )
        self._publish()

    def _close(self) -> None:
        now = workflow.now()
        if self.s.phases and self.s.phases[-1].left_at is None:
            self.s.phases[-1].left_at = now
        self.s.closed_at = now
        self._publish()

    def _publish(self) -> None:
        """Search attributes and the Markdown 'current details' the Temporal UI shows.

        Only attributes whose value changed are upserted: each upsert is a history event, and an incident publishes
        at every step.
        """
        s = self.s
        values: dict[str, tuple[SearchAttributeKey[Any], Any]] = {
            sa.SERVICE.name: (sa.SERVICE, s.service),
            sa.DEPENDENCY.name: (sa.DEPENDENCY, s.dependency),
            sa.PHASE.name: (sa.PHASE, str(s.phase)),
            sa.TIER.name: (sa.TIER, str(s.tier)),
            sa.DEGRADATION.name: (sa.DEGRADATION, str(s.degradation_level)),
            sa.AWAITING_APPROVAL.name: (sa.AWAITING_APPROVAL, s.awaiting_approval),
            sa.RAMP_PERCENT.name: (sa.RAMP_PERCENT, s.ramp_percent),
        }
        if s.failure_type is not None:
            values[sa.FAILURE_TYPE.name] = (sa.FAILURE_TYPE, str(s.failure_type))
        if s.severity is not None:
            values[sa.SEVERITY.name] = (sa.SEVERITY, str(s.severity))
        updates: list[SearchAttributeUpdate[Any]] = [
            key.value_set(value) for name, (key, value) in values.items() if self._published.get(name) != value
        ]
        if updates:
            workflow.upsert_search_attributes(updates)
            self._published.update({name: value for name, (_, value) in values.items()})
        workflow.set_current_details(_details_markdown(s))

    def _escalate(self, why: str) -> None:
        assert self.policy
        self._audit("escalated", details={"reason": why})
        self._notify(
            f"escalation:{len(self.s.audit)}",
            self.policy.notifications.escalation,
            f"{self.s.service}: escalation",
            why,
        )

    def _notify_level(self, event: str, title: str) -> None:
        audiences = audiences_for(self.s.degradation_level, self.s.severity)
        message = (
            f"{self.s.failure_type or 'failure'} on {self.s.dependency} ({self.s.severity}): {self.s.reason}. "
            f"Serving from {self.s.tier}; degradation {self.s.degradation_level} "
            f"({self.s.degradation_level.feature_availability:.0%} of features)."
        )
        self._notify(event, audiences, title, message)

    def _notify(self, event: str, audiences: list[NotificationAudience], title: str, message: str) -> None:
        """Notify in the background: a slow channel never holds up the recovery, and every send is recorded."""
        assert self.policy
        for audience in audiences:
            key = f"{self.s.incident_id}:{event}:{audience}"
            if any(n.idempotency_key == key for n in self.s.notifications):
                continue
            channels = self.policy.notifications.routes.get(audience, [])
            record = NotificationRecord(
                audience=audience,
                channel=",".join(c.type for c in channels) or "none",
                event=event,
                idempotency_key=key,
                due_at=workflow.now() + timedelta(minutes=audience.sla_minutes, seconds=30),
            )
            self.s.notifications.append(record)
            if not channels:
                record.error = f"no channel configured for audience {audience}"
                continue
            notify = NotifyInput(
                incident_id=self.s.incident_id,
                event=event.split(":")[0],
                audience=audience,
                channels=channels,
                severity=self.s.severity,
                title=title,
                message=message,
                details={
                    "service": self.s.service,
                    "dependency": self.s.dependency,
                    "phase": str(self.s.phase),
                    "tier": str(self.s.tier),
                    "degradation_level": str(self.s.degradation_level),
                    "component": status_component(self.s.degradation_level),
                },
                idempotency_key=key,
            )
            self._notifications.append(asyncio.create_task(self._send(notify, record)))

    async def _send(self, notify: NotifyInput, record: NotificationRecord) -> None:
        try:
            result = await workflow.execute_activity(
                Activity.NOTIFY,
                notify,
                result_type=NotifyResult,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {notify.audience}: {notify.event}",
            )
        except ActivityError as err:
            record.error = str(err.cause or err)
            self._audit("notification_failed", details={"key": record.idempotency_key, "error": record.error})
            return
        delivered = [d.delivered_at for d in result.deliveries if d.delivered_at is not None]
        record.sent_at = max(delivered) if delivered else workflow.now()
        record.ok = result.ok
        record.error = "; ".join(f"{d.channel}: {d.error}" for d in result.deliveries if not d.ok)
        if not result.ok:
            self._audit("notification_failed", details={"key": record.idempotency_key, "error": record.error})

    async def _drain_notifications(self) -> None:
        pending = [t for t in self._notifications if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._notifications = [t for t in self._notifications if not t.done()]

    async def _act(
        self,
        name: str,
        arg: BaseModel,
        result_type: type[M],
        summary: str,
        within: timedelta = timedelta(seconds=30),
        heartbeat: timedelta | None = None,
    ) -> M:
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=within,
                heartbeat_timeout=heartbeat,
                retry_policy=QUICK,
                summary=summary,
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                # Bad configuration: say so in the incident, tell on-call, and fail loudly rather than guess.
                self._audit("activity_failed", details={"activity": name, "error": str(cause)})
                if self.policy is not None:
                    self._notify(
                        f"failed:{name}", [NotificationAudience.ONCALL], f"{self.s.service}: {name} failed", str(cause)
                    )
                    await self._drain_notifications()
            raise

    def _history_too_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() > self.history_limit

    async def _continue_as_new(self) -> NoReturn:
        """Carry the state and the policy snapshot into a fresh run; it resumes at the current phase."""
        await self._drain_notifications()
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.s.continued += 1
        workflow.continue_as_new(
            RecoveryInput(
                service=self.s.service,
                dependency=self.s.dependency,
                state=self.s,
                policy=self.policy,
                history_limit=self.history_limit,
            )
        )


def _actor(arg: Any) -> str:
    return str(
        getattr(arg, "approver", None) or getattr(arg, "actor", None) or getattr(arg, "author", None) or "unknown"
    )


def _details_markdown(s: IncidentState) -> str:
    lines = [
        f"## {s.service}: {s.failure_type or 'failure'} on {s.dependency} ({s.severity or 'unclassified'})",
        "",
        f"**Phase** `{s.phase}` · **Tier** `{s.tier}` ({s.tier.quality_percentage} % quality) · "
        f"**Degradation** `{s.degradation_level}` · **Ramp** {s.ramp_percent} % · **Attempt** {s.attempt}",
    ]
    if s.reason:
        lines += ["", f"**Why**: {s.reason}"]
    if s.paused:
        lines += ["", '**Paused**: send the `resume` signal with `{"actor": "you"}` to continue.']
    if s.awaiting_human:
        lines += ["", '**Waiting for a human**: send `declare_remediated` with `{"actor": "you", "reason": "..."}`.']
    for g in s.pending_gates:
        lines += [
            "",
            f"### Awaiting approval: `{g.gate}`",
            f"{g.context}. Approvers: {', '.join(g.approvers)}. Deadline {g.deadline:%H:%M:%S} UTC"
            + (" (escalated)" if g.escalated else ""),
            f'Send the `approve` signal with `{{"gate": "{g.gate}", "approver": "<name>", "reason": "..."}}`',
        ]
    if s.rollbacks:
        rb = s.rollbacks[-1]
        lines += ["", f"**Last rollback** at {rb.percent} %: {rb.reason}"]
    lines += ["", "### Recent"]
    for e in s.audit[-6:]:
        lines.append(f"- {e.at:%H:%M:%S} {e.action} {e.new_state} ({e.actor})")
    if s.postmortem_path:
        lines += ["", f"**Post-mortem**: `{s.postmortem_path}`"]
    return "\n".join(lines)
