"""Issue 11.7 at the intake: an anonymous `{"manual": true}` report failed over a healthy primary. Now a manual
failover always needs the intake's token, and an intake bound beyond loopback refuses to start without one."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from governor.client import Reported
from governor.incident import IncidentReport, incident_id
from governor.policy import load_policy
from workers.intake import run_intake

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "policies" / "chat.yaml")
DEPENDENCY = POLICY.dependencies[0].name


class Reporter:
    """Stands in for Temporal: records what the intake would have reported."""

    def __init__(self) -> None:
        self.reports: list[IncidentReport] = []

    async def __call__(self, report: IncidentReport) -> Reported:
        self.reports.append(report)
        return Reported(incident_id=incident_id(report.service), run_id="r", started=True)


def report(manual: bool, **more: object) -> dict[str, object]:
    return {
        "service": "chat",
        "dependency": DEPENDENCY,
        "manual": manual,
        "message": "fail over now",
        "reported_at": datetime.now(UTC).isoformat(),
        **more,
    }


async def test_a_manual_failover_without_a_token_is_refused_and_not_reported() -> None:
    reporter = Reporter()
    async with run_intake(reporter, policies={"chat": POLICY}) as running, httpx.AsyncClient() as http:
        r = await http.post(f"{running.url}/v1/reports", json=report(manual=True))
        assert r.status_code == 403, r.text
        assert "manual failover needs an intake with a token" in r.text
        assert reporter.reports == []
        r = await http.post(f"{running.url}/v1/reports", json=report(manual=False))  # an ordinary report still works
        assert r.status_code == 202, r.text
    assert [x.manual for x in reporter.reports] == [False]


async def test_a_manual_failover_needs_the_right_bearer_token() -> None:
    reporter = Reporter()
    async with run_intake(reporter, policies={"chat": POLICY}, token="s3cret") as running, httpx.AsyncClient() as http:
        url = f"{running.url}/v1/reports"
        for headers in ({}, {"Authorization": "Bearer dev-token"}, {"Authorization": "Bearer s3cre"}):
            r = await http.post(url, json=report(manual=True), headers=headers)
            assert r.status_code == 401, (headers, r.text)
        assert reporter.reports == []
        r = await http.post(url, json=report(manual=True), headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 202, r.text
    assert [x.manual for x in reporter.reports] == [True]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::"])
async def test_the_intake_will_not_listen_beyond_loopback_without_a_token(host: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOVERNOR_INTAKE_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workers.intake",
        env={
            **env,
            "GOVERNOR_INTAKE_HOST": host,
            "GOVERNOR_INTAKE_PORT": "1",
            "GOVERNOR_POLICY_DIR": str(ROOT / "policies"),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"GOVERNOR_INTAKE_TOKEN must be set when the intake listens beyond loopback ({host})" in out.decode()
