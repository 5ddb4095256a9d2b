"""The tiers' health now, for the recovery workflow's tier choice: every dependency probed, every tier's window judged.

A mixin of `RecoveryActivities` (which gives it the HTTP client and the gateway admin client).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway_admin import GatewayAdmin
from activities.probes import probe_dependency
from governor.actions import Activity, AssessTiersInput
from governor.models import ProbeResult, StatsWindow, TierStats
from governor.tier_health import TierAssessment, judge_tiers


async def read_merged_stats(gateway: GatewayAdmin, gateways: list[str], service: str, window_s: int) -> StatsWindow:
    """Every replica's stats window for the service, merged per tier (latencies: the worst replica's)."""
    if not gateways:
        raise ApplicationError(
            f"policy for {service!r} lists no gateways to read stats from", type="PolicyError", non_retryable=True
        )
    results = await asyncio.gather(
        *(gateway.stats(base, service, window_s) for base in gateways), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:  # a non-retryable one (bad token, unknown service) first, else the first transient one
        raise next((e for e in errors if isinstance(e, ApplicationError) and e.non_retryable), errors[0])
    windows = [r for r in results if not isinstance(r, BaseException)]
    tiers = sorted({tier for w in windows for tier in w.tiers})
    return StatsWindow(
        service=service,
        window_s=max(w.window_s for w in windows),
        tiers={tier: TierStats.merge([w.tiers[tier] for w in windows if tier in w.tiers]) for tier in tiers},
    )


class TierActivities:
    client: httpx.AsyncClient
    gateway: GatewayAdmin

    @activity.defn(name=Activity.ASSESS_TIERS)
    async def assess_tiers(self, request: AssessTiersInput) -> TierAssessment:
        """Probe every dependency with a health URL once and read the gateway's window of every tier; judge each tier.

        Unreadable stats are not fatal: the probes judge alone (and the log says so)."""
        policy = request.policy
        log = structlog.get_logger("governor.activities").bind(service=policy.service, activity="assess_tiers")
        deps = [
            d.model_copy(update={"timeout_ms": min(d.timeout_ms, request.probe_timeout_ms)})
            for d in policy.dependencies
            if d.health_url
        ]
        probes_task = asyncio.gather(*(probe_dependency(self.client, d, policy.thresholds) for d in deps))
        stats_task = read_merged_stats(self.gateway, policy.gateways, policy.service, request.window_s)
        probes, window = await asyncio.gather(probes_task, stats_task, return_exceptions=True)
        if isinstance(probes, BaseException):
            raise probes
        if isinstance(window, ApplicationError) and window.non_retryable:
            raise window
        seen: StatsWindow | None = None
        if isinstance(window, BaseException):
            log.warning("gateway stats unreadable; judging the tiers by their probes alone", error=str(window))
        else:
            seen = window
        assessment = judge_tiers(policy, list[ProbeResult](probes), seen)
        assessment.checked_at = datetime.now(UTC)
        log.info("tiers assessed", down=assessment.down())
        return assessment
