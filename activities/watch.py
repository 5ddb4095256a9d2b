"""The watchdog's side effects: probe a dependency in a loop with heartbeats, and report a confirmed failure.

`watch_dependency` runs for many probes: each evaluation (health probe + the gateway's stats window + optional
Prometheus burn rates) feeds the hysteresis in governor/detection.py and is heartbeated, so a retried activity
resumes where the last one stopped and a silent one is noticed (missed heartbeats -> dependency_down).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import httpx
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.gateway_admin import GatewayAdmin, GatewayUnavailable
from activities.probes import probe_dependency
from governor.client import GovernorClient, Reported
from governor.detection import (
    BurnRateConfig,
    Hysteresis,
    Observation,
    ReportInput,
    ReportResult,
    WatchActivity,
    WatchInput,
    WatchResult,
    adjust_severity,
    burn_windows,
    classify_observation,
    error_ratio_query,
    evaluate_burn,
    step,
)
from governor.enums import FallbackTier
from governor.incident import IncidentReport
from governor.models import Classification, ProbeResult, TierStats
from governor.policy import DependencySpec, ServicePolicy
from governor.settings import WorkerSettings

log = structlog.get_logger(__name__)


async def report_failure(client: Client, report: IncidentReport, task_queue: str) -> Reported:
    """Start the incident's recovery, or join the open one (signal-with-start through the client SDK)."""
    return await GovernorClient(client, task_queue=task_queue).report_failure(report)


