"""The recovery workflow's contract: its inputs, its controls and the state its query returns.

Plain pydantic models (no Temporal import), shared by the workflow, the client SDK, the CLI and the tests.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from governor.audit import AuditEntry
from governor.blast_radius import BlastRadius, Impact
from governor.controls import Control
from governor.drill import DrillRecord, DrillRequest
from governor.enums import (
    DegradationLevel,
    FailureType,
    FallbackTier,
    NotificationAudience,
    RecoveryPhase,
    Severity,
    TransitionMode,
)
from governor.policy import ServicePolicy

WORKFLOW_NAME = "IncidentRecoveryWorkflow"
DEFAULT_TASK_QUEUE = "fallback-governor"


Names = Control
"""The controls' names (kept under their old name for the CLI, the SDK and saved histories)."""


def incident_id(service: str) -> str:
    """The workflow id: one open incident per service, whichever of its dependencies failed (a failure of another
    dependency joins it). The service's gateway route is one resource, and this id makes its incident the only
    writer (DESIGN, "Truth under messy failures")."""
    return f"recovery-{service}"


MAX_COALESCED_DISTINCT = 20
"""Distinct reports one coalesced signal carries (the workflow keeps the first 20 reports anyway)."""


class IncidentReport(BaseModel):
    """A failure report from a service, a watchdog, Alertmanager or on-call."""

    service: str = Field(min_length=1, max_length=200)
    dependency: str = Field(min_length=1, max_length=200)
    failure_type: FailureType | None = None
    severity: Severity | None = None
    source: str = Field(default="client", max_length=200)
    message: str = Field(default="", max_length=4000)
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)
    reported_at: datetime | None = None
    failing_since: datetime | None = None
    """When the reporter first saw the failure (a watchdog's first failing check), if earlier than `reported_at`:
    the post-mortem's figures count from the earliest of these."""
    dedup_key: str | None = Field(default=None, max_length=500)
    manual: bool = False
    """On-call's deliberate failover (maintenance, a known-bad model): detection records it without re-probing."""
    drill: DrillRequest | None = None
    """A drill (`governor simulate --drill`): the workflow injects the failure itself and restores it on its own."""
    coalesced: int = Field(default=1, ge=1)
    """How many reports this one stands for: the intake merges a burst for one incident into one signal."""
    also: list[IncidentReport] = Field(default_factory=list, max_length=MAX_COALESCED_DISTINCT - 1)
    """The other distinct reports merged into this one (repeats of the same report are only counted)."""

    def expanded(self) -> list[IncidentReport]:
        """This report and the distinct ones merged into it, each on its own."""
        return [self.model_copy(update={"also": [], "coalesced": 1}), *self.also]


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
"""Who sent a control: not blank, at most 128 characters."""
Reason = Annotated[str, StringConstraints(max_length=2000)]
GateName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

MAX_CONTROL_BYTES = 16 * 1024
"""A control's input as JSON may be at most this long; larger input is refused before it is parsed."""


GateId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ApprovalInput(BaseModel):
    """Approve or reject one pending gate. JSON: {"gate": "ramp:10", "gate_id": "3f9a2c1d7b60", "approver": "alice", "reason": "..."}."""

    gate: GateName
    approver: Name
    reason: Reason = ""
    gate_id: GateId | None = None
    """The pending gate instance this decision is for (shown with the pending gate): a decision meant for an earlier
    request of the same gate, or for another incident, names another id and is refused."""


class ControlInput(BaseModel):
    """pause / resume / abort / promote / declare_remediated / claim. JSON: {"actor": "alice", "reason": "..."}."""

    actor: Name
    reason: Reason = ""


class ForceTierInput(BaseModel):
    """Manual override. JSON: {"tier": "tier_1_secondary", "actor": "alice", "reason": "..."}."""

    tier: FallbackTier
    actor: Name
    reason: Reason = ""


class NoteInput(BaseModel):
    """Add a note to the incident. JSON: {"author": "alice", "text": "..."}."""

    author: Name
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]


class ControlInputError(ValueError):
    """A control's input that cannot be used; the message names what is wrong."""


