"""`python -m gateway` serves the policy folder with the token from the environment, and refuses unsafe set-ups."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from demo.upstream import run_upstream
from tests.gateway.conftest import CHAT
from tests.ports import free_port

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

ROOT = Path(__file__).resolve().parents[2]


async def _start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args,
        env={**os.environ, "GOVERNOR_LOG_FORMAT": "json", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize("server", ["fast", "asgi"])
async def test_cli_serves_the_policy_dir(tmp_path: Path, server: str) -> None:
    async with run_upstream(name="primary") as up:
        (tmp_path / "chat.yaml").write_text(
            "service: chat\ndependencies: [{name: p, tier: tier_0_primary}]\n"
            f"chain: [{{tier: tier_0_primary, upstream: '{up.url}'}}]\n"
        )
        port = free_port()
        proc = await _start(
            ["--policy-dir", str(tmp_path), "--port", str(port), "--log-level", "INFO", "--http", server],
            {"GOVERNOR_GATEWAY_TOKEN": "cli-secret"},
        )
        try:
            assert proc.stdout is not None
            ready = b"Uvicorn running on" if server == "asgi" else b"gateway_serving"
            while ready not in (line := await asyncio.wait_for(proc.stdout.readline(), 20)):
                assert line, "the gateway exited before serving"
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/chat/v1/chat/completions", json=CHAT) as r:
                    assert (r.status, r.headers["X-Governor-Tier"]) == (200, "tier_0_primary")
                auth = {"Authorization": "Bearer cli-secret"}
                async with http.get(f"http://127.0.0.1:{port}/admin/services", headers=auth) as r:
                    assert await r.json() == {"services": ["chat"]}
                for _ in range(40):
                    async with http.post(f"http://127.0.0.1:{port}/chat/v1/chat/completions", json=CHAT) as r:
                        assert r.status == 200
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    metrics = await r.text()
                async with http.get(f"http://127.0.0.1:{port}/admin/services/chat/stats", headers=auth) as r:
                    stats = await r.json()
            assert_sub_millisecond_timing(metrics, stats)
        finally:
            proc.terminate()
            await proc.wait()


def assert_sub_millisecond_timing(metrics: str, stats: dict[str, Any]) -> None:
    """The real server runs on uvloop, whose loop clock ticks in whole milliseconds: attempts timed on it sum to a
    multiple of 1 ms and a sub-millisecond p50 reads as the lowest bin. Timed on perf_counter they do not."""
    sample = 'governor_gateway_tier_latency_seconds_sum{service="chat",tier="tier_0_primary"} '
    total_s = float(next(line for line in metrics.splitlines() if line.startswith(sample)).split()[-1])
    assert abs(total_s * 1000 - round(total_s * 1000)) > 1e-6, f"latencies sum to whole ms ({total_s}): coarse clock"
    assert 'governor_gateway_tier_latency_seconds_bucket{le="5e-05",service="chat",tier="tier_0_primary"}' in metrics
    primary = stats["tiers"]["tier_0_primary"]
    assert primary["requests"] >= 41 and primary["p50_ms"] > 0.011, primary  # above the histogram's lowest bin


async def test_cli_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(
        "service: chat\ndependencies: [{name: p}]\nchain: [{tier: tier_0_primary, upstream: 'http://127.0.0.1:1'}]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOVERNOR_GATEWAY_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "--policy-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"GOVERNOR_GATEWAY_TOKEN must be set" in out


async def test_cli_reports_a_bad_policy(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text("service: chat\ndependencies: []\nchain: [{tier: tier_1_secondary}]\n")
    proc = await _start(["--policy-dir", str(tmp_path)], {"GOVERNOR_GATEWAY_TOKEN": "x"})
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"chat.yaml" in out and b"chain" in out
