"""The demo incident `governor up --demo` plays on the embedded stack, told in plain sentences as it happens.

Clients send steady traffic through the gateway (demo/traffic.py). The scenario starts the watchdogs, takes the
primary model down through its fault switch (`PUT /control`) and from then on only watches: the watchdogs notice the
outage and open the incident, the recovery workflow isolates the primary, falls back to the secondary, degrades
features, waits for the primary, validates it, asks on-call to approve the ramp (`--auto-approve`: `demo-bot`
approves), ramps 10 % then 25 %, where the scenario injects a regression (errors on the primary) that makes the
workflow roll back; the scenario then ships "the fix" (clears the fault), the ramp is approved again and completes,
and the workflow writes the post-mortem. The scenario prints what it sees, the commands to act, and a summary.

The demo's policy is `demo/policies/chat.yaml` (compressed timings). Notifications to on-call and the internal
channel go to a small local "pager" the scenario runs (the webhook URLs of that policy); customers see the gateway's
status page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote

import httpx
from temporalio.client import Client

from demo.narration import Narrator
from demo.pager import Pager, pager_ports
from demo.settings import (
    DEMO_APPROVER,
    DEMO_POLICY_DIR,
    DEMO_SERVICE,
    DEMO_WATCHDOG,
    DemoFailed,
    DemoResult,
    DemoSettings,
    traffic_file,
)
from demo.traffic import TrafficReport, read_traffic
from governor.client import ControlRefused, GovernorClient, incidents_query
from governor.detection import watchdog_id
from governor.enums import FallbackTier, RecoveryPhase
from governor.incident import IncidentState, Names, incident_id
from governor.policy import ServicePolicy
from governor.postmortem import incident_metrics
from governor.watchdogs import start_or_update_watchdogs

__all__ = [
    "DEMO_APPROVER",
    "DEMO_POLICY_DIR",
    "DEMO_SERVICE",
    "DEMO_WATCHDOG",
    "Demo",
    "DemoFailed",
    "DemoResult",
    "DemoSettings",
    "Stack",
    "play",
    "scenario",
]


class Stack(Protocol):
    """What the demo needs of the running stack (workers.stack.Stack has it); the demo imports no launcher."""

    state_dir: Path
    log_dir: Path
    policies: dict[str, ServicePolicy]
    client: Client
    namespace: str
    task_queue: str
    temporal_address: str
    temporal_bin: Path
    python: Path
    gateway_url: str | None
    status_url: str | None
    gateway_token: str
    upstreams: dict[str, str]
    out: IO[str]
    ui_url: str

    def incident_ui_url(self, workflow_id: str) -> str: ...


def scenario(settings: DemoSettings, results: list[DemoResult] | None = None) -> Callable[[Stack], Awaitable[None]]:
    """The hook for `run_stack(options, scenario)`; each finished run's DemoResult is appended to `results`."""

    async def run(info: Stack) -> None:
        result = await play(info, settings)
        if results is not None:
            results.append(result)

    return run


# --------------------------------------------------------------------------------------------------- the scenario


def finished(state: IncidentState) -> bool:
    """Closed, and (when recovered) its post-mortem written: nothing more will happen to this incident."""
    return state.closed_at is not None and (state.postmortem_path is not None or state.outcome != "recovered")


