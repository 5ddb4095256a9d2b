"""The notify activity: one notification to every channel routed to an audience, each delivered at most once.

Retry design (docs/notifications.md explains it in full):
- inside one activity attempt each channel gets a few quick tries with exponential backoff (Retry-After honoured);
- a channel that succeeded, or failed for good (bad configuration, a 4xx), is recorded in the heartbeat details at
  once, so when Temporal retries the activity it resumes from them and never sends to that channel again;
- when channels are still failing transiently the attempt raises (with Retry-After as the next retry delay) so
  Temporal retries it later; on the last attempt the retry policy allows, it returns `ok=False` deliveries instead,
  so the workflow records the miss against the audience's SLA rather than failing.
Every send carries the idempotency key, so receivers can deduplicate what a worker crash between a send and its
heartbeat could still repeat.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.notify.base import Channel, DeliveryError
from activities.notify.cloudevents import CloudEventsChannel
from activities.notify.pagerduty import PagerDutyChannel
from activities.notify.slack import SlackChannel
from activities.notify.smtp import EmailChannel
from activities.notify.status_page import StatusPageChannel
from activities.notify.webhook import WebhookChannel
from governor.actions import Activity, ChannelDelivery, NotifyInput, NotifyResult
from governor.policy import ChannelSpec
from governor.settings import WorkerSettings

logger = structlog.get_logger(__name__)

PENDING_ERROR_TYPE = "NotifyChannelsPending"
"""ApplicationError type raised while channels still fail transiently and attempts remain."""


class NotifyProgress(BaseModel):
    """Heartbeat details: what earlier attempts of this activity already settled, by channel slot."""

    idempotency_key: str
    done: dict[str, ChannelDelivery] = Field(default_factory=dict)
    """Delivered, or failed for good: never sent again."""
    tries: dict[str, int] = Field(default_factory=dict)
    """Sends tried so far per slot, over all attempts."""


def channel_slot(index: int, spec: ChannelSpec) -> str:
    """A channel's identity within one notification: its position in `input.channels` and its type."""
    return f"{index}:{spec.type}"


def default_channels(
    http: httpx.AsyncClient,
    *,
    gateway_token: str | None = None,
    policy_dir: Path | None = None,
    smtp_timeout_s: float = 10.0,
) -> dict[str, Channel]:
    return {
        "webhook": WebhookChannel(http),
        "pagerduty": PagerDutyChannel(http),
        "slack": SlackChannel(http),
        "cloudevents": CloudEventsChannel(http),
        "email": EmailChannel(timeout_s=smtp_timeout_s),
        "status_page": StatusPageChannel(http, gateway_token=gateway_token, policy_dir=policy_dir),
    }


class _Outcome:
    """One channel's result in this attempt; `pending` when it failed transiently and may be retried later."""

    __slots__ = ("delivery", "pending", "retry_after_s")

    def __init__(self, delivery: ChannelDelivery, pending: bool = False, retry_after_s: float | None = None) -> None:
        self.delivery = delivery
        self.pending = pending
        self.retry_after_s = retry_after_s


