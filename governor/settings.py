"""Process settings from the environment (GOVERNOR_*); every entry point reads them the same way."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.incident import DEFAULT_TASK_QUEUE


class TemporalSettings(BaseSettings):
    """Where Temporal is and how to reach it: GOVERNOR_TEMPORAL_ADDRESS, ..._NAMESPACE, ..._TASK_QUEUE, TLS, API key."""

    model_config = SettingsConfigDict(env_prefix="GOVERNOR_TEMPORAL_", extra="ignore")

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    api_key: str | None = None
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None


class WorkerSettings(BaseSettings):
    """GOVERNOR_POLICY_DIR, GOVERNOR_GATEWAY_TOKEN, GOVERNOR_METRICS_HOST/_PORT, GOVERNOR_POSTMORTEM_DIR, GOVERNOR_LOG_FORMAT."""

    model_config = SettingsConfigDict(env_prefix="GOVERNOR_", extra="ignore")

    policy_dir: Path = Path("policies")
    gateway_token: str = ""
    """The gateways' admin token (GOVERNOR_GATEWAY_TOKEN); no default: without it every gateway change is refused."""
    metrics_port: int | None = 9464
    metrics_host: str = "127.0.0.1"
    """Where the worker serves its Prometheus metrics; loopback unless configured (GOVERNOR_METRICS_HOST)."""
    postmortem_dir: Path = Path("state/postmortems")
    log_format: str = "auto"
    log_level: str = "INFO"
    http_timeout_s: float = 5.0
    nonsticky_poll_ratio: float = Field(default=0.8, gt=0, le=1)
    """Share of the worker's workflow task polls that take new work (a new incident's first task, which schedules its
    pin; a run evicted from the cache) rather than the next task of a run already cached (GOVERNOR_NONSTICKY_POLL_RATIO;
    the SDK's nonsticky_to_sticky_poll_ratio, 0.2 there). 0.8: 4 of the 5 polls, so in a storm new incidents' pins go
    ahead of older incidents' soaks (bench.governor, 100 incidents: report -> pinned p95 ~3.1 s against ~3.6 s at 0.2;
    docs/benchmarks.md)."""
