"""probe_dependency against real HTTP servers on 127.0.0.1: every error kind a probe can report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web

from activities.probes import error_kind_of, probe_dependency
from governor.enums import HealthStatus
from governor.policy import DependencySpec, Thresholds
from tests.ports import free_port

THRESHOLDS = Thresholds()


@asynccontextmanager
async def serve(status: int = 200, body: str = '{"status": "ok"}', hang: bool = False) -> AsyncIterator[str]:
    """A one-route health server on an ephemeral port; `hang` answers never (until the server stops)."""
    never = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        if hang:
            await never.wait()
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/health"
    finally:
        never.set()
        await runner.cleanup()


def dep(url: str, **kw: object) -> DependencySpec:
    return DependencySpec(name="primary-llm", health_url=url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


async def test_healthy(client: httpx.AsyncClient) -> None:
    async with serve(body=json.dumps({"status": "ok", "model": "m"})) as url:
        probe = await probe_dependency(client, dep(url, health_expect_json={"status": "ok"}), THRESHOLDS)
    assert probe.ok and probe.status is HealthStatus.HEALTHY and probe.error_kind is None
    assert probe.status_code == 200
    assert '"model"' in probe.body_excerpt
    assert 0 < probe.latency_ms < THRESHOLDS.latency_warning_ms


async def test_refused(client: httpx.AsyncClient) -> None:
    probe = await probe_dependency(client, dep(f"http://127.0.0.1:{free_port()}/health"), THRESHOLDS)
    assert (probe.ok, probe.error_kind, probe.status) == (False, "refused", HealthStatus.UNHEALTHY)
    assert probe.status_code is None


async def test_dns(client: httpx.AsyncClient) -> None:
    probe = await probe_dependency(client, dep("http://primary-llm.governor.invalid/health"), THRESHOLDS)
    assert (probe.ok, probe.error_kind) == (False, "dns")


async def test_read_timeout(client: httpx.AsyncClient) -> None:
    async with serve(hang=True) as url:
        probe = await probe_dependency(client, dep(url, timeout_ms=200), THRESHOLDS)
    assert (probe.ok, probe.error_kind, probe.status) == (False, "timeout", HealthStatus.UNHEALTHY)
    assert 150 <= probe.latency_ms < 2000


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, "http_status"), (503, "http_status"), (429, "rate_limited"), (401, "auth"), (403, "auth")],
)
async def test_status_codes(client: httpx.AsyncClient, status: int, kind: str) -> None:
    async with serve(status=status, body='{"error": "nope"}') as url:
        probe = await probe_dependency(client, dep(url), THRESHOLDS)
    assert (probe.ok, probe.error_kind, probe.status_code) == (False, kind, status)
    assert probe.status is HealthStatus.UNHEALTHY
    assert "nope" in probe.body_excerpt


@pytest.mark.parametrize(
    ("body", "expect", "why"),
    [
        ('{"status": "degraded"}', {"status": "ok"}, "expected"),
        ('{"other": 1}', {"status": "ok"}, "lacks 'status'"),
        ("<html>oops</html>", {"status": "ok"}, "not JSON"),
        ('{"status": "ok", "checks": {"db": "down"}}', {"checks": {"db": "up"}}, "expected"),
    ],
)
async def test_bad_body(client: httpx.AsyncClient, body: str, expect: dict[str, object], why: str) -> None:
    async with serve(body=body) as url:
        probe = await probe_dependency(client, dep(url, health_expect_json=expect), THRESHOLDS)
    assert (probe.ok, probe.error_kind, probe.status_code) == (False, "bad_body", 200)
    assert why in probe.error


async def test_any_body_passes_when_nothing_expected(client: httpx.AsyncClient) -> None:
    async with serve(body="plain text is fine") as url:
        probe = await probe_dependency(client, dep(url), THRESHOLDS)
    assert probe.ok and probe.error_kind is None


async def test_slow_answer_is_degraded_then_unhealthy(client: httpx.AsyncClient) -> None:
    tight = Thresholds(latency_warning_ms=0.001, latency_critical_ms=10_000)
    async with serve() as url:
        probe = await probe_dependency(client, dep(url), tight)
        assert probe.ok and probe.status is HealthStatus.DEGRADED
        probe = await probe_dependency(
            client, dep(url), Thresholds(latency_warning_ms=0.001, latency_critical_ms=0.001)
        )
    assert probe.ok and probe.status is HealthStatus.UNHEALTHY and probe.error_kind is None


def test_connect_timeout_and_unreachable_network_are_unreachable() -> None:
    assert error_kind_of(httpx.ConnectTimeout("timed out")) == "unreachable"
    err = httpx.ConnectError("connect failed")
    err.__cause__ = OSError(101, "Network is unreachable")
    assert error_kind_of(err) == "unreachable"


async def test_no_health_url_is_refused_with_the_dependency_named(client: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="primary-llm"):
        await probe_dependency(client, DependencySpec(name="primary-llm"), THRESHOLDS)
