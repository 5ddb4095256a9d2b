"""The recovery workflow's controls: signals (Temporal UI, `temporal workflow signal`) and updates (the CLI).

Every control is checked by `governor.controls.refusal`, the same rule for both ways in: a refused signal is recorded
in the audit trail and changes nothing else; a refused update is answered by its validator and leaves no trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.audit import AuditAction
    from governor.controls import Control, actor_of, approvals_needed, refusal
    from governor.enums import RecoveryPhase
    from governor.incident import (
        ApprovalInput,
        ControlInputError,
        ControlResult,
        Decision,
        IncidentReport,
        IncidentState,
        Names,
        RecoveryInput,
        claimed_actor,
        parse_control_input,
    )

from workflows.bookkeeping import Bookkeeping

MAX_KEPT_REPORTS = 20
_RESTORING = (RecoveryPhase.FULL_RESTORE, RecoveryPhase.POST_MORTEM)
"""Phases in which the occurrence no longer handles a report: it goes to the next occurrence instead."""
DETECTION_KEEPS_REPORTS_PATCH = "detection-keeps-reports"
"""Reports that arrive while detection re-probes, or after the occurrence closed, are not lost with a false alarm."""


def _signal_handler(control: Control, description: str) -> Callable[..., None]:
    """One control's signal: any input (none, null, wrong types, huge) is taken raw and checked inside."""

    def handler(self, *args: Any) -> None:
        self._signal(control, args)

    handler.__name__ = handler.__qualname__ = f"{control}_signal"
    return workflow.signal(name=control, description=description)(handler)


def _update_handler(control: Control, description: str) -> Any:
    """One control's update and its validator (which refuses bad input and rule breaks before history is written)."""

    def handler(self, *args: Any) -> ControlResult:
        return self._update(control, args)

    def validator(self, *args: Any) -> None:
        self._validate(control, args)

    handler.__name__ = handler.__qualname__ = f"{control}_update"
    update = workflow.update(name=control, description=description)(handler)
    update.validator(validator)
    return update


