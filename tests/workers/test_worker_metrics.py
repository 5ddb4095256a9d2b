"""Issue 11.7: the worker's Prometheus port bound 0.0.0.0. It binds 127.0.0.1 unless GOVERNOR_METRICS_HOST says
otherwise; checked on the socket the real worker opens (the kernel's table of listening sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from governor.settings import TemporalSettings, WorkerSettings
from tests.ports import free_port
from workers.worker import run_worker

pytestmark = pytest.mark.integration


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on this TCP port (IPv4 table of /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


async def test_worker_metrics_listen_on_loopback_only(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    port = free_port()
    temporal = TemporalSettings(
        address=dev_env.client.service_client.config.target_host, task_queue=f"metrics-{uuid.uuid4().hex[:8]}"
    )
    settings = WorkerSettings(policy_dir=tmp_path, gateway_token="t", metrics_port=port)
    assert settings.metrics_host == "127.0.0.1"
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(temporal, settings, stop))
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200:
                        break
                assert not task.done(), task.exception()
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the worker's metrics never answered")
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
