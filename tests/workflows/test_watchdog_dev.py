"""Watchdogs on the real Temporal dev server with the real probing activity and fake upstreams on 127.0.0.1.

`start_or_update_watchdogs` (what `governor up` / `governor watch` call) starts one watchdog per dependency; an
injected outage opens the incident (`recovery-{service}`) by signal-with-start; calling it again with a
changed policy updates the running watchdogs and stops the one whose dependency was removed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.watch import WatchActivities
from demo.upstream import run_upstream
from governor.detection import WatchdogConfig, WatchdogNames, WatchdogState, watchdog_id
from governor.incident import incident_id
from governor.policy import ServicePolicy, load_policy
from governor.settings import WorkerSettings
from governor.watchdogs import start_or_update_watchdogs
from workflows.watchdog import WatchdogWorkflow

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

BASE = load_policy(Path(__file__).resolve().parents[2] / "policies" / "chat.yaml")
T = TypeVar("T")
FAST = WatchdogConfig(interval_s=0.1, suspect_interval_s=0.05, confirm_after=3, heartbeat_timeout_s=1)


async def eventually(check: Callable[[], Awaitable[T]], limit_s: float = 15) -> T:
    """Poll the server until `check()` is truthy (workflow state lives in another process: nothing to await)."""
    async with asyncio.timeout(limit_s):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.1)


async def report_signals(client: Client, wid: str) -> list[dict[str, object]]:
    try:
        events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
    except RPCError:
        return []
    return [
        json.loads(e.workflow_execution_signaled_event_attributes.input.payloads[0].data)
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


async def test_watchdogs_open_an_incident_on_outage_and_follow_policy_changes(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    service = f"chat{uuid.uuid4().hex[:8]}"
    task_queue = f"watch-{service}"
    async with (
        run_upstream(name="primary") as primary,
        run_upstream(name="secondary") as secondary,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        data = BASE.model_dump(mode="json")
        data["service"] = service
        data["gateways"] = ["http://127.0.0.1:1"]  # no gateway: the watchdogs live on health probes alone
        data["dependencies"][0]["health_url"] = f"{primary.url}/health"
        data["dependencies"][1]["health_url"] = f"{secondary.url}/health"
        policy = ServicePolicy.model_validate(data)
        acts = WatchActivities(http, WorkerSettings(gateway_token="t", metrics_port=None), client)
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[WatchdogWorkflow],
            activities=[acts.watch_dependency, acts.report_watchdog_failure],
        ):
            ids = await start_or_update_watchdogs(client, {service: policy}, task_queue, FAST)
            assert ids == [watchdog_id(service, "primary-llm"), watchdog_id(service, "secondary-llm")]

            primary.set(outage=True)
            wid = incident_id(service)
            [report] = await eventually(lambda: report_signals(client, wid))
            assert report["failure_type"] == "model_unavailable" and report["source"] == "watchdog"
            assert report["severity"] == "CRITICAL"

            # the watchdog continued as new and kept its state: failing, one incident reported
            handle = client.get_workflow_handle(ids[0])

            async def failing_state() -> WatchdogState | None:
                state = await handle.query(WatchdogNames.STATE, result_type=WatchdogState)
                return state if state.hysteresis.failing and state.continued == 1 else None

            state = await eventually(failing_state)
            assert isinstance(state, WatchdogState) and state.incidents_reported == 1 and state.policy_updates == 0

            # a changed policy: secondary-llm removed; the primary's watchdog takes the update, keeps its state
            without = policy.model_copy(update={"dependencies": [policy.dependency("primary-llm")]})
            await eventually(
                lambda: _listed(client, service, 2)
            )  # visibility has indexed both watchdogs before the update lists them
            await start_or_update_watchdogs(client, {service: without}, task_queue, FAST)
            stopped = client.get_workflow_handle(ids[1], result_type=WatchdogState)
            final = await asyncio.wait_for(stopped.result(), timeout=15)
            assert final.stopped and final.stop_reason == "dependency removed from the policy"

            async def updated() -> WatchdogState | None:
                s = await handle.query(WatchdogNames.STATE, result_type=WatchdogState)
                return s if s.policy_updates >= 1 else None

            after = await eventually(updated)
            assert isinstance(after, WatchdogState) and after.hysteresis.failing and after.incidents_reported == 1
            assert after.policy_updates == 1  # the start signal carried the same policy: not an update
            assert len(await report_signals(client, wid)) == 1  # still failing: no second report

            await handle.signal(WatchdogNames.STOP, {"reason": "test over"})
            await asyncio.wait_for(handle.result(), timeout=15)
            desc = await handle.describe()
            assert desc.status is WorkflowExecutionStatus.COMPLETED
            await client.get_workflow_handle(wid).terminate("test over")


async def _listed(client: Client, service: str, n: int) -> bool:
    query = f"WorkflowType = 'WatchdogWorkflow' AND GovernorService = '{service}' AND ExecutionStatus = 'Running'"
    return len([w async for w in client.list_workflows(query)]) >= n
