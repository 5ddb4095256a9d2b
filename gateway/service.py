"""One service's live state in the gateway: its chain, pools, breakers, cache, stats and operator settings."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import structlog

from gateway.admission import Bulkhead
from gateway.breaker import Breaker, BreakerConfig, BreakerMode
from gateway.cache import ResponseCache
from gateway.client import Pool
from gateway.deployments import Deployment
from gateway.incidents import IncidentHistory
from gateway.stats import TierWindow
from governor.enums import CircuitState, DegradationLevel, FallbackTier, FeatureFlag
from governor.gateway_api import (
    BreakerSnapshot,
    CacheState,
    DegradationState,
    DeploymentState,
    ServiceState,
    StatsWindow,
    StatusComponent,
    StatusState,
    TierStats,
)
from governor.policy import ServicePolicy, TierSpec
from governor.policy_gateway import resolved_deployments

log = structlog.get_logger("gateway")

UPSTREAM_TIERS = frozenset({FallbackTier.TIER_0_PRIMARY, FallbackTier.TIER_1_SECONDARY, FallbackTier.TIER_3_DEGRADED})
STATUS_COMPONENT_VALUES = tuple(c.value for c in StatusComponent)
PRIMARY = FallbackTier.TIER_0_PRIMARY
DEFAULT_COOLDOWN_S = 10.0
"""How long a failed deployment rests before a probe when its tier sets no `cooldown_s`."""
# How a tier's 2xx bodies are checked (TierSpec.expect): by the endpoint's default, not at all, or the policy's keys.
EXPECT_AUTO, EXPECT_OFF, EXPECT_SET = 0, 1, 2


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Link:
    """One tier of the chain as the hot path sees it (precomputed, so a request does no lookups)."""

    __slots__ = (
        "breaker",
        "bulkhead",
        "cap_tokens",
        "deployments",
        "expect_keys",
        "expect_mode",
        "name",
        "name_b",
        "only",
        "spec",
        "static_body",
        "tier",
        "timeout_s",
        "window",
    )

    def __init__(self, service: ServiceRuntime, spec: TierSpec) -> None:
        self.spec = spec
        self.tier = spec.tier
        self.name = spec.tier.value
        self.name_b = self.name.encode()
        self.timeout_s = spec.timeout_ms / 1000
        self.cap_tokens = spec.max_tokens if spec.tier is FallbackTier.TIER_3_DEGRADED else None
        self.window = TierWindow()
        self.breaker: Breaker | None = None
        self.bulkhead = Bulkhead(spec.bulkhead) if spec.bulkhead is not None else None
        self.deployments: tuple[Deployment, ...] = ()
        """An upstream tier's deployments (gateway/deployments.py); one for a tier without `deployments`."""
        self.only: Deployment | None = None
        """The tier's only deployment when it lists none: it shares the tier's breaker and window (today's path)."""
        if spec.tier in UPSTREAM_TIERS:
            where = f"service {service.name!r}, {self.name}"
            self.breaker = Breaker(service.breaker_config, on_change=service.breaker_changed(self.name))
            specs = resolved_deployments(spec)
            if spec.deployments is None:
                self.only = Deployment(specs[0], self.name, where, self.breaker, self.window)
                self.deployments = (self.only,)
            else:
                rest = dataclasses.replace(service.breaker_config, open_s=spec.cooldown_s or DEFAULT_COOLDOWN_S)
                self.deployments = tuple(
                    Deployment(
                        d,
                        self.name,
                        f"{where}, deployment {d.name!r}",
                        Breaker(rest, on_change=service.breaker_changed(f"{self.name}[{d.name}]")),
                        TierWindow(),
                    )
                    for d in specs
                )
        expect = spec.expect
        self.expect_keys: tuple[str, ...]
        if expect is None:
            self.expect_mode, self.expect_keys = EXPECT_AUTO, ()
        elif not expect.require_json:
            self.expect_mode, self.expect_keys = EXPECT_OFF, ()
        else:
            self.expect_mode, self.expect_keys = EXPECT_SET, tuple(expect.json_keys)
        self.static_body: bytes | None = None
        if spec.tier is FallbackTier.TIER_4_STATIC:
            import json

            body = spec.body
            self.static_body = body.encode() if isinstance(body, str) else json.dumps(body).encode()

    @property
    def pool(self) -> Pool | None:
        """The only deployment's connection pool (None before its first request, or for a tier with several)."""
        return None if self.only is None else self.only.pool


