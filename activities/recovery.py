"""The recovery workflow's side effects: policy, probes, gateway control, stats, evidence, validation, post-mortem.

The worker builds one `RecoveryActivities` with a shared `httpx.AsyncClient` and the `WorkerSettings`, and registers
its methods. Transient I/O errors raise ordinary exceptions so the activity's retry policy retries them; bad
configuration raises `ApplicationError(non_retryable=True)` naming what is wrong.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.blast_radius import BlastRadiusActivities
from activities.gateway_admin import GatewayAdmin, GatewayChangeNotApplied, GatewayUnavailable
from activities.pin_first import PinFirstActivities
from activities.probes import probe_dependency
from activities.tiers import TierActivities, read_merged_stats
from governor.actions import (
    Activity,
    ConfirmFailureInput,
    ConfirmFailureResult,
    Evidence,
    EvidenceInput,
    GatewayChange,
    GatewayChangeResult,
    LoadPolicyInput,
    PostmortemInput,
    PostmortemResult,
    ReadStatsInput,
    ValidatePrimaryInput,
    ValidatePrimaryResult,
    WaitForHealthyInput,
    WaitForHealthyResult,
)
from governor.decisions import BASE_SEVERITY, classify_probe, run_recovery_checks
from governor.detection import classify_traffic
from governor.enums import HealthStatus
from governor.gateway_api import ProbeCall, unapplied
from governor.models import Classification, ProbeResult, StatsWindow, TierStats
from governor.policy import DependencySpec, PolicyError, RecoveryChecks, ServicePolicy, Thresholds, find_policy
from governor.postmortem import postmortem_json, render_postmortem
from governor.settings import WorkerSettings

T = TypeVar("T")

CONFIRM_BACKOFF_S = (0.2, 0.5, 1.0)
"""Pauses between confirmation probes: short, because the fallback target is 2 s after a report."""


class WaitProgress(BaseModel):
    """wait_for_healthy's heartbeat details: a retried attempt resumes from here."""

    consecutive_passes: int = 0
    probes: int = 0
    last: ProbeResult | None = None


def _log(incident_id: str | None = None, **extra: Any) -> structlog.stdlib.BoundLogger:
    """A logger bound to the incident (the workflow id is the incident id) and the activity."""
    bound: dict[str, Any] = dict(extra)
    if activity.in_activity():
        info = activity.info()
        bound.setdefault("activity", info.activity_type)
        bound["attempt"] = info.attempt
        incident_id = incident_id or info.workflow_id
    if incident_id:
        bound["incident_id"] = incident_id
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("governor.activities").bind(**bound)
    return logger


def _config_error(message: str, type_: str = "ConfigurationError") -> ApplicationError:
    return ApplicationError(message, type=type_, non_retryable=True)


def _dependency(policy: ServicePolicy, name: str) -> DependencySpec:
    try:
        return policy.dependency(name)
    except KeyError as err:
        raise _config_error(str(err.args[0]), "UnknownDependency") from None


