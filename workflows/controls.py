"""The recovery workflow's controls: signals (Temporal UI, `temporal workflow signal`) and updates (the CLI).

Every control is checked by `governor.controls.refusal`, the same rule for both ways in: a refused signal is recorded
in the audit trail and changes nothing else; a refused update is answered by its validator and leaves no trace.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.controls import actor_of, refusal
    from governor.incident import (
        ApprovalInput,
        ControlInput,
        ControlResult,
        Decision,
        ForceTierInput,
        IncidentReport,
        IncidentState,
        Names,
        NoteInput,
    )

from workflows.bookkeeping import Bookkeeping

MAX_KEPT_REPORTS = 20


class Controls(Bookkeeping):
    """The signal, update and query handlers (the SDK finds them on a base class of the workflow)."""

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
        reason = refusal(name, arg, self.s, self.policy)
        if reason is not None:
            self._audit("refused", actor=actor_of(arg), details={"control": name, "reason": reason})
            if self.policy is not None:
                self._publish()
            return
        self._apply(name, arg)

    def _validate(self, name: str, arg: Any) -> None:
        reason = refusal(name, arg, self.s, self.policy)
        if reason is not None:
            raise ValueError(reason)

    # signals ----------------------------------------------------------
    @workflow.signal(
        name=Names.REPORT,
        description='A failure report joins this incident. JSON: {"service": "chat", "dependency": "primary-llm", "failure_type": "error_spike", "source": "ui", "message": "..."}',
    )
    def report(self, report: IncidentReport) -> None:
        self.s.report_count += 1
        if len(self.s.reports) < MAX_KEPT_REPORTS:
            self.s.reports.append(report)
            self._audit(
                "reported" if self.s.report_count == 1 else "report_joined",
                actor=report.source,
                details={"failure_type": str(report.failure_type or ""), "message": report.message},
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
