"""Client side of the watchdogs: start one per dependency of every policy, hand running ones an edited policy.

`governor up`, `governor watch`, the demo and the benches call `start_or_update_watchdogs`; the workflow itself is
workflows/watchdog.py (this module only names it, so the domain never imports a workflow).
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from governor import search_attributes as sa
from governor.detection import (
    WATCHDOG_WORKFLOW_NAME,
    PolicyUpdate,
    StopInput,
    WatchdogConfig,
    WatchdogInput,
    WatchdogNames,
    watchdog_id,
)
from governor.policy import ServicePolicy


async def start_or_update_watchdogs(
    client: Client,
    policies: dict[str, ServicePolicy] | list[ServicePolicy],
    task_queue: str,
    config: WatchdogConfig | None = None,
) -> list[str]:
    """Start a watchdog per dependency of every policy, or hand the running one the new policy (signal-with-start),
    and stop the watchdogs of dependencies a policy no longer lists. Returns the watchdog ids now watching.

    `governor up` and `governor watch` call this; it is idempotent, so calling it again after editing a policy file is
    how a changed policy takes effect.
    """
    items = list(policies.values()) if isinstance(policies, dict) else list(policies)
    cfg = config or WatchdogConfig()
    ids: list[str] = []
    for policy in items:
        wanted = {d.name for d in policy.dependencies}
        for dep in policy.dependencies:
            wid = watchdog_id(policy.service, dep.name)
            await client.start_workflow(
                WATCHDOG_WORKFLOW_NAME,
                WatchdogInput(policy=policy, dependency=dep.name, config=cfg, task_queue=task_queue),
                id=wid,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                start_signal=WatchdogNames.UPDATE_POLICY,
                start_signal_args=[PolicyUpdate(policy=policy, config=cfg)],
                static_summary=f"watchdog: {policy.service} / {dep.name}",
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.SERVICE, policy.service),
                        SearchAttributePair(sa.DEPENDENCY, dep.name),
                    ]
                ),
            )
            ids.append(wid)
        query = (
            f"WorkflowType = '{WATCHDOG_WORKFLOW_NAME}' AND ExecutionStatus = 'Running' "
            f"AND GovernorService = '{policy.service}'"
        )
        async for execution in client.list_workflows(query):
            if execution.status is not WorkflowExecutionStatus.RUNNING:
                continue
            prefix = watchdog_id(policy.service, "")
            dependency = execution.id[len(prefix) :] if execution.id.startswith(prefix) else None
            if dependency is not None and dependency not in wanted:
                await client.get_workflow_handle(execution.id).signal(
                    WatchdogNames.STOP, StopInput(reason="dependency removed from the policy")
                )
    return ids
