"""IncidentRecoveryWorkflow: one durable workflow per incident, from detection to post-mortem.

It reads like the runbook it replaces: each phase is a method; decisions are pure functions from `governor`;
every side effect is an activity. Controls arrive as signals (Temporal UI, `temporal workflow signal`) or as
updates (the CLI), checked by the same rules, so a bad request is refused with a reason and changes nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
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
        PostmortemInput,
        PostmortemResult,
        StatusChange,
        ValidatePrimaryInput,
        ValidatePrimaryResult,
        WaitForHealthyInput,
        WaitForHealthyResult,
    )
    from governor.audit import AuditAction
    from governor.decisions import Verdict, pick_tier
    from governor.enums import DegradationLevel, FallbackTier, NotificationAudience, RecoveryPhase
    from governor.incident import (
        WORKFLOW_NAME,
        IncidentReport,
        IncidentState,
        PendingGate,
        RecoveryInput,
        incident_id,
    )
    from governor.pin_first import confirmed_severity, degradation_for, route_for, status_for
    from governor.policy import ServicePolicy

from workflows.blast import BlastRadiusStep
from workflows.bookkeeping import BLAST_RADIUS_PATCH
from workflows.controls import DETECTION_KEEPS_REPORTS_PATCH, Controls
from workflows.drilling import Drilling
from workflows.joining import SERVICE_INCIDENT_PATCH, FailedAgain, Joining
from workflows.pin_first import PIN_FIRST_PATCH, PinFirst
from workflows.priorities import DEFAULT, FALLBACK_PATH
from workflows.ramping import Ramping, RollbackNow
from workflows.tiering import Tiering
from workflows.waits import EscalatingWait

M = TypeVar("M", bound=BaseModel)

QUICK = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))


@workflow.defn(name=WORKFLOW_NAME)
class IncidentRecoveryWorkflow(Controls, Ramping, Tiering, Joining, BlastRadiusStep, Drilling, PinFirst):
    @workflow.init
    def __init__(self, input: RecoveryInput) -> None:
        self.s = input.state or IncidentState(
            incident_id=incident_id(input.service),
            service=input.service,
            dependency=input.dependency,
        )
        self.policy: ServicePolicy | None = input.policy
        self.history_limit = input.history_limit
        self._notifications: list[asyncio.Task[None]] = []
        self._published: dict[str, Any] = {}
        """Search attribute values already upserted in this run."""
        self._identify_occurrence()

    # ------------------------------------------------------------------ run: the runbook
    @workflow.run
    async def run(self, input: RecoveryInput) -> IncidentState:
        self._pin_first = workflow.patched(PIN_FIRST_PATCH)
        if self.policy is None:
            if self._pin_first:  # a new incident: report -> pinned tier in one activity (workflows/pin_first.py)
                await self._fall_back_first()
            self.policy = self.policy or await self._act(
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
            if self.s.phase is not RecoveryPhase.DETECTION:
                await self._joined_failures()
            await phases[self.s.phase]()
            self._first_recorded()
            if self.s.closed_at is None and self._history_too_long():
                await self._continue_as_new()
        await self._drain_notifications()
        if self.s.late_reports and workflow.patched("late-reports-open-next-occurrence"):
            if self._pin_first:  # a task of its own before the next run: not the one that took the activity's result
                await workflow.sleep(timedelta(milliseconds=1))
            await self._open_next_occurrence()
        return self.s

    async def detect(self) -> None:
        """Confirm the report by re-probing and classify it; a failure that does not reproduce is a false alarm."""
        assert self.policy
        self._enter(RecoveryPhase.DETECTION)
        report, heard = self._detection_report()
        drill = await self._start_drill()  # a drill injects its failure first (workflows/drilling.py)
        result = drill if drill is not None else await self._confirm(report)
        if not result.confirmed and workflow.patched(DETECTION_KEEPS_REPORTS_PATCH):
            again = [r for r in self.s.reports[heard:] if r.dependency == self.s.dependency]
            if again:  # reported again while the probe ran: the probe may predate the outage, so probe once more
                report = again[-1]
                result = await self._confirm(report)
            if not result.confirmed:  # other dependencies reported meanwhile are the next occurrence's, not lost
                self.s.late_reports, self.s.suspects = self.s.suspects, []
                self.s.late_report_count = len(self.s.late_reports)
        if not result.confirmed:
            await self._drill_not_detected()  # a drill's fault the probes did not see is cleared all the same
            self._audit(AuditAction.FALSE_ALARM, details={"reason": result.reason})
            self.s.outcome = "false_alarm"
            self._close()
            return
        c = result.classification
        self.s.failure_type = (c.failure_type if c else None) or report.failure_type
        self.s.severity = confirmed_severity(c, report)
        self.s.reason = (c.reason if c else "") or report.message or "reported failure"
        self.s.detected_at = workflow.now()
        self.s.failed_tier = self.policy.failed_tier(self.s.dependency)
        if workflow.patched(SERVICE_INCIDENT_PATCH):
            self._mark_failed(self.s.dependency)
        self._audit(
            AuditAction.FAILURE_CONFIRMED,
            details={
                "failure_type": str(self.s.failure_type),
                "severity": str(self.s.severity),
                "reason": self.s.reason,
                "metrics": c.metrics if c else report.metrics,
            },
        )
        self.s.phase = RecoveryPhase.ISOLATION

    async def _confirm(self, report: IncidentReport) -> ConfirmFailureResult:
        assert self.policy
        if (prefetched := self._prefetched_confirmation()) is not None:
            return prefetched  # pin first probed it
        if report.manual:
            return ConfirmFailureResult(confirmed=True, reason=f"manual report from {report.source}")
        return await self._act(
            Activity.CONFIRM_FAILURE,
            ConfirmFailureInput(policy=self.policy, dependency=self.s.dependency, report=report),
            ConfirmFailureResult,
            f"confirm {report.failure_type or 'failure'} on {self.s.dependency}",
            within=timedelta(seconds=120),
        )

    async def isolate(self) -> None:
        """Open the failed dependency's breaker in every gateway replica; meanwhile assess the blast radius."""
        self._enter(RecoveryPhase.ISOLATION)
        assessing = asyncio.create_task(self._assess_blast_radius()) if workflow.patched(BLAST_RADIUS_PATCH) else None
        await self._gateway(
            f"open breaker {self.s.failed_tier}",
            breaker=BreakerChange(tier=self.s.failed_tier, mode="open"),
        )
        self._audit(AuditAction.BREAKER_OPENED, details={"tier": str(self.s.failed_tier)})
        if assessing is not None:
            await assessing
        self.s.phase = RecoveryPhase.FALLBACK_ACTIVE

    async def fall_back(self) -> None:
        """Pin the highest healthy tier, degrade features as policy maps that tier, and tell each audience."""
        assert self.policy
        self._enter(RecoveryPhase.FALLBACK_ACTIVE)
        if self._tier_health_on():
            tier = await self._choose_tier(f"{self.s.failed_tier} failed")
        else:  # histories recorded before the tier check: the next tier down, unchecked
            unavailable = {self.s.failed_tier}
            while True:
                tier = pick_tier(self.policy.tiers, unavailable)
                gate = f"enter:{tier}"
                if not self.policy.approvals.is_gated(gate) or await self._await_gate(gate, f"fall back to {tier}"):
                    break
                unavailable.add(tier)  # on-call refused this tier: take the next one down
        report = self.s.reports[-1] if self.s.reports else None
        forced_by = report.source if report is not None and report.manual else None  # `governor failover`
        await self._pin(tier, reason=f"{self.s.failed_tier} failed: {self.s.reason}", forced_by=forced_by)
        self.s.mitigated_at = self.s.mitigated_at or workflow.now()
        self._notify_level("fallback_active", f"{self.s.service} is served by {tier}")
        self.s.phase = RecoveryPhase.DIAGNOSIS

    async def diagnose(self) -> None:
        """Gather evidence: probes of every dependency, the gateway's stats and state."""
        assert self.policy
        self._enter(RecoveryPhase.DIAGNOSIS)
        evidence = await self._act(
            Activity.GATHER_EVIDENCE,
            EvidenceInput(policy=self.policy, dependency=self.s.restoring, incident_id=self.s.incident_id),
            Evidence,
            f"gather evidence on {self.s.restoring}",
        )
        self.s.evidence = {
            "summary": evidence.summary,
            "dependencies": evidence.dependencies,
            "probes": [p.model_dump(mode="json") for p in evidence.probes[:10]],
        }
        self._audit(AuditAction.EVIDENCE_GATHERED, details={"summary": evidence.summary})
        self.s.phase = RecoveryPhase.REMEDIATION

    async def remediate(self) -> None:
        """Wait until the primary is healthy again (or on-call declares it fixed); escalate past the deadline."""
        assert self.policy
        last = self.s.phases[-1] if self.s.phases else None
        if last is None or last.phase is not RecoveryPhase.REMEDIATION or last.left_at is not None:
            self.s.healthy_again = []  # back from validation, a rollback or a restore: every probe passes again
        self._enter(RecoveryPhase.REMEDIATION)
        await self._drill_window()  # a drill's injected failure lasts its duration
        dep = self.policy.dependency(self._to_probe())
        checks = self.policy.recovery_checks
        probing: asyncio.Task[WaitForHealthyResult] | None = None
        if not self.s.awaiting_human:
            probing = asyncio.create_task(
                self._act(
                    Activity.WAIT_FOR_HEALTHY,
                    WaitForHealthyInput(
                        dependency=dep,
                        thresholds=self.policy.thresholds,
                        interval_s=checks.probe_interval_s,
                        passes=self._passes_needed(),
                    ),
                    WaitForHealthyResult,
                    f"probe {dep.name} until {self._passes_needed()} healthy checks in a row",
                    within=timedelta(days=7),
                    heartbeat=timedelta(seconds=max(30, 5 * checks.probe_interval_s)),
                )
            )
        escalate_after = self.policy.remediation.escalate_after_s or (
            60.0 * (self.s.failure_type.typical_recovery_minutes if self.s.failure_type else 5)
        )
        waiting = EscalatingWait(
            timedelta(seconds=escalate_after),
            lambda: self._escalate(f"the primary is still down after {escalate_after:.0f} s of remediation"),
        )
        recheck: asyncio.Task[None] | None = None
        try:
            while True:
                if recheck is None and self._tier_health_on():  # re-check the other tiers while this one is down
                    recheck = asyncio.create_task(workflow.sleep(self._recheck_due()))
                await waiting.until(
                    lambda recheck=recheck: (  # type: ignore[misc]
                        (probing is not None and probing.done())
                        or self.s.remediated_by is not None
                        or self.s.forced_tier is not None
                        or self._history_too_long()
                        or (recheck is not None and recheck.done())
                        or bool(self.s.suspects)
                    )
                )
                if self._history_too_long():  # a long outage or an alert storm: carry on in a fresh run
                    await self._continue_as_new()
                if self.s.forced_tier is not None:
                    await self._apply_forced_tier()
                    continue
                if self.s.suspects:  # another dependency failed: a better tier failing changes what is restored
                    restoring = self.s.restoring
                    await self._joined_failures()
                    if self.s.restoring != restoring:
                        return  # remediate again, probing the dependency that is now restored first
                    continue
                if recheck is not None and recheck.done() and not (probing is not None and probing.done()):
                    recheck = None
                    await self._recheck_tiers()
                    continue
                break
        finally:
            if probing is not None and not probing.done():
                probing.cancel()
            if recheck is not None and not recheck.done():
                recheck.cancel()
        if self.s.remediated_by is not None:
            self._audit(AuditAction.REMEDIATION_DECLARED, actor=self.s.remediated_by)
            self.s.remediated_by = None
            self.s.flapping, self.s.flaps = False, 0  # a human says it is fixed: the flap count starts again
            self.s.healthy_again = self._same_tier()
        else:
            assert probing is not None
            healthy = probing.result()
            self._audit(
                AuditAction.PRIMARY_HEALTHY,
                details={
                    "consecutive_passes": healthy.consecutive_passes,
                    "probes": healthy.probes,
                    "dependency": dep.name,
                },
            )
            self.s.healthy_again.append(dep.name)
            if workflow.patched(SERVICE_INCIDENT_PATCH) and self._to_probe() not in self.s.healthy_again:
                return  # another failed dependency backs the same tier: probe it too before validating
        self.s.awaiting_human = False
        self.s.phase = RecoveryPhase.VALIDATION

    async def validate(self) -> None:
        """Run the recovery checks against the primary; pass the tier's exit gate before traffic returns."""
        assert self.policy
        self._enter(RecoveryPhase.VALIDATION)
        result = await self._act(
            Activity.VALIDATE_PRIMARY,
            ValidatePrimaryInput(
                dependency=self.policy.dependency(self.s.restoring),
                thresholds=self.policy.thresholds,
                checks=self.policy.recovery_checks,
                service=self.s.service,
                gateways=[str(g) for g in self.policy.gateways],
                tier=self._upstream_tier(self.s.restoring),
            ),
            ValidatePrimaryResult,
            f"recovery checks on {self.s.restoring} (health and data path)",
            within=timedelta(minutes=5),
        )
        self.s.validation = result.result.model_dump(mode="json")
        self._audit(
            AuditAction.VALIDATION, details={"verdict": str(result.result.verdict), "reason": result.result.reason}
        )
        if result.result.verdict is not Verdict.PASS:
            if workflow.patched(SERVICE_INCIDENT_PATCH):
                self._flap(f"validation: {result.result.reason}")
            self.s.phase = RecoveryPhase.REMEDIATION
            return
        await self._joined_failures()
        if self.s.phase is not RecoveryPhase.VALIDATION:
            return  # confirmed down again while it was validated: not recovered
        if self.s.failed_tier is not FallbackTier.TIER_0_PRIMARY and workflow.patched(SERVICE_INCIDENT_PATCH):
            self.s.phase = RecoveryPhase.FULL_RESTORE  # a standby tier carries no share of traffic: nothing to ramp
            return
        exit_gate = f"exit:{self.s.tier}"
        if self.policy.approvals.is_gated(exit_gate) and not await self._await_gate(
            exit_gate, f"leave {self.s.tier} and start the ramp"
        ):
            self.s.awaiting_human = True
            self.s.phase = RecoveryPhase.REMEDIATION
            return
        if self.policy.approvals.is_gated(exit_gate):
            self._note_approval(FallbackTier.TIER_0_PRIMARY, exit_gate)
        self.s.ramp_step = 0
        self.s.phase = RecoveryPhase.GRADUAL_RESTORE

    async def restore(self) -> None:
        """Primary pinned, breaker closed, degradation normal, pages resolved, status operational."""
        assert self.policy
        self._enter(RecoveryPhase.FULL_RESTORE)
        restored, tier = self._same_tier(), self.s.failed_tier
        if set(self.s.failed_dependencies) - set(restored):  # another tier is still down: restore this one, go on
            await self._restore_dependencies(restored, route=tier is FallbackTier.TIER_0_PRIMARY)
            self.s.ramp_step, self.s.soak_started_at = 0, None
            self.s.phase = RecoveryPhase.REMEDIATION
            return
        await self._gateway(
            "restore the normal chain",
            breaker=BreakerChange(tier=tier, mode="auto"),
            **self._normal_chain(),
        )
        for dependency in restored:
            self._mark_restored(dependency)
        self._enter_tier(FallbackTier.TIER_0_PRIMARY, "recovered")
        self.s.degradation_level = self.policy.degradation.level_for(FallbackTier.TIER_0_PRIMARY)
        self.s.ramp_percent = 100
        self.s.recovered_at = workflow.now()
        self.s.outcome = "recovered"
        self._audit(AuditAction.RESTORED, details={"attempts": self.s.attempt})
        await self._drill_findings()
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
        self._audit(AuditAction.CLOSED, details={"outcome": self.s.outcome})
        result = await self._act(
            Activity.WRITE_POSTMORTEM,
            PostmortemInput(state=self.s, policy=self.policy),
            PostmortemResult,
            "write the post-mortem",
        )
        self.s.postmortem_path = result.markdown_path
        self._publish()

    async def _joined_failures(self) -> None:
        """Confirm the failures that joined the incident (`joining.py`); the dependency being restored failing again
        sends validation back to remediation and rolls a ramp back, each a flap."""
        try:
            await self._take_suspects()
        except FailedAgain as again:
            if self.s.phase is RecoveryPhase.GRADUAL_RESTORE:
                await self._roll_back(RollbackNow(str(again), again.metrics))
            else:
                self._flap(str(again))
                self.s.phase = RecoveryPhase.REMEDIATION

    def _upstream_tier(self, dependency: str) -> FallbackTier | None:
        """The chain tier with an upstream this dependency backs (validation probes its data path), if any."""
        assert self.policy
        dep = self.policy.dependency(dependency)
        spec = next((t for t in self.policy.chain if t.tier is dep.tier), None)
        return dep.tier if spec is not None and spec.upstream is not None else None

    def _passes_needed(self) -> int:
        """Healthy probes in a row before the dependency counts as recovered: the policy's passes, and at least
        `stable_s` of them (a flapping dependency never passes in an up-window)."""
        assert self.policy
        checks = self.policy.recovery_checks
        return max(checks.health_passes, math.ceil(checks.stable_s / checks.probe_interval_s))

    # ------------------------------------------------------------------ gateway changes
    def _degradation_for(self, tier: FallbackTier) -> DegradationChange:
        assert self.policy
        return degradation_for(self.policy, tier, self.s.severity)

    def _status_for(self, level: DegradationLevel) -> StatusChange:
        """The status page component and message a degradation level shows."""
        return status_for(level)

    async def _pin(
        self, tier: FallbackTier, reason: str, primary_weight: int = 0, forced_by: str | None = None
    ) -> None:
        """Serve from `tier` (the primary keeps `primary_weight` % while a ramp runs); the primary is "pinned" by
        clearing the pin: a pinned primary with weight 0 would send everything to the secondary."""
        degradation = self._degradation_for(tier)
        route = route_for(tier, primary_weight)
        primary_weight = 100 if tier is FallbackTier.TIER_0_PRIMARY else primary_weight
        await self._gateway(
            f"pin {tier}",
            priority=FALLBACK_PATH,
            route=route,
            degradation=degradation,
            status=self._status_for(degradation.level),
        )
        self.s.ramp_percent = primary_weight
        self.s.degradation_level = degradation.level
        self._enter_tier(tier, reason, forced_by=forced_by)

    async def _apply_forced_tier(self) -> None:
        if self.s.forced_tier is None:
            return
        tier, self.s.forced_tier = self.s.forced_tier, None
        forcer = next((e.actor for e in reversed(self.s.audit) if e.action == AuditAction.FORCE_TIER), None)
        await self._pin(tier, reason="forced by on-call", forced_by=forcer or "on-call")
        self.s.tier_forced = True
        self._audit(AuditAction.TIER_FORCED, details={"tier": str(tier)})

    async def _gateway(self, summary: str, priority: Priority = DEFAULT, **change: Any) -> GatewayChangeResult:
        """One change to every gateway replica (`priority`: its place on the task queue)."""
        assert self.policy
        change = self._drill_change(change)  # a drill leaves the status page alone
        if (applied := self._prefetched_change(change)) is not None:
            return applied  # pin first's one gateway change made it already
        return await self._act(
            Activity.APPLY_GATEWAY_CHANGE,
            GatewayChange(
                gateways=self.policy.gateways, service=self.s.service, incident_id=self.s.incident_id, **change
            ),
            GatewayChangeResult,
            summary,
            priority=priority,
        )

    # ------------------------------------------------------------------ approvals and waits
    async def _await_gate(self, gate: str, context: str, requested_by: str = "system") -> bool:
        """Hold until on-call approves or rejects `gate`; escalate each time the policy's timeout passes."""
        assert self.policy
        self._release_publish()  # on-call sees the gate
        now = workflow.now()
        timeout = timedelta(seconds=self.policy.approvals.timeout_s)
        pending = PendingGate(
            gate=gate,
            requested_at=now,
            deadline=now + timeout,
            approvers=self.policy.approvals.approvers_for(gate),
            requested_by=requested_by,
            context=context,
            **self._gate_identity(gate),
        )
        self.s.pending_gates.append(pending)
        self._request_approval(pending)

        def overdue() -> None:
            pending.escalated, pending.deadline = True, waiting.deadline
            self._escalate(f"approval for {gate} has waited longer than {timeout.total_seconds():.0f} s")

        waiting = EscalatingWait(timeout, overdue, deadline=pending.deadline)
        await waiting.until(lambda: self.s.pending(gate) is None)
        decision = next(d for d in reversed(self.s.decisions) if d.gate == gate)
        self._publish()
        return decision.approved

    async def _hold_while_paused(self) -> None:
        if self.s.paused:
            self._publish()
            await workflow.wait_condition(lambda: not self.s.paused)

    async def _act(
        self,
        name: str,
        arg: BaseModel,
        result_type: type[M],
        summary: str,
        within: timedelta = timedelta(seconds=30),
        heartbeat: timedelta | None = None,
        priority: Priority = DEFAULT,
    ) -> M:
        self._release_publish()  # what pin first recorded is published before the workflow waits
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=within,
                heartbeat_timeout=heartbeat,
                retry_policy=QUICK,
                summary=summary,
                priority=self._priority(priority),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.non_retryable:
                # Bad configuration: say so in the incident, tell on-call, and fail loudly rather than guess.
                self._audit(AuditAction.ACTIVITY_FAILED, details={"activity": name, "error": str(cause)})
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