def parse_control_input(control: Control | str, args: tuple[Any, ...] | list[Any]) -> BaseModel:
    """A control's raw arguments (as decoded from the payloads, any shape) parsed into its input model.

    Raises ControlInputError naming what is wrong: no input, more than one, not a JSON object, too large, or the
    fields that do not validate (the input's values are never echoed, so a huge one cannot bloat the audit).
    """
    control = Control(control)
    model = CONTROL_INPUTS[control]
    example = (model.__doc__ or "").split("JSON: ", 1)[-1].rstrip(".")
    if not args:
        raise ControlInputError(f"{control} needs input: {example}; got none")
    if len(args) > 1:
        raise ControlInputError(f"{control} takes one JSON object: {example}; got {len(args)} inputs")
    raw = args[0]
    if isinstance(raw, BaseModel):
        raw = raw.model_dump(mode="json")
    if not isinstance(raw, dict):
        got = "null" if raw is None else type(raw).__name__
        if isinstance(raw, str | bytes | list):
            got += f" of length {len(raw)}"
        raise ControlInputError(f"{control} needs a JSON object: {example}; got {got}")
    try:
        size = len(json.dumps(raw, default=str))
    except (TypeError, ValueError) as err:
        raise ControlInputError(f"{control} input is not JSON: {err}") from None
    if size > MAX_CONTROL_BYTES:
        fields = sorted(raw, key=lambda k: len(json.dumps(raw[k], default=str)), reverse=True)
        raise ControlInputError(
            f"{control} input is {size} bytes (limit {MAX_CONTROL_BYTES}); largest field: {str(fields[0])[:64]!r}"
        )
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'input'}: {e['msg']}" for e in err.errors(include_input=False)
        )
        raise ControlInputError(f"{control} input is invalid: {problems[:1000]}") from None


def claimed_actor(raw: Any) -> str:
    """Who a refused control's input says it is from (for the audit), without trusting its shape."""
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    if isinstance(raw, dict):
        for key in ("approver", "actor", "author", "source"):
            value = raw.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:64]
    return "unknown"


class PendingGate(BaseModel):
    gate: str
    requested_at: datetime
    deadline: datetime
    approvers: list[str]
    requested_by: str = "system"
    escalated: bool = False
    context: str = ""
    gate_id: str = ""
    """This request's identity (random per request, so per occurrence and per attempt); an approval must name it.
    Empty for gates opened by workflow code older than gate ids (no id is required for those)."""
    approved_by: list[str] = Field(default_factory=list)
    """Approvals so far, when the four-eyes rule needs two distinct approvers before the gate opens."""
    instance: int = 1
    """The how-manyth request of this gate in this occurrence (a rollback asks for `ramp:10` again)."""


class Decision(BaseModel):
    gate: str
    approved: bool
    approver: str
    reason: str
    at: datetime
    gate_id: str = ""
    approved_by: list[str] = Field(default_factory=list)
    """Everyone who approved (two distinct names under the four-eyes rule); the approver is the last of them."""


class PhaseSpan(BaseModel):
    phase: RecoveryPhase
    entered_at: datetime
    left_at: datetime | None = None


class TierSpan(BaseModel):
    tier: FallbackTier
    entered_at: datetime
    left_at: datetime | None = None
    reason: str = ""
    mode: TransitionMode | None = None
    """The seed's TransitionMode of the change into this tier (governor/transitions.py); None in older histories."""
    actor: str = ""
    """Who made the change: the human who forced or approved it, else `system` (the governor)."""

    @property
    def human(self) -> bool:
        """A human made this transition (the seed's `requires_human`: manual and approval_required)."""
        return self.mode is not None and self.mode.requires_human


class RollbackRecord(BaseModel):
    at: datetime
    attempt: int
    percent: int
    reason: str
    metrics: dict[str, float] = Field(default_factory=dict)
    actor: str = "system"


class NotificationRecord(BaseModel):
    audience: NotificationAudience
    channel: str
    event: str
    idempotency_key: str
    """`{occurrence}:{event}:{instance}:{audience}`: unique per occurrence, per repeat of the event, per audience."""
    due_at: datetime
    sent_at: datetime | None = None
    ok: bool = False
    error: str = ""

    @property
    def within_sla(self) -> bool:
        return self.ok and self.sent_at is not None and self.sent_at <= self.due_at


