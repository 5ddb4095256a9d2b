"""The gateway's admin API contract, written once: what `/admin` accepts and answers (DESIGN.md, "Gateway admin API").

The gateway validates request bodies with these models and builds its answers from them; the activities send and read
them. The data plane does not touch them (it stays as fast as it is).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_serializer,
)

from governor.enums import DegradationLevel, FallbackTier, FeatureFlag
from governor.models import StatsWindow, TierStats

__all__ = [
    "AdminError",
    "AuditEntry",
    "AuditLog",
    "BreakerChange",
    "BreakerMode",
    "BreakerModeChange",
    "BreakerSnapshot",
    "CacheState",
    "DegradationChange",
    "DegradationState",
    "DeploymentState",
    "RouteChange",
    "ServiceList",
    "ServiceState",
    "StatsWindow",
    "StatusChange",
    "StatusComponent",
    "StatusState",
    "TierStats",
    "first_error",
    "unapplied",
]


class StatusComponent(StrEnum):
    """Statuspage's component statuses (`/status.json`, PUT .../status)."""

    OPERATIONAL = "operational"
    DEGRADED_PERFORMANCE = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"
    UNDER_MAINTENANCE = "under_maintenance"


BreakerMode = Literal["open", "closed", "auto"]
"""`open`/`closed` force the breaker; `auto` hands it back to its rules (starting closed, clean counters)."""
BREAKER_MODES: tuple[BreakerMode, ...] = get_args(BreakerMode)

Weight = Annotated[StrictInt | StrictFloat, Field(ge=0, le=100)]


class _Body(BaseModel):
    """A request body: unknown fields are refused, so a typo never passes as "left as it is"."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class RouteChange(_Body):
    """PUT /admin/services/{service}/route; an unset field is left as it is, `pinned_tier: null` clears the pin.

    A pin without a weight means the pin: all traffic to a pinned fallback tier, all to the primary otherwise."""

    pinned_tier: FallbackTier | None = None
    primary_weight: Weight | None = None

    @model_serializer(mode="wrap")
    def _only_set_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Serialize only the fields that were set, so "leave as it is" survives the data converter."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k in self.model_fields_set}


class BreakerModeChange(_Body):
    """PUT /admin/services/{service}/breakers/{tier}."""

    mode: BreakerMode


class BreakerChange(BaseModel):
    """The workflow's side of a breaker change: which tier, which mode."""

    tier: FallbackTier
    mode: BreakerMode

    def body(self) -> BreakerModeChange:
        return BreakerModeChange(mode=self.mode)


class DegradationChange(_Body):
    """PUT /admin/services/{service}/degradation: the level, and flag overrides on top of the level's flags."""

    level: DegradationLevel
    flags: dict[str, FeatureFlag] = Field(default_factory=dict)


class StatusChange(_Body):
    """PUT /admin/services/{service}/status: the status page component and its message."""

    component: StatusComponent
    message: str = Field(default="", max_length=2000)


# --------------------------------------------------------------------------- answers


class BreakerSnapshot(BaseModel):
    state: str
    mode: BreakerMode
    failures: int = 0
    window_calls: int = 0
    window_failure_rate: float = 0.0
    retry_in_s: float | None = None
    open_cause: str | None = None
    """What opened the breaker (the failure cause of most of its recent failures), while it is open."""


class DegradationState(BaseModel):
    level: DegradationLevel
    flags: dict[str, FeatureFlag] = Field(default_factory=dict)
    overrides: dict[str, FeatureFlag] = Field(default_factory=dict)
    message: str = ""


class StatusState(BaseModel):
    component: StatusComponent
    message: str = ""
    updated_at: str = ""


class CacheState(BaseModel):
    entries: int = 0
    hits: int = 0
    misses: int = 0


class DeploymentState(BaseModel):
    """One of a tier's `deployments` in the admin state: where it goes, its weight and breaker, and where its key
    comes from (`env:NAME` / `file:PATH` / null), never the key."""

    name: str | None = None
    region: str | None = None
    upstream: str | None = None
    provider: str = "openai"
    model: str | None = None
    azure_deployment: str | None = None
    weight: float = 1
    credential: str | None = None
    breaker: BreakerSnapshot
    in_flight: int = 0
    bulkhead_active: int | None = None


class ServiceState(BaseModel):
    """GET /admin/services/{service} (and the answer to every PUT): the service's route and operator settings."""

    service: str
    pinned_tier: FallbackTier | None = None
    primary_weight: int | float = 100
    chain: list[str] = Field(default_factory=list)
    breakers: dict[str, BreakerSnapshot] = Field(default_factory=dict)
    degradation: DegradationState
    status: StatusState
    incident: str | None = None
    cache: CacheState | None = None
    deployments: dict[str, list[DeploymentState]] = Field(default_factory=dict)
    """Tiers with `deployments` (policy): each deployment's state, by tier."""
    credentials: dict[str, str | None] = Field(default_factory=dict)
    """Upstream tiers without `deployments`: where each tier's key comes from (`env:NAME`, `file:PATH`, null)."""


