"""The intake end to end: the real Alertmanager (Debian's) fires into it, reports land in the real Temporal dev server.

Most tests run no worker on purpose: signal-with-start creates the incident and queues its report signals whether or
not a worker picks them up, so the history shows exactly what the intake sent. The test of a report after the incident
closed runs a real worker (the recovery workflow on scripted activities), so the incident really finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from governor.client import GovernorClient, GovernorUnavailable, Reported
from governor.enums import FailureType, Severity
from governor.incident import IncidentReport, incident_id
from governor.policy import ServicePolicy, load_policy, parse_policy
from tests.ports import free_port
from workers.intake import RunningIntake, run_intake

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
BASE = load_policy(Path(__file__).resolve().parents[2] / "policies" / "chat.yaml")


class Recorder:
    """The production reporter (GovernorClient.report_failure), plus a wake-up for the test on every report."""

    def __init__(self, governor: GovernorClient) -> None:
        self.governor = governor
        self.reports: list[IncidentReport] = []
        self.calls = 0
        self.changed = asyncio.Condition()

    async def __call__(self, report: IncidentReport) -> Reported:
        reported = await self.governor.report_failure(report)
        self.calls += 1
        self.reports.extend(report.expanded())  # the intake coalesces: one call may carry several reports
        async with self.changed:
            self.changed.notify_all()
        return reported

    async def until(self, n: int, limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s), self.changed:
            await self.changed.wait_for(lambda: len(self.reports) >= n)


def policy_named(service: str) -> ServicePolicy:
    return BASE.model_copy(update={"service": service})


@pytest.fixture
async def intake(dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[RunningIntake, Recorder, str]]:
    service = f"chat{uuid.uuid4().hex[:8]}"  # a fresh service per test: incidents never collide
    recorder = Recorder(GovernorClient(dev_env.client, task_queue=f"intake-{service}"))
    async with run_intake(recorder, policies={service: policy_named(service)}) as running:
        yield running, recorder, service


@contextlib.contextmanager
def alertmanager(webhook_url: str, tmp: Path) -> Iterator[str]:
    """Debian's Alertmanager with one webhook receiver, short group_wait, no clustering."""
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(
        json.dumps(
            {
                "route": {
                    "receiver": "governor",
                    "group_by": ["alertname", "service", "dependency"],
                    "group_wait": "50ms",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "governor", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
            }
        )
    )
    proc = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def ready(http: httpx.AsyncClient, url: str) -> None:
    """Alertmanager answers /-/ready once its config is loaded (it starts in well under a second)."""
    async with asyncio.timeout(10):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/-/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def signals(client: Client, wid: str) -> list[dict[str, Any]]:
    """The report signals in the incident's history, decoded."""
    handle = client.get_workflow_handle(wid)
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            payload = event.workflow_execution_signaled_event_attributes.input.payloads[0]
            found.append(json.loads(payload.data))
    return found


async def test_alertmanager_fires_into_the_intake_and_one_incident_collects_the_reports(
    dev_env: WorkflowEnvironment, intake: tuple[RunningIntake, Recorder, str], tmp_path: Path
) -> None:
    running, recorder, service = intake
    now = datetime.now(UTC).isoformat()
    alerts = [
        {
            "labels": {
                "alertname": "PrimaryErrorBudgetBurn",
                "service": service,
                "dependency": "primary-llm",
                "severity": "critical",
            },
            "annotations": {"summary": "primary-llm burns its error budget 14x"},
            "startsAt": now,
        },
        {
            "labels": {
                "alertname": "PrimaryHighLatency",
                "service": service,
                "dependency": "primary-llm",
                "severity": "warning",
            },
            "annotations": {"summary": "p99 above 2 s"},
            "startsAt": now,
        },
    ]
    async with httpx.AsyncClient(trust_env=False) as http:
        with alertmanager(f"{running.url}/v1/alertmanager", tmp_path) as am:
            await ready(http, am)
            posted = await http.post(f"{am}/api/v2/alerts", json=alerts)
            assert posted.status_code == 200, posted.text
            await recorder.until(2)
            # Alertmanager sending the same firing alert again (a retry, a repeat) is answered from the cache
            again = dict(recorder.reports[0].model_dump(mode="json"))
        wid = incident_id(service)
        sent = await signals(dev_env.client, wid)
        by_type = {r.failure_type: r for r in recorder.reports}
        assert set(by_type) == {FailureType.ERROR_SPIKE, FailureType.HIGH_LATENCY}
        assert by_type[FailureType.ERROR_SPIKE].severity is Severity.CRITICAL
        assert by_type[FailureType.HIGH_LATENCY].severity is Severity.MEDIUM
        assert by_type[FailureType.ERROR_SPIKE].source == "alertmanager:PrimaryErrorBudgetBurn"
        carried = [r for s in sent for r in (s, *s["also"])]
        assert len(carried) == 2 and {r["failure_type"] for r in carried} == {"error_spike", "high_latency"}
        # one incident for both alerts: the second report joined the first
        desc = await dev_env.client.get_workflow_handle(wid).describe()
        assert desc.id == wid

        # the same report, re-sent as a plain report with its dedup key: a duplicate of what this run already has;
        # it still reaches the run (one more counted report), so a repeat after the incident closed is never lost
        replay = await http.post(f"{running.url}/v1/reports", json=again)
        assert replay.status_code == 202 and replay.json()["duplicate"] is True
        assert replay.json()["run_id"] == desc.run_id and replay.json()["started"] is False
        assert sum(s.get("coalesced", 1) for s in await signals(dev_env.client, wid)) == 3


async def test_plain_report_starts_an_incident_and_a_repeat_is_deduplicated(
    dev_env: WorkflowEnvironment, intake: tuple[RunningIntake, Recorder, str]
) -> None:
    running, _recorder, service = intake
    body = {"service": service, "dependency": "secondary-llm", "failure_type": "timeout", "message": "3 timeouts"}
    async with httpx.AsyncClient(trust_env=False) as http:
        first = await http.post(f"{running.url}/v1/reports", json=body)
        second = await http.post(f"{running.url}/v1/reports", json=body)
        health = (await http.get(f"{running.url}/healthz")).json()
    assert first.status_code == 202 and first.json()["started"] is True and first.json()["duplicate"] is False
    assert second.status_code == 202 and second.json()["duplicate"] is True and second.json()["started"] is False
    assert first.json()["incident_id"] == incident_id(service)
    assert second.json()["run_id"] == first.json()["run_id"]
    assert len(await signals(dev_env.client, incident_id(service))) == 2  # both reached the run
    assert health["reported"] == 1 and health["duplicates"] == 1


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/reports", "not json", 400, "body"),
        ("/v1/reports", {"dependency": "primary-llm"}, 422, "service"),
        (
            "/v1/reports",
            {"service": "SVC", "dependency": "primary-llm", "failure_type": "meltdown"},
            422,
            "failure_type",
        ),
        ("/v1/reports", {"service": "SVC", "dependency": "nope"}, 422, "dependency"),
        ("/v1/reports", {"service": "other", "dependency": "primary-llm"}, 422, "service"),
        ("/v1/reports", {"service": "SVC", "dependency": "primary-llm", "coalesced": 1000000}, 422, "coalesced"),
        ("/v1/reports", {"service": "SVC", "dependency": "primary-llm", "also": [{"service": "SVC"}]}, 422, "also"),
        (
            "/v1/alertmanager",
            {"version": "3", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": []},
            422,
            "version",
        ),
        (
            "/v1/alertmanager",
            {
                "version": "4",
                "groupKey": "g",
                "status": "firing",
                "receiver": "r",
                "alerts": [{"status": "firing", "labels": {"service": "SVC"}, "startsAt": "2026-01-01T00:00:00Z"}],
            },
            422,
            "alerts[0].labels.dependency",
        ),
        (
            "/v1/alertmanager",
            {
                "version": "4",
                "groupKey": "g",
                "status": "firing",
                "receiver": "r",
                "alerts": [{"status": "firing", "labels": {"service": "SVC"}}],
            },
            422,
            "alerts[0].startsAt",
        ),
    ],
)
async def test_bad_payloads_are_refused_naming_the_field(
    intake: tuple[RunningIntake, Recorder, str], path: str, body: Any, status: int, field: str
) -> None:
    running, recorder, service = intake
    raw = body if isinstance(body, str) else json.dumps(body).replace("SVC", service)
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(f"{running.url}{path}", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert recorder.reports == []


async def test_a_report_after_the_incident_closed_opens_the_next_incident(dev_env: WorkflowEnvironment) -> None:
    """Finding 11.3: the dedup cache used to answer a stale `202 {"duplicate": true}` and no incident opened."""
    from tests.workflows.fakes import FakeWorld
    from workers.worker import build_worker

    service = f"chat{uuid.uuid4().hex[:8]}"
    data = policy_named(service).model_dump(mode="json")
    data["ramp"] = {"steps": [{"percent": 100, "soak_s": 0}], "sample_interval_s": 0.1}
    data["approvals"]["gates"] = []  # no gate: the incident runs to its end without on-call
    world = FakeWorld(parse_policy(data, "intake test policy"))
    task_queue = f"intake-{service}"
    governor = GovernorClient(dev_env.client, task_queue=task_queue)
    body = {"service": service, "dependency": "primary-llm", "failure_type": "error_spike", "message": "5xx"}
    wid = incident_id(service)
    async with (
        build_worker(dev_env.client, task_queue, world.activities()),
        run_intake(governor.report_failure, policies={service: policy_named(service)}) as running,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        first = (await http.post(f"{running.url}/v1/reports", json=body)).json()
        assert first["started"] is True and first["duplicate"] is False
        async with asyncio.timeout(30):  # the scripted world recovers at once: the incident runs to its post-mortem
            await dev_env.client.get_workflow_handle(wid, run_id=first["run_id"]).result()

        again = await http.post(f"{running.url}/v1/reports", json=body)
        assert again.status_code == 202, again.text
        second = again.json()
        assert second["duplicate"] is False and second["started"] is True
        assert second["incident_id"] == wid and second["run_id"] != first["run_id"]
        desc = await dev_env.client.get_workflow_handle(wid).describe()
        assert desc.run_id == second["run_id"] and desc.status == WorkflowExecutionStatus.RUNNING
        await dev_env.client.get_workflow_handle(wid).terminate("test over")


async def test_a_burst_for_one_incident_is_coalesced_and_every_report_is_counted(
    dev_env: WorkflowEnvironment, intake: tuple[RunningIntake, Recorder, str]
) -> None:
    running, recorder, service = intake
    sources = [f"probe-{i % 7}" for i in range(200)]  # 7 distinct reports, each repeated
    async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=200)) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{running.url}/v1/reports",
                    json={"service": service, "dependency": "primary-llm", "source": src, "message": f"#{i}"},
                )
                for i, src in enumerate(sources)
            )
        )
    assert [a.status_code for a in answers] == [202] * 200
    assert sum(1 for a in answers if a.json()["started"]) == 1
    assert sum(1 for a in answers if not a.json()["duplicate"]) == 7  # each distinct report is new once
    sent = await signals(dev_env.client, incident_id(service))
    assert len(sent) == recorder.calls < 200  # coalesced: far fewer signals than reports
    assert sum(s["coalesced"] for s in sent) == 200  # nothing lost: every report is counted in some signal
    carried = [s["source"] for s in sent] + [a["source"] for s in sent for a in s["also"]]
    assert set(carried) == set(sources)


