"""The recovery workflow's controls and the rule that decides whether one may proceed now.

Pure (no Temporal import): the workflow's signal handlers, its update validators, the CLI and the tests share
`refusal`, so a control is refused for the same reason whichever way it arrives.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from governor.enums import RecoveryPhase

if TYPE_CHECKING:
    from governor.incident import IncidentState
    from governor.policy import ServicePolicy


class Control(StrEnum):
    """Signal, update and query names: the Temporal UI and `temporal workflow signal|update` use these."""

    REPORT = "report"
    APPROVE = "approve"
    REJECT = "reject"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"
    FORCE_TIER = "force_tier"
    DECLARE_REMEDIATED = "declare_remediated"
    NOTE = "note"
    CLAIM = "claim"
    STATE = "state"


POLICY_LOADING = "the incident is still loading its policy; retry in a moment"

_BEFORE_VALIDATION = (RecoveryPhase.REMEDIATION, RecoveryPhase.DIAGNOSIS, RecoveryPhase.FALLBACK_ACTIVE)
_NO_FORCING = (RecoveryPhase.DETECTION, RecoveryPhase.FULL_RESTORE, RecoveryPhase.POST_MORTEM)


def refusal(control: Control | str, arg: Any, state: IncidentState, policy: ServicePolicy | None) -> str | None:
    """Why `control` with `arg` must be refused now, or None when it may proceed.

    `arg` is the control's parsed input (ApprovalInput, ControlInput, ForceTierInput or NoteInput).
    """
    control = Control(control)
    if control is Control.NOTE:
        return None
    if policy is None:
        return POLICY_LOADING
    s = state
    if s.closed_at is not None:
        return f"incident {s.incident_id} is closed ({s.outcome})"
    if control in (Control.APPROVE, Control.REJECT):
        return _decision_refusal(control, arg, s, policy)
    if control is Control.PAUSE:
        return "already paused" if s.paused else None
    if control is Control.RESUME:
        return None if s.paused else "not paused"
    if control in (Control.ABORT, Control.PROMOTE):
        if s.phase is not RecoveryPhase.GRADUAL_RESTORE:
            return f"{control} applies to the ramp; the incident is in {s.phase}"
        return None
    if control is Control.FORCE_TIER:
        if arg.tier not in policy.tiers:
            return f"tier {arg.tier} is not in {s.service}'s chain ({', '.join(policy.tiers)})"
        if s.phase in _NO_FORCING:
            return f"cannot force a tier during {s.phase}"
        return None
    if control is Control.CLAIM:
        return f"{arg.actor!r} already owns {s.incident_id}" if s.owner == arg.actor else None
    if control is Control.DECLARE_REMEDIATED:
        if s.phase not in _BEFORE_VALIDATION:
            return f"declare_remediated applies before validation; the incident is in {s.phase}"
        return None
    return None


def _decision_refusal(control: Control, arg: Any, s: IncidentState, policy: ServicePolicy) -> str | None:
    """An approval or rejection must name the pending request of its gate (its id) and come from an approver."""
    pending = s.pending(arg.gate)
    if pending is None:
        earlier = next((d for d in reversed(s.decisions) if arg.gate_id and d.gate_id == arg.gate_id), None)
        if earlier is not None:
            return f"stale decision: {arg.gate} {arg.gate_id} was already decided by {earlier.approver}"
        return f"gate {arg.gate!r} is not pending (pending: {pending_text(s)})"
    if pending.gate_id:  # gates opened without an id (older workflow code) are decided by name alone
        if arg.gate_id is None:
            return (
                f"{control} must name the pending request of {arg.gate}: add "
                f'"gate_id": "{pending.gate_id}" (shown with the pending gate; an approval without it could be a replay)'
            )
        if arg.gate_id != pending.gate_id:
            decided = any(d.gate_id == arg.gate_id for d in s.decisions)
            return (
                f"stale or replayed {control}: gate id {arg.gate_id!r} is "
                + ("an earlier, already decided request" if decided else "not a request")
                + f" of {arg.gate} in this incident; the pending request is {pending.gate_id!r}"
            )
    if arg.approver not in pending.approvers:
        return f"{arg.approver!r} may not approve {arg.gate} (approvers: {', '.join(pending.approvers)})"
    if policy.approvals.four_eyes:
        if arg.approver == pending.requested_by:
            return f"four-eyes rule: {arg.approver!r} requested {arg.gate} and cannot also decide it"
        if control is Control.APPROVE and arg.approver in pending.approved_by:
            return f"four-eyes rule: {arg.approver!r} already approved {arg.gate}; a second, different approver must"
    return None


def approvals_needed(requested_by: str, policy: ServicePolicy) -> int:
    """Distinct approvals a gate needs: two under the four-eyes rule for a gate the system opened (nobody asked for
    it, so no requester is the first pair of eyes), else one (a requester and an approver are already two)."""
    return 2 if policy.approvals.four_eyes and requested_by == "system" else 1


def pending_text(s: IncidentState) -> str:
    """The pending gates with their ids, as refusals and the CLI name them."""
    return ", ".join(f"{g.gate} (id {g.gate_id})" if g.gate_id else g.gate for g in s.pending_gates) or "none"


def actor_of(arg: Any) -> str:
    """Who sent a control: the approver, actor or author it names."""
    return str(
        getattr(arg, "approver", None) or getattr(arg, "actor", None) or getattr(arg, "author", None) or "unknown"
    )