class NotificationActivities:
    """Built once by the worker with its shared `httpx.AsyncClient`; register `notify` on the worker."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: WorkerSettings | None = None,
        *,
        gateway_token: str | None = None,
        tries_per_attempt: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        max_attempts: int = 5,
        deadline_margin_s: float = 2.0,
        smtp_timeout_s: float = 10.0,
        channels: Mapping[str, Channel] | None = None,
    ) -> None:
        """The gateway token is `gateway_token`, else the settings' (GOVERNOR_GATEWAY_TOKEN); `max_attempts` applies
        when the activity's retry policy sets no maximum; `channels` adds or replaces channel implementations."""
        if tries_per_attempt < 1 or max_attempts < 1:
            raise ValueError("tries_per_attempt and max_attempts must be at least 1")
        if gateway_token is None and settings is not None:
            gateway_token = settings.gateway_token
        self._channels: dict[str, Channel] = default_channels(
            http,
            gateway_token=gateway_token,
            policy_dir=settings.policy_dir if settings is not None else None,
            smtp_timeout_s=smtp_timeout_s,
        )
        self._channels.update(channels or {})
        self._tries = tries_per_attempt
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._max_attempts = max_attempts
        self._margin_s = deadline_margin_s

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, input: NotifyInput) -> NotifyResult:
        """Tell one audience on every routed channel; a delivered channel is never sent to again on retry."""
        info = activity.info()
        log = logger.bind(
            incident_id=input.incident_id,
            notify_event=input.event,
            audience=input.audience.value,
            attempt=info.attempt,
        )
        if not input.idempotency_key.strip():
            raise ApplicationError(
                "NotifyInput.idempotency_key is empty: use {occurrence}:{event}:{instance}:{audience}",
                type="BadNotifyInput",
                non_retryable=True,
            )
        if not input.channels:
            log.warning("no channels routed for this audience; nothing sent")
            return NotifyResult()

        progress = self._resume(info.heartbeat_details, input, log)
        deadline = _attempt_deadline(info)
        slots = [channel_slot(i, spec) for i, spec in enumerate(input.channels)]
        todo = [(slot, spec) for slot, spec in zip(slots, input.channels, strict=True) if slot not in progress.done]
        if len(todo) < len(slots):
            log.info("resuming: channels already settled are skipped", settled=sorted(progress.done))

        ticker = _keep_alive(info, progress)
        try:
            outcomes = await asyncio.gather(
                *(self._deliver(input, slot, spec, progress, deadline, log) for slot, spec in todo)
            )
        finally:
            if ticker is not None:
                ticker.cancel()
        pending = {slot: o for (slot, _), o in zip(todo, outcomes, strict=True) if o.pending}

        if pending and not self._last_attempt(info, pending):
            activity.heartbeat(progress.model_dump(mode="json"))
            waits = [o.retry_after_s for o in pending.values() if o.retry_after_s is not None]
            summary = "; ".join(f"{slot}: {o.delivery.error}" for slot, o in pending.items())
            log.warning("channels still failing; Temporal will retry the activity", pending=sorted(pending))
            raise ApplicationError(
                f"{len(pending)} of {len(slots)} channels not delivered yet ({summary}); retrying",
                progress.model_dump(mode="json"),
                type=PENDING_ERROR_TYPE,
                next_retry_delay=timedelta(seconds=max(waits)) if waits else None,
            )

        deliveries = [progress.done[slot] if slot in progress.done else pending[slot].delivery for slot in slots]
        result = NotifyResult(deliveries=deliveries)
        log.info(
            "notification finished",
            ok=result.ok,
            delivered=[d.channel for d in deliveries if d.ok],
            failed=[f"{d.channel}: {d.error}" for d in deliveries if not d.ok],
        )
        return result

    def _resume(self, details: Any, input: NotifyInput, log: Any) -> NotifyProgress:
        fresh = NotifyProgress(idempotency_key=input.idempotency_key)
        if not details:
            return fresh
        last = details[-1]
        try:
            progress = last if isinstance(last, NotifyProgress) else NotifyProgress.model_validate(last)
        except ValidationError as err:
            log.warning("heartbeat details unreadable; starting over", error=str(err))
            return fresh
        if progress.idempotency_key != input.idempotency_key:
            log.warning("heartbeat details belong to another notification; starting over")
            return fresh
        return progress

    def _last_attempt(self, info: activity.Info, pending: Mapping[str, _Outcome]) -> bool:
        """True when Temporal would not run another attempt: the retry policy's (or our) maximum is reached, or the
        schedule-to-close budget ends before the next attempt could start."""
        policy = info.retry_policy
        limit = policy.maximum_attempts if policy is not None and policy.maximum_attempts > 0 else self._max_attempts
        if info.attempt >= limit:
            return True
        if info.schedule_to_close_timeout:
            waits = [o.retry_after_s or 0.0 for o in pending.values()]
            ends = info.scheduled_time + info.schedule_to_close_timeout
            if datetime.now(UTC) + timedelta(seconds=max(waits, default=0.0) + self._margin_s) >= ends:
                return True
        return False

    async def _deliver(
        self,
        input: NotifyInput,
        slot: str,
        spec: ChannelSpec,
        progress: NotifyProgress,
        deadline: datetime | None,
        log: Any,
    ) -> _Outcome:
        """A few quick tries with backoff; settles the slot in `progress` (and heartbeats) unless still transient."""
        channel = self._channels.get(spec.type)
        log = log.bind(channel=slot)
        if channel is None:
            return self._settle(progress, slot, _failure(spec, f"no channel implementation for type {spec.type!r}"))
        last: DeliveryError | None = None
        for try_no in range(1, self._tries + 1):
            progress.tries[slot] = progress.tries.get(slot, 0) + 1
            try:
                delivery = await channel.send(input, spec)
            except DeliveryError as err:
                last = err
            except Exception as err:  # a bug in a channel must not lose the other channels' deliveries
                log.exception("channel crashed; recorded as failed, not retried")
                return self._settle(progress, slot, _failure(spec, f"internal error: {type(err).__name__}: {err}"))
            else:
                delivery = delivery.model_copy(
                    update={"attempts": progress.tries[slot], "delivered_at": datetime.now(UTC)}
                )
                log.info("delivered", target=delivery.target, status_code=delivery.status_code, tries=try_no)
                return self._settle(progress, slot, delivery)

            if not last.retryable:
                log.warning("channel failed for good; not retried", error=last.message)
                return self._settle(progress, slot, _failure(spec, last.message, last, progress.tries[slot]))
            if try_no == self._tries:
                break
            delay = self._delay(try_no, last.retry_after_s)
            if delay is None or (
                deadline is not None and datetime.now(UTC) + timedelta(seconds=delay + self._margin_s) >= deadline
            ):
                break  # the wait does not fit in this attempt: leave it to Temporal's next attempt
            log.info("transient failure; trying again", error=last.message, in_s=round(delay, 3))
            activity.heartbeat(progress.model_dump(mode="json"))
            await asyncio.sleep(delay)

        assert last is not None
        log.warning("still failing after quick tries", error=last.message, tries=progress.tries[slot])
        failed = _failure(spec, last.message, last, progress.tries[slot], retryable=True)
        return _Outcome(failed, pending=True, retry_after_s=last.retry_after_s)

    def _delay(self, try_no: int, retry_after_s: float | None) -> float | None:
        """Seconds before the next quick try, or None when the server asks for a longer wait than we do inline."""
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self._max_backoff_s else None
        base = min(self._max_backoff_s, self._backoff_s * 2 ** (try_no - 1))
        return base * random.uniform(0.5, 1.0)

    def _settle(self, progress: NotifyProgress, slot: str, delivery: ChannelDelivery) -> _Outcome:
        progress.done[slot] = delivery
        activity.heartbeat(progress.model_dump(mode="json"))  # record it before anything else can fail
        return _Outcome(delivery)


