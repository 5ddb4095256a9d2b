"""The per-service policy file: one YAML file drives the gateway, the watchdogs and the recovery workflow.

Defaults are the seed's (FALLBACK.GOVERNANCE.OS.EXE). Errors name the file, the field path and the bad value.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from governor.enums import (
    FallbackTier,
    NotificationAudience,
)
from governor.policy_degradation import SEED_FEATURES, Degradation, DegradationRule  # noqa: F401
from governor.policy_gateway import AzureTarget, Bulkhead, Deployment, ProbeRequest, TierRetry, check_deployments
from governor.policy_types import (  # noqa: F401 - re-exported: the policy's value types
    HttpUrl,
    Name,
    NonNegFloat,
    NonNegInt,
    PolicyError,
    PosFloat,
    PosInt,
    Rate,
    SlackUserId,
    Text,
    _http_url,
    _non_blank,
    _Strict,
    _text,
    _url,
)


class DependencySpec(_Strict):
    """A dependency the service relies on (a model, a tool, a database)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    type: Name = "model"
    tier: FallbackTier | None = None
    """The chain tier this dependency backs; its breaker opens when it fails."""
    health_url: HttpUrl | None = None
    health_expect_json: dict[str, Any] | None = None
    """Keys the health body must carry with these values (a schema check for data_corruption)."""
    timeout_ms: int = Field(default=5000, strict=True, gt=0, le=60_000)
    retries: int = Field(default=3, strict=True, ge=0, le=10)
    """The seed's retry count for calls to this dependency (`should_retry`); the gateway's same-tier retries are the
    tier's `retry.attempts` (governor/policy_gateway.py), not this."""
    sla_target: float = Field(default=99.9, strict=True, gt=0, le=100)

    def effective_timeout_ms(self, attempt: int) -> int:
        """The seed's exponential backoff of the timeout, capped at 30 s."""
        return min(self.timeout_ms * (2**attempt), 30_000)

    def should_retry(self, attempt: int) -> bool:
        return attempt < self.retries


# --- gateway answers and breakers (helper gw: body expectations, Retry-After bound)


class BodyExpectation(_Strict):
    """What a 2xx answer of an upstream tier must be to count as a success; anything else is `bad_body` and the
    request falls through to the next tier. Unset on a tier: chat completion paths (`.../chat/completions`) expect
    a JSON object with `choices`, other paths only a valid JSON body when the answer says it is JSON."""

    json_keys: list[str] = Field(default_factory=list)
    """Top-level keys the JSON object must carry (e.g. `[choices]`)."""
    require_json: bool = True
    """False: no body check at all for this tier (an endpoint that answers something other than JSON)."""


class BreakerPolicy(_Strict):
    """The service's upstream breakers, beyond the gateway-wide thresholds."""

    max_retry_after_s: float = Field(default=300.0, ge=0, le=3600)
    """A breaker opened by 429s stays open at least as long as their Retry-After says, at most this long."""


