"""The audit trail the workflow's own history implies, for `governor audit verify`.

The trail is workflow state: every entry is appended by deterministic workflow code from what the history records
(reports and controls as signals and updates, activity results, timers, `workflow.now()` of each task), so replaying
the history rebuilds it exactly. The history lives on the Temporal server and no client can rewrite its events;
a trail shown by a query, a saved file or a worker can. So a trail is proved by comparing it with the replay.

Limits: the replay runs the workflow code installed with this CLI; when the worker runs a different version the
replay may fail (non-determinism) and nothing is proved either way (exit 1). The replay covers the current run;
a continued-as-new run starts from the state its predecessor handed over, which is in this run's first event (the
server wrote it from the previous run's own command). Whoever administers the namespace (reset, terminate, delete)
is trusted: the check proves the trail matches the history, not that the history is the one you expected.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from governor.audit import AuditEntry
from governor.client import GovernorError
from workflows.recovery import IncidentRecoveryWorkflow


class ReplayFailed(GovernorError):
    """The history could not be replayed with this CLI's workflow code; nothing is proved either way."""


class _Capture(Interceptor):
    """Keeps the workflow instance the replayer builds, to read its audit trail once the history is replayed."""

    def __init__(self) -> None:
        self.instances: list[Any] = []

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        instances = self.instances

        class Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                instances.append(workflow.instance())
                return await super().execute_workflow(input)

        return Inbound


async def trail_from_history(client: Client, incident: str) -> list[AuditEntry]:
    """Fetch the incident's history from the server (its latest run) and replay it; the trail the replay rebuilt."""
    history = await client.get_workflow_handle(incident).fetch_history()
    capture = _Capture()
    replayer = Replayer(
        workflows=[IncidentRecoveryWorkflow],
        data_converter=pydantic_data_converter,
        interceptors=[capture],
        workflow_runner=UnsandboxedWorkflowRunner(),  # the instance must be the one we read, not a sandbox copy
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        raise ReplayFailed(
            f"{incident}: cannot replay its history with this CLI's workflow code ({result.replay_failure}); "
            "use the governor version the worker runs"
        )
    if not capture.instances:
        raise ReplayFailed(f"{incident}: its history holds no workflow start to replay")
    return [AuditEntry.model_validate(e.model_dump()) for e in capture.instances[-1].s.audit]


def compare_with_history(trail: list[AuditEntry], replayed: list[AuditEntry]) -> tuple[int, str] | None:
    """(first position that differs, why) or None when the trail is exactly the one the history implies."""
    for i, (shown, truth) in enumerate(zip(trail, replayed, strict=False)):
        if shown.hash != truth.hash or shown.compute_hash() != truth.hash:
            return i, (
                f"entry {i} ({shown.action} by {shown.actor}) is not the history's ({truth.action} by {truth.actor}, "
                f"hash {truth.hash[:12]}, shown {shown.hash[:12]}): edited, or the chain was recomputed"
            )
    if len(trail) < len(replayed):
        missing = replayed[len(trail)]
        what = "empty" if not trail else f"truncated after entry {len(trail) - 1}"
        return len(trail), (
            f"the trail is {what}: the history has {len(replayed)} entries, it shows {len(trail)} "
            f"(first missing: {missing.seq} {missing.action} by {missing.actor})"
        )
    if len(trail) > len(replayed):
        return len(replayed), (
            f"the trail has {len(trail) - len(replayed)} entries the history does not "
            f"(from {len(replayed)}: {trail[len(replayed)].action} by {trail[len(replayed)].actor})"
        )
    return None
