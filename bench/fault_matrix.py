"""The fault matrix's machinery: one running stack, faults injected through the fake models' `/control`, and what
each case left behind, as a user would look at it (the clients' answers, the incident, the status page).

`Matrix` drives one stack (bench/fault_stack.py) under client traffic (demo/traffic.py); a sampler records the
incident's state, the status page's indicator and the gateway's degradation twice a second. `Matrix.run(case)`
runs one case (bench/fault_cases.py), resets every fault, waits for the incident to close (declaring the
dependency fixed when it waits for a human after flapping) and returns a `CaseResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from demo.traffic import SecondStats, TrafficGenerator
from governor.client import GovernorClient
from governor.enums import DegradationLevel, FallbackTier, RecoveryPhase
from governor.incident import IncidentState, incident_id
from workers.stack import StackInfo

SERVICE = "chat"
ACTOR = "fault-matrix"
INDICATORS = ["none", "maintenance", "minor", "major", "critical"]
LEVELS = list(DegradationLevel)
RAMPING = {RecoveryPhase.GRADUAL_RESTORE, RecoveryPhase.FULL_RESTORE}


@dataclass
class Sample:
    """What a user could see at one moment: the incident (None when there is none yet), the status page."""

    at: float
    state: IncidentState | None
    indicator: str | None
    gateway_level: str | None


@dataclass
class CaseResult:
    """One case's row of the matrix."""

    name: str
    requests: int = 0
    failed: int = 0
    tiers: Counter[str] = field(default_factory=Counter)
    incidents: int = 0
    failure_types: list[str] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)
    worst_level: str = "normal"
    worst_indicator: str = "none"
    gates: list[str] = field(default_factory=list)
    rollbacks: int = 0
    flaps: int = 0
    outcome: str = "no incident"
    problems: list[str] = field(default_factory=list)
    """What the design promises and this run did not do (empty: as promised)."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Case-specific measurements (served tiers during the fault, the ramp while flapping, ...)."""
    shown_vs_served: tuple[int, int] = (0, 0)
    """Seconds where the incident's shown tier differed from the tier that served most requests, of those compared."""
    diverged: list[str] = field(default_factory=list)
    """A few of those seconds: time, shown tier, served tiers."""
    duration_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    """The clients' seconds while the case ran (demo/traffic.py's table), and when the faults were reset."""

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def short(tier: str) -> str:
    """tier_1_secondary -> secondary."""
    return tier.split("_", 2)[-1] if tier.startswith("tier_") else tier


def shares(tiers: Counter[str]) -> str:
    total = sum(tiers.values())
    if not total:
        return "-"
    ordered = sorted(tiers.items(), key=lambda kv: kv[0])
    return " ".join(f"{short(t)} {n / total:.0%}" for t, n in ordered)


def opened_at(state: IncidentState) -> float | None:
    return state.phases[0].entered_at.timestamp() if state.phases else None


@dataclass
class Case:
    """One fault scenario: `play` injects the faults and waits for what it needs; `judge` checks the result."""

    name: str
    title: str
    play: Callable[[Matrix, CaseResult], Awaitable[None]]
    judge: Callable[[CaseResult], None]
    close_limit_s: float = 240.0