class TierSpec(_Strict):
    """One link of the fallback chain."""

    tier: FallbackTier
    upstream: HttpUrl | None = None
    """Base URL the gateway forwards to (primary, secondary, degraded)."""
    timeout_ms: int = Field(default=10_000, strict=True, gt=0, le=300_000)
    ttl_s: PosInt = 300
    """Cache tier: how long a successful answer may be reused."""
    max_entries: PosInt = 10_000
    max_tokens: PosInt | None = None
    """Degraded tier: cap on `max_tokens` in forwarded requests."""
    status: int = Field(default=200, strict=True, ge=200, le=599)
    body: Any = None
    """Static tier: the canned answer."""
    content_type: Name = "application/json"
    expect: BodyExpectation | None = None
    """Upstream tiers: what a 2xx body must be (see BodyExpectation); unset: the endpoint's default."""
    provider: Literal["openai", "anthropic", "azure"] = "openai"
    """Upstream tiers: the API the upstream speaks. Clients always speak OpenAI chat completions to the gateway;
    `anthropic` tiers get the request, answer, errors and streams translated to and from the Messages API; `azure`
    (or `openai` with an `azure` block) is OpenAI's format on Azure's deployment paths and `api-key` header."""
    azure: AzureTarget | None = None
    """Azure OpenAI tiers: the deployment and api-version (governor/policy_gateway.py)."""
    model: Name | None = None
    """Upstream tiers: the model name sent upstream, overriding the client's `model` (unset: the client's)."""
    api_key_env: Name | None = None
    """Upstream tiers: the environment variable holding this tier's API key (never the key itself)."""
    api_key_file: str | None = None
    """Upstream tiers: a file holding this tier's API key (`~` and `$VARS` expanded; relative paths: from the
    gateway's working directory). Read when the gateway loads the policy; surrounding whitespace is stripped."""
    bulkhead: Bulkhead | None = None
    """Upstream tiers: admission control (governor/policy_gateway.py); unset: no limit."""
    retry: TierRetry = Field(default_factory=TierRetry)
    """Upstream tiers: same-tier retries of transient failures (governor/policy_gateway.py); default none."""
    deployments: list[Deployment] | None = None
    """Upstream tiers: several deployments (keys, regions, endpoints) sharing the tier's traffic by weight, each
    with its own breaker (`cooldown_s`); the tier falls through only when all of them fail. Unset: one deployment,
    the tier's own fields (governor/policy_gateway.py)."""
    cooldown_s: float | None = Field(default=None, strict=True, gt=0, le=3600)
    """Tiers with `deployments`: how long a deployment whose breaker opened rests before a probe request (unset:
    10 s)."""
    context_window: PosInt | None = None
    """Upstream tiers: the model's context window in tokens. A context-window-exceeded answer (400) of a tier that
    sets it falls through to the next upstream tier with a larger one; unset: such an answer passes through."""

    @model_validator(mode="after")
    def _upstream_where_needed(self) -> TierSpec:
        needs_upstream = self.tier in {
            FallbackTier.TIER_0_PRIMARY,
            FallbackTier.TIER_1_SECONDARY,
            FallbackTier.TIER_3_DEGRADED,
        }
        if needs_upstream and not self.upstream and self.deployments is None:
            raise ValueError(f"tier {self.tier.value} needs an upstream URL")
        if self.bulkhead is not None and not needs_upstream:
            raise ValueError(f"tier {self.tier.value} has no upstream: a bulkhead applies to upstream tiers only")
        if self.tier is FallbackTier.TIER_4_STATIC and self.body is None:
            raise ValueError("tier tier_4_static needs a body")
        if self.api_key_env and self.api_key_file:
            raise ValueError(f"tier {self.tier.value}: set api_key_env or api_key_file, not both")
        if not needs_upstream:
            for name in ("model", "api_key_env", "api_key_file", "deployments", "azure"):
                if getattr(self, name) is not None:
                    raise ValueError(f"tier {self.tier.value}: {name} is for upstream tiers only")
            if self.provider != "openai":
                raise ValueError(f"tier {self.tier.value}: provider is for upstream tiers only")
            return self
        check_deployments(self)
        return self


class Thresholds(_Strict):
    """The seed's FailureDetectorEngine.THRESHOLDS, plus the share of 429s that means rate limiting."""

    latency_warning_ms: PosFloat = 500
    latency_critical_ms: PosFloat = 2000
    error_rate_warning: Rate = 0.01
    error_rate_critical: Rate = 0.05
    queue_depth_warning: PosInt = 100
    queue_depth_critical: PosInt = 500
    rate_limited_share: Rate = 0.2

    @model_validator(mode="after")
    def _warning_below_critical(self) -> Thresholds:
        for what in ("latency", "error_rate", "queue_depth"):
            unit = "_ms" if what == "latency" else ""
            warning, critical = getattr(self, f"{what}_warning{unit}"), getattr(self, f"{what}_critical{unit}")
            if warning > critical:
                raise ValueError(f"{what}_warning{unit} ({warning}) must not exceed {what}_critical{unit} ({critical})")
        return self


