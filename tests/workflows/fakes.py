"""A scripted world for workflow tests: fake activities under the real activity names and models.

Mocking activities is how Temporal workflow logic is tested; the real activities are tested against real
servers in tests/activities and together with this workflow in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity

from activities.pin_first import run_pin_first
from governor.actions import (
    Activity,
    AssessTiersInput,
    BlastRadiusInput,
    ChannelDelivery,
    ConfirmFailureInput,
    ConfirmFailureResult,
    DrillFaultInput,
    DrillFaultResult,
    Evidence,
    EvidenceInput,
    FallBackFirstInput,
    FallBackFirstResult,
    GatewayChange,
    GatewayChangeResult,
    LoadPolicyInput,
    NotifyInput,
    NotifyResult,
    PostmortemInput,
    PostmortemResult,
    ReadStatsInput,
    ValidatePrimaryInput,
    ValidatePrimaryResult,
    WaitForHealthyInput,
    WaitForHealthyResult,
)
from governor.blast_radius import AffectedService, BlastRadius
from governor.decisions import ValidationResult, Verdict
from governor.enums import FailureType, FallbackTier, HealthStatus, Severity
from governor.models import Classification, StatsWindow, TierStats
from governor.policy import ServicePolicy, parse_policy
from governor.tier_health import TierAssessment, TierHealth

ROOT = Path(__file__).resolve().parents[2]


def policy_for(**overrides: Any) -> ServicePolicy:
    """policies/chat.yaml with test-sized timings and a webhook route for on-call and leadership."""
    data = yaml.safe_load((ROOT / "policies" / "chat.yaml").read_text())
    data["ramp"] = {
        "steps": [
            {"percent": 10, "soak_s": 60},
            {"percent": 25, "soak_s": 60},
            {"percent": 50, "soak_s": 120},
            {"percent": 100, "soak_s": 0},
        ],
        "sample_interval_s": 10,
        "stats_window_s": 10,
    }
    data["approvals"] = {"approvers": ["alice", "bob"], "gates": [], "timeout_s": 300}
    data["notifications"] = {
        "routes": {
            "oncall": [{"type": "webhook", "url": "http://127.0.0.1:1/oncall"}],
            "leadership": [{"type": "webhook", "url": "http://127.0.0.1:1/leadership"}],
        }
    }
    for key, value in overrides.items():
        data[key] = value
    return parse_policy(data, "test-policy")


def healthy(requests: int = 200) -> TierStats:
    return TierStats(requests=requests, errors=0, error_rate=0.0, p50_ms=40, p95_ms=80, p99_ms=120, rps=20)


def failing(error_rate: float = 0.3, requests: int = 200) -> TierStats:
    errors = int(requests * error_rate)
    return TierStats(requests=requests, errors=errors, error_rate=error_rate, p99_ms=300, rps=20)


class FakeWorld:
    """Records what the workflow did to the gateway and who it told; answers as scripted."""

    def __init__(self, policy: ServicePolicy | None = None) -> None:
        self.policy = policy or policy_for()
        self.confirmed = True
        self.answering: set[str] = set()
        """Dependencies that answer detection's re-probe (their reports do not reproduce), whatever `confirmed` says."""
        self.confirms = 0
        self.on_confirm: Callable[[ConfirmFailureInput], Awaitable[None]] | None = None
        """Run once inside confirm_failure before it answers (e.g. a report arriving during detection)."""
        self.classification: Classification | None = Classification(
            failure_type=FailureType.ERROR_SPIKE, severity=Severity.CRITICAL, reason="error rate 30% > 5%"
        )
        self.changes: list[GatewayChange] = []
        self.notifications: list[NotifyInput] = []
        self.weight: float = 0
        self.pinned: str | None = None
        self.stats: Callable[[FakeWorld], TierStats] = lambda w: healthy()
        self.validation = Verdict.PASS
        self.primary_fixed = asyncio.Event()
        self.primary_fixed.set()
        self.probe_started = 0
        self.primary_down = False
        """While True, wait_for_healthy fails at once (and the workflow retries it): unlike `primary_fixed`, no
        activity stays running, so the time-skipping server skips through long waits."""
        self.postmortems: list[PostmortemInput] = []
        self.rollback_count = 0
        self.failing_audiences: set[str] = set()
        self.windows: list[int] = []
        self.on_restore: Callable[[], Awaitable[None]] | None = None
        """Run once inside the full restore's gateway change, before it answers (e.g. a report arriving during the
        restore); nothing is held, so the time-skipping server never times the activity out."""
        self.on_postmortem: Callable[[], Awaitable[None]] | None = None
        """The same, inside write_postmortem."""
        self.flaky_channels: dict[str, int] = {}
        """Channel URL -> how many notify attempts to that channel fail (raise) before it delivers."""
        self.sends: list[tuple[str, str]] = []
        """(channel URL, idempotency key) of every delivery attempt, failed ones included."""
        self.tiers_down: dict[str, str] = {}
        """Tiers `assess_tiers` finds down (tier -> why); every other tier answers."""
        self.down: Callable[[FakeWorld], dict[str, str]] = lambda w: w.tiers_down
        self.assessments = 0
        self.served: dict[str, int] = {}
        """Client answers per tier in the gateways' window, as `assess_tiers` reports them (default: none seen)."""
        self.deps_down: set[str] = set()
        """Dependencies (other than through `primary_down`) whose wait_for_healthy fails, as `primary_down` does."""
        self.validations: list[Verdict] = []
        """Verdicts validate_primary answers first, one per call, before `validation` applies."""
        self.validated: list[str] = []
        """The dependency of every validate_primary call, in order."""
        self.other_tiers: dict[str, TierStats] = {}
        """More tiers read_stats answers (e.g. `tier_5_error`, the explicit 503s a drill counts)."""
        self.faults: list[DrillFaultInput] = []
        """Every drill fault PUT to a control API (injections and clearings), in order."""
        self.blast: BlastRadius | None = None
        """What assess_blast_radius answers (default: only the incident's own service, all its traffic)."""
        self.blast_fails = False
        self.first_pins = 0
        """fall_back_first calls (pin first's one activity)."""
        self.gateway_failures = 0
        """How many apply_gateway_change calls fail (raise) before the gateway takes changes again."""

    def activities(self) -> list[Any]:
        return [
            self.load_policy,
            self.confirm_failure,
            self.apply_gateway_change,
            self.read_stats,
            self.gather_evidence,
            self.wait_for_healthy,
            self.validate_primary,
            self.assess_tiers,
            self.assess_blast_radius,
            self.notify,
            self.write_postmortem,
            self.drill_fault,
            self.fall_back_first,
        ]

    @activity.defn(name=Activity.LOAD_POLICY)
    async def load_policy(self, input: LoadPolicyInput) -> ServicePolicy:
        return self.policy

    @activity.defn(name=Activity.CONFIRM_FAILURE)
    async def confirm_failure(self, input: ConfirmFailureInput) -> ConfirmFailureResult:
        self.confirms += 1
        answers = not self.confirmed or input.dependency in self.answering  # what the probe saw, before the hook
        if self.on_confirm is not None:
            hook, self.on_confirm = self.on_confirm, None
            await hook(input)
        if answers:
            return ConfirmFailureResult(confirmed=False, reason="3 probes healthy; report did not reproduce")
        return ConfirmFailureResult(confirmed=True, classification=self.classification)

    @activity.defn(name=Activity.APPLY_GATEWAY_CHANGE)
    async def apply_gateway_change(self, input: GatewayChange) -> GatewayChangeResult:
        if self.gateway_failures > 0:
            self.gateway_failures -= 1
            raise RuntimeError("gateway 503 on PUT route")
        restoring = input.status is not None and input.status.component == "operational"  # the full restore
        if restoring and self.on_restore is not None:
            hook, self.on_restore = self.on_restore, None
            await hook()
        self.changes.append(input)
        if input.route is not None:
            fields = input.route.model_fields_set
            if "pinned_tier" in fields:
                self.pinned = str(input.route.pinned_tier) if input.route.pinned_tier else None
            if input.route.primary_weight is not None:
                self.weight = input.route.primary_weight
        return GatewayChangeResult(
            replicas={g: {"pinned_tier": self.pinned, "primary_weight": self.weight} for g in input.gateways}
        )

    @activity.defn(name=Activity.READ_STATS)
    async def read_stats(self, input: ReadStatsInput) -> StatsWindow:
        self.windows.append(input.window_s)
        return StatsWindow(window_s=input.window_s, tiers={"tier_0_primary": self.stats(self), **self.other_tiers})

    @activity.defn(name=Activity.GATHER_EVIDENCE)
    async def gather_evidence(self, input: EvidenceInput) -> Evidence:
        return Evidence(summary="primary-llm answers 503", dependencies={"primary-llm": "unhealthy"})

    @activity.defn(name=Activity.WAIT_FOR_HEALTHY)
    async def wait_for_healthy(self, input: WaitForHealthyInput) -> WaitForHealthyResult:
        self.probe_started += 1
        if self.primary_down or input.dependency.name in self.deps_down:
            raise RuntimeError("the primary is still down")
        while not self.primary_fixed.is_set():
            activity.heartbeat()
            await asyncio.sleep(0.05)
        return WaitForHealthyResult(consecutive_passes=input.passes, probes=input.passes)

    @activity.defn(name=Activity.VALIDATE_PRIMARY)
    async def validate_primary(self, input: ValidatePrimaryInput) -> ValidatePrimaryResult:
        self.validated.append(input.dependency.name)
        verdict = self.validations.pop(0) if self.validations else self.validation
        return ValidatePrimaryResult(
            result=ValidationResult(verdict=verdict, reason=f"validation {verdict}"),
            sample=healthy(),
            consecutive_passes=3,
        )

    @activity.defn(name=Activity.ASSESS_TIERS)
    async def assess_tiers(self, input: AssessTiersInput) -> TierAssessment:
        self.assessments += 1
        down = self.down(self)
        tiers = {
            t: TierHealth(tier=t, status=HealthStatus.UNHEALTHY, reason=down[str(t)])
            if str(t) in down
            else TierHealth(tier=t, status=HealthStatus.HEALTHY, reason="answers")
            for t in [*input.policy.tiers, FallbackTier.TIER_5_ERROR]
        }
        served = {FallbackTier(t): n for t, n in self.served.items()}
        return TierAssessment(tiers=tiers, checked_at=now(), served=served)

    @activity.defn(name=Activity.ASSESS_BLAST_RADIUS)
    async def assess_blast_radius(self, input: BlastRadiusInput) -> BlastRadius:
        if self.blast_fails:
            raise RuntimeError("gateway unreachable")
        own = AffectedService(service=input.policy.service, dependencies=[input.dependency], traffic_share=1.0)
        return self.blast or BlastRadius(dependency=input.dependency, services=[own])

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, input: NotifyInput) -> NotifyResult:
        for c in input.channels:
            self.sends.append((c.url or "", input.idempotency_key))
        for c in input.channels:
            if self.flaky_channels.get(c.url or "", 0) > 0:
                self.flaky_channels[c.url or ""] -= 1
                raise RuntimeError(f"{c.url} crashed mid-delivery")
        self.notifications.append(input)
        ok = input.audience not in self.failing_audiences
        return NotifyResult(
            deliveries=[
                ChannelDelivery(channel=c.type, ok=ok, status_code=200 if ok else 503, error="" if ok else "down")
                for c in input.channels
            ]
        )

    @activity.defn(name=Activity.DRILL_FAULT)
    async def drill_fault(self, input: DrillFaultInput) -> DrillFaultResult:
        self.faults.append(input)
        return DrillFaultResult(status_code=200, answer="{}")

    @activity.defn(name=Activity.FALL_BACK_FIRST)
    async def fall_back_first(self, input: FallBackFirstInput) -> FallBackFirstResult:
        """Pin first over this world's own steps, as the real activity runs over the real ones."""
        self.first_pins += 1
        return await run_pin_first(self, input)

    @activity.defn(name=Activity.WRITE_POSTMORTEM)
    async def write_postmortem(self, input: PostmortemInput) -> PostmortemResult:
        if self.on_postmortem is not None:
            hook, self.on_postmortem = self.on_postmortem, None
            await hook()
        self.postmortems.append(input)
        path = f"/tmp/{input.state.incident_id}.md"
        return PostmortemResult(markdown_path=path, json_path=path.replace(".md", ".json"), markdown="# post-mortem")


def now() -> datetime:
    return datetime.now(UTC)
