"""The watchdog workflow on the time-skipping server, with the probing and reporting activities replaced.

What a user relies on: a confirmed failure is reported exactly once and the watchdog keeps watching (as a new run,
state carried); a silent probe counts as dependency_down; a policy update takes effect without losing the streak.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from governor.detection import (
    Hysteresis,
    PolicyUpdate,
    ReportInput,
    ReportResult,
    WatchActivity,
    WatchdogConfig,
    WatchdogInput,
    WatchdogNames,
    WatchdogState,
    WatchInput,
    WatchResult,
    watchdog_id,
)
from governor.enums import FailureType, Severity
from governor.incident import incident_id
from governor.models import Classification
from governor.policy import ServicePolicy, load_policy
from workflows.watchdog import WatchdogWorkflow

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "policies" / "chat.yaml")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FAST = WatchdogConfig(heartbeat_timeout_s=1)  # cancellation reaches an activity with its next sent heartbeat
SPIKE = Classification(failure_type=FailureType.ERROR_SPIKE, severity=Severity.CRITICAL, reason="error rate 40%")


@pytest.fixture
def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


class FakeWatch:
    """Stands in for the probing activity: each run plays the next scripted behaviour and records its input."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.inputs: list[WatchInput] = []
        self.reports: list[ReportInput] = []
        self.running = asyncio.Event()
        self.changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
        """Wait for an activity call that makes `predicate` true (woken by each call, no polling)."""
        async with asyncio.timeout(limit_s), self.changed:
            await self.changed.wait_for(predicate)

    @activity.defn(name=WatchActivity.WATCH)
    async def watch(self, inp: WatchInput) -> WatchResult:
        self.inputs.append(inp)
        await self._notify()
        behaviour = self.script.pop(0) if self.script else "idle"
        h = inp.hysteresis
        if behaviour == "confirm":
            confirmed = h.model_copy(
                update={
                    "failing": True,
                    "bad_streak": 3,
                    "suspect": SPIKE,
                    "first_bad_at": NOW - timedelta(seconds=0.5),
                    "confirmed_at": NOW,
                    "evaluations": 3,
                }
            )
            return WatchResult(transition="confirmed", hysteresis=confirmed)
        if behaviour == "silent":  # never heartbeats: the workflow must notice
            await asyncio.sleep(3600)
        # "idle" / "streak": heartbeat until cancelled, then hand back a streak of 2 bad evaluations
        streak = h.model_copy(update={"bad_streak": 2, "suspect": SPIKE, "evaluations": h.evaluations + 2})
        self.running.set()
        await self._notify()
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            return WatchResult(hysteresis=streak if behaviour == "streak" else h, cancelled=True)

    @activity.defn(name=WatchActivity.REPORT)
    async def report(self, inp: ReportInput) -> ReportResult:
        self.reports.append(inp)
        await self._notify()
        return ReportResult(incident_id=incident_id(inp.report.service))


async def run_watchdog(
    client: Client, fake: FakeWatch, config: WatchdogConfig, policy: ServicePolicy = POLICY
) -> tuple[str, str]:
    task_queue = f"watchdog-{uuid.uuid4()}"
    wid = watchdog_id(policy.service, "primary-llm") + f"-{uuid.uuid4().hex[:6]}"
    await client.start_workflow(
        WatchdogWorkflow.run,
        WatchdogInput(policy=policy, dependency="primary-llm", config=config, task_queue="recovery-q"),
        id=wid,
        task_queue=task_queue,
    )
    return wid, task_queue


def worker(client: Client, task_queue: str, fake: FakeWatch) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[WatchdogWorkflow], activities=[fake.watch, fake.report])


