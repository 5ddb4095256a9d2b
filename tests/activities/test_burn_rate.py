"""SLO burn-rate detection against Debian's real Prometheus scraping the real gateway's /metrics on 127.0.0.1.

Real windows (1 h / 5 min, 6 h / 30 min) cannot fit in a test, so the rules keep their burn factors (14.4x, 6x) and
shrink their windows: fast 1 h -> 4 s and 5 min -> 2 s, slow 6 h -> 8 s and 30 min -> 4 s, with a 200 ms scrape (a 2 s short window
keeps several scrapes in it even on a loaded 2-core machine).
The PromQL, the HTTP API calls and the multi-window logic are the production ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.watch import WatchActivities
from demo.upstream import run_upstream
from gateway.app import GatewaySettings, run_gateway
from gateway.breaker import BreakerConfig
from governor.detection import BurnRateConfig, BurnRateRule, WatchdogConfig, WatchInput, evaluate_burn
from governor.enums import FailureType, Severity
from governor.policy import ServicePolicy, load_policy
from governor.settings import WorkerSettings
from tests.ports import free_port

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
BASE = load_policy(Path(__file__).resolve().parents[2] / "policies" / "chat.yaml")
TOKEN = "burn-token"
SHORT_RULES = [
    BurnRateRule(name="fast", factor=14.4, long_window_s=4, short_window_s=2, severity=Severity.CRITICAL),
    BurnRateRule(name="slow", factor=6.0, long_window_s=8, short_window_s=4, severity=Severity.HIGH),
]
SLO = 99.0  # the primary's sla_target in this test: a 1 % error budget


@contextlib.contextmanager
def prometheus(target: str, tmp: Path) -> Iterator[str]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "200ms", "scrape_timeout": "150ms", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "gateway", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


async def traffic(http: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[int]:
    """Steady client traffic (about 100 requests a second) until stopped; the statuses clients saw."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    seen: list[int] = []
    while not stop.is_set():
        responses = await asyncio.gather(*(http.post(url, json=body) for _ in range(5)))
        seen += [r.status_code for r in responses]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    return seen


async def eventually(check, limit_s: float):  # type: ignore[no-untyped-def]
    """Poll another process (Prometheus) until `check()` returns something truthy."""
    async with asyncio.timeout(limit_s):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.2)  # Prometheus moves at scrape speed; there is no event to await


@pytest.fixture(params=["never_open", "seed_breaker"])
async def setup(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ServicePolicy, str, httpx.AsyncClient, object]]:
    async with (
        run_upstream(name="primary") as primary,
        run_upstream(name="secondary") as secondary,
        httpx.AsyncClient(trust_env=False, timeout=5) as http,
    ):
        data = BASE.model_dump(mode="json")
        data["dependencies"][0].update(health_url=f"{primary.url}/health", sla_target=SLO)
        data["dependencies"][1].update(health_url=f"{secondary.url}/health")
        data["chain"][0]["upstream"] = primary.url
        data["chain"][1]["upstream"] = secondary.url
        data["chain"][3]["upstream"] = secondary.url
        policy = ServicePolicy.model_validate(data)
        # Breakers that never open (every request an attempt), and the seed's: at 60 % errors it opens within a
        # second and stops the primary's traffic; the burn is then seen through the requests it skips
        # (governor_gateway_tier_skipped_total).
        never_open = BreakerConfig(failure_threshold=10**9, failure_rate=1.0, min_calls=10**9)
        breaker = never_open if request.param == "never_open" else BreakerConfig()
        async with run_gateway({"chat": policy}, TOKEN, settings=GatewaySettings(breaker=breaker)) as gw:
            policy = policy.model_copy(update={"gateways": [gw.url]})
            with prometheus(f"127.0.0.1:{gw.port}", tmp_path) as prom:

                async def ready() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await http.get(f"{prom}/-/ready")).status_code == 200
                    return False

                await eventually(ready, 15)
                yield policy, prom, http, (primary, gw.url)


async def test_fast_burn_fires_from_prometheus_and_the_watchdog_confirms_it(setup) -> None:  # type: ignore[no-untyped-def]
    policy, prom, http, (primary, gateway_url) = setup
    cfg = BurnRateConfig(prometheus_url=prom, rules=SHORT_RULES, every_s=0.1)
    acts = WatchActivities(http, WorkerSettings(gateway_token=TOKEN, metrics_port=None))
    stop = asyncio.Event()
    load = asyncio.ensure_future(traffic(http, f"{gateway_url}/chat/v1/chat/completions", stop))
    try:
        # healthy: every window has traffic and burns nothing
        async def healthy_windows():  # type: ignore[no-untyped-def]
            ratios = await acts.error_ratios(cfg, "chat", "tier_0_primary")
            return ratios if all(r is not None for r in ratios.values()) else None

        ratios = await eventually(healthy_windows, 40)
        fired, rates = evaluate_burn(ratios, SLO, SHORT_RULES, "primary-llm")
        assert fired is None and set(rates) == {"2s", "4s", "8s"} and max(rates.values()) == 0

        # a hard error spike on the primary (the gateway still serves every client from the secondary)
        primary.set(error_rate=0.6)

        async def burning():  # type: ignore[no-untyped-def]
            ratios = await acts.error_ratios(cfg, "chat", "tier_0_primary")
            fired = evaluate_burn(ratios, SLO, SHORT_RULES, "primary-llm")[0]
            # the slow rule may fire a look earlier (its windows fill first under load); the fast one must follow
            return fired if fired is not None and "fast burn" in fired.reason else None

        fired = await eventually(burning, 40)
        assert fired.failure_type is FailureType.ERROR_SPIKE
        assert fired.severity is Severity.CRITICAL and "fast burn" in fired.reason
        assert fired.metrics["burn_short"] > 14.4

        # the watchdog confirms it through burn rate alone (stats windows told to need more traffic than exists)
        config = WatchdogConfig(interval_s=0.05, suspect_interval_s=0.05, min_samples=10**9, burn_rate=cfg)
        result = await asyncio.wait_for(
            ActivityEnvironment().run(
                acts.watch_dependency, WatchInput(policy=policy, dependency="primary-llm", config=config)
            ),
            timeout=30,
        )
        assert result.transition == "confirmed"
        assert result.hysteresis.suspect is not None and "burn" in result.hysteresis.suspect.reason
        assert result.last is not None and result.last.burn_rates["2s"] > 14.4
    finally:
        stop.set()
        statuses = await load
    assert statuses and set(statuses) == {200}  # no client saw the primary's errors
