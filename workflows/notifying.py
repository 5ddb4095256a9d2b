"""The recovery workflow's notifications: who is told what, on which channels, each send recorded in the state.

The fan-out runs in the background (a slow channel never holds up the recovery); `_drain_notifications` waits for
what is in flight before the incident closes or continues as new.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from governor.actions import Activity, NotifyInput, NotifyResult
    from governor.audit import AuditAction
    from governor.decisions import audiences_for, status_component
    from governor.enums import NotificationAudience
    from governor.incident import NotificationRecord

from workflows.bookkeeping import Bookkeeping

NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
)


class Notifying(Bookkeeping):
    """Escalations, level changes and gate requests, fanned out to the policy's routes per audience."""

    def _escalate(self, why: str) -> None:
        assert self.policy
        self._audit(AuditAction.ESCALATED, details={"reason": why})
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
            self._audit(AuditAction.NOTIFICATION_FAILED, details={"key": record.idempotency_key, "error": record.error})
            self._sla_missed(record)
            return
        delivered = [d.delivered_at for d in result.deliveries if d.delivered_at is not None]
        record.sent_at = max(delivered) if delivered else workflow.now()
        record.ok = result.ok
        record.error = "; ".join(f"{d.channel}: {d.error}" for d in result.deliveries if not d.ok)
        if not result.ok:
            self._audit(AuditAction.NOTIFICATION_FAILED, details={"key": record.idempotency_key, "error": record.error})
        if not result.ok or record.sent_at > record.due_at:
            self._sla_missed(record)

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