Outcome = Literal["open", "recovered", "false_alarm", "aborted"]


RECOVERING_PHASES = (RecoveryPhase.VALIDATION, RecoveryPhase.GRADUAL_RESTORE)
"""Phases where the dependency being restored is judged: a confirmed failure then rolls back at once."""


class IncidentState(BaseModel):
    """Everything the workflow knows; the `state` query returns it and continue-as-new carries it."""

    incident_id: str
    service: str
    dependency: str
    failure_type: FailureType | None = None
    severity: Severity | None = None
    reason: str = ""
    phase: RecoveryPhase = RecoveryPhase.DETECTION
    tier: FallbackTier = FallbackTier.TIER_0_PRIMARY
    failed_tier: FallbackTier = FallbackTier.TIER_0_PRIMARY
    degradation_level: DegradationLevel = DegradationLevel.NORMAL
    ramp_percent: int = 0
    ramp_step: int = 0
    soak_started_at: datetime | None = None
    soak_passes: int = 0
    attempt: int = 1
    paused: bool = False
    awaiting_human: bool = False
    outcome: Outcome = "open"
    reports: list[IncidentReport] = Field(default_factory=list)
    """The first reports (bounded); `report_count` counts them all, so an alert storm can't bloat the state."""
    report_count: int = 0
    last_judgement: dict[str, Any] = Field(default_factory=dict)
    pending_gates: list[PendingGate] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    phases: list[PhaseSpan] = Field(default_factory=list)
    tiers: list[TierSpan] = Field(default_factory=list)
    rollbacks: list[RollbackRecord] = Field(default_factory=list)
    notifications: list[NotificationRecord] = Field(default_factory=list)
    notes: list[dict[str, Any]] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict)
    validation: dict[str, Any] = Field(default_factory=dict)
    audit: list[AuditEntry] = Field(default_factory=list)
    # controls that arrived and wait to be acted on at the next safe point
    remediated_by: str | None = None
    abort_requested_by: str | None = None
    promote_requested_by: str | None = None
    forced_tier: FallbackTier | None = None
    detected_at: datetime | None = None
    mitigated_at: datetime | None = None
    recovered_at: datetime | None = None
    closed_at: datetime | None = None
    postmortem_path: str | None = None
    continued: int = 0
    occurrence_id: str = ""
    """This occurrence of the incident: `{workflow id}/{run id of its first run}`. The workflow id repeats for every
    incident on the same dependency; the occurrence never does (notification keys, PagerDuty alerts build on it)."""
    follows: str | None = None
    """The occurrence this one continues from, when reports arrived after that one had started its full restore."""
    late_reports: list[IncidentReport] = Field(default_factory=list)
    """Reports that arrived after the full restore began: they open the next occurrence when this one closes."""
    late_report_count: int = 0
    event_instances: dict[str, int] = Field(default_factory=dict)
    """How many times each notification event was sent in this occurrence (the instance in its key)."""
    tiers_down: dict[str, str] = Field(default_factory=dict)
    """Tiers the last health check found down, and why (the tier served is never one of them)."""
    healthy_since: dict[FallbackTier, datetime] = Field(default_factory=dict)
    """When each tier's current healthy streak began: a recovered tier is moved up to only once it is stable."""
    tier_forced: bool = False
    """On-call forced the tier: the periodic re-check leaves it alone."""
    served_tier: FallbackTier | None = None
    """The tier most clients get when it is worse than the pinned `tier` (the gateway falling through on its own,
    e.g. a cache that misses): degradation, status page and notifications then follow it. None: the pin is served."""
    failed_dependencies: list[str] = Field(default_factory=list)
    """Dependencies confirmed failed in this occurrence and not yet restored, in the order they failed. The one
    backing the best tier is the one being restored (`restoring`); the incident closes when the list is empty."""
    restored_dependencies: list[str] = Field(default_factory=list)
    healthy_again: list[str] = Field(default_factory=list)
    """Dependencies of the tier being restored that passed remediation's probes in this attempt."""
    suspects: list[IncidentReport] = Field(default_factory=list)
    """Reports waiting to be confirmed by the workflow: another dependency of the service failing, or the
    dependency being restored failing again during validation or the ramp (one report per dependency)."""
    flaps: int = 0
    """How often the tier being restored failed again after it had passed remediation (validation failed, a ramp
    step regressed, a failure was confirmed during validation or the ramp)."""
    flapping: bool = False
    """`recovery_checks.max_flaps` flaps: the incident stopped retrying and waits for a human (`declare_remediated`)."""
    owner: str | None = None
    """Who took the incident with `claim` (`governor claim`); the recovery plan's owner (governor/plan.py)."""
    drill: bool = False
    """A drill or maintenance window: every tier transition is `scheduled` (the hook `governor simulate --drill`
    sets; docs/transitions.md)."""
    approved_into: dict[FallbackTier, str] = Field(default_factory=dict)
    """Tiers a gate held until on-call approved the move (tier -> approvers): the next transition into one of them
    is `approval_required`."""
    blast_radius: BlastRadius | None = None
    """Who else the failed dependency hits, assessed at isolation (governor/blast_radius.py)."""
    impact: Impact | None = None
    """Affected features, the impact line and the estimated recovery, updated at each tier change."""
    drill_run: DrillRecord | None = None
    """The drill this incident is (`governor simulate --drill`, governor/drill.py): what was injected, when it was
    cleared, what the drill found. A drill also sets `drill`, so its tier transitions are `scheduled`."""

    @property
    def awaiting_approval(self) -> bool:
        return bool(self.pending_gates)

    def needs_confirming(self, report: IncidentReport) -> bool:
        """Whether a report joining the open incident must be confirmed by the workflow (a suspect): another
        dependency failing, or the dependency being restored failing again while it is validated or ramped. One
        suspect per dependency; never raises (the `report` signal asks)."""
        dep = report.dependency
        if any(r.dependency == dep for r in self.suspects):
            return False
        if not self.failed_dependencies:  # detection has not confirmed the incident's own failure yet
            return dep != self.dependency
        return dep not in self.failed_dependencies or (dep == self.restoring and self.phase in RECOVERING_PHASES)

    @property
    def restoring(self) -> str:
        """The dependency being restored: the failed one whose tier ranks best (`failed_tier`); the incident's own
        dependency until detection has confirmed it."""
        return self.failed_dependencies[0] if self.failed_dependencies else self.dependency

    def pending(self, gate: str) -> PendingGate | None:
        return next((g for g in self.pending_gates if g.gate == gate), None)

    def gate_request(self, gate_id: str) -> PendingGate | None:
        return next((g for g in self.pending_gates if g.gate_id and g.gate_id == gate_id), None)