class RecoveryChecks(_Strict):
    """The seed's RECOVERY_CHECKS; throughput scales down to the service's normal traffic."""

    health_passes: PosInt = 3
    p99_ms: PosFloat = 500
    error_rate: Rate = 0.01
    min_rps: PosFloat = 100
    normal_rps: PosFloat | None = None
    """The service's usual traffic; when lower than min_rps it becomes the throughput bar."""
    min_samples: PosInt = 20
    """Requests needed before a check may pass or fail; below that we wait for more data."""
    probe_interval_s: PosFloat = 1.0
    stable_s: NonNegFloat = 30.0
    """A recovering tier counts as healthy only once every check of it has passed for this long (flapping guard)."""
    probe_request: ProbeRequest | None = Field(default_factory=ProbeRequest)
    """Validation also sends `min_samples` of these through the gateway to the recovering tier's upstream (null:
    health probes only); see governor/policy_gateway.py."""
    max_flaps: PosInt = 3
    """After this many flaps (the tier being restored failing again once it had recovered) the incident stops
    retrying, shows `flapping` and waits for a human to declare the dependency fixed."""
    reassess_s: PosFloat = 10.0
    """While the failed tier is down, how often the other tiers are re-checked (move down off a tier that failed,
    up to a better one that recovered)."""

    @property
    def throughput_bar(self) -> float:
        return min(self.min_rps, self.normal_rps) if self.normal_rps is not None else self.min_rps


class RampStep(_Strict):
    """One step of the restoration ramp: the primary's share and how long it soaks."""

    percent: int = Field(strict=True, ge=1, le=100)
    soak_s: NonNegFloat


def _seed_ramp() -> list[RampStep]:
    return [
        RampStep(percent=10, soak_s=300),
        RampStep(percent=25, soak_s=300),
        RampStep(percent=50, soak_s=600),
        RampStep(percent=100, soak_s=0),
    ]


class Ramp(_Strict):
    steps: list[RampStep] = Field(default_factory=_seed_ramp)
    sample_interval_s: PosFloat = 10
    stats_window_s: PosInt = 30

    @field_validator("steps")
    @classmethod
    def _ascending_to_100(cls, steps: list[RampStep]) -> list[RampStep]:
        if not steps:
            raise ValueError("the ramp needs at least one step")
        percents = [s.percent for s in steps]
        if percents != sorted(set(percents)):
            raise ValueError(f"ramp percents must rise strictly, got {percents}")
        if percents[-1] != 100:
            raise ValueError(f"the last ramp step must be 100, got {percents[-1]}")
        return steps


class Rollback(_Strict):
    error_rate: Rate = 0.05
    """Roll back when the primary's error rate during a step exceeds this (the seed's should_rollback)."""
    p99_ms: PosFloat | None = None
    max_attempts: PosInt = 3
    """Ramp attempts before the workflow stops and waits for a human."""


