"""Temporal administration for the launcher: connect, register the governor's search attributes, see the worker poll."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from governor import search_attributes
from governor.client import connect
from governor.settings import TemporalSettings
from workers.supervisor import StackError


async def connect_temporal(address: str, namespace: str) -> Client:
    """The launcher's client to its own dev server (no TLS, no API key: it is local)."""
    return await connect(TemporalSettings(address=address, namespace=namespace, api_key=None, tls=False))


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register every governor search attribute that is missing (a reused DB may predate some); return the added."""
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "BOOL": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
        "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = {**existing.system_attributes, **existing.custom_attributes}
    missing: dict[str, Any] = {}
    for key in cast(list[SearchAttributeKey[Any]], search_attributes.ALL):
        want = kinds[key.indexed_value_type.name]
        have = known.get(key.name)
        if have is None:
            missing[key.name] = want
        elif have != want:
            raise StackError(
                f"search attribute {key.name} is registered as {IndexedValueType.Name(have)} in namespace "
                f"{namespace}, the governor needs {IndexedValueType.Name(want)}: use a fresh --state-dir"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def worker_polling(client: Client, namespace: str, task_queue: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return len(resp.pollers) > 0

    return check