async def test_a_full_intake_answers_503_with_retry_after_and_loses_nothing_it_accepted(
    dev_env: WorkflowEnvironment,
) -> None:
    service = f"chat{uuid.uuid4().hex[:8]}"
    governor = GovernorClient(dev_env.client, task_queue=f"intake-{service}")
    gate = asyncio.Event()

    async def slow_reporter(report: IncidentReport) -> Reported:
        await gate.wait()  # Temporal is slow: reports pile up in the intake
        return await governor.report_failure(report)

    async with (
        run_intake(slow_reporter, policies={service: policy_named(service)}, max_pending=5) as running,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        body = {"service": service, "dependency": "primary-llm"}
        first = [asyncio.create_task(http.post(f"{running.url}/v1/reports", json=body)) for _ in range(5)]
        async with asyncio.timeout(10):
            while (await http.get(f"{running.url}/healthz")).json()["pending"] < 5:
                pass  # each turn is one HTTP round trip to the intake
        full = await http.post(f"{running.url}/v1/reports", json=body)
        gate.set()
        accepted = await asyncio.gather(*first)
        health = (await http.get(f"{running.url}/healthz")).json()
    assert full.status_code == 503 and full.headers["Retry-After"] == "1", full.text
    assert "retry" in full.json()["error"]["message"]
    assert [a.status_code for a in accepted] == [202] * 5
    assert health["pending"] == 0 and health["overloaded"] == 1
    sent = await signals(dev_env.client, incident_id(service))
    assert sum(s["coalesced"] for s in sent) == 5  # the five accepted reports, and not the refused one


async def test_a_failed_signal_answers_503_for_its_reports_and_the_rest_still_go(dev_env: WorkflowEnvironment) -> None:
    """25 distinct reports at once: two signals (at most 20 distinct each); the first fails, the second lands."""
    service = f"chat{uuid.uuid4().hex[:8]}"
    governor = GovernorClient(dev_env.client, task_queue=f"intake-{service}")
    calls = 0

    async def flaky(report: IncidentReport) -> Reported:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise GovernorUnavailable("Temporal is restarting")
        return await governor.report_failure(report)

    async with (
        run_intake(flaky, policies={service: policy_named(service)}, coalesce_s=0.2) as running,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        answers = await asyncio.gather(
            *(
                http.post(
                    f"{running.url}/v1/reports",
                    json={"service": service, "dependency": "primary-llm", "source": f"s{i}"},
                )
                for i in range(25)
            )
        )
    codes = [a.status_code for a in answers]
    assert sorted(codes) == [202] * 5 + [503] * 20, codes
    assert all(a.headers["Retry-After"] == "5" for a in answers if a.status_code == 503)
    sent = await signals(dev_env.client, incident_id(service))
    assert sum(s["coalesced"] for s in sent) == 5  # exactly the accepted ones
