"""Worker kill -9 while incidents run: nothing lost, nothing wedged, and how much is delivered twice.

The real stack from `governor up --demo` without its worker (the Temporal dev server, the gateway, the demo's fake
models, the intake), the demo policy on free ports with approval gates on every ramp step and every audience routed
to a webhook receiver this script runs on 127.0.0.1. The worker (`python -m workers.worker`, the real activities)
runs as this script's own child, so it can be killed with SIGKILL every few seconds and started again.

Each incident: the primary's outage is switched on through the fake model's /control, a failure is reported as a
service would (`GovernorClient.report_failure`) while clients send `--rps` chat completions through the gateway, an approver bot approves every gate it finds pending (updates, by
the gate id shown), the outage is switched off once the service is on the fallback, and the incident must close
`recovered`. Then the next one, on the same dependency (so notification keys must not repeat across incidents).

Figures, printed as a table:
- incidents recovered of those started; kills;
- deliveries the receiver got, distinct `webhook-id`s, extra deliveries (same id again) and extra per kill;
- ids shared between incidents (must be 0: a receiver that dedups would drop a later incident's pages);
- approvals the bot had accepted, and those missing from the incidents' decisions (lost approvals, must be 0).

    .venv/bin/python -m bench.kill9 --incidents 6 --kill-every 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from bench.fault_stack import DEMO_POLICY, demo_stack_options, free_ports
from demo.traffic import TrafficGenerator
from governor.client import GovernorClient
from governor.enums import FallbackTier
from governor.incident import IncidentReport, IncidentState, incident_id
from workers.stack import StackInfo, run_stack

ROOT = Path(__file__).resolve().parents[1]
SERVICE, DEPENDENCY = "chat", "primary-llm"
BOT = "alice"


class Receiver:
    """Every audience's webhook: records (incident, webhook-id) of each delivery, answers 200."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.by_incident: dict[str, set[str]] = defaultdict(set)
        self.current = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        wid = request.headers.get("webhook-id", "")
        self.ids[wid] += 1
        self.by_incident[self.current].add(wid)
        return web.Response(text="ok")


def gated_and_routed(receiver: str) -> Callable[[dict[str, Any]], None]:
    """The fault stack's demo policy, with every ramp step gated and every webhook route to the receiver."""

    def tune(data: dict[str, Any]) -> None:
        data["approvals"] = {"approvers": [BOT, "bob"], "gates": ["ramp:10", "ramp:25", "ramp:50"], "timeout_s": 300}
        demo = yaml.safe_load(DEMO_POLICY.read_text())["notifications"]
        for channels in demo["routes"].values():
            for channel in channels:
                if channel.get("type") == "webhook":
                    channel["url"] = receiver + "/" + channel["url"].rsplit("/", 1)[-1]
        data["notifications"] = demo
        data["recovery_checks"] |= {"stable_s": 3}

    return tune


class Worker:
    """The worker as a child process this script kills with SIGKILL and starts again."""

    def __init__(self, info: StackInfo, log: Path) -> None:
        self.info, self.log = info, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        env = os.environ | {
            "GOVERNOR_TEMPORAL_ADDRESS": self.info.temporal_address,
            "GOVERNOR_TEMPORAL_NAMESPACE": self.info.namespace,
            "GOVERNOR_TEMPORAL_TASK_QUEUE": self.info.task_queue,
            "GOVERNOR_POLICY_DIR": str(self.info.policy_dir),
            "GOVERNOR_GATEWAY_TOKEN": self.info.gateway_token,
            "GOVERNOR_METRICS_PORT": str(free_ports(1)[0]),
            "GOVERNOR_POSTMORTEM_DIR": str(self.info.state_dir / "postmortems"),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.info.python), "-m", "workers.worker"], env=env, stdout=out, stderr=out, cwd=ROOT
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def killer(worker: Worker, every_s: float, stop: asyncio.Event) -> None:
    rng = random.Random(9)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(every_s * 0.5, every_s * 1.5))
        except TimeoutError:
            worker.kill()
            await asyncio.sleep(1.0)
            worker.start()


async def approver(gc: GovernorClient, wid: str, accepted: list[str], stop: asyncio.Event) -> None:
    """Approve every pending gate by the id shown; an update to a dead worker waits, so each try is bounded."""
    while not stop.is_set():
        try:
            state = await asyncio.wait_for(gc.state(wid), 5)
            for gate in state.pending_gates:
                result = await asyncio.wait_for(gc.approve(wid, gate.gate, BOT, "kill9", gate.gate_id), 10)
                if result.accepted and gate.gate_id not in accepted:
                    accepted.append(gate.gate_id)
        except Exception:  # the worker is down, the incident not open yet, or the gate went: try again
            pass
        await asyncio.sleep(0.5)


async def until(gc: GovernorClient, wid: str, check, limit_s: float) -> IncidentState:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            state = await asyncio.wait_for(gc.state(wid), 5)
            if check(state):
                return state
        except Exception:
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{wid}: condition not met in {limit_s:.0f} s")


