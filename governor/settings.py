"""Process settings from the environment (GOVERNOR_*); every entry point reads them the same way."""

from __future__ import annotations

from pathlib import Path

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
