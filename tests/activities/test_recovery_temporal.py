"""RecoveryActivities under a real worker and the Temporal dev server: heartbeats carry wait_for_healthy's progress
into the next attempt, and a bad policy fails at once without retries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from aiohttp import web
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.recovery import RecoveryActivities
from governor.actions import Activity, LoadPolicyInput, WaitForHealthyInput, WaitForHealthyResult
from governor.policy import ServicePolicy, Thresholds
from governor.settings import WorkerSettings
from tests.activities.conftest import make_policy

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50), backoff_coefficient=1.0, maximum_attempts=5)


@workflow.defn(sandboxed=False)
class WaitOnce:
    @workflow.run
    async def run(self, request: WaitForHealthyInput) -> WaitForHealthyResult:
        return await workflow.execute_activity(
            Activity.WAIT_FOR_HEALTHY,
            request,
            result_type=WaitForHealthyResult,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(milliseconds=500),
            retry_policy=RETRY,
        )


@workflow.defn(sandboxed=False)
class LoadOnce:
    @workflow.run
    async def run(self, request: LoadPolicyInput) -> ServicePolicy:
        return await workflow.execute_activity(
            Activity.LOAD_POLICY,
            request,
            result_type=ServicePolicy,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RETRY,
        )


class FlakyHealth:
    """A health endpoint that is down, then hangs one probe (longer than the heartbeat timeout), then is healthy."""

    def __init__(self) -> None:
        self.mode = "down"
        self.probes = 0
        self.changed = asyncio.Condition()
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def health(self, request: web.Request) -> web.Response:
        async with self.changed:
            self.probes += 1
            mode = self.mode
            if mode == "hang_once":
                self.mode = "up"
            self.changed.notify_all()
        if mode == "down":
            return web.json_response({"status": "down"}, status=503)
        if mode == "hang_once":
            await self.release.wait()
        return web.json_response({"status": "ok"})

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(predicate)

    async def __aenter__(self) -> FlakyHealth:
        app = web.Application()
        app.router.add_get("/health", self.health)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/health"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()


async def test_a_retried_wait_resumes_its_count_from_the_last_heartbeat(
    dev_env: WorkflowEnvironment, http: httpx.AsyncClient, settings: WorkerSettings
) -> None:
    acts = RecoveryActivities(http, settings)
    queue = f"activities-{uuid.uuid4()}"
    async with FlakyHealth() as upstream:
        dep = make_policy(upstream.url).dependency("primary-llm").model_copy(update={"timeout_ms": 5000})
        request = WaitForHealthyInput(dependency=dep, thresholds=Thresholds(), interval_s=0.02, passes=3)
        async with Worker(
            dev_env.client,
            task_queue=queue,
            workflows=[WaitOnce],
            activities=acts.all(),
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await dev_env.client.start_workflow(
                WaitOnce.run, request, id=f"wait-{uuid.uuid4()}", task_queue=queue
            )
            await upstream.wait_for(lambda: upstream.probes >= 3)
            # The next probe hangs past the heartbeat timeout: the server times the attempt out and retries it.
            upstream.mode = "hang_once"
            result = await handle.result()
    assert result.consecutive_passes == 3
    # Attempt 1 probed at least 3 times and heartbeated its count; a retry that started over would report 3 probes.
    assert result.probes > 3
    history = await handle.fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    # the started event is written once, for the attempt that completed: a retry, not the first attempt
    assert len(attempts) == 1 and attempts[0] >= 2


async def test_a_bad_policy_fails_the_activity_once_without_retries(
    dev_env: WorkflowEnvironment, http: httpx.AsyncClient, settings: WorkerSettings
) -> None:
    settings.policy_dir.mkdir()
    (settings.policy_dir / "chat.yaml").write_text("service: chat\ndependencies: []\nchain: []\n")
    acts = RecoveryActivities(http, settings)
    queue = f"activities-{uuid.uuid4()}"
    async with Worker(
        dev_env.client,
        task_queue=queue,
        workflows=[LoadOnce],
        activities=acts.all(),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        with pytest.raises(WorkflowFailureError) as err:
            await dev_env.client.execute_workflow(
                LoadOnce.run, LoadPolicyInput(service="chat"), id=f"load-{uuid.uuid4()}", task_queue=queue
            )
    activity_error = err.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == "PolicyError"
    assert "chat.yaml" in cause.message and "chain" in cause.message
    assert activity_error.retry_state is not None and activity_error.retry_state.name == "NON_RETRYABLE_FAILURE"