class WatchActivities:
    """Built once by the worker: one HTTP client, the settings (gateways' admin token), the Temporal client."""

    def __init__(self, http: httpx.AsyncClient, settings: WorkerSettings, temporal: Client | None = None) -> None:
        self.http = http
        self.gateway_token = settings.gateway_token
        self.temporal = temporal
        self._burn_cache: dict[str, tuple[float, Classification | None, dict[str, float]]] = {}

    # ------------------------------------------------------------------ the probing loop

    @activity.defn(name=WatchActivity.WATCH)
    async def watch_dependency(self, inp: WatchInput) -> WatchResult:
        """Probe until the hysteresis confirms or clears a failure (or `evaluations_per_run` is reached)."""
        try:
            dep = inp.policy.dependency(inp.dependency)
        except KeyError as err:
            raise ApplicationError(str(err), type="ConfigurationError", non_retryable=True) from None
        state = self._resume(inp.hysteresis)
        cfg = inp.config
        bound = log.bind(service=inp.policy.service, dependency=dep.name)
        last: Observation | None = None
        try:
            for _ in range(cfg.evaluations_per_run):
                started = time.monotonic()
                last = await self.observe(inp.policy, dep, inp)
                state, transition = step(state, last.classification, last.at, cfg)
                activity.heartbeat(state.model_dump(mode="json"))
                if transition is not None:
                    bound.info(
                        f"failure {transition}",
                        transition=transition,
                        failure_type=state.suspect.failure_type.value if state.suspect else None,
                        reason=state.suspect.reason if state.suspect else "",
                    )
                    return WatchResult(transition=transition, hysteresis=state, last=last)
                interval = cfg.suspect_interval_s if state.suspicious else cfg.interval_s
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        except asyncio.CancelledError:
            # Cancelled for a policy update or a stop: hand the hysteresis back so nothing is lost.
            bound.info("watch cancelled, returning state", evaluations=state.evaluations)
            return WatchResult(hysteresis=state, last=last, cancelled=True)
        return WatchResult(hysteresis=state, last=last)

    @staticmethod
    def _resume(given: Hysteresis) -> Hysteresis:
        """A retried attempt resumes from its last heartbeat, not from where the workflow started it."""
        details = activity.info().heartbeat_details
        if details:
            try:
                return Hysteresis.model_validate(details[0])
            except ValueError:
                log.warning("unreadable heartbeat details, starting from the workflow's state")
        return given

    async def observe(self, policy: ServicePolicy, dep: DependencySpec, inp: WatchInput) -> Observation:
        """One evaluation: health probe, stats window and burn rate, concurrently, then classified."""
        cfg = inp.config
        tier = policy.failed_tier(dep.name)
        probe_task = self._probe(dep, policy)
        stats_task = self.read_tier_stats(policy, tier.value, cfg.stats_window_s)
        burn_task = self._burn(policy, dep, cfg.burn_rate)
        probe, stats, (burn, rates) = await asyncio.gather(probe_task, stats_task, burn_task)
        others_answer = False
        if probe is not None and probe.error_kind in {"dns", "unreachable"}:
            others_answer = await self._others_answer(policy, dep)
        classification = classify_observation(
            probe, stats, policy.thresholds, min_samples=cfg.min_samples, others_answer=others_answer, burn=burn
        )
        if classification is not None:
            classification = adjust_severity(classification, policy, dep.name)
        return Observation(
            at=datetime.now(UTC),
            probe=probe,
            stats=stats,
            others_answer=others_answer,
            burn_rates=rates,
            classification=classification,
        )

    async def _probe(self, dep: DependencySpec, policy: ServicePolicy) -> ProbeResult | None:
        if not dep.health_url:
            return None  # watched through the gateway's stats only
        return await probe_dependency(self.http, dep, policy.thresholds)

    async def _others_answer(self, policy: ServicePolicy, failing: DependencySpec) -> bool:
        """Network partition or a wider outage? Ask the service's other dependencies."""
        others = [d for d in policy.dependencies if d.name != failing.name and d.health_url]
        if not others:
            return False
        probes = await asyncio.gather(*(probe_dependency(self.http, d, policy.thresholds) for d in others))
        return any(p.error_kind not in {"dns", "unreachable", "refused", "timeout"} for p in probes)

    # ------------------------------------------------------------------ the gateway's stats window

    async def read_tier_stats(self, policy: ServicePolicy, tier: str, window_s: int) -> TierStats | None:
        """One tier's window merged over every gateway replica; None when no replica answers (not our failure)."""
        admin = GatewayAdmin(self.http, self.gateway_token, timeout_s=2.0)

        async def one(base: str) -> TierStats | None:
            try:
                window = await admin.stats(base, policy.service, window_s)
            except (GatewayUnavailable, ApplicationError) as err:
                log.debug("stats window unavailable", gateway=base, error=str(err))
                return None
            return window.tiers.get(tier, TierStats())

        parts = [p for p in await asyncio.gather(*(one(g) for g in policy.gateways)) if p is not None]
        return TierStats.merge(parts) if parts else None

    # ------------------------------------------------------------------ SLO burn rate from Prometheus

    async def _burn(
        self, policy: ServicePolicy, dep: DependencySpec, cfg: BurnRateConfig | None
    ) -> tuple[Classification | None, dict[str, float]]:
        if cfg is None:
            return None, {}
        key = f"{policy.service}/{dep.name}"
        cached = self._burn_cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < cfg.every_s:
            return cached[1], cached[2]
        try:
            ratios = await self.error_ratios(cfg, policy.service, policy.failed_tier(dep.name).value)
        except (httpx.HTTPError, ValueError) as err:
            log.warning("prometheus query failed; burn rate skipped this round", error=str(err))
            return None, {}
        result = evaluate_burn(ratios, dep.sla_target, cfg.rules, dep.name)
        self._burn_cache[key] = (now, *result)
        return result

    async def error_ratios(self, cfg: BurnRateConfig, service: str, tier: str) -> dict[int, float | None]:
        """The error ratio over each window the rules need, from Prometheus's HTTP API (`/api/v1/query`)."""

        async def one(window_s: int) -> tuple[int, float | None]:
            query = error_ratio_query(cfg, service, FallbackTier(tier), window_s)
            response = await self.http.get(
                f"{cfg.prometheus_url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=5.0
            )
            response.raise_for_status()
            body = response.json()
            if body.get("status") != "success":
                raise ValueError(f"prometheus: {body.get('error', body)}")
            result = body["data"]["result"]
            if not result:
                return window_s, None
            value = float(result[0]["value"][1])
            return window_s, None if math.isnan(value) else value

        return dict(await asyncio.gather(*(one(w) for w in burn_windows(cfg.rules))))

    # ------------------------------------------------------------------ reporting

    @activity.defn(name=WatchActivity.REPORT)
    async def report_watchdog_failure(self, inp: ReportInput) -> ReportResult:
        """Signal-with-start the incident's recovery workflow (joins the open incident if there is one)."""
        if self.temporal is None:
            raise ApplicationError("this worker has no Temporal client for reports", non_retryable=True)
        reported = await report_failure(self.temporal, inp.report, inp.task_queue)
        log.info(
            "failure reported",
            incident_id=reported.incident_id,
            new_incident=reported.started,
            service=inp.report.service,
            dependency=inp.report.dependency,
            failure_type=inp.report.failure_type.value if inp.report.failure_type else None,
        )
        return ReportResult(incident_id=reported.incident_id, run_id=reported.run_id)
