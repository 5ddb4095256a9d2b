from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from governor.incident import WORKFLOW_NAME, IncidentReport, IncidentState, Names, RecoveryInput
from tests.workflows.fakes import FakeWorld
from workflows.recovery import IncidentRecoveryWorkflow


class Incident:
    """One incident under test: its handle, the fake world, and helpers that let workflow time pass."""

    def __init__(self, env: WorkflowEnvironment, world: FakeWorld, task_queue: str) -> None:
        self.env, self.world, self.task_queue = env, world, task_queue
        self.service = world.policy.service
        self.dependency = "primary-llm"
        self.workflow_id = f"recovery-{self.service}-{uuid.uuid4().hex[:8]}"
        self.handle: WorkflowHandle[Any, IncidentState] | None = None

    async def report(
        self, history_limit: int = 10_000, dependency: str | None = None, **fields: Any
    ) -> WorkflowHandle[Any, IncidentState]:
        """Signal-with-start, as the intake does: the first report opens the incident, the next ones join it."""
        dependency = dependency or self.dependency
        report = IncidentReport(service=self.service, dependency=dependency, source="test", **fields)
        self.handle = await self.env.client.start_workflow(
            WORKFLOW_NAME,
            RecoveryInput(service=self.service, dependency=dependency, history_limit=history_limit),
            id=self.workflow_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=Names.REPORT,
            start_signal_args=[report],
            result_type=IncidentState,
        )
        return self.handle

    async def state(self) -> IncidentState:
        """The latest run's state (a handle pinned to the first run would miss continue-as-new)."""
        latest = self.env.client.get_workflow_handle(self.workflow_id)
        return await latest.query(Names.STATE, result_type=IncidentState)

    async def until(
        self, predicate: Callable[[IncidentState], bool], step_s: float = 5, limit: int = 400
    ) -> IncidentState:
        """Let workflow time pass in steps until the state satisfies `predicate`."""
        for _ in range(limit):
            state = await self.state()
            if predicate(state):
                return state
            await self.env.sleep(step_s)
        raise AssertionError(f"condition never held; last state: phase={state.phase} pending={state.pending_gates}")

    async def result(self) -> IncidentState:
        assert self.handle
        return await self.handle.result()


@pytest.fixture
async def incident(time_skipping_env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
    """Factory: `inc = await incident(world)` starts a worker with the world's fake activities."""
    workers: list[Worker] = []
    incidents: list[Incident] = []

    async def make(world: FakeWorld | None = None) -> Incident:
        world = world or FakeWorld()
        task_queue = f"tq-{uuid.uuid4().hex[:8]}"
        worker = Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[IncidentRecoveryWorkflow],
            activities=world.activities(),
        )
        await worker.__aenter__()
        workers.append(worker)
        incidents.append(Incident(time_skipping_env, world, task_queue))
        return incidents[-1]

    yield make
    for inc in incidents:  # a test that stopped early leaves nothing running on the shared test server
        if inc.handle is not None:
            with contextlib.suppress(RPCError):
                await time_skipping_env.client.get_workflow_handle(inc.workflow_id).terminate("test over")
    for worker in workers:
        await worker.__aexit__(None, None, None)