class Approvals(_Strict):
    """Approval gates and who may open them.

    Gate names: `enter:<tier>` (falling back to that tier), `exit:<tier>` (ramping back from it),
    `ramp:<percent>` (starting that ramp step), `promote` (skip the remaining steps).
    """

    approvers: list[Name] = Field(default_factory=lambda: ["oncall"], min_length=1)
    gates: list[Text] = Field(
        default_factory=lambda: [f"exit:{t.value}" for t in FallbackTier if t.requires_approval_to_exit]
    )
    gate_approvers: dict[Text, list[Name]] = Field(default_factory=dict)
    """Per-gate approver lists; gates not named here use `approvers`."""
    timeout_s: PosFloat = 900
    """A gate waiting longer than this escalates (and keeps waiting)."""
    four_eyes: StrictBool = False
    slack_users: dict[SlackUserId, Name] = Field(default_factory=dict)
    """Slack user id (`U…` or `W…`, from the person's Slack profile) -> the approver name they decide as when they
    press Approve / Reject in Slack. A Slack user not listed here is refused; each name must be an approver."""

    @field_validator("gates")
    @classmethod
    def _known_gates(cls, gates: list[str]) -> list[str]:
        for gate in gates:
            parse_gate(gate)
        return gates

    @field_validator("gate_approvers")
    @classmethod
    def _known_gate_approvers(cls, gate_approvers: dict[str, list[str]]) -> dict[str, list[str]]:
        for gate, names in gate_approvers.items():
            parse_gate(gate)
            if not names:
                raise ValueError(f"gate {gate!r} lists no approver")
        return gate_approvers

    @model_validator(mode="after")
    def _slack_users_approve(self) -> Approvals:
        known = {*self.approvers, *(n for names in self.gate_approvers.values() for n in names)}
        for user, name in self.slack_users.items():
            if name not in known:
                raise ValueError(
                    f"slack_users: {user} maps to {name!r}, who is no approver (approvers: {', '.join(sorted(known))})"
                )
        return self

    def approvers_for(self, gate: str) -> list[str]:
        return self.gate_approvers.get(gate, self.approvers)

    def is_gated(self, gate: str) -> bool:
        return gate in self.gates


def parse_gate(gate: str) -> tuple[str, str]:
    """Split `kind:arg` and check it names a real tier or percent; raises ValueError naming the gate."""
    kind, _, arg = gate.partition(":")
    if kind in {"enter", "exit"}:
        try:
            FallbackTier(arg)
        except ValueError:
            raise ValueError(f"gate {gate!r} names no tier ({', '.join(t.value for t in FallbackTier)})") from None
    elif kind == "ramp":
        if not arg.isdigit() or not 1 <= int(arg) <= 100:
            raise ValueError(f"gate {gate!r} needs a percent 1-100")
    elif gate != "promote":
        raise ValueError(f"unknown gate {gate!r}: use enter:<tier>, exit:<tier>, ramp:<percent> or promote")
    return kind, arg


class ChannelSpec(_Strict):
    """Where one audience's notifications go."""

    type: Literal["webhook", "slack", "pagerduty", "cloudevents", "email", "status_page"] = "webhook"
    url: Text | None = None
    """http(s):// for webhook, slack, pagerduty, cloudevents and status_page; smtp:// or smtps:// for email."""
    routing_key: Name | None = None
    secret_env: Name | None = None
    """Name of the environment variable holding a signing secret or API key (never the secret itself)."""
    to: list[Name] = Field(default_factory=list)
    sender: Name | None = None

    @model_validator(mode="after")
    def _target(self) -> ChannelSpec:
        if self.type in {"webhook", "slack", "pagerduty", "cloudevents"} and not self.url:
            raise ValueError(f"a {self.type} channel needs a url")
        if self.url is not None:
            try:
                _url(self.url, ("smtp", "smtps") if self.type == "email" else ("http", "https"))
            except ValueError as err:
                raise ValueError(f"url {self.url!r}: {err}") from None
        if self.type == "email" and not self.to:
            raise ValueError("an email channel needs at least one address in `to`")
        return self


class Notifications(_Strict):
    routes: dict[NotificationAudience, list[ChannelSpec]] = Field(default_factory=dict)
    escalation: list[NotificationAudience] = Field(default_factory=lambda: [NotificationAudience.LEADERSHIP])
    """Audiences told when a wait (approval, remediation) passes its deadline."""


class Remediation(_Strict):
    escalate_after_s: PosFloat | None = None
    """Escalate when the primary is still down after this long; default: the failure type's typical recovery time."""


class DrillFault(_Strict):
    """A fault a drill injects through the upstream's own control API (the demo's fake models: `PUT /control`)."""

    url: HttpUrl
    inject: dict[str, Any] = Field(min_length=1)
    """The JSON body PUT to `url` when the drill starts, e.g. `{"outage": true, "outage_mode": "503"}`."""
    clear: dict[str, Any] = Field(min_length=1)
    """The JSON body PUT to `url` when the drill's duration is up, e.g. `{"outage": false}`."""