def _heartbeat(details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(details)


def _certain_failure(latencies: list[float], errors: int, checks: RecoveryChecks) -> str:
    """Why the full validation sample must fail whatever the remaining probes show ("" while it still may pass)."""
    n = checks.min_samples
    if errors > checks.error_rate * n:
        return f"{errors} failed probes: the error rate over {n} probes exceeds {checks.error_rate:.1%}"
    # The nearest-rank p99 of n values is the k-th largest, k = n - ceil(0.99 n) + 1.
    k = n - max(1, math.ceil(0.99 * n)) + 1
    slow = sum(1 for v in latencies if v > checks.p99_ms)
    if slow >= k:
        return f"{slow} probes slower than {checks.p99_ms:.0f} ms: p99 over {n} probes exceeds it"
    return ""


def _percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _gather_all(calls: list[Awaitable[T]]) -> list[T]:
    """Run every call; raise a non-retryable failure first, else the first transient one, else return all results."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        fatal = next((e for e in errors if isinstance(e, ApplicationError) and e.non_retryable), None)
        raise fatal or errors[0]
    return [r for r in results if not isinstance(r, BaseException)]


def _merge_classifications(probe: Classification | None, stats: Classification | None) -> Classification | None:
    """The probe says what broke; the stats say how much. Keep the probe's type, the worse severity, both reasons."""
    if probe is None or stats is None:
        return probe or stats
    worse = max(probe.severity, stats.severity, key=lambda s: s.rank)
    return Classification(
        failure_type=probe.failure_type,
        severity=worse,
        reason=f"{probe.reason}; gateway: {stats.reason}",
        metrics={**stats.metrics, **probe.metrics},
    )


def _describe_probe(p: ProbeResult) -> str:
    code = f"HTTP {p.status_code}" if p.status_code is not None else "no answer"
    what = p.error_kind or p.status.value
    return f"{p.dependency}: {what} ({code}, {p.latency_ms:.0f} ms){': ' + p.error if p.error else ''}"


def _describe_stats(tier: str, s: TierStats) -> str:
    return (
        f"{tier}: {s.requests} requests, {s.errors} errors ({s.error_rate:.1%}), {s.rate_limited} rate-limited, "
        f"p50/p95/p99 {s.p50_ms:.0f}/{s.p95_ms:.0f}/{s.p99_ms:.0f} ms, {s.rps:.1f} rps, {s.in_flight} in flight"
    )


class RecoveryActivities(TierActivities, BlastRadiusActivities, PinFirstActivities):
    """Every side effect of IncidentRecoveryWorkflow except notifications (activities/notify)."""

    def __init__(self, client: httpx.AsyncClient, settings: WorkerSettings) -> None:
        self.client = client
        self.settings = settings
        self.gateway = GatewayAdmin(client, settings.gateway_token, settings.http_timeout_s)
        self.confirm_backoff_s: tuple[float, ...] = CONFIRM_BACKOFF_S

    def all(self) -> list[Callable[..., Awaitable[Any]]]:
        """Every activity of this class, for `Worker(activities=[*recovery.all(), notifier.notify])`."""
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
            self.fall_back_first,
            self.write_postmortem,
        ]

    # --- policy

    @activity.defn(name=Activity.LOAD_POLICY)
    async def load_policy(self, request: LoadPolicyInput) -> ServicePolicy:
        """Read the service's policy once, so the workflow's snapshot is recorded in its history."""
        log = _log(service=request.service)
        try:
            policy = find_policy(self.settings.policy_dir, request.service)
        except PolicyError as err:
            log.error("policy unusable", error=str(err))
            raise _config_error(str(err), "PolicyError") from None
        log.info("policy loaded", policy_dir=str(self.settings.policy_dir), dependencies=len(policy.dependencies))
        return policy

    # --- probes

    async def _probe(self, dep: DependencySpec, thresholds: Thresholds) -> ProbeResult:
        try:
            return await probe_dependency(self.client, dep, thresholds)
        except ValueError as err:  # no health_url: a policy problem, not a dependency problem
            raise _config_error(str(err), "PolicyError") from None

    async def _probe_others(self, policy: ServicePolicy, dependency: str) -> list[ProbeResult]:
        others = [d for d in policy.dependencies if d.name != dependency and d.health_url]
        return list(await asyncio.gather(*(self._probe(d, policy.thresholds) for d in others)))

    # --- detection

    @activity.defn(name=Activity.CONFIRM_FAILURE)
    async def confirm_failure(self, request: ConfirmFailureInput) -> ConfirmFailureResult:
        """Re-probe the dependency and read the failed tier's stats: confirm and classify, or call it a false alarm."""
        policy, report = request.policy, request.report
        dep = _dependency(policy, request.dependency)
        tier = policy.failed_tier(dep.name).value
        log = _log(service=policy.service, dependency=dep.name)
        stats_task = asyncio.create_task(self._tier_stats(policy, tier))

        probes: list[ProbeResult] = []
        failing: ProbeResult | None = None
        if dep.health_url:
            for attempt in range(max(1, request.attempts)):
                if attempt:
                    pauses = self.confirm_backoff_s
                    await asyncio.sleep(pauses[min(attempt - 1, len(pauses) - 1)])
                probe = await self._probe(dep, policy.thresholds)
                probes.append(probe)
                _heartbeat(f"probe {attempt + 1}/{request.attempts}: {probe.status.value}")
                if not probe.ok or probe.status is HealthStatus.UNHEALTHY:
                    failing = probe  # the failure reproduces: stop probing, fall back sooner
                    break

        stats: TierStats | None
        stats_error: BaseException | None = None
        try:
            stats = await stats_task
        except Exception as err:  # decided below: fatal only when the probes cannot decide alone
            stats, stats_error = None, err

        probe_class: Classification | None = None
        if failing is not None:
            others_answer = False
            if failing.error_kind in {"dns", "unreachable"}:
                others = await self._probe_others(policy, dep.name)
                probes.extend(others)
                others_answer = any(o.ok for o in others)
            probe_class = classify_probe(failing, others_answer=others_answer)
        stats_class = (
            classify_traffic(stats, policy.thresholds, policy.recovery_checks.min_samples)
            if stats is not None
            else None
        )
        classification = _merge_classifications(probe_class, stats_class)

        if classification is not None:
            if stats_error is not None:
                log.warning("gateway stats unreadable; confirmed from probes alone", error=str(stats_error))
            log.info(
                "failure confirmed",
                failure_type=classification.failure_type.value,
                severity=classification.severity.value,
                reason=classification.reason,
            )
            return ConfirmFailureResult(
                confirmed=True, classification=classification, probes=probes, stats=stats, reason=classification.reason
            )

        if stats_error is not None:
            # The probes pass and we cannot see traffic: we cannot tell a false alarm from an error spike yet.
            log.warning("probes pass and gateway stats unreadable; the activity will retry", error=str(stats_error))
            raise stats_error

        if not dep.health_url and (stats is None or stats.observed < policy.recovery_checks.min_samples):
            # Nothing we can observe: trust a report that says what failed rather than ignore it.
            if report.failure_type is not None:
                severity = report.severity or BASE_SEVERITY[report.failure_type]
                reason = (
                    f"{dep.name} has no health_url and the gateway saw too little {tier} traffic to check; "
                    f"taking the {report.source} report at its word: {report.message or report.failure_type.value}"
                )
                log.warning("failure unverifiable; trusting the report", reason=reason)
                return ConfirmFailureResult(
                    confirmed=True,
                    classification=Classification(
                        failure_type=report.failure_type, severity=severity, reason=reason, metrics=report.metrics
                    ),
                    probes=probes,
                    stats=stats,
                    reason=reason,
                )

        parts = []
        if probes:
            passing = sum(1 for p in probes if p.ok)
            worst = max(p.latency_ms for p in probes)
            parts.append(f"{dep.name} passed {passing}/{len(probes)} health probes (slowest {worst:.0f} ms)")
        if stats is not None:
            parts.append(f"gateway {_describe_stats(tier, stats)}")
        reported = report.failure_type.value if report.failure_type else "failure"
        reason = f"the reported {reported} did not reproduce: " + "; ".join(parts or ["nothing to observe"])
        log.info("false alarm", reason=reason)
        return ConfirmFailureResult(confirmed=False, probes=probes, stats=stats, reason=reason)

    async def _tier_stats(self, policy: ServicePolicy, tier: str) -> TierStats:
        window = await self._read_stats(policy.gateways, policy.service, policy.ramp.stats_window_s)
        return window.tiers.get(tier, TierStats())

    # --- gateway control

    @activity.defn(name=Activity.APPLY_GATEWAY_CHANGE)
    async def apply_gateway_change(self, change: GatewayChange) -> GatewayChangeResult:
        """Apply one change to every replica, read each replica's state back and check the change took."""
        log = _log(change.incident_id, service=change.service, gateways=change.gateways)
        if not change.gateways:
            raise _config_error(f"policy for {change.service!r} lists no gateways to change", "PolicyError")
        writes = self._writes(change)
        if not writes:
            raise _config_error(
                "apply_gateway_change needs at least one of route, breaker, degradation, status", "BadRequest"
            )
        states = await _gather_all([self._apply_to_replica(base, change, writes) for base in change.gateways])
        log.info("gateway change applied", changes=[path for path, _ in writes], replicas=len(states))
        return GatewayChangeResult(replicas=dict(zip(change.gateways, states, strict=True)))

    @staticmethod
    def _writes(change: GatewayChange) -> list[tuple[str, BaseModel]]:
        writes: list[tuple[str, BaseModel]] = []
        if change.route is not None and change.route.model_fields_set:
            writes.append(("route", change.route))
        if change.breaker is not None:
            writes.append((f"breakers/{change.breaker.tier.value}", change.breaker.body()))
        if change.degradation is not None:
            writes.append(("degradation", change.degradation))
        if change.status is not None:
            writes.append(("status", change.status))
        return writes

    async def _apply_to_replica(
        self, base: str, change: GatewayChange, writes: list[tuple[str, BaseModel]]
    ) -> dict[str, Any]:
        for path, body in writes:
            await self.gateway.put(base, change.service, path, body, change.incident_id)
        state = await self.gateway.service_state(base, change.service, change.incident_id)
        problems = unapplied(
            state, route=change.route, breaker=change.breaker, degradation=change.degradation, status=change.status
        )
        if problems:
            raise GatewayChangeNotApplied(f"gateway {base} did not take the change: {'; '.join(problems)}")
        return state.model_dump(mode="json")

    # --- stats

    @activity.defn(name=Activity.READ_STATS)
    async def read_stats(self, request: ReadStatsInput) -> StatsWindow:
        """Every replica's stats window for the service, merged per tier."""
        window = await self._read_stats(request.gateways, request.service, request.window_s)
        _log(service=request.service).debug("stats read", tiers=list(window.tiers))
        return window

    async def _read_stats(self, gateways: list[str], service: str, window_s: int) -> StatsWindow:
        return await read_merged_stats(self.gateway, gateways, service, window_s)

    # --- diagnosis

    @activity.defn(name=Activity.GATHER_EVIDENCE)
    async def gather_evidence(self, request: EvidenceInput) -> Evidence:
        """Probe every dependency, read stats and each replica's state; what cannot be read is reported, not fatal."""
        policy = request.policy
        log = _log(request.incident_id, service=policy.service, dependency=request.dependency)
        probeable = [d for d in policy.dependencies if d.health_url]
        probes_task = asyncio.gather(*(self._probe(d, policy.thresholds) for d in probeable))
        stats_task = self._read_stats(policy.gateways, policy.service, policy.ramp.stats_window_s)
        state_tasks = [self._state_of(base, policy.service, request.incident_id) for base in policy.gateways]
        probes, stats, *states = await asyncio.gather(probes_task, stats_task, *state_tasks, return_exceptions=True)
        if isinstance(probes, BaseException):
            raise probes  # only a policy problem (no health_url) gets here, and that is non-retryable
        errors: list[str] = []
        if isinstance(stats, BaseException):
            errors.append(f"stats unavailable: {stats}")
            log.warning("stats unavailable for evidence; carrying on without them", error=str(stats))
            stats = None
        gateway_state: dict[str, Any] = {}
        for base, state in zip(policy.gateways, states, strict=True):
            if isinstance(state, BaseException):
                gateway_state[base] = {"error": str(state)}
                errors.append(f"gateway {base} state unavailable: {state}")
                log.warning("gateway state unavailable for evidence", gateway=base, error=str(state))
            else:
                gateway_state[base] = state
        dependencies = {d.name: HealthStatus.UNKNOWN.value for d in policy.dependencies}
        dependencies.update({p.dependency: p.status.value for p in probes})
        summary = _evidence_summary(policy, request.dependency, probes, stats, gateway_state, errors)
        log.info("evidence gathered", dependencies=dependencies, errors=len(errors))
        return Evidence(
            probes=list(probes), stats=stats, gateway_state=gateway_state, dependencies=dependencies, summary=summary
        )

    async def _state_of(self, base: str, service: str, incident_id: str) -> dict[str, Any]:
        return (await self.gateway.service_state(base, service, incident_id)).model_dump(mode="json")

    # --- remediation

    @activity.defn(name=Activity.WAIT_FOR_HEALTHY)
    async def wait_for_healthy(self, request: WaitForHealthyInput) -> WaitForHealthyResult:
        """Probe every `interval_s` until `passes` consecutive healthy probes; heartbeats carry the progress."""
        dep = request.dependency
        if not dep.health_url:
            raise _config_error(
                f"dependency {dep.name!r} has no health_url: cannot wait for it to recover", "PolicyError"
            )
        log = _log(dependency=dep.name)
        progress = _resumed_progress()
        if progress.probes:
            log.info("resuming from heartbeat", probes=progress.probes, consecutive_passes=progress.consecutive_passes)
        try:
            while True:
                probe = await probe_dependency(self.client, dep, request.thresholds)
                passing = probe.is_passing()
                progress = WaitProgress(
                    consecutive_passes=progress.consecutive_passes + 1 if passing else 0,
                    probes=progress.probes + 1,
                    last=probe,
                )
                _heartbeat(progress)
                if passing and progress.consecutive_passes >= request.passes:
                    log.info("dependency healthy", probes=progress.probes, latency_ms=probe.latency_ms)
                    return WaitForHealthyResult(
                        consecutive_passes=progress.consecutive_passes, probes=progress.probes, last=probe
                    )
                if progress.probes == 1 or progress.probes % 30 == 0:
                    log.info("still waiting for healthy", probes=progress.probes, last=_describe_probe(probe))
                await asyncio.sleep(request.interval_s)
        except asyncio.CancelledError:
            log.info(
                "wait for healthy cancelled", probes=progress.probes, consecutive_passes=progress.consecutive_passes
            )
            raise

    # --- validation

    @activity.defn(name=Activity.VALIDATE_PRIMARY)
    async def validate_primary(self, request: ValidatePrimaryInput) -> ValidatePrimaryResult:
        """`min_samples` synthetic probes of the primary, judged by the recovery checks (no user traffic yet)."""
        dep, checks = request.dependency, request.checks
        if not dep.health_url:
            raise _config_error(f"dependency {dep.name!r} has no health_url: cannot validate it", "PolicyError")
        log = _log(dependency=dep.name)
        latencies: list[float] = []
        errors = 0
        consecutive = 0
        stopped_early = ""
        started = time.perf_counter()
        for i in range(checks.min_samples):
            probe = await probe_dependency(self.client, dep, request.thresholds)
            latencies.append(probe.latency_ms)
            errors += 0 if probe.ok else 1
            consecutive = consecutive + 1 if probe.is_passing() else 0
            _heartbeat(f"validation probe {i + 1}/{checks.min_samples}")
            why = _certain_failure(latencies, errors, checks)
            if why and i + 1 < checks.min_samples:
                # The rest of the sample cannot turn the verdict: fail now instead of probing a sick primary on.
                log.info("validation failed early", probes=i + 1, why=why)
                checks = checks.model_copy(
                    update={"min_samples": i + 1, "health_passes": min(checks.health_passes, i + 1)}
                )
                stopped_early = f"stopped after {i + 1} of {request.checks.min_samples} probes: {why}"
                break
        data_path = ""
        if checks.probe_request is not None and request.tier is not None and request.gateways and not stopped_early:
            data_path, failed = await self._probe_data_path(request, latencies)
            errors += failed
        elapsed = max(time.perf_counter() - started, 1e-6)
        ordered = sorted(latencies)
        sample = TierStats(
            requests=len(latencies),
            errors=errors,
            error_rate=errors / len(latencies),
            p50_ms=_percentile(ordered, 0.50),
            p95_ms=_percentile(ordered, 0.95),
            p99_ms=_percentile(ordered, 0.99),
            rps=len(latencies) / elapsed,
        )
        result = run_recovery_checks(consecutive, sample, checks)
        if stopped_early:
            result.reason = f"{stopped_early}; {result.reason}"
        if data_path:
            result.reason = f"{result.reason}; {data_path}"
        log.info("primary validated", verdict=result.verdict.value, reason=result.reason, p99_ms=sample.p99_ms)
        return ValidatePrimaryResult(result=result, sample=sample, consecutive_passes=consecutive)

    async def _probe_data_path(self, request: ValidatePrimaryInput, latencies: list[float]) -> tuple[str, int]:
        """`min_samples` synthetic requests through the gateway to the tier (`recovery_checks.probe_request`); their
        latencies join `latencies`. Returns what they showed and how many failed."""
        spec, tier = request.checks.probe_request, request.tier
        assert spec is not None and tier is not None
        call = ProbeCall(
            tier=tier, count=request.checks.min_samples, method=spec.method, path=spec.path, body=spec.body
        )
        report = await self.gateway.probe(request.gateways[0], request.service, call)
        latencies.extend(o.latency_ms for o in report.outcomes)
        failed = report.failed
        _heartbeat(f"data path: {len(failed)} of {len(report.outcomes)} probe requests failed")
        if not failed:
            return f"data path: {len(report.outcomes)} {spec.method} {spec.path} answered well", 0
        reasons = Counter(f"{o.deployment}: {o.reason}" if o.deployment else o.reason for o in failed).most_common(3)
        shown = ", ".join(f"{r} x{n}" for r, n in reasons)
        return f"data path: {len(failed)} of {len(report.outcomes)} {spec.method} {spec.path} failed ({shown})", len(
            failed
        )

    # --- post-mortem

    @activity.defn(name=Activity.WRITE_POSTMORTEM)
    async def write_postmortem(self, request: PostmortemInput) -> PostmortemResult:
        """Write `{incident_id}.md` and `.json` under the post-mortem folder (atomically: a retry rewrites them)."""
        state = request.state
        log = _log(state.incident_id, service=state.service)
        now = datetime.now(UTC)
        markdown = render_postmortem(state, request.policy, now=now)
        data = postmortem_json(state, request.policy, now=now)
        folder = Path(self.settings.postmortem_dir)
        md_path = folder / f"{state.incident_id}.md"
        json_path = folder / f"{state.incident_id}.json"
        try:
            await asyncio.to_thread(_write_files, folder, {md_path: markdown, json_path: json.dumps(data, indent=2)})
        except (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError) as err:
            raise _config_error(
                f"cannot write post-mortem under {folder} ({err}): check GOVERNOR_POSTMORTEM_DIR", "PostmortemDirError"
            ) from None
        log.info("post-mortem written", path=str(md_path))
        return PostmortemResult(markdown_path=str(md_path), json_path=str(json_path), markdown=markdown)


