"""Policy types of the gateway's admission control and error handling, per upstream tier (TierSpec fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictFloat, StrictInt, model_validator

from governor.policy_types import HttpUrl, Name, _Strict


class Bulkhead(_Strict):
    """At most `max_concurrent` requests in flight on the tier; up to `max_queue` more wait for a slot at most
    `queue_timeout_ms` (and never past the request's deadline). What finds the queue full, or waits too long, falls
    through to the next tier (`when_full: fall_through`) or gets the explicit 503 with Retry-After at once (`shed`).
    Counted as skips of the tier with cause `bulkhead_full` / `bulkhead_queue_timeout` (docs/gateway.md)."""

    max_concurrent: int = Field(strict=True, ge=1, le=100_000)
    max_queue: int = Field(default=0, strict=True, ge=0, le=100_000)
    queue_timeout_ms: int = Field(default=100, strict=True, ge=1, le=60_000)
    when_full: Literal["fall_through", "shed"] = "fall_through"


class TierRetry(_Strict):
    """Same-tier retries of transient failures (connect error, dropped connection, 502/503/504, and a timeout when
    `timeouts`), before the request falls through. The gateway's only retry count: `DependencySpec.retries` is not
    read by the gateway. Each retry waits `backoff_ms * 2**n` (at most `max_backoff_ms`, with jitter: half of it
    fixed, half random), or longer when the upstream's Retry-After says so; a Retry-After above `max_backoff_ms`, or a
    wait the request's deadline cannot afford, falls through instead. 429 and 529 are never retried here."""

    attempts: int = Field(default=0, strict=True, ge=0, le=10)
    """Retries after the first attempt (0: fall through at once, the default)."""
    backoff_ms: int = Field(default=100, strict=True, ge=1, le=10_000)
    max_backoff_ms: int = Field(default=1000, strict=True, ge=1, le=60_000)
    timeouts: bool = True
    """Retry a timed-out attempt too (only when the deadline leaves room for a whole new attempt)."""


def _one_token_chat() -> dict[str, Any]:
    return {"model": "governor-probe", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


class ProbeRequest(_Strict):
    """Validation's synthetic request through the data path: the gateway sends it to the recovering tier's upstream
    as it would a client's (its provider, key, model and body expectation), so a primary whose /health answers while
    its completions fail never passes validation. Default: a one-token chat completion."""

    method: Literal["POST", "GET"] = "POST"
    path: str = Field(default="/v1/chat/completions", pattern=r"^/[A-Za-z0-9/_.~-]{0,200}$")
    body: dict[str, Any] | None = Field(default_factory=_one_token_chat)


DEPLOYMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Weight = Annotated[StrictInt | StrictFloat, Field(ge=0, le=1_000_000)]


class AzureTarget(_Strict):
    """Azure OpenAI's wire format: requests go to `{upstream}/openai/deployments/{deployment}/...?api-version=...`
    (a `/v1` prefix of the client's path dropped) with the key in the `api-key` header instead of a Bearer token."""

    deployment: str = Field(pattern=DEPLOYMENT_NAME)
    """The deployment name chosen in the Azure portal (it selects the model; the body's `model` is not used)."""
    api_version: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}(-preview)?$")
    """The `api-version` query parameter, e.g. `2024-10-21`."""


class Deployment(_Strict):
    """One of a tier's deployments (a key, a region, an endpoint). Unset fields take the tier's value, so a
    deployment names only what differs. A deployment that sets a key (env or file) uses that key alone."""

    name: str | None = Field(default=None, pattern=DEPLOYMENT_NAME)
    """Shown in stats, state and `X-Governor-Reason`; default: `region`, else `d<position>`."""
    region: str | None = Field(default=None, pattern=DEPLOYMENT_NAME)
    upstream: HttpUrl | None = None
    provider: Literal["openai", "anthropic", "azure"] | None = None
    azure: AzureTarget | None = None
    model: Name | None = None
    api_key_env: Name | None = None
    api_key_file: str | None = None
    weight: Weight = 1
    """Its share of the tier's traffic among the healthy deployments; 0: a standby, tried only after the others."""
    bulkhead: Bulkhead | None = None
    """This deployment's own concurrency limit (`when_full: fall_through` only: a full one passes the request to
    the tier's next deployment); the tier's `bulkhead` still bounds the tier as a whole."""

    @model_validator(mode="after")
    def _one_key_source(self) -> Deployment:
        if self.api_key_env and self.api_key_file:
            raise ValueError("set api_key_env or api_key_file, not both")
        if self.bulkhead is not None and self.bulkhead.when_full == "shed":
            raise ValueError(
                "bulkhead.when_full: shed is for the tier's bulkhead; a deployment's passes the request on"
            )
        return self


def resolved_deployments(spec: Any) -> list[Deployment]:
    """The tier's deployments with the tier's fields filled in (a tier without `deployments`: one, named None)."""
    tier_fields = {
        "upstream": spec.upstream,
        "provider": spec.provider,
        "azure": spec.azure,
        "model": spec.model,
        "api_key_env": spec.api_key_env,
        "api_key_file": spec.api_key_file,
    }
    if spec.deployments is None:
        return [Deployment.model_construct(name=None, region=None, weight=1, bulkhead=None, **tier_fields)]
    out = []
    for i, dep in enumerate(spec.deployments):
        fields = dict(tier_fields)
        if dep.api_key_env or dep.api_key_file:
            fields["api_key_env"], fields["api_key_file"] = None, None
        fields.update({k: v for k, v in dep.model_dump(exclude_none=True, exclude={"azure", "bulkhead"}).items()})
        if dep.azure is not None:
            fields["azure"] = dep.azure
        fields["name"] = dep.name or dep.region or f"d{i}"
        out.append(Deployment.model_construct(bulkhead=dep.bulkhead, **fields))
    return out


def check_deployments(spec: Any) -> None:
    """The tier-level rules of `deployments` and `azure`, each error naming the field and the bad value."""
    tier = spec.tier.value
    if (
        spec.provider == "azure"
        and spec.azure is None
        and not (spec.deployments and all(d.azure is not None for d in spec.deployments))
    ):
        raise ValueError(f"tier {tier}: provider azure needs `azure: {{deployment, api_version}}`")
    if spec.deployments is None:
        if spec.cooldown_s is not None:
            raise ValueError(f"tier {tier}: cooldown_s applies to a tier's deployments, and this tier lists none")
        if spec.provider == "anthropic" and spec.azure is not None:
            raise ValueError(f"tier {tier}: azure is for provider openai/azure, not anthropic")
        return
    if not spec.deployments:
        raise ValueError(f"tier {tier}: deployments must list at least one deployment (or leave it out)")
    seen: dict[str, int] = {}
    for i, dep in enumerate(resolved_deployments(spec)):
        where = f"tier {tier}, deployments[{i}] ({dep.name})"
        if dep.name in seen:
            raise ValueError(f"tier {tier}: deployments[{seen[dep.name]}] and [{i}] are both named {dep.name!r}")
        seen[dep.name] = i  # type: ignore[index]
        if not dep.upstream:
            raise ValueError(f"{where}: needs an upstream URL (its own or the tier's)")
        if dep.provider == "azure" and dep.azure is None:
            raise ValueError(f"{where}: provider azure needs `azure: {{deployment, api_version}}`")
        if dep.provider == "anthropic" and dep.azure is not None:
            raise ValueError(f"{where}: azure is for provider openai/azure, not anthropic")
    weights = [d.weight for d in spec.deployments]
    if sum(weights) <= 0:
        raise ValueError(f"tier {tier}: the deployments' weights add up to 0 ({weights}); at least one must be > 0")
