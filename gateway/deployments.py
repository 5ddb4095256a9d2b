"""A tier's deployments (keys, regions, endpoints) and the order one request tries them in.

Each deployment has its own connection pool, credential, breaker (opened by the same rules as a tier's, resting
`cooldown_s` before a probe), stats window and optional bulkhead. A request tries the deployments whose breaker
admits it, drawn at random by weight without replacement, standbys (weight 0) last; the tier's own breaker and window
then see one outcome per request (gateway/chain.py), so the tier is down only when every deployment failed it.
A tier without `deployments` has exactly one, sharing the tier's breaker and window: the hot path is today's.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.admission import Bulkhead
from gateway.breaker import Breaker
from gateway.client import Pool
from gateway.credentials import credential_headers, credential_source
from gateway.stats import TierWindow
from governor.policy_gateway import Deployment as DeploymentSpec

__all__ = ["Deployment", "azure_path", "try_order"]


class Deployment:
    """One deployment as the hot path sees it (everything precomputed)."""

    __slots__ = (
        "anthropic",
        "auth",
        "azure_prefix",
        "azure_query",
        "breaker",
        "bulkhead",
        "credential",
        "label",
        "model",
        "name",
        "pool",
        "rewrites",
        "spec",
        "weight",
        "window",
    )

    def __init__(self, spec: DeploymentSpec, tier: str, where: str, breaker: Breaker, window: TierWindow) -> None:
        self.spec = spec
        self.name = spec.name
        """None for a tier's only deployment (a tier without `deployments`): reasons then name the tier alone."""
        self.label = tier if spec.name is None else f"{tier}[{spec.name}]"
        if urlsplit(spec.upstream or "").scheme not in ("http", "https"):
            raise ValueError(f"{where}: upstream {spec.upstream!r} must be an http(s):// URL")
        self.breaker = breaker
        self.window = window
        self.bulkhead = Bulkhead(spec.bulkhead) if spec.bulkhead is not None else None
        self.anthropic = spec.provider == "anthropic"
        self.model = spec.model
        azure = spec.azure
        self.azure_prefix = None if azure is None else f"/openai/deployments/{quote(azure.deployment, safe='')}"
        self.azure_query = "" if azure is None else f"api-version={quote(azure.api_version, safe='')}"
        self.rewrites = self.anthropic or self.model is not None or azure is not None
        """Whether a request needs any change for this deployment (without: the body is not even parsed)."""
        self.auth: list[tuple[bytes, bytes]] = credential_headers(spec, where)
        """Its own credential headers (gateway/credentials.py); the client's are never forwarded."""
        self.credential = credential_source(spec)
        self.weight = float(spec.weight)
        self.pool: Pool | None = None

    def upstream_pool(self) -> Pool:
        if self.pool is None:
            assert self.spec.upstream is not None
            self.pool = Pool(self.spec.upstream)
        return self.pool

    def resting(self) -> bool:
        """Whether its breaker is open (forced, or cooling down): a request does not try it."""
        breaker = self.breaker
        if breaker.mode == "open":
            return True
        wait = breaker.retry_in_s()
        return wait is not None and wait > 0

    def state(self) -> dict[str, Any]:
        """What the admin state shows of it: never the key, only where it comes from."""
        spec = self.spec
        return {
            "name": self.name,
            "region": spec.region,
            "upstream": spec.upstream,
            "provider": "azure" if spec.azure is not None else spec.provider,
            "model": spec.model,
            "azure_deployment": None if spec.azure is None else spec.azure.deployment,
            "weight": spec.weight,
            "credential": self.credential,
            "breaker": self.breaker.snapshot(),
            "in_flight": self.window.in_flight,
            "bulkhead_active": None if self.bulkhead is None else self.bulkhead.active,
        }


def try_order(deployments: tuple[Deployment, ...]) -> list[Deployment]:
    """The deployments one request tries, in order: those not resting, drawn at random by weight without
    replacement, then the standbys (weight 0). Empty when every deployment rests."""
    weighted: list[Deployment] = []
    standby: list[Deployment] = []
    total = 0.0
    for dep in deployments:
        if dep.resting():
            continue
        if dep.weight > 0:
            weighted.append(dep)
            total += dep.weight
        else:
            standby.append(dep)
    order: list[Deployment] = []
    while len(weighted) > 1:
        point = random.random() * total
        chosen = len(weighted) - 1  # float rounding: the last one
        for i, dep in enumerate(weighted):
            point -= dep.weight
            if point < 0:
                chosen = i
                break
        dep = weighted.pop(chosen)
        total -= dep.weight
        order.append(dep)
    order.extend(weighted)
    order.extend(standby)
    return order


def azure_path(dep: Deployment, path: str) -> str:
    """The client's path (and query) on Azure OpenAI: `/v1/chat/completions?x=1` ->
    `/openai/deployments/{deployment}/chat/completions?x=1&api-version=...` (a client's own api-version dropped)."""
    bare, _, query = path.partition("?")
    if bare.startswith("/v1/") or bare == "/v1":
        bare = bare[3:]
    kept = [p for p in query.split("&") if p and not p.startswith("api-version=")] if query else []
    kept.append(dep.azure_query)
    return f"{dep.azure_prefix}{bare}?{'&'.join(kept)}"
