"""The incident query the demo prints and `governor list` select incidents only: the watchdog runs carry the same
GovernorService / GovernorDependency search attributes, so only the workflow type tells them apart.

Real dev server, real watchdog starts (`start_or_update_watchdogs`) and a real report (signal-with-start), on a task
queue no worker polls: every run stays open with the search attributes it was started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli import main as cli_main
from demo.scenario import Demo, DemoSettings
from demo.settings import DEMO_POLICY_DIR
from governor.client import GovernorClient
from governor.detection import watchdog_id
from governor.enums import FailureType, Severity
from governor.incident import IncidentReport, incident_id
from governor.policy import ServicePolicy, parse_policy
from governor.watchdogs import start_or_update_watchdogs

pytestmark = pytest.mark.integration


@dataclass
class FakeStackInfo:
    """What Demo reads of the running stack: only the names and URLs matter here, nothing is contacted."""

    client: Client
    policies: dict[str, ServicePolicy]
    task_queue: str
    state_dir: Path
    log_dir: Path
    temporal_address: str
    namespace: str = "default"
    ui_url: str = "http://127.0.0.1:8233"
    temporal_bin: Path = Path("temporal")
    python: Path = Path("python")
    gateway_url: str | None = "http://127.0.0.1:9"
    status_url: str | None = "http://127.0.0.1:9/status"
    gateway_token: str = "t"
    upstreams: dict[str, str] = field(default_factory=lambda: {"primary": "http://127.0.0.1:9"})
    out: IO[str] = field(default_factory=io.StringIO)

    def incident_ui_url(self, workflow_id: str) -> str:
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows/{workflow_id}"


async def ids_for(client: Client, query: str) -> set[str]:
    return {execution.id async for execution in client.list_workflows(query)}


async def test_the_printed_query_and_governor_list_leave_the_watchdogs_out(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = dev_env.client
    data: dict[str, Any] = yaml.safe_load((DEMO_POLICY_DIR / "chat.yaml").read_text())
    data["service"] = service = f"q{uuid.uuid4().hex[:8]}"
    policy = parse_policy(data, "demo policy under a fresh service name")
    task_queue = f"nobody-polls-{uuid.uuid4().hex[:8]}"
    incident = incident_id(service)
    watchdogs = {watchdog_id(service, d.name) for d in policy.dependencies}
    started: list[str] = []
    try:
        started += await start_or_update_watchdogs(client, [policy], task_queue)
        sdk = GovernorClient(client, task_queue=task_queue)
        report = IncidentReport(
            service=service,
            dependency="primary-llm",
            failure_type=FailureType.MODEL_UNAVAILABLE,
            severity=Severity.CRITICAL,
            source="test",
        )
        started.append((await sdk.report_failure(report)).incident_id)

        # Visibility lags a moment. By service and dependency alone, the watchdog runs are listed too:
        old_query = f"GovernorService = '{service}' AND GovernorDependency = 'primary-llm'"
        deadline = time.monotonic() + 15
        while (found := await ids_for(client, f"GovernorService = '{service}'")) != {incident, *watchdogs}:
            assert time.monotonic() < deadline, f"visibility never showed every run: {found}"
            await asyncio.sleep(0.2)
        assert await ids_for(client, old_query) == {incident, watchdog_id(service, "primary-llm")}

        demo = Demo(
            FakeStackInfo(
                client, {service: policy}, task_queue, tmp_path, tmp_path, client.service_client.config.target_host
            ),
            DemoSettings(),
        )
        try:
            printed = demo.incidents_query()
            url = demo.incidents_list_url()
        finally:
            await demo.http.aclose()
        assert "WorkflowType = 'IncidentRecoveryWorkflow'" in printed
        assert await ids_for(client, printed) == {incident}
        # The UI link carries the query for every service's open incidents.
        ui_query = parse_qs(urlsplit(url).query)["query"][0]
        assert urlsplit(url).path == "/namespaces/default/workflows"
        assert incident in await ids_for(client, ui_query)
        assert not watchdogs & await ids_for(client, ui_query)

        out = io.StringIO()
        flags = ["--address", client.service_client.config.target_host, "--task-queue", task_queue]
        for extra in ([], ["--all"]):
            out.seek(0), out.truncate()
            with contextlib.redirect_stdout(out):
                code = await cli_main.run([*flags, "list", "--service", service, *extra])
            listed = out.getvalue()
            assert code == 0 and incident in listed, listed
            assert "watchdog" not in listed, listed
    finally:
        for wid in started:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(wid).terminate("test over")
