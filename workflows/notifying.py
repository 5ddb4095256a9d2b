"""The recovery workflow's notifications: who is told what, on which channels, each send recorded in the state.

The fan-out runs in the background (a slow channel never holds up the recovery); `_drain_notifications` waits for
what is in flight before the incident closes or continues as new.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from governor.actions import Activity, NotifyInput, NotifyResult
    from governor.audit import AuditAction
    from governor.decisions import audiences_for, status_component
    from governor.drill import drill_audiences
    from governor.enums import FallbackTier, NotificationAudience
    from governor.incident import NotificationRecord, PendingGate, TierSpan
    from governor.transitions import transition_audiences

from workflows.bookkeeping import Bookkeeping
from workflows.priorities import BACKGROUND

NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)


class Notifying(Bookkeeping):
    """Escalations, level changes and gate requests, fanned out to the policy's routes per audience."""

    def _escalate(self, why: str) -> None:
        assert self.policy
        self._audit(AuditAction.ESCALATED, details={"reason": why})
        self._notify("escalation", self.policy.notifications.escalation, f"{self.s.service}: escalation", why)

    def _request_approval(self, pending: PendingGate) -> None:
        """Audit a gate's request and page on-call with the id the approval must name (each request pages anew)."""
        gate, ids = pending.gate, {"gate_id": pending.gate_id} if pending.gate_id else {}
        details = {"gate": gate, "context": pending.context, **ids}
        self._audit(AuditAction.APPROVAL_REQUESTED, actor=pending.requested_by, details=details)
        self._publish()
        gate_id = f" --gate-id {pending.gate_id}" if pending.gate_id else ""
        self._notify(
            f"approval_requested:{gate}",
            [NotificationAudience.ONCALL],
            f"{self.s.service}: approval needed for {gate}",
            f"{pending.context}. Approve: governor approve {self.s.incident_id} --gate {gate}{gate_id} --reason '...'",
            instance=pending.instance,
            # the gate and its request id ride along, so Slack's Approve / Reject buttons name this very request
            extra={"gate": gate, **ids} if workflow.patched("approval-notify-gate") else None,
        )

    def _enter_tier(self, tier: FallbackTier, reason: str, forced_by: str | None = None) -> TierSpan | None:
        """Record the tier change, then tell the audiences of its mode's channel the policy routes (none: no send)."""
        assert self.policy
        previous = self.s.tier
        span = super()._enter_tier(tier, reason, forced_by)
        if span is None or span.mode is None:
            return span
        audiences = [a for a in transition_audiences(span.mode) if self.policy.notifications.routes.get(a)]
        by = f" by {span.actor}" if span.human else ""
        self._notify(
            "transition",
            audiences,
            f"{self.s.service}: {span.mode} transition to {tier}",
            f"{span.mode} transition{by} ({span.mode.notification_channel}): {previous} -> {tier}. {reason}",
        )
        return span

    def _notify_level(self, event: str, title: str) -> None:
        audiences = audiences_for(self.s.degradation_level, self.s.severity)
        message = (
            f"{self.s.failure_type or 'failure'} on {self.s.dependency} ({self.s.severity}): {self.s.reason}. "
            f"Serving from {self.s.served_tier or self.s.tier}"
            + (f" (pinned {self.s.tier})" if self.s.served_tier else "")
            + f"; degradation {self.s.degradation_level} "
            f"({self.s.degradation_level.feature_availability:.0%} of features)."
        )
        self._notify(event, audiences, title, message)

    def _notify(
        self,
        event: str,
        audiences: list[NotificationAudience],
        title: str,
        message: str,
        instance: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Notify in the background: a slow channel never holds up the recovery, and every send is recorded.

        Each send's key is `{occurrence}:{event}:{instance}:{audience}`: a later incident on the same dependency, the
        second request of a gate and the second rollback each get their own, so receivers that deduplicate (as they
        should) drop only true repeats. `instance` defaults to this event's next number in the occurrence.
        """
        assert self.policy
        if self.s.drill_run is not None:  # a drill tells on-call and internal only, and says it is a drill
            audiences, title = drill_audiences(self.s.drill_run, audiences), f"[DRILL] {title}"
        instance = instance if instance is not None else self.s.event_instances.get(event, 0) + 1
        self.s.event_instances[event] = max(instance, self.s.event_instances.get(event, 0))
        occurrence = self.s.occurrence_id or self.s.incident_id
        keyed = workflow.patched("notification-instances")
        for audience in audiences:
            key = f"{occurrence}:{event}:{instance}:{audience}"
            if not keyed:  # a history recorded before instances replays as it was: one key per event and audience
                key = f"{self.s.incident_id}:{event}:{audience}"
                if event == "escalation":  # its old keys named the audit length: never a repeat
                    key += f":{len(self.s.audit)}"
            if any(n.idempotency_key == key for n in self.s.notifications):
                continue  # the very same notification (a phase re-entered by a continued run): receivers have it
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
                    **(extra or {}),
                },
                idempotency_key=key,
                occurrence=occurrence,
            )
            self._notifications.append(asyncio.create_task(self._send(notify, record)))

    async def _send(self, notify: NotifyInput, record: NotificationRecord) -> None:
        """Each channel's delivery is its own activity, so a worker crash re-sends only the deliveries in flight, never
        a channel whose delivery completed (histories from before deliver all channels in one activity)."""
        if workflow.patched("notify-per-channel"):
            parts = [notify.model_copy(update={"channels": [c]}) for c in notify.channels]
            results = await asyncio.gather(*(self._deliver(part) for part in parts))
        else:
            results = [await self._deliver(notify)]
        failed = [r for r in results if isinstance(r, str)]
        deliveries = [d for r in results if not isinstance(r, str) for d in r.deliveries]
        if failed and not deliveries:
            record.error = "; ".join(failed)
            self._audit(AuditAction.NOTIFICATION_FAILED, details={"key": record.idempotency_key, "error": record.error})
            self._sla_missed(record)
            return
        delivered = [d.delivered_at for d in deliveries if d.delivered_at is not None]
        record.sent_at = max(delivered) if delivered else workflow.now()
        record.ok = not failed and all(d.ok for d in deliveries)
        record.error = "; ".join([*failed, *(f"{d.channel}: {d.error}" for d in deliveries if not d.ok)])
        if not record.ok:
            self._audit(AuditAction.NOTIFICATION_FAILED, details={"key": record.idempotency_key, "error": record.error})
        if not record.ok or record.sent_at > record.due_at:
            self._sla_missed(record)

    async def _deliver(self, notify: NotifyInput) -> NotifyResult | str:
        """One notify activity; its failure (retries exhausted) as text."""
        try:
            return await workflow.execute_activity(
                Activity.NOTIFY,
                notify,
                result_type=NotifyResult,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=15),
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {notify.audience} via {','.join(c.type for c in notify.channels)}: {notify.event}",
                priority=self._priority(BACKGROUND),
            )
        except ActivityError as err:
            return str(err.cause or err)

    def _sla_missed(self, record: NotificationRecord) -> None:
        self._count(
            "governor_notification_sla_missed",
            "Notifications not delivered within their audience's SLA",
            audience=str(record.audience),
        )

    async def _drain_notifications(self) -> None:
        pending = [t for t in self._notifications if not t.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._notifications = [t for t in self._notifications if not t.done()]