class Drills(_Strict):
    """Game days (`governor simulate --drill`, governor/drill.py)."""

    status_page: StrictBool = False
    """Let a drill change the gateway's public status page; by default a drill leaves it untouched."""
    duration_s: float = Field(default=60.0, strict=True, gt=0, le=3600)
    """How long the injected failure lasts when `--duration` is not given."""
    faults: dict[Name, DrillFault] = Field(default_factory=dict)
    """Per dependency: inject the drill's failure through the upstream's control API (detection then probes it
    for real) instead of forcing the failed tier's breaker open."""


class ServicePolicy(_Strict):
    """Everything the governor knows about one service."""

    service: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    gateways: list[HttpUrl] = Field(default_factory=lambda: ["http://127.0.0.1:8080"], min_length=1)
    """Admin base URLs of every gateway replica serving this service."""
    dependencies: list[DependencySpec]
    chain: list[TierSpec]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    recovery_checks: RecoveryChecks = Field(default_factory=RecoveryChecks)
    ramp: Ramp = Field(default_factory=Ramp)
    rollback: Rollback = Field(default_factory=Rollback)
    approvals: Approvals = Field(default_factory=Approvals)
    degradation: Degradation = Field(default_factory=Degradation)
    notifications: Notifications = Field(default_factory=Notifications)
    remediation: Remediation = Field(default_factory=Remediation)
    drills: Drills = Field(default_factory=Drills)
    auto_failover: StrictBool = True
    deadline_ms: PosInt = 30_000
    """Gateway: overall deadline for one request across the whole chain."""
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)

    @field_validator("chain")
    @classmethod
    def _chain_order(cls, chain: list[TierSpec]) -> list[TierSpec]:
        tiers = [t.tier for t in chain]
        if not tiers or tiers[0] is not FallbackTier.TIER_0_PRIMARY:
            raise ValueError("the chain must start with tier_0_primary")
        if tiers != sorted(set(tiers), key=lambda t: t.rank):
            raise ValueError(f"chain tiers must be unique and in tier order, got {[t.value for t in tiers]}")
        return chain

    @model_validator(mode="after")
    def _cross_refs(self) -> ServicePolicy:
        names = [d.name for d in self.dependencies]
        if len(names) != len(set(names)):
            raise ValueError(f"dependency names must be unique, got {names}")
        in_chain = {t.tier for t in self.chain}
        for dep in self.dependencies:
            if dep.tier is not None and dep.tier not in in_chain:
                raise ValueError(f"dependency {dep.name!r} backs {dep.tier.value}, which is not in the chain")
        for name in self.drills.faults:
            if name not in names:
                raise ValueError(f"drills.faults names no dependency {name!r} (known: {', '.join(names)})")
        for gate in self.approvals.gates:
            kind, arg = parse_gate(gate)
            if kind == "ramp" and int(arg) not in {s.percent for s in self.ramp.steps}:
                raise ValueError(f"gate {gate!r} names no ramp step")
        return self

    def dependency(self, name: str) -> DependencySpec:
        for dep in self.dependencies:
            if dep.name == name:
                return dep
        raise KeyError(
            f"service {self.service!r} has no dependency {name!r} (has {[d.name for d in self.dependencies]})"
        )

    def tier_spec(self, tier: FallbackTier) -> TierSpec | None:
        return next((t for t in self.chain if t.tier is tier), None)

    @property
    def tiers(self) -> list[FallbackTier]:
        return [t.tier for t in self.chain]

    def failed_tier(self, dependency: str) -> FallbackTier:
        """The tier a failing dependency takes out (a dependency with no tier backs the primary)."""
        return self.dependency(dependency).tier or FallbackTier.TIER_0_PRIMARY