async def test_confirmed_failure_is_reported_once_and_the_watchdog_continues_as_new(env: WorkflowEnvironment) -> None:
    fake = FakeWatch(["confirm", "idle"])
    wid, tq = await run_watchdog(env.client, fake, FAST)
    async with worker(env.client, tq, fake):
        await fake.until(lambda: len(fake.inputs) >= 2)
        state = await env.client.get_workflow_handle(wid).query(WatchdogNames.STATE, result_type=WatchdogState)
        await env.client.get_workflow_handle(wid).signal(WatchdogNames.STOP, {"reason": "test over"})
        final = await env.client.get_workflow_handle(wid, result_type=WatchdogState).result()

    assert len(fake.reports) == 1
    report = fake.reports[0]
    assert report.task_queue == "recovery-q"
    assert (report.report.service, report.report.dependency) == ("chat", "primary-llm")
    assert report.report.failure_type is FailureType.ERROR_SPIKE and report.report.source == "watchdog"
    # the first failing check travels with the report: the post-mortem's figures count from it
    assert report.report.failing_since == NOW - timedelta(seconds=0.5)
    # the new run started from the carried state: failing, watching for it to clear
    assert fake.inputs[1].hysteresis.failing
    assert state.continued == 1 and state.incidents_reported == 1
    assert state.last_incident_id == "recovery-chat"
    assert final.stopped and final.stop_reason == "test over"


async def test_missed_heartbeats_confirm_dependency_down(env: WorkflowEnvironment) -> None:
    fake = FakeWatch(["silent", "silent", "idle"])
    config = WatchdogConfig(confirm_after=2, heartbeat_timeout_s=1)
    wid, tq = await run_watchdog(env.client, fake, config)
    async with worker(env.client, tq, fake):
        await fake.until(lambda: len(fake.reports) == 1, limit_s=20)
        await fake.running.wait()
        state = await env.client.get_workflow_handle(wid).query(WatchdogNames.STATE, result_type=WatchdogState)
        await env.client.get_workflow_handle(wid).signal(WatchdogNames.STOP, {"reason": "test over"})
        await env.client.get_workflow_handle(wid).result()

    assert fake.reports[0].report.failure_type is FailureType.DEPENDENCY_DOWN
    assert "no probe heartbeat" in fake.reports[0].report.message
    assert state.missed_heartbeats == 2 and state.hysteresis.failing


async def test_policy_update_restarts_the_probe_with_the_new_policy_and_keeps_the_streak(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeWatch(["streak", "idle"])
    wid, tq = await run_watchdog(env.client, fake, FAST)
    changed = POLICY.model_copy(
        update={"thresholds": POLICY.thresholds.model_copy(update={"error_rate_critical": 0.2})}
    )
    async with worker(env.client, tq, fake):
        await fake.running.wait()
        handle = env.client.get_workflow_handle(wid)
        await handle.signal(WatchdogNames.UPDATE_POLICY, PolicyUpdate(policy=changed))
        await fake.until(lambda: len(fake.inputs) >= 2)
        state = await handle.query(WatchdogNames.STATE, result_type=WatchdogState)
        await handle.signal(WatchdogNames.STOP, {"reason": "test over"})
        await handle.result()

    second = fake.inputs[1]
    assert second.policy.thresholds.error_rate_critical == 0.2
    assert second.hysteresis.bad_streak == 2  # the streak the first run had built survived the update
    assert state.policy_updates == 1 and fake.reports == []


async def test_watchdog_stops_when_the_policy_drops_its_dependency(env: WorkflowEnvironment) -> None:
    fake = FakeWatch(["idle"])
    wid, tq = await run_watchdog(env.client, fake, FAST)
    without = POLICY.model_copy(update={"dependencies": [POLICY.dependency("secondary-llm")]})
    async with worker(env.client, tq, fake):
        await fake.running.wait()
        handle = env.client.get_workflow_handle(wid)
        await handle.signal(WatchdogNames.UPDATE_POLICY, PolicyUpdate(policy=without))
        final = await env.client.get_workflow_handle(wid, result_type=WatchdogState).result()
        desc = await handle.describe()

    assert final.stopped and "no longer lists primary-llm" in final.stop_reason
    assert desc.status is WorkflowExecutionStatus.COMPLETED


def test_hysteresis_model_round_trips_for_heartbeats() -> None:
    h = Hysteresis(bad_streak=2, suspect=SPIKE, first_bad_at=NOW)
    assert Hysteresis.model_validate(h.model_dump(mode="json")) == h