class ControlResult(BaseModel):
    """What an update answers: accepted, and the state it left."""

    accepted: bool
    message: str
    phase: RecoveryPhase
    tier: FallbackTier
    ramp_percent: int
    pending_gates: list[str] = Field(default_factory=list)
    pending_gate_ids: list[str] = Field(default_factory=list)
    """The pending gates' ids, in the order of `pending_gates`."""


class RecoveryInput(BaseModel):
    """Start (or continue) one incident's recovery."""

    service: str
    dependency: str
    state: IncidentState | None = None
    """Carried across continue-as-new; None for a new incident."""
    policy: ServicePolicy | None = None
    """The policy snapshot, carried across continue-as-new so the incident keeps the policy it started with."""
    history_limit: int = Field(default=10_000, ge=100)
    """Continue as new past this many history events (well before Temporal's 50k limit) or when the server suggests."""


CONTROL_INPUTS: dict[Control, type[BaseModel]] = {
    Control.REPORT: IncidentReport,
    Control.APPROVE: ApprovalInput,
    Control.REJECT: ApprovalInput,
    Control.PAUSE: ControlInput,
    Control.RESUME: ControlInput,
    Control.ABORT: ControlInput,
    Control.PROMOTE: ControlInput,
    Control.FORCE_TIER: ForceTierInput,
    Control.DECLARE_REMEDIATED: ControlInput,
    Control.NOTE: NoteInput,
    Control.CLAIM: ControlInput,
}
"""Each control's input model (what `parse_control_input` validates against)."""