class ServiceRuntime:
    def __init__(self, policy: ServicePolicy, breaker_config: BreakerConfig) -> None:
        self.policy = policy
        self.name = policy.service
        self.breaker_config = dataclasses.replace(breaker_config, max_retry_after_s=policy.breaker.max_retry_after_s)
        self.deadline_s = policy.deadline_ms / 1000
        self.links = [Link(self, spec) for spec in policy.chain]
        self.index = {link.tier: i for i, link in enumerate(self.links)}
        self.error_window = TierWindow()  # the explicit 503s, reported as tier_5_error
        cache_spec = policy.tier_spec(FallbackTier.TIER_2_CACHE)
        self.cache = ResponseCache(cache_spec.ttl_s, cache_spec.max_entries) if cache_spec else None
        self.pinned_tier: FallbackTier | None = None
        self.primary_weight = 100
        self.level = DegradationLevel.NORMAL
        self.flag_overrides: dict[str, FeatureFlag] = {}
        self.flags = policy.degradation.flags_for(self.level)
        self.component = StatusComponent.OPERATIONAL
        self.message = ""
        self.status_updated_at = utcnow()
        self.flags_updated_at = self.status_updated_at
        self.incident: str | None = None
        self.audit: deque[dict[str, Any]] = deque(maxlen=200)
        self.history = IncidentHistory(self.name)
        """What the status page tells of this service's recent incidents (gateway/incidents.py)."""

    # --- routing

    def plan(self) -> tuple[int, str | None]:
        """Where this request enters the chain (index; len(links) = straight to the explicit error) and why."""
        pinned, weight = self.pinned_tier, self.primary_weight
        if weight >= 100 and (pinned is None or pinned is PRIMARY):
            return 0, None
        if weight > 0 and random.random() * 100 < weight:
            return 0, None
        if pinned is None or pinned is PRIMARY:
            return 1, f"primary_weight={weight}"
        return self.index.get(pinned, len(self.links)), f"pinned to {pinned.value}"

    def link(self, tier: FallbackTier) -> Link | None:
        i = self.index.get(tier)
        return None if i is None else self.links[i]

    def breaker_changed(self, tier: str):  # type: ignore[no-untyped-def]
        def changed(old: CircuitState, new: CircuitState, why: str) -> None:
            log.warning("breaker_changed", service=self.name, tier=tier, old=old.value, new=new.value, why=why)

        return changed

    # --- operator changes (each idempotent; returns whether anything changed)

    def record_change(self, what: str, change: dict[str, Any], incident: str | None, changed: bool) -> None:
        if incident:
            self.incident = incident
        at = utcnow()
        entry = {"at": at, "what": what, "change": change, "incident": incident, "changed": changed}
        self.audit.append(entry)
        if changed and what == "status":
            self.history.status_changed(self.component, self.message, incident, at)
        elif changed and what == "route":
            self.history.route_changed(self.pinned_tier, self.primary_weight, self.component, at)
        log.info("admin_change", service=self.name, **entry)

    def set_route(self, fields: dict[str, Any]) -> bool:
        before = (self.pinned_tier, self.primary_weight)
        if "pinned_tier" in fields:
            self.pinned_tier = fields["pinned_tier"]
        if "primary_weight" in fields:
            self.primary_weight = fields["primary_weight"]
        return before != (self.pinned_tier, self.primary_weight)

    def set_breaker(self, tier: FallbackTier, mode: BreakerMode) -> bool:
        link = self.link(tier)
        assert link is not None and link.breaker is not None
        before = link.breaker.mode
        link.breaker.set_mode(mode)
        return before != mode

    def set_degradation(self, level: DegradationLevel, overrides: dict[str, FeatureFlag]) -> bool:
        flags = self.policy.degradation.flags_for(level)
        flags.update(overrides)
        changed = (level, flags) != (self.level, self.flags)
        self.level, self.flag_overrides, self.flags = level, overrides, flags
        if changed:
            self.flags_updated_at = utcnow()
        return changed

    def set_status(self, component: StatusComponent, message: str) -> bool:
        changed = (component, message) != (self.component, self.message)
        self.component, self.message = component, message
        if changed:
            self.status_updated_at = utcnow()
        return changed

    # --- views

    def state(self) -> ServiceState:
        return ServiceState(
            service=self.name,
            pinned_tier=self.pinned_tier,
            primary_weight=self.primary_weight,
            chain=[link.name for link in self.links],
            breakers={
                link.name: BreakerSnapshot.model_validate(link.breaker.snapshot())
                for link in self.links
                if link.breaker is not None
            },
            degradation=DegradationState(
                level=self.level,
                flags=dict(self.flags),
                overrides=dict(self.flag_overrides),
                message=self.level.user_message,
            ),
            status=StatusState(component=self.component, message=self.message, updated_at=self.status_updated_at),
            incident=self.incident,
            cache=None
            if self.cache is None
            else CacheState(entries=len(self.cache), hits=self.cache.hits, misses=self.cache.misses),
            deployments={
                link.name: [DeploymentState.model_validate(d.state()) for d in link.deployments]
                for link in self.links
                if link.deployments and link.only is None
            },
            credentials={link.name: link.only.credential for link in self.links if link.only is not None},
        )

    def stats(self, window_s: int) -> StatsWindow:
        tiers = {link.name: TierStats.model_validate(link.window.window(window_s)) for link in self.links}
        tiers[FallbackTier.TIER_5_ERROR.value] = TierStats.model_validate(self.error_window.window(window_s))
        deployments = {
            link.name: {str(d.name): TierStats.model_validate(d.window.window(window_s)) for d in link.deployments}
            for link in self.links
            if link.deployments and link.only is None
        }
        return StatsWindow(service=self.name, window_s=window_s, tiers=tiers, deployments=deployments)

    def retry_after_s(self, hinted: list[float]) -> int:
        """When a client should try again: the soonest upstream hint or breaker half-open, else 5 s."""
        candidates = [h for h in hinted if h > 0]
        for link in self.links:
            if link.breaker is not None and (r := link.breaker.retry_in_s()) is not None:
                candidates.append(r)
            if link.only is None:  # a tier with deployments is back when its first deployment's cooldown ends
                rests = [r for d in link.deployments if (r := d.breaker.retry_in_s()) is not None]
                if rests and len(rests) == len(link.deployments):
                    candidates.append(min(rests))
        soonest = min(candidates) if candidates else 5.0
        return max(1, min(300, int(soonest + 0.999)))

    async def close(self) -> None:
        for link in self.links:
            for dep in link.deployments:
                if dep.pool is not None:
                    await dep.pool.close()


def monotonic() -> float:
    return time.monotonic()