def _write_files(folder: Path, files: dict[Path, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def _resumed_progress() -> WaitProgress:
    """The last heartbeat of a previous attempt (a dict once it went through the data converter), or a fresh start."""
    if not activity.in_activity():
        return WaitProgress()
    details = activity.info().heartbeat_details
    if not details:
        return WaitProgress()
    last = details[0]  # the arguments of the last heartbeat call: one WaitProgress
    try:
        return last if isinstance(last, WaitProgress) else WaitProgress.model_validate(last)
    except ValueError:
        _log().warning("heartbeat details unreadable; starting over", details=str(last)[:200])
        return WaitProgress()


def _evidence_summary(
    policy: ServicePolicy,
    dependency: str,
    probes: list[ProbeResult],
    stats: StatsWindow | None,
    gateway_state: dict[str, Any],
    errors: list[str],
) -> str:
    lines = [f"Evidence for {policy.service} / {dependency}:"]
    failing = [p for p in probes if not p.is_passing()]
    lines.append(
        f"- dependencies: {len(probes) - len(failing)}/{len(probes)} probed healthy"
        + (f"; failing: {', '.join(p.dependency for p in failing)}" if failing else "")
    )
    lines += [f"  - {_describe_probe(p)}" for p in probes]
    if stats is not None and stats.tiers:
        lines.append(f"- gateway traffic, last {stats.window_s:.0f} s:")
        lines += [f"  - {_describe_stats(tier, s)}" for tier, s in stats.tiers.items()]
    for base, state in gateway_state.items():
        if "error" in state:
            continue
        open_breakers = [
            t for t, b in (state.get("breakers") or {}).items() if isinstance(b, dict) and b.get("state") != "closed"
        ]
        lines.append(
            f"- gateway {base}: pinned {state.get('pinned_tier') or 'none'}, primary weight {state.get('primary_weight')}, "
            f"degradation {(state.get('degradation') or {}).get('level')}, "
            f"breakers not closed: {', '.join(open_breakers) or 'none'}"
        )
    lines += [f"- {e}" for e in errors]
    return "\n".join(lines)


__all__ = [
    "CONFIRM_BACKOFF_S",
    "GatewayChangeNotApplied",
    "GatewayUnavailable",
    "RecoveryActivities",
    "WaitProgress",
]