class ServiceList(BaseModel):
    """GET /admin/services."""

    services: list[str]


class AuditEntry(BaseModel):
    at: str
    what: str
    change: dict[str, Any]
    incident: str | None = None
    changed: bool


class AuditLog(BaseModel):
    """GET /admin/services/{service}/audit: the last operator changes, oldest first."""

    service: str
    changes: list[AuditEntry] = Field(default_factory=list)


class AdminError(BaseModel):
    """The `error` object of every refused admin call."""

    type: str
    message: str
    field: str | None = None


# --------------------------------------------------------------------------- helpers


_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "none", "list", "dict"})


def first_error(err: ValidationError) -> tuple[str, str]:
    """The field a refused body got wrong (dotted path; `body` for the body itself) and a message naming it."""
    e = err.errors(include_url=False)[0]
    # Union members show up in the location as type tags ("int", "function-after[...]"): not fields.
    loc = [str(p) for p in e["loc"] if not (p in _TYPE_TAGS or (isinstance(p, str) and "[" in p))]
    field = ".".join(loc) or "body"
    kind = e["type"]
    if kind == "extra_forbidden":
        return field, f"unknown field {field!r}"
    if kind == "missing":
        return field, f"{field} is required"
    value = e.get("input")
    shown = "" if field == "body" else f", got {value!r}"
    return field, f"{field}: {e['msg']}{shown}"


def unapplied(
    state: ServiceState,
    *,
    route: RouteChange | None = None,
    breaker: BreakerChange | None = None,
    degradation: DegradationChange | None = None,
    status: StatusChange | None = None,
) -> list[str]:
    """What of a change a replica's state read back does not show (empty when all of it took)."""
    problems: list[str] = []
    if route is not None:
        if "pinned_tier" in route.model_fields_set and state.pinned_tier != route.pinned_tier:
            problems.append(f"pinned_tier is {_v(state.pinned_tier)!r}, expected {_v(route.pinned_tier)!r}")
        if "primary_weight" in route.model_fields_set and state.primary_weight != route.primary_weight:
            problems.append(f"primary_weight is {state.primary_weight!r}, expected {route.primary_weight!r}")
    if breaker is not None:
        tier, mode = breaker.tier.value, breaker.mode
        snap = state.breakers.get(tier)
        if snap is None:
            problems.append(f"no breaker for {tier} in the state")
        else:
            if snap.mode != mode:
                problems.append(f"breaker {tier} mode is {snap.mode!r}, expected {mode!r}")
            if mode in {"open", "closed"} and snap.state != mode:
                problems.append(f"breaker {tier} is {snap.state!r}, expected {mode!r}")
    if degradation is not None:
        if state.degradation.level != degradation.level:
            problems.append(
                f"degradation level is {state.degradation.level.value!r}, expected {degradation.level.value!r}"
            )
        for feature, flag in degradation.flags.items():
            have = state.degradation.flags.get(feature)
            if have != flag:
                problems.append(f"flag {feature} is {_v(have)!r}, expected {flag.value!r}")
    if status is not None:
        if state.status.component != status.component:
            problems.append(
                f"status component is {state.status.component.value!r}, expected {status.component.value!r}"
            )
        if state.status.message != status.message:
            problems.append(f"status message is {state.status.message!r}, expected {status.message!r}")
    return problems


def _v(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


class ProbeCall(_Body):
    """POST /admin/services/{service}/probe: send `count` synthetic requests to one upstream tier, as the chain
    would (provider translation, the tier's key and model, its body expectation), outside the stats and breakers."""

    tier: FallbackTier
    count: int = Field(default=10, strict=True, ge=1, le=200)
    method: Literal["POST", "GET"] = "POST"
    path: str = Field(default="/v1/chat/completions", pattern=r"^/[A-Za-z0-9/_.~-]{0,200}$")
    body: dict[str, Any] | None = None


class ProbeOutcome(BaseModel):
    status: int | None = None
    ok: bool
    latency_ms: float
    reason: str = ""
    """Why a probe failed: `http_500`, `bad_body: no choices`, `connect_error`, `timeout`, ..."""
    deployment: str | None = None
    """Which of the tier's `deployments` it went to (None: the tier has none listed)."""


class ProbeReport(BaseModel):
    service: str
    tier: FallbackTier
    outcomes: list[ProbeOutcome]

    @property
    def failed(self) -> list[ProbeOutcome]:
        return [o for o in self.outcomes if not o.ok]