class Demo:
    """One run of the scenario on a running stack."""

    def __init__(self, info: Stack, settings: DemoSettings) -> None:
        self.info = info
        self.settings = settings
        self.policy = info.policies.get(DEMO_SERVICE) or next(iter(info.policies.values()))
        self.service = self.policy.service
        self.dependency = next(
            (d.name for d in self.policy.dependencies if d.tier is FallbackTier.TIER_0_PRIMARY),
            self.policy.dependencies[0].name,
        )
        self.incident = incident_id(self.service)
        self.governor = GovernorClient(info.client, task_queue=info.task_queue)
        self.narrator = Narrator(info.out, time.monotonic())
        self.pager = Pager(self.narrator)
        self.http = httpx.AsyncClient(timeout=10, trust_env=False)
        self.traffic_path = settings.traffic_file or traffic_file(info.state_dir)
        self.state: IncidentState | None = None
        self.changed = asyncio.Event()
        self.primary = info.upstreams.get("primary")
        if not self.primary or not info.gateway_url:
            raise DemoFailed("the demo needs the demo upstreams and the gateway: run `governor up --demo`")

    def say(self, text: str, *more: str, strong: bool = False) -> None:
        self.narrator.say(text, *more, strong=strong)

    # --- small helpers

    def _deadline(self, what: str) -> float | None:
        return self.settings.step_timeout_s if self.settings.unattended else None

    async def _until(self, what: str, check: Callable[[], Awaitable[bool] | bool], every_s: float = 0.25) -> None:
        """Wait until `check` holds (unattended: at most step_timeout_s, then DemoFailed naming the step)."""
        limit = self._deadline(what)
        started = time.monotonic()
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if limit is not None and time.monotonic() - started > limit:
                where = f" (incident in phase {self.state.phase}, tier {self.state.tier})" if self.state else ""
                raise DemoFailed(f"the demo waited {limit:.0f} s for {what}{where}; see {self.info.log_dir}")
            await asyncio.sleep(every_s)

    async def _until_state(self, what: str, check: Callable[[IncidentState], bool]) -> IncidentState:
        """Wait for the followed incident's state to satisfy `check` (driven by the follower's updates)."""
        limit = self._deadline(what)
        started = time.monotonic()
        while self.state is None or not check(self.state):
            self.changed.clear()
            remaining = None if limit is None else limit - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                where = f" (incident in phase {self.state.phase}, tier {self.state.tier})" if self.state else ""
                raise DemoFailed(f"the demo waited {limit:.0f} s for {what}{where}; see {self.info.log_dir}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return self.state

    async def _next_state(self) -> IncidentState:
        """The state after the follower's next poll (at once when the incident is over: the follower has stopped)."""
        if self.state is not None and finished(self.state):
            return self.state
        self.changed.clear()
        await self.changed.wait()
        assert self.state is not None
        return self.state

    async def control(self, url: str, faults: dict[str, Any]) -> None:
        response = await self.http.put(f"{url}/control", json=faults)
        response.raise_for_status()

    async def gateway_state(self) -> dict[str, Any]:
        response = await self.http.get(
            f"{self.info.gateway_url}/admin/services/{self.service}",
            headers={"Authorization": f"Bearer {self.info.gateway_token}"},
        )
        response.raise_for_status()
        return dict(response.json())

    async def primary_requests(self) -> int:
        response = await self.http.get(
            f"{self.info.gateway_url}/admin/services/{self.service}/stats",
            params={"window": 5},
            headers={"Authorization": f"Bearer {self.info.gateway_token}"},
        )
        response.raise_for_status()
        return int(response.json()["tiers"].get(FallbackTier.TIER_0_PRIMARY.value, {}).get("requests", 0))

    def recent_traffic(self, seconds: float = 5, since: float | None = None) -> str:
        """What the clients got in the last `seconds` (or since the epoch time `since`), from the traffic file."""
        report = read_traffic(self.traffic_path)
        now = time.time()
        start = since if since is not None else now - seconds - 1
        tiers = report.tiers_between(start, now)
        failed = sum(s.failed for s in report.seconds if s.second >= start)
        served = ", ".join(f"{n} by {t}" for t, n in tiers.most_common()) or "no answers recorded yet"
        span = f"last {seconds:g} s" if since is None else f"last {now - since:.0f} s"
        return f"clients' {span}: {served}; {failed} failed"

    def approve_hints(self, gate: str, gate_id: str = "") -> list[str]:
        info = self.info
        approvers = self.policy.approvals.approvers_for(gate)
        approver = next((a for a in approvers if a != self.settings.approver), approvers[0] if approvers else "alice")
        reason = "primary validated"
        ids = {"gate_id": gate_id} if gate_id else {}
        payload = json.dumps({"gate": gate, **ids, "approver": approver, "reason": reason})
        governor_bin = info.python.parent / "governor"
        governor = str(governor_bin) if governor_bin.exists() else "governor"
        connection = ""
        if info.temporal_address != "127.0.0.1:7233":
            connection += f" --address {info.temporal_address}"
        if info.namespace != "default":
            connection += f" --namespace {info.namespace}"
        return [
            f"CLI:      {governor} approve {self.incident} --gate {gate}{f' --gate-id {gate_id}' if gate_id else ''} "
            f"--as {approver} "
            f"--reason {shlex.quote(reason)}{connection}",
            f"UI:       {info.incident_ui_url(self.incident)}",
            f"          More Actions > Send a Signal, signal name `{Names.APPROVE}`, input {payload}",
            f"Temporal: {info.temporal_bin} workflow signal --address {info.temporal_address} --namespace "
            f"{info.namespace} --workflow-id {self.incident} --name {Names.APPROVE} --input '{payload}'",
        ]

    # --- the follower: polls the incident's state and narrates its audit trail

    async def follow(self) -> None:
        while True:
            try:
                state = await self.governor.state(self.incident)
            except Exception as err:  # a query can fail while the worker restarts; say so and retry
                self.say(f"(could not read the incident's state: {err}; retrying)")
                await asyncio.sleep(2)
                continue
            if self.state is None or len(state.audit) != len(self.state.audit) or state.phase != self.state.phase:
                self.narrator.audit(state)
            self.state = state
            self.changed.set()
            if finished(state):
                return
            await asyncio.sleep(0.4)

    # --- the story

    async def setup(self) -> None:
        """Start from a clean slate: no stale incident, no fault left on, the watchdogs running."""
        stale = await self.governor.list_incidents(service=self.service, dependency=self.dependency)
        for summary in stale:
            await self.info.client.get_workflow_handle(summary.incident_id).terminate(
                reason="the demo starts a new incident; this one was left open by an earlier run"
            )
            self.say(f"Terminated {summary.incident_id} left open by an earlier demo run (phase {summary.phase})")
        for url in self.info.upstreams.values():
            await self.control(url, {"reset": True})
        await self.pager.start(pager_ports(self.policy))
        ids = await start_or_update_watchdogs(
            self.info.client, {self.service: self.policy}, self.info.task_queue, DEMO_WATCHDOG
        )
        self.say(
            f"Watchdogs started: {', '.join(ids)}",
            f"each probes its model's /health {1 / DEMO_WATCHDOG.interval_s:g} times a second and reads the "
            f"gateway's last {DEMO_WATCHDOG.stats_window_s} s of traffic; 3 bad looks in a row open an incident",
        )
        await self._until("the watchdogs' first probes", self._watchdogs_probing)
        if not self.settings.parts_echoed:
            self.say(
                f"The parts' own logs are in {self.info.log_dir}/ (`governor up --demo --verbose` shows them here)"
            )

    async def _watchdogs_probing(self) -> bool:
        for dep in self.policy.dependencies:
            desc = await self.info.client.get_workflow_handle(watchdog_id(self.service, dep.name)).describe()
            pending = desc.raw_description.pending_activities
            if not any(a.HasField("last_heartbeat_time") for a in pending):
                return False
        return True

    async def play(self) -> DemoResult:
        s = self.settings
        try:
            await self.setup()
            self.say(
                f"Clients send {s.rps:g} chat completions a second to {self.info.gateway_url}/{self.service}/"
                "v1/chat/completions (demo/traffic.py)"
            )
            await self._until("traffic through the primary", self._primary_serving)
            await asyncio.sleep(s.baseline_s)
            self.say("All is well: " + self.recent_traffic())

            await self.control(self.primary or "", {"outage": True})
            fault_at = datetime.now(UTC)
            self.say(
                "FAULT: the primary model is down (every connection to it is dropped)",
                f"curl -X PUT {self.primary}/control -d '{{\"outage\": true}}'",
                "Nobody tells the governor: its watchdogs have to notice.",
                strong=True,
            )
            await self._until("the watchdogs to open an incident", self._incident_open)
            opened = time.monotonic()
            after_start = None if s.started_at is None else opened - s.started_at
            self.say(
                f"Incident {self.incident} is open, found by its search attributes: {self.incidents_query()}",
                f"Temporal UI: {self.info.incident_ui_url(self.incident)}",
                f"All open incidents (watchdog runs left out): governor list, or {self.incidents_list_url()}",
                *(
                    [f"{after_start:.1f} s after `governor up` started (cold start to first incident)"]
                    if after_start is not None
                    else []
                ),
                strong=True,
            )
            follower = asyncio.create_task(self.follow(), name="demo-follow")
            try:
                result = await self.story(fault_at, after_start)
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            return result
        finally:
            await self.pager.stop()
            await self.http.aclose()

    def incidents_query(self) -> str:
        """The visibility query for this service's open incidents: `governor list`'s, by workflow type, so the
        watchdog runs (which carry the same GovernorService/GovernorDependency) are not listed."""
        return incidents_query(self.service, dependency=self.dependency)

    def incidents_list_url(self) -> str:
        """The Temporal UI's workflow list filtered to open incidents (every service)."""
        return f"{self.info.ui_url}/namespaces/{self.info.namespace}/workflows?query={quote(incidents_query())}"

    async def _primary_serving(self) -> bool:
        try:
            return await self.primary_requests() >= 10
        except httpx.HTTPError:
            return False

    async def _incident_open(self) -> bool:
        found = await self.governor.list_incidents(service=self.service, dependency=self.dependency)
        return any(f.incident_id == self.incident for f in found)

    async def story(self, fault_at: datetime, after_start: float | None) -> DemoResult:
        s = self.settings
        result = DemoResult(
            incident=await self._until_state("the incident's state", lambda _: True),
            traffic=TrafficReport([], [], 0, 0),
            fault_at=fault_at,
            first_incident_after_start_s=after_start,
        )
        state = await self._until_state(
            "the fallback tier", lambda st: st.tier is not FallbackTier.TIER_0_PRIMARY or st.closed_at is not None
        )
        if state.closed_at is None:
            await self._show_degradation()
            await self._until_state("diagnosis to finish", lambda st: st.phase is not RecoveryPhase.DIAGNOSIS)
            self.say(
                f"The primary stays down for {s.outage_s:g} s; clients are answered by the fallback meanwhile",
                f"Follow it: governor show {self.incident}   (or the status page {self.info.status_url})",
            )
            await asyncio.sleep(s.outage_s)
            self.say("Clients meanwhile: " + self.recent_traffic())
            await self.control(self.primary or "", {"outage": False})
            result.primary_back_at = datetime.now(UTC)
            self.say("The primary model is back up (outage switched off)", strong=True)
        await self.drive(result)
        state = self.state or result.incident
        if state.outcome == "recovered":
            await asyncio.sleep(s.settle_s)
            since = state.recovered_at.timestamp() + 1 if state.recovered_at else None
            self.say("After the recovery: " + self.recent_traffic(s.settle_s, since=since))
        result.incident = state
        result.traffic = read_traffic(self.traffic_path)
        result.pages = list(self.pager.pages)
        result.postmortem = Path(state.postmortem_path) if state.postmortem_path else None
        self.summary(result)
        if s.unattended and not result.recovered:
            raise DemoFailed(
                f"the incident ended in phase {state.phase} with outcome {state.outcome!r}, not recovered with a "
                f"post-mortem; see {self.info.log_dir}"
            )
        return result

    async def drive(self, result: DemoResult) -> None:
        """Until the incident closes: answer gates, inject the regression at 25 %, ship the fix after the rollback."""
        s = self.settings
        told: set[tuple[str, str]] = set()
        approving: asyncio.Task[None] | None = None
        fixing: asyncio.Task[None] | None = None
        rollbacks_seen = 0
        progress = (0, time.monotonic())
        reminded = time.monotonic()
        try:
            while True:
                state = await self._next_state()
                if len(state.audit) != progress[0]:
                    progress = (len(state.audit), time.monotonic())
                elif s.unattended and time.monotonic() - progress[1] > s.step_timeout_s:
                    raise DemoFailed(
                        f"the incident made no progress for {s.step_timeout_s:.0f} s (phase {state.phase}, tier "
                        f"{state.tier}, pending gates {[g.gate for g in state.pending_gates]}); see {self.info.log_dir}"
                    )
                if finished(state):
                    return
                for gate in state.pending_gates:
                    key = (gate.gate, gate.requested_at.isoformat())
                    if key in told:
                        continue
                    told.add(key)
                    if s.auto_approve and s.approver in gate.approvers:
                        self.say(
                            f"{s.approver} will approve {gate.gate} in {s.approve_after_s:g} s (--auto-approve); "
                            "a human would use one of:",
                            *self.approve_hints(gate.gate, gate.gate_id),
                        )
                        approving = asyncio.create_task(self._approve_later(gate.gate, result, gate.gate_id))
                    else:
                        self.say(
                            f"Waiting for on-call to approve {gate.gate} ({', '.join(gate.approvers)}):",
                            *self.approve_hints(gate.gate, gate.gate_id),
                            strong=True,
                        )
                waiting = [g for g in state.pending_gates if not (s.auto_approve and s.approver in g.approvers)]
                if waiting and time.monotonic() - reminded > s.remind_every_s:
                    reminded = time.monotonic()
                    gate = waiting[0]
                    age = (datetime.now(UTC) - gate.requested_at).total_seconds()
                    if age > s.remind_every_s / 2:
                        self.say(
                            f"Still waiting for {gate.gate} ({age:.0f} s; escalates at {gate.deadline:%H:%M:%S} UTC). "
                            + self.recent_traffic()
                        )
                if (
                    result.regression_at is None
                    and state.phase is RecoveryPhase.GRADUAL_RESTORE
                    and state.ramp_percent >= 25
                ):
                    await self.control(self.primary or "", {"error_rate": s.regression_error_rate})
                    result.regression_at = datetime.now(UTC)
                    self.say(
                        f"REGRESSION: the primary now fails {s.regression_error_rate:.0%} of its requests at "
                        f"{state.ramp_percent} % (a bad deploy)",
                        f"curl -X PUT {self.primary}/control -d '{{\"error_rate\": {s.regression_error_rate}}}'",
                        "The gateway retries those requests on the fallback tier, and the workflow judges the primary "
                        "every few seconds...",
                        strong=True,
                    )
                if len(state.rollbacks) > rollbacks_seen:
                    rollbacks_seen = len(state.rollbacks)
                    self.say("Clients meanwhile: " + self.recent_traffic())
                    if result.regression_at is not None and result.fixed_at is None and fixing is None:
                        fixing = asyncio.create_task(self._fix_later(result))
                if (
                    result.regression_at is not None
                    and result.fixed_at is None
                    and fixing is None
                    and state.ramp_percent > 25
                ):
                    fixing = asyncio.create_task(self._fix_later(result, 0))
                if state.awaiting_human and not state.pending_gates and ("human", str(state.attempt)) not in told:
                    told.add(("human", str(state.attempt)))
                    self.say(
                        "The workflow waits for a human to declare the primary fixed:",
                        f"governor recover --service {self.service} --reason 'fixed' --as alice",
                    )
        finally:
            for task in (approving, fixing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _approve_later(self, gate: str, result: DemoResult, gate_id: str = "") -> None:
        s = self.settings
        await asyncio.sleep(s.approve_after_s)
        if result.regression_at is not None and result.fixed_at is None:
            await self._until("the fix before approving again", lambda: result.fixed_at is not None)
        try:
            await self.governor.approve(
                self.incident,
                gate,
                s.approver,
                reason="demo: primary validated, approved by --auto-approve",
                gate_id=gate_id or None,
            )
        except ControlRefused as refused:
            self.say(f"{s.approver}'s approval of {gate} was refused: {refused.reason} (someone was faster?)")

    async def _fix_later(self, result: DemoResult, delay_s: float | None = None) -> None:
        await asyncio.sleep(self.settings.fix_after_s if delay_s is None else delay_s)
        await self.control(self.primary or "", {"error_rate": 0})
        result.fixed_at = datetime.now(UTC)
        self.say(
            "THE FIX: the bad deploy is rolled back on the primary (errors switched off)",
            "The workflow probes it again, validates it, and asks for the ramp once more.",
            strong=True,
        )

    async def _show_degradation(self) -> None:
        try:
            gw = await self.gateway_state()
        except httpx.HTTPError as err:
            self.say(f"(cannot read the gateway's state: {err})")
            return
        degradation = gw.get("degradation", {})
        flags = degradation.get("flags", {})
        off = [f for f, v in flags.items() if v == "disabled"]
        reduced = [f for f, v in flags.items() if v == "degraded"]
        status = gw.get("status", {})
        self.say(
            f"Degradation {degradation.get('level')}: disabled {', '.join(off) or 'nothing'}; "
            f"reduced {', '.join(reduced) or 'nothing'} (apps read these flags over OFREP: "
            f"{self.info.gateway_url}/ofrep/v1/evaluate/flags)",
            f"Status page {self.info.status_url}: {status.get('component')}: {status.get('message')}",
            "Clients meanwhile: " + self.recent_traffic(),
        )

    def summary(self, result: DemoResult) -> None:
        state = result.incident
        traffic = result.traffic
        served = ", ".join(f"{t} {n}" for t, n in traffic.tiers_between(0, float("inf")).most_common())
        runs = " > ".join(f"{tier} ({last - first + 1} s)" for tier, first, last in traffic.tier_runs())
        approvals = ", ".join(f"{d.gate} by {d.approver}" for d in state.decisions) or "none"
        rollbacks = "; ".join(f"at {r.percent} %: {r.reason}" for r in state.rollbacks) or "none"
        lines = [
            f"client requests        {traffic.requests} sent, {traffic.failed} failed (non-2xx or no answer)",
            f"served by              {served}",
            f"main tier over time    {runs}",
            *timing_lines(result),
            f"phases                 {' > '.join(p.phase.value for p in state.phases)}",
            f"approvals              {approvals}",
            f"rollbacks              {rollbacks}",
            f"outcome                {state.outcome}",
            f"post-mortem            {state.postmortem_path or '-'}",
            "",
            "What the clients got, 5 s a row, from 5 s before the fault (share of requests per tier):",
            *traffic.render(bucket_s=5, since=result.fault_at.timestamp() - 5),
        ]
        if result.first_incident_after_start_s is not None:
            lines.insert(0, f"cold start -> incident {result.first_incident_after_start_s:.1f} s")
        self.say("The demo is over. Summary:", *lines, strong=True)


def timing_lines(result: DemoResult) -> list[str]:
    """The summary's timings, from the injected fault, beside the post-mortem's figures (which count from the
    failure's start, the watchdog's first failing check): fault -> X = fault -> failure started + the figure."""

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    figures = incident_metrics(result.incident)
    started = result.started_after_s
    return [
        f"fault -> failure start {secs(started)} (the first failing check; the post-mortem's figures count from it)",
        f"fault -> report        {secs(result.reported_after_s)} (a watchdog's report reached the governor)",
        f"fault -> detection     {secs(result.detected_after_s)} (the governor confirmed it; post-mortem MTTD "
        f"{secs(figures['mttd_s'])})",
        f"fault -> fallback      {secs(result.fallback_after_s)} (a fallback tier served the traffic; post-mortem "
        f"time to mitigate {secs(figures['time_to_mitigate_s'])})",
        f"fault -> recovered     {secs(result.recovered_after_s)} (the primary served all traffic again; post-mortem "
        f"MTTR {secs(figures['mttr_s'])})",
        f"fault -> closed        {secs(result.closed_after_s)} (post-mortem written; its total duration "
        f"{secs(figures['duration_s'] if result.incident.closed_at else None)})",
    ]


async def play(info: Stack, settings: DemoSettings) -> DemoResult:
    """Play the demo on a running stack (the `run_stack` scenario hook calls this)."""
    return await Demo(info, settings).play()