class Matrix:
    """The fault matrix on one running stack."""

    def __init__(self, info: StackInfo, http: httpx.AsyncClient, traffic: TrafficGenerator) -> None:
        assert info.gateway_url is not None
        self.info = info
        self.http = http
        self.traffic = traffic
        self.gc = GovernorClient(info.client, task_queue=info.task_queue)
        self.wid = incident_id(SERVICE)
        self.samples: list[Sample] = []
        self._sampler: asyncio.Task[None] | None = None

    # --- faults

    async def fault(self, model: str, **faults: Any) -> None:
        """Change one fake model's faults (`primary`, `secondary`, `degraded`) over its `/control`."""
        (await self.http.put(f"{self.info.upstreams[model]}/control", json=faults)).raise_for_status()

    async def reset(self) -> None:
        for model in self.info.upstreams:
            await self.fault(model, reset=True)

    # --- what a user sees

    async def state(self) -> IncidentState | None:
        try:
            return await self.gc.state(self.wid)
        except Exception:  # no incident yet
            return None

    async def open_state(self, since: float) -> IncidentState | None:
        """The incident opened since `since`, while it is open; None otherwise."""
        state = await self.state()
        if state is None or state.outcome != "open" or (opened_at(state) or 0) < since - 1:
            return None
        return state

    async def wait(
        self, what: str, since: float, check: Callable[[IncidentState], bool], limit_s: float
    ) -> IncidentState:
        """Until the incident opened since `since` satisfies `check`; AssertionError naming `what` otherwise."""
        deadline = time.monotonic() + limit_s
        state: IncidentState | None = None
        while time.monotonic() < deadline:
            state = await self.open_state(since) or state
            if state is not None and check(state):
                return state
            await asyncio.sleep(0.5)
        last = (
            f"phase={state.phase} tier={state.tier} failed={state.failed_dependencies} type={state.failure_type}"
            if state
            else "no incident"
        )
        raise AssertionError(f"{what}: not within {limit_s:.0f} s; last: {last}")

    async def _sample_once(self) -> None:
        state = await self.state()
        indicator = level = None
        with contextlib.suppress(Exception):
            page = (await self.http.get(f"{self.info.gateway_url}/status.json")).json()
            indicator = page["status"]["indicator"]
            level = next((c["degradation_level"] for c in page["components"] if c["id"] == SERVICE), None)
        self.samples.append(Sample(time.time(), state, indicator, level))

    async def _sample_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._sample_once()
            await asyncio.sleep(0.5)

    def start_sampling(self) -> None:
        self._sampler = asyncio.create_task(self._sample_loop(), name="fault-matrix-sampler")

    async def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    # --- one case

    async def settle(self, limit_s: float) -> IncidentState | None:
        """Until no incident is open (declaring the dependency fixed when the incident waits for a human after
        flapping, approving any gate); the last incident's final state."""
        deadline = time.monotonic() + limit_s
        declared = False
        while time.monotonic() < deadline:
            state = await self.state()
            if state is None or state.outcome != "open":
                open_ones = await self.gc.list_incidents(service=SERVICE, open_only=True)
                if not open_ones:
                    return state
            elif state.flapping and not declared:
                await self.gc.declare_remediated(self.wid, ACTOR, "fault matrix: the fault is cleared")
                declared = True
            else:
                for gate in state.pending_gates:
                    await self.gc.approve(self.wid, gate.gate, ACTOR, "fault matrix", gate.gate_id or None)
            await asyncio.sleep(1)
        raise AssertionError(f"the incident did not close within {limit_s:.0f} s after the faults were reset")

    async def run(self, case: Case) -> CaseResult:
        result = CaseResult(case.name)
        await self.settle(60)  # a quiet start
        t0 = time.time()
        first_sample = len(self.samples)
        try:
            await case.play(self, result)
        except AssertionError as err:
            result.problems.append(str(err))
        finally:
            reset_at = time.time()
            await self.reset()
        try:
            final = await self.settle(case.close_limit_s)
        except AssertionError as err:
            result.problems.append(str(err))
            final = await self.state()
        await asyncio.sleep(1.5)  # the last seconds of traffic close
        t1 = time.time()
        result.duration_s = round(t1 - t0, 1)
        self._summarize(result, t0, t1, self.samples[first_sample:], final)
        back = next(
            (
                s.second
                for s in self.traffic.report().seconds
                if s.second >= int(reset_at) + 1
                and s.tiers.get(FallbackTier.TIER_0_PRIMARY.value, 0) >= 0.9 * max(1, s.requests)
            ),
            None,
        )
        result.timeline = self.traffic.report().render(since=t0)
        result.timeline.append("faults reset at " + time.strftime("%H:%M:%S", time.localtime(reset_at)))
        if result.incidents:
            result.facts["primary serves 90 % again after the reset"] = (
                f"{back - reset_at:.0f} s" if back is not None else "never"
            )
        case.judge(result)
        return result

    def _summarize(
        self, result: CaseResult, t0: float, t1: float, samples: list[Sample], final: IncidentState | None
    ) -> None:
        report = self.traffic.report()
        seconds = [s for s in report.seconds if t0 <= s.second < t1]
        result.requests = sum(s.requests for s in seconds)
        result.failed = sum(s.failed for s in seconds)
        result.failures = [f"{r.status} {r.error}" for r in report.failures if t0 <= r.at < t1][:5]
        result.tiers = report.tiers_between(t0, t1)
        runs: dict[str, IncidentState] = {}
        for sample in samples:
            s = sample.state
            if s is not None and (opened_at(s) or 0) >= t0 - 1:
                runs[s.occurrence_id or str(opened_at(s))] = s
        if final is not None and (opened_at(final) or 0) >= t0 - 1:
            runs[final.occurrence_id or str(opened_at(final))] = final
        result.incidents = len(runs)
        states = list(runs.values())
        result.failure_types = sorted({s.failure_type.value for s in states if s.failure_type})
        result.severities = sorted({s.severity.value for s in states if s.severity})
        result.gates = sorted(
            {d.gate for s in states for d in s.decisions} | {g.gate for s in states for g in s.pending_gates}
        )
        result.rollbacks = sum(len(s.rollbacks) for s in states)
        result.flaps = max((s.flaps for s in states), default=0)
        flapped = any(s.flapping for s in states) or any(e.action == "flapping" for s in states for e in s.audit)
        if states:
            outcomes = [s.outcome for s in states]
            result.outcome = ", ".join(outcomes) + (" (flapping, declared fixed)" if flapped else "")
        open_samples = [
            x
            for x in samples
            if x.state is not None and x.state.outcome == "open" and (opened_at(x.state) or 0) >= t0 - 1
        ]
        levels = [x.state.degradation_level for x in open_samples if x.state is not None]
        result.worst_level = max(levels, key=LEVELS.index).value if levels else "normal"
        indicators = [x.indicator for x in samples if x.indicator in INDICATORS]
        result.worst_indicator = max(indicators, key=INDICATORS.index) if indicators else "-"
        result.facts["gateway worst level"] = max(
            (x.gateway_level for x in samples if x.gateway_level in LEVELS),
            key=lambda v: LEVELS.index(DegradationLevel(v)),
            default="normal",
        )
        self._shown_vs_served(result, open_samples, {s.second: s for s in seconds})

    @staticmethod
    def _shown_vs_served(result: CaseResult, samples: list[Sample], by_second: dict[int, SecondStats]) -> None:
        """Compare the tier the incident shows with the tier the clients were served by in the second before, once
        the shown tier has held 3 s and outside the ramp (where two tiers serve by design)."""
        compared = diverged = 0
        since: tuple[FallbackTier, float] | None = None
        for sample in samples:
            s = sample.state
            assert s is not None
            shown = s.served_tier or s.tier  # the tier the incident says clients get
            if since is None or since[0] is not shown:
                since = (shown, sample.at)
            if sample.at - since[1] < 3 or s.phase in RAMPING or s.ramp_percent:
                continue
            second = by_second.get(int(sample.at) - 1)
            if second is None or not second.requests:
                continue
            compared += 1
            if second.main_tier != shown.value:
                diverged += 1
                if len(result.diverged) < 5:
                    clock = time.strftime("%H:%M:%S", time.gmtime(sample.at))
                    result.diverged.append(f"{clock} shown {short(shown.value)} served {shares(Counter(second.tiers))}")
        result.shown_vs_served = (diverged, compared)


async def served_during(matrix: Matrix, seconds: float) -> Counter[str]:
    """Hold the faults `seconds` and return the tiers that served the clients meanwhile (whole seconds)."""
    start = int(time.time() + 1)
    await asyncio.sleep(seconds)
    await matrix.traffic.closed_through(int(start + seconds))  # requests of those seconds answered (slow ones too)
    return matrix.traffic.report().tiers_between(start, int(start + seconds))