class Controls(Bookkeeping):
    """The signal, update and query handlers (the SDK finds them on a base class of the workflow)."""

    def _apply(self, name: str, arg: Any) -> str:
        s, now = self.s, workflow.now()
        if name in (Names.APPROVE, Names.REJECT):
            return self._decide(name == Names.APPROVE, arg)
        elif name == Names.NOTE:
            s.notes.append({"at": now.isoformat(), "author": arg.author, "text": arg.text})
            self._audit(AuditAction.NOTE, actor=arg.author, details={"text": arg.text})
            message = "note added"
        else:
            actor = arg.actor
            details: dict[str, Any] = {"reason": arg.reason}
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
            elif name == Names.CLAIM:
                details["previous_owner"] = s.owner or ""
                s.owner = actor
            if name == Names.FORCE_TIER:
                details["tier"] = str(arg.tier)
            self._audit(AuditAction(name), actor=actor, details=details)
            message = f"{name} accepted from {actor}"
        self._publish()
        return message

    def _decide(self, approved: bool, arg: ApprovalInput) -> str:
        """Record an approval or rejection of the pending request `arg` names (the rules have already passed it)."""
        s, now = self.s, workflow.now()
        pending = s.pending(arg.gate)
        assert pending is not None and self.policy is not None
        approvers = [*pending.approved_by, arg.approver] if approved else [arg.approver]
        needed = approvals_needed(pending.requested_by, self.policy) if approved else 1
        details: dict[str, Any] = {"gate": arg.gate, "reason": arg.reason}
        if pending.gate_id:
            details["gate_id"] = pending.gate_id
        if len(approvers) < needed:  # four-eyes: the gate stays pending until a second, different approver agrees
            pending.approved_by = approvers
            details["approvals"] = f"{len(approvers)} of {needed}"
            self._audit(AuditAction.APPROVED, actor=arg.approver, details=details)
            self._publish()
            return f"{arg.gate} approved by {arg.approver} ({len(approvers)} of {needed}: four-eyes needs another approver)"
        s.pending_gates = [g for g in s.pending_gates if g is not pending]
        s.decisions.append(
            Decision(
                gate=arg.gate,
                approved=approved,
                approver=arg.approver,
                reason=arg.reason,
                at=now,
                gate_id=pending.gate_id,
                approved_by=approvers if approved else [],
            )
        )
        if needed > 1:
            details["approvals"] = f"{len(approvers)} of {needed}"
        self._audit(AuditAction.APPROVED if approved else AuditAction.REJECTED, actor=arg.approver, details=details)
        self._publish()
        return f"{arg.gate} {'approved' if approved else 'rejected'} by {arg.approver}"

    def _result(self, accepted: bool, message: str) -> ControlResult:
        return ControlResult(
            accepted=accepted,
            message=message,
            phase=self.s.phase,
            tier=self.s.tier,
            ramp_percent=self.s.ramp_percent,
            pending_gates=[g.gate for g in self.s.pending_gates],
            pending_gate_ids=[g.gate_id for g in self.s.pending_gates],
        )

    def _signal(self, name: Control, args: tuple[Any, ...]) -> None:
        """A signal cannot answer: a refused one (bad input or against the rules) is audited and changes nothing else.

        Never raises: a signal handler that raised would fail the workflow task on every retry.
        """
        try:
            arg = parse_control_input(name, args)
        except ControlInputError as err:
            self._refused(name, claimed_actor(args[0] if args else None), str(err))
            return
        reason = refusal(name, arg, self.s, self.policy)
        if reason is not None:
            self._refused(name, actor_of(arg), reason)
            return
        self._apply(name, arg)

    def _refused(self, name: Control, actor: str, reason: str) -> None:
        self._audit(AuditAction.REFUSED, actor=actor, details={"control": str(name), "reason": reason})
        if self.policy is not None:
            self._publish()

    def _validate(self, name: Control, args: tuple[Any, ...]) -> None:
        """An update's validator: refuse (the caller gets the reason) before anything is written to history."""
        arg = parse_control_input(name, args)  # ControlInputError is a ValueError: the update is rejected
        reason = refusal(name, arg, self.s, self.policy)
        if reason is not None:
            raise ValueError(reason)

    def _update(self, name: Control, args: tuple[Any, ...]) -> ControlResult:
        return self._result(True, self._apply(name, parse_control_input(name, args)))

    @workflow.signal(
        name=Control.REPORT,
        description='A failure report joins this incident. JSON: {"service": "chat", "dependency": "primary-llm", "failure_type": "error_spike", "source": "ui", "message": "..."}',
    )
    def report(self, *args: Any) -> None:
        try:
            report = parse_control_input(Control.REPORT, args)
        except ControlInputError as err:
            self._refused(Control.REPORT, claimed_actor(args[0] if args else None), str(err))
            return
        assert isinstance(report, IncidentReport)
        closed = self.s.closed_at is not None and workflow.patched(DETECTION_KEEPS_REPORTS_PATCH)
        if (self.s.phase in _RESTORING or closed) and self.s.report_count > 0:
            self._late_report(report)
            return
        first = self.s.report_count == 0
        self.s.report_count += max(report.coalesced, 1 + len(report.also))  # a coalesced burst counts every report
        for one in report.expanded():
            if self.s.needs_confirming(one) and len(self.s.suspects) < MAX_KEPT_REPORTS:
                self.s.suspects.append(one)  # another dependency failing, or the one restored failing again
        for i, one in enumerate(report.expanded()):
            if len(self.s.reports) < MAX_KEPT_REPORTS:
                self.s.reports.append(one)
                self._audit(
                    AuditAction.REPORTED if first and i == 0 else AuditAction.REPORT_JOINED,
                    actor=one.source,
                    details={"failure_type": str(one.failure_type or ""), "message": one.message},
                )

    def _late_report(self, report: IncidentReport) -> None:
        """A report after the full restore began is not this occurrence's any more: keep it for the next one, which
        opens as soon as this one closes (`_open_next_occurrence`), so it is never counted and lost."""
        self.s.late_report_count += max(report.coalesced, 1 + len(report.also))
        for one in report.expanded():
            if len(self.s.late_reports) < MAX_KEPT_REPORTS:
                self.s.late_reports.append(one)
                self._audit(
                    AuditAction.REPORT_JOINED,
                    actor=one.source,
                    details={
                        "failure_type": str(one.failure_type or ""),
                        "message": one.message,
                        "late": "arrived during the restore: the next occurrence handles it",
                    },
                )

    async def _open_next_occurrence(self) -> NoReturn:
        """This occurrence is closed and its post-mortem written; reports that arrived meanwhile start the next one
        in a fresh run of the same workflow id (detection re-probes: a dependency down again is a new incident)."""
        assert self.s.late_reports
        await workflow.wait_condition(workflow.all_handlers_finished)
        reports, count = self.s.late_reports, self.s.late_report_count
        workflow.logger.info("late reports open the next occurrence", extra={"incident_id": self.s.incident_id})
        dependency = reports[0].dependency  # the next occurrence is about what failed, whichever dependency
        workflow.continue_as_new(
            RecoveryInput(
                service=self.s.service,
                dependency=dependency,
                state=IncidentState(
                    incident_id=self.s.incident_id,
                    service=self.s.service,
                    dependency=dependency,
                    reports=reports,
                    report_count=max(count, len(reports)),
                    follows=self.s.occurrence_id or None,
                ),
                history_limit=self.history_limit,
            )
        )

    approve_signal = _signal_handler(
        Control.APPROVE,
        "Approve a pending gate; name its gate_id (shown with the pending gate in current details, `governor show`): "
        'JSON: {"gate": "ramp:10", "gate_id": "<id>", "approver": "alice", "reason": "error rate flat"}',
    )
    reject_signal = _signal_handler(
        Control.REJECT,
        'Reject a pending gate. JSON: {"gate": "ramp:10", "gate_id": "<id>", "approver": "alice", "reason": "..."}',
    )
    pause_signal = _signal_handler(
        Control.PAUSE, 'Hold the recovery at its next step. JSON: {"actor": "alice", "reason": "..."}'
    )
    resume_signal = _signal_handler(
        Control.RESUME, 'Resume a paused recovery. JSON: {"actor": "alice", "reason": "..."}'
    )
    abort_signal = _signal_handler(
        Control.ABORT,
        'Abort the ramp: roll back to the fallback tier now. JSON: {"actor": "alice", "reason": "..."}',
    )
    promote_signal = _signal_handler(
        Control.PROMOTE, 'Skip the remaining ramp steps to 100 %. JSON: {"actor": "alice", "reason": "..."}'
    )
    force_tier_signal = _signal_handler(
        Control.FORCE_TIER,
        'Manual override: serve from this tier. JSON: {"tier": "tier_1_secondary", "actor": "alice", "reason": "..."}',
    )
    declare_remediated_signal = _signal_handler(
        Control.DECLARE_REMEDIATED,
        'The primary is fixed: go on to validation. JSON: {"actor": "alice", "reason": "rolled back deploy"}',
    )
    note_signal = _signal_handler(Control.NOTE, 'Add a note to the incident. JSON: {"author": "alice", "text": "..."}')
    claim_signal = _signal_handler(
        Control.CLAIM, 'Take ownership of the recovery (its plan\'s owner). JSON: {"actor": "alice", "reason": "..."}'
    )

    # updates: same rules, but a refusal answers the caller and leaves no trace
    approve_update = _update_handler(
        Control.APPROVE,
        "Approve a pending gate; refused with a reason if the gate is not pending, the gate_id is not its pending "
        "request (stale or replayed) or the approver is not allowed. "
        'JSON: {"gate": "ramp:10", "gate_id": "<id>", "approver": "alice", "reason": "..."}',
    )
    reject_update = _update_handler(
        Control.REJECT,
        'Reject a pending gate. JSON: {"gate": "ramp:10", "gate_id": "<id>", "approver": "alice", "reason": "..."}',
    )
    pause_update = _update_handler(
        Control.PAUSE, 'Hold the recovery at its next step. JSON: {"actor": "alice", "reason": "..."}'
    )
    resume_update = _update_handler(
        Control.RESUME, 'Resume a paused recovery. JSON: {"actor": "alice", "reason": "..."}'
    )
    abort_update = _update_handler(
        Control.ABORT,
        'Abort the ramp: roll back to the fallback tier now. JSON: {"actor": "alice", "reason": "..."}',
    )
    promote_update = _update_handler(
        Control.PROMOTE, 'Skip the remaining ramp steps to 100 %. JSON: {"actor": "alice", "reason": "..."}'
    )
    force_tier_update = _update_handler(
        Control.FORCE_TIER,
        'Manual override: serve from this tier. JSON: {"tier": "tier_1_secondary", "actor": "alice", "reason": "..."}',
    )
    declare_remediated_update = _update_handler(
        Control.DECLARE_REMEDIATED,
        'The primary is fixed: go on to validation. JSON: {"actor": "alice", "reason": "..."}',
    )
    note_update = _update_handler(Control.NOTE, 'Add a note to the incident. JSON: {"author": "alice", "text": "..."}')
    claim_update = _update_handler(
        Control.CLAIM, 'Take ownership of the recovery (its plan\'s owner). JSON: {"actor": "alice", "reason": "..."}'
    )

    @workflow.query(
        name=Control.STATE,
        description="The whole incident: phase, tier, degradation, ramp, pending gates, timeline and audit trail.",
    )
    def state(self) -> IncidentState:
        return self.s
