"""The incident's record inside the workflow: audit entries, phase and tier spans, and what the Temporal UI shows."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from governor import search_attributes as sa
    from governor.audit import AuditAction, append_entry
    from governor.blast_radius import impact_of
    from governor.details import details_markdown, search_attribute_values
    from governor.enums import FallbackTier, RecoveryPhase, Severity
    from governor.incident import IncidentState, PhaseSpan, TierSpan
    from governor.policy import ServicePolicy
    from governor.transitions import transition_actor, transition_mode

from workflows.priorities import DEFAULT

TRANSITION_MODES_PATCH = "seed-transition-modes"
"""workflow.patched id: tier spans record their TransitionMode and each transition is notified on its channel."""
BLAST_RADIUS_PATCH = "blast-radius"
"""workflow.patched id: the blast radius is assessed at isolation; the incident's impact follows each tier change."""

_KEYS = {key.name: key for key in sa.ALL}


class Bookkeeping:
    """State every part of the recovery workflow shares, and the helpers that record into it."""

    s: IncidentState
    policy: ServicePolicy | None
    history_limit: int
    _notifications: list[asyncio.Task[None]]
    _published: dict[str, Any]
    """Search attribute values already upserted in this run."""
    _pin_first = False
    """workflow.patched("pin-first-one-activity") (workflows/pin_first.py), asked once at the start of each run."""
    _publish_held = False
    """While pin first records the steps its one activity took, the phase and tier entries publish once, after."""

    def _identify_occurrence(self) -> None:
        """Name this occurrence after its first run: a new incident (or the next occurrence after late reports) starts
        with `continued == 0` in this run; a continued run of an older incident without a name takes the chain's first
        run. The workflow id alone repeats for every incident on the dependency."""
        if not self.s.occurrence_id:
            info = workflow.info()
            first_run = info.run_id if self.s.continued == 0 else info.first_execution_run_id
            self.s.occurrence_id = f"{info.workflow_id}/{first_run}"

    def _gate_identity(self, gate: str) -> dict[str, Any]:
        """A new request of `gate`: a random id an approval must name (so an earlier request's, or another incident's,
        approval cannot open it) and its instance number (the second `ramp:10` after a rollback is instance 2)."""
        instance = 1 + sum(d.gate == gate for d in self.s.decisions)
        if not workflow.patched("gate-instance-ids"):  # a history recorded before gate ids replays as it was
            return {"instance": instance}
        return {"gate_id": workflow.uuid4().hex[:12], "instance": instance}

    def _count(self, metric: str, description: str, **labels: str) -> None:
        """Add 1 to a governor counter on the worker's Prometheus endpoint (the SDK skips it during replay)."""
        labels = {"service": self.s.service, "dependency": self.s.dependency, **labels}
        workflow.metric_meter().create_counter(metric, description).add(1, labels)

    def _audit(self, action: AuditAction, actor: str = "system", details: dict[str, Any] | None = None) -> None:
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
        append_entry(self.s.audit, at=now, action=AuditAction.PHASE, previous_state=previous, new_state=str(phase))
        workflow.logger.info("phase %s", phase, extra={"incident_id": self.s.incident_id})
        self._publish()

    def _enter_tier(self, tier: FallbackTier, reason: str, forced_by: str | None = None) -> TierSpan | None:
        """Record a tier change (and, under the patch, its TransitionMode); re-pinning the tier already serving
        (a rollback) is not a change. `forced_by` names the human who chose the tier (force_tier, failover)."""
        now = workflow.now()
        previous = self.s.tier
        if self.s.tiers and self.s.tiers[-1].left_at is None and self.s.tiers[-1].tier is tier:
            self._publish()
            return None
        if self.s.tiers and self.s.tiers[-1].left_at is None:
            self.s.tiers[-1].left_at = now
        span = TierSpan(tier=tier, entered_at=now, reason=reason)
        details: dict[str, Any] = {"reason": reason}
        if workflow.patched(TRANSITION_MODES_PATCH):
            approved_by = self.s.approved_into.pop(tier, None)
            span.mode = transition_mode(
                tier, previous=previous, forced_by=forced_by, approved_by=approved_by, scheduled=self.s.drill
            )
            span.actor = transition_actor(span.mode, forced_by, approved_by)
            details |= {"mode": str(span.mode), "by": span.actor, "human": span.human}
        self.s.tiers.append(span)
        self.s.tier, self.s.served_tier = tier, None  # a new tier shows as served until the next re-check
        if workflow.patched(BLAST_RADIUS_PATCH):
            self._update_impact()
        append_entry(
            self.s.audit,
            at=now,
            action=AuditAction.TIER,
            actor=span.actor or "system",
            previous_state=str(previous),
            new_state=str(tier),
            details=details,
        )
        self._publish()
        return span

    def _note_approval(self, tier: FallbackTier, gate: str) -> None:
        """A gate held the move into `tier` until on-call approved it: that transition is `approval_required`."""
        decision = next((d for d in reversed(self.s.decisions) if d.gate == gate and d.approved), None)
        if decision is not None:
            self.s.approved_into[tier] = ", ".join(decision.approved_by or [decision.approver])

    def _update_impact(self) -> None:
        """The incident's affected features, impact line and estimated recovery for the tier served now."""
        if self.policy is None:
            return
        self.s.impact = impact_of(
            service=self.s.service,
            tier=self.s.tier,
            policy=self.policy,
            critical=self.s.severity is Severity.CRITICAL,
            typical_minutes=self.s.failure_type.typical_recovery_minutes if self.s.failure_type else None,
            detected_at=self.s.detected_at,
            radius=self.s.blast_radius,
        )

    def _close(self) -> None:
        now = workflow.now()
        if self.s.phases and self.s.phases[-1].left_at is None:
            self.s.phases[-1].left_at = now
        self.s.closed_at = now
        self._publish()

    def _priority(self, priority: Priority) -> Priority:
        """`priority` on the task queue under pin first; the default in histories recorded before it."""
        return priority if self._pin_first else DEFAULT

    def _hold_publish(self) -> None:
        self._publish_held = True

    def _release_publish(self) -> None:
        """Publish what was held back (pin first), before the workflow waits on anything."""
        if self._publish_held:
            self._publish_held = False
            self._publish()

    def _publish(self) -> None:
        """Search attributes and the Markdown 'current details' the Temporal UI shows.

        Only attributes whose value changed are upserted: each upsert is a history event, and an incident publishes
        at every step.
        """
        if self._publish_held:
            return
        values = search_attribute_values(self.s)
        changed = [_KEYS[name].value_set(value) for name, value in values.items() if self._published.get(name) != value]
        if changed:
            workflow.upsert_search_attributes(changed)
            self._published.update(values)
        workflow.set_current_details(details_markdown(self.s, self.policy, workflow.now()))