def _format_errors(source: str, err: ValidationError) -> PolicyError:
    lines = [f"{source}: invalid policy"]
    errors = err.errors()
    if len(errors) > 20:
        lines.append(f"  ({len(errors)} errors, the first 20 shown)")
    found: list[dict[str, Any]] = []
    for e in errors:
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        bad = e.get("input")
        found.append({"path": path, "value": None if e["type"] == "missing" else bad, "message": e["msg"]})
        shown = repr(bad) if not isinstance(bad, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        if len(found) <= 20:
            lines.append(f"  {path}: {e['msg']} (got {shown})")
    return PolicyError("\n".join(lines), found)


def _nul_path(data: Any, path: str = "") -> str | None:
    """The field path of the first string (key or value) holding a NUL byte, anywhere in the document."""
    if isinstance(data, str):
        return path or "(top level)" if "\x00" in data else None
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                return here
            found = _nul_path(value, here)
            if found:
                return found
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = _nul_path(value, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def parse_policy(data: Any, source: str = "<policy>") -> ServicePolicy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a YAML mapping, got {type(data).__name__}")
    nul = _nul_path(data)
    if nul is not None:
        message = "a NUL byte is not allowed"
        raise PolicyError(
            f"{source}: invalid policy\n  {nul}: {message}", [{"path": nul, "value": None, "message": message}]
        )
    try:
        return ServicePolicy.model_validate(data)
    except ValidationError as err:
        raise _format_errors(source, err) from None


MAX_POLICY_BYTES = 1 << 20


def _shown(path: Path) -> str:
    """The path as errors show it: a 300-character name is cut, not printed whole."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _cannot(path: Path, what: str, err: OSError) -> PolicyError:
    reason = err.strerror or str(err)
    if err.errno == errno.ENAMETOOLONG:
        reason = "file name too long"
    return PolicyError(f"{_shown(path)}: cannot read {what} ({reason})")


def is_policy_dir(path: Path) -> bool:
    """Whether `path` is a folder; a path that cannot be looked at at all (too long, no permission) is a PolicyError."""
    try:
        return path.is_dir()
    except OSError as err:
        raise _cannot(path, "policy path", err) from None


def load_policy(path: str | Path) -> ServicePolicy:
    """Read and validate one policy file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)
    except OSError as err:
        raise _cannot(path, "policy file", err) from None
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{_shown(path)}: policy file is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PolicyError(f"{_shown(path)}: not UTF-8 text (byte {err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PolicyError(f"{_shown(path)}: not valid YAML ({err})") from None
    return parse_policy(data, _shown(path))


def load_policy_dir(directory: str | Path) -> dict[str, ServicePolicy]:
    """Every `*.yaml` / `*.yml` policy in a folder, by service name."""
    directory = Path(directory)
    if not is_policy_dir(directory):
        raise PolicyError(f"{_shown(directory)}: policy folder does not exist")
    try:
        paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    except OSError as err:
        raise _cannot(directory, "policy folder", err) from None
    policies: dict[str, ServicePolicy] = {}
    for path in paths:
        policy = load_policy(path)
        if policy.service in policies:
            raise PolicyError(f"{_shown(path)}: service {policy.service!r} is already defined by another file")
        policies[policy.service] = policy
    return policies


def load_policy_source(path: str | Path) -> dict[str, ServicePolicy]:
    """A policy file or a folder of them, by service name; any unusable path is a PolicyError, never an OSError."""
    path = Path(path)
    if is_policy_dir(path):
        return load_policy_dir(path)
    policy = load_policy(path)
    return {policy.service: policy}


def find_policy(directory: str | Path, service: str) -> ServicePolicy:
    """The service's policy: `{service}.yaml` when it names the service, else a scan of the whole folder."""
    for suffix in (".yaml", ".yml"):
        path = Path(directory) / f"{service}{suffix}"
        try:
            exists = path.is_file()
        except OSError:
            exists = False  # a service name too long for a file name: the folder scan below answers
        if exists:
            policy = load_policy(path)
            if policy.service == service:
                return policy
    policies = load_policy_dir(directory)
    if service not in policies:
        raise PolicyError(
            f"{directory}: no policy for service {service!r} (known: {', '.join(sorted(policies)) or 'none'})"
        )
    return policies[service]
