"""The blast radius at isolation: every loaded policy scanned for services behind the failed dependency, and each
one's gateway stats read (governor/blast_radius.py decides).

A mixin of `RecoveryActivities` (which gives it the settings and the gateway admin client). It never fails the
incident: a policy folder or a gateway that cannot be read makes the assessment partial, and says so.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from temporalio import activity

from activities.gateway_admin import GatewayAdmin
from activities.tiers import read_merged_stats
from governor.actions import Activity, BlastRadiusInput
from governor.blast_radius import BlastRadius, assess, find_dependents
from governor.models import StatsWindow
from governor.policy import PolicyError, ServicePolicy, load_policy_dir
from governor.settings import WorkerSettings


class BlastRadiusActivities:
    settings: WorkerSettings
    gateway: GatewayAdmin

    @activity.defn(name=Activity.ASSESS_BLAST_RADIUS)
    async def assess_blast_radius(self, request: BlastRadiusInput) -> BlastRadius:
        """Who else the failed dependency hits, and the share of their traffic, from the policy folder and the stats."""
        service = request.policy.service
        log = structlog.get_logger("governor.activities").bind(
            service=service, dependency=request.dependency, activity="assess_blast_radius"
        )
        errors: list[str] = []
        try:
            policies: dict[str, ServicePolicy] = load_policy_dir(self.settings.policy_dir)
        except PolicyError as err:
            errors.append(f"policy folder unreadable, only {service} assessed: {err}")
            log.warning("policy folder unreadable; assessing the incident's own service only", error=str(err))
            policies = {}
        policies[service] = request.policy  # the incident's snapshot, not the file as it is now
        affected = find_dependents(policies, service, request.dependency)
        results = await asyncio.gather(
            *(
                read_merged_stats(self.gateway, policies[a.service].gateways, a.service, request.window_s)
                for a in affected
            ),
            return_exceptions=True,
        )
        windows: dict[str, StatsWindow | str] = {
            a.service: r if isinstance(r, StatsWindow) else (str(r) or type(r).__name__)
            for a, r in zip(affected, results, strict=True)
        }
        radius = assess(policies, service, request.dependency, windows, at=datetime.now(UTC), errors=errors)
        log.info("blast radius assessed", services=[s.service for s in radius.services], errors=len(radius.errors))
        return radius
