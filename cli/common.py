"""What every command shares: exit codes, user errors, who is acting, argument types, settings, output."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from governor.enums import FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import incident_id
from governor.policy import (
    ServicePolicy,
    load_policy_dir,
)
from governor.settings import TemporalSettings

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REFUSED = 2
EXIT_UNKNOWN_INCIDENT = 3
EXIT_UNAVAILABLE = 4
EXIT_CHAIN_BROKEN = 5

CONFIG_ENV = "GOVERNOR_CONFIG"
USER_ENV = "GOVERNOR_USER"
POLICY_DIR_ENV = "GOVERNOR_POLICY_DIR"


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """$GOVERNOR_CONFIG, else $XDG_CONFIG_HOME/governor/config.toml, else ~/.config/governor/config.toml."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "governor" / "config.toml"


def resolve_identity(flag: str | None, env: Mapping[str, str] | None = None, path: Path | None = None) -> str:
    """Who is acting: --as, else $GOVERNOR_USER, else `user = "..."` in the config file; never a silent default."""
    env = os.environ if env is None else env
    if flag is not None:
        if not flag.strip():
            raise UserError("--as needs a name")
        return flag.strip()
    if env.get(USER_ENV, "").strip():
        return env[USER_ENV].strip()
    path = path or config_path(env)
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot read the governor config ({err})") from None
        user = data.get("user")
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise UserError(f'{path}: `user` must be a non-empty string, got {user!r} (write user = "alice")')
        if user:
            return user.strip()
    raise UserError(
        "who is acting? This command records your name in the incident's audit trail.\n"
        f'  pass --as NAME, or set {USER_ENV}=NAME, or write user = "NAME" in {path}'
    )


def parse_tier(text: str) -> FallbackTier:
    """A tier by value (`tier_1_secondary`), index (`1`) or short name (`secondary`)."""
    value = text.strip().lower()
    for tier in FallbackTier:
        if value in {tier.value, str(tier.rank), tier.value.split("_", 2)[2]}:
            return tier
    known = ", ".join(t.value for t in FallbackTier)
    raise argparse.ArgumentTypeError(f"unknown tier {text!r} (use one of {known}, an index 0-5, or e.g. 'secondary')")


def parse_failure_type(text: str) -> FailureType:
    try:
        return FailureType(text.strip().lower())
    except ValueError:
        known = ", ".join(t.value for t in FailureType)
        raise argparse.ArgumentTypeError(f"unknown failure type {text!r} (one of {known})") from None


def parse_phase(text: str) -> RecoveryPhase:
    try:
        return RecoveryPhase(text.strip().lower())
    except ValueError:
        known = ", ".join(p.value for p in RecoveryPhase)
        raise argparse.ArgumentTypeError(f"unknown phase {text!r} (one of {known})") from None


def parse_severity(text: str) -> Severity:
    try:
        return Severity(text.strip().upper())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown severity {text!r} (one of LOW, MEDIUM, HIGH, CRITICAL)") from None


def parse_metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a metric is NAME=NUMBER, e.g. error_rate=0.12 (got {text!r})") from None


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs a whole number of 1 or more, got {text!r}")
    return value


def parse_drill_duration(text: str) -> float:
    """A drill's duration in seconds: more than 0, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"needs seconds, more than 0 and at most 3600, got {text!r}")
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"needs seconds between 0.1 and 3600, got {text!r}")
    return value


def resolve_incident(text: str) -> str:
    """An incident by workflow id (`recovery-chat`) or as `service/dependency` (`chat/primary-llm`)."""
    if "/" in text:
        service, _, dependency = text.partition("/")
        if service and dependency:
            return incident_id(service)
    return text


STATE_DIR_ENV = "GOVERNOR_STATE_DIR"
"""The state folder of the `governor up` the CLI follows (default ./state): its policy record and admin token."""


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or "state")


def running_policy_record() -> Path:
    """Where `governor up` records the policy folder its stack runs with (the demo's is demo/policies), for as long
    as it runs, so the CLI run from the same folder reads the policies the worker and the gateway read."""
    return state_dir() / "policy-dir"


def policy_dir(args: argparse.Namespace, running: bool = True) -> Path:
    """--policy-dir, else $GOVERNOR_POLICY_DIR, else the folder of the `governor up` running from here (`running`),
    else ./policies."""
    if getattr(args, "policy_dir", None):
        return Path(args.policy_dir)
    if os.environ.get(POLICY_DIR_ENV):
        return Path(os.environ[POLICY_DIR_ENV])
    if running:
        recorded = running_policy_dir()
        if recorded is not None:
            return recorded
    return Path("policies")


def running_policy_dir(record: Path | None = None) -> Path | None:
    """The policy folder a running `governor up` recorded, if it still is a folder."""
    record = record or running_policy_record()
    try:
        text = record.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text and Path(text).is_dir() else None


def temporal_settings(args: argparse.Namespace) -> TemporalSettings:
    overrides: dict[str, Any] = {}
    for flag in ("address", "namespace", "task_queue", "api_key", "tls_cert", "tls_key", "tls_ca"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    if getattr(args, "tls", False):
        overrides["tls"] = True
    try:
        return TemporalSettings(**overrides)
    except ValidationError as err:
        raise UserError(f"bad Temporal settings: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from None


def emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str]) -> None:
    if getattr(args, "json", False):
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        elif isinstance(data, list):
            data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


def primary_dependency(policy: ServicePolicy) -> str:
    for dep in policy.dependencies:
        if dep.tier in (None, FallbackTier.TIER_0_PRIMARY):
            return dep.name
    return policy.dependencies[0].name


def maybe_policy(args: argparse.Namespace, service: str) -> ServicePolicy | None:
    """The service's policy if the policy folder has one; a broken policy file is still an error."""
    directory = policy_dir(args)
    if not directory.is_dir():
        return None
    policies = load_policy_dir(directory)
    return policies.get(service)


async def connect(args: argparse.Namespace) -> Any:
    from governor.client import DEFAULT_RPC_TIMEOUT, GovernorClient

    timeout = timedelta(seconds=args.timeout) if getattr(args, "timeout", None) else DEFAULT_RPC_TIMEOUT
    return await GovernorClient.connect(temporal_settings(args), rpc_timeout=timeout)