async def one_incident(
    info: StackInfo, gc: GovernorClient, http: httpx.AsyncClient, n: int, accepted: list[str], limit_s: float
) -> tuple[str, IncidentState]:
    wid = incident_id(SERVICE)
    control = f"{info.upstreams['primary']}/control"
    (await http.put(control, json={"outage": True})).raise_for_status()
    report = IncidentReport(service=SERVICE, dependency=DEPENDENCY, source="kill9", message=f"outage {n}")
    for _ in range(60):  # the report goes to the server, not the worker: it only fails while the server is busy
        try:
            await gc.report_failure(report)
            break
        except Exception:
            await asyncio.sleep(1)
    stop = asyncio.Event()
    bot = asyncio.create_task(approver(gc, wid, accepted, stop))
    try:
        open_ = await until(gc, wid, lambda s: s.closed_at is None and s.report_count > 0, 60)
        occurrence = open_.occurrence_id
        await until(gc, wid, lambda s: s.tier is not FallbackTier.TIER_0_PRIMARY and s.mitigated_at is not None, 120)
        (await http.put(control, json={"reset": True})).raise_for_status()
        try:
            final = await until(gc, wid, lambda s: s.occurrence_id == occurrence and s.closed_at is not None, limit_s)
        except TimeoutError:
            last = await gc.state(wid)
            print(f"  not closed: phase={last.phase} tier={last.tier} ramp={last.ramp_percent} %; its last steps:")
            for entry in last.audit[-8:]:
                print(f"    {entry.at:%H:%M:%S} {entry.action} {entry.actor} {entry.details}")
            return occurrence, last
        return occurrence, final
    finally:
        stop.set()
        await bot


async def run(args: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="kill9-"))
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{audience}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    (hook,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", hook).start()
    log = (work / "stack.log").open("w")
    options = replace(demo_stack_options(work, gated_and_routed(f"http://127.0.0.1:{hook}"), log), worker=False)
    figures: dict[str, float] = {}

    async def scenario(info: StackInfo) -> None:
        worker = Worker(info, work / "worker.log")
        worker.start()
        gc = GovernorClient(info.client, task_queue=info.task_queue)
        accepted: list[str] = []
        recovered, occurrences, decided = 0, [], set()
        stop = asyncio.Event()
        kills = asyncio.create_task(killer(worker, args.kill_every, stop))
        try:
            async with (
                httpx.AsyncClient(timeout=5, trust_env=False) as http,
                TrafficGenerator(f"{info.gateway_url}/chat/v1/chat/completions", rps=args.rps) as traffic,
            ):
                await traffic.wait_for_requests(20)
                for n in range(args.incidents):
                    receiver.current = f"incident {n}"
                    occurrence, final = await one_incident(info, gc, http, n, accepted, args.limit)
                    occurrences.append(occurrence)
                    recovered += final.closed_at is not None and final.outcome == "recovered"
                    decided |= {d.gate_id for d in final.decisions if d.approved and d.approver == BOT}
                    print(f"incident {n}: {final.outcome} (kills so far {worker.kills})")
        finally:
            stop.set()
            await kills
            worker.stop()
        report = traffic.report()
        shared = set.intersection(*receiver.by_incident.values()) if len(receiver.by_incident) > 1 else set()
        extra = sum(c - 1 for c in receiver.ids.values())
        figures.update(
            incidents=args.incidents,
            client_requests=report.requests,
            failed_client_requests=report.failed,
            recovered=recovered,
            kills=worker.kills,
            deliveries=sum(receiver.ids.values()),
            distinct_ids=len(receiver.ids),
            extra_deliveries=extra,
            extra_per_kill=round(extra / worker.kills, 2) if worker.kills else 0.0,
            ids_shared_between_incidents=len(shared - {""}),
            approvals_accepted=len(accepted),
            approvals_lost=len(set(accepted) - decided),
        )

    try:
        await run_stack(options, scenario)
    finally:
        await runner.cleanup()
        log.close()
    if not figures:
        tail = (work / "stack.log").read_text().splitlines()[-30:]
        raise SystemExit("the run stopped before its figures:\n" + "\n".join(tail))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=6, help="incidents one after another (default 6)")
    parser.add_argument(
        "--kill-every", type=float, default=20.0, help="mean seconds a worker lives before its kill (default 20)"
    )
    parser.add_argument("--rps", type=float, default=20.0, help="client requests a second through the gateway")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds an incident may take to close")
    args = parser.parse_args()
    if args.incidents < 1 or args.kill_every <= 0:
        parser.error("--incidents must be >= 1 and --kill-every > 0")
    figures = asyncio.run(run(args))
    print("\n| figure | value |\n|---|---:|")
    for name, value in figures.items():
        print(f"| {name.replace('_', ' ')} | {value:g} |")
    sys.stdout.flush()
    ok = figures["recovered"] == figures["incidents"] and figures["approvals_lost"] == 0
    os._exit(0 if ok and figures["ids_shared_between_incidents"] == 0 else 1)  # sdk-python#300: no exit crash


if __name__ == "__main__":
    main()