def _failure(
    spec: ChannelSpec, error: str, err: DeliveryError | None = None, attempts: int = 1, *, retryable: bool = False
) -> ChannelDelivery:
    return ChannelDelivery(
        channel=spec.type,
        ok=False,
        status_code=err.status_code if err else None,
        error=error,
        target=err.target if err else "",
        attempts=attempts,
        retryable=retryable,
    )


def _keep_alive(info: activity.Info, progress: NotifyProgress) -> asyncio.Task[None] | None:
    """With a heartbeat timeout set, heartbeat at a third of it while a slow channel (SMTP, a hanging webhook) holds
    the attempt, so the attempt is not timed out for silence."""
    if not info.heartbeat_timeout:
        return None
    every = max(info.heartbeat_timeout.total_seconds() / 3, 0.05)

    async def tick() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat(progress.model_dump(mode="json"))

    return asyncio.create_task(tick())


def _attempt_deadline(info: activity.Info) -> datetime | None:
    """When this attempt will be timed out (start-to-close or schedule-to-close, whichever is first)."""
    ends: list[datetime] = []
    if info.start_to_close_timeout:
        ends.append(info.started_time + info.start_to_close_timeout)
    if info.schedule_to_close_timeout:
        ends.append(info.scheduled_time + info.schedule_to_close_timeout)
    return min(ends) if ends else None
