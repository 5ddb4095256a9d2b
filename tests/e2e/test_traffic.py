"""The demo's client traffic counts what users would count: answers per tier per second, and every failed request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.traffic import TrafficGenerator, main, read_traffic
from demo.upstream import run_upstream


async def _until_failures(traffic: TrafficGenerator, status: int | None, n: int) -> None:
    """Until `n` requests have failed with `status` (None: no answer at all)."""
    while sum(1 for r in traffic.records if r.failed and r.status == status) < n:
        await traffic.wait_for_requests(traffic.requests + 1)


async def test_counts_answers_per_second_and_every_failure() -> None:
    async with run_upstream(name="primary") as up:
        url = f"{up.url}/v1/chat/completions"
        async with TrafficGenerator(url, rps=50) as traffic:
            await traffic.wait_for_requests(25)
            up.set(outage=True, outage_mode="503")  # an explicit 503 is a failed request for a user
            await _until_failures(traffic, 503, 10)  # not "10 more answers": requests in flight may still succeed
            up.set(outage_mode="close")  # no answer at all
            await _until_failures(traffic, None, 10)
        report = traffic.report()
    assert report.requests == traffic.requests >= 45
    statuses = {r.status for r in report.failures}
    assert {503, None} <= statuses
    assert report.failed == len(report.failures) == traffic.failed >= 20
    assert all(r.latency_ms >= 0 and r.at > 0 for r in traffic.records)
    # every request lands in exactly one closed second
    assert sum(s.requests for s in report.seconds) == report.requests
    assert sum(s.failed for s in report.seconds) == report.failed


def test_process_writes_a_timeline_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "traffic.jsonl"
    code = main(
        ["--url", "http://127.0.0.1:9/v1/chat/completions", "--rps", "20", "--out", str(out), "--duration", "1.2"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert json.loads(printed.splitlines()[0])["event"] == "traffic_started"
    report = read_traffic(out)
    assert report.requests >= 20 and report.failed == report.requests  # nothing listens on port 9
    assert {f.status for f in report.failures} == {None}
