"""What `governor status`, `chain` and `recovery` read live: every replica's state and stats (the gateway admin API),
every dependency's health probe, and the open incidents' states (Temporal). A part that does not answer is reported
as such (its dependencies show as unknown), never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from cli.common import STATE_DIR_ENV, UserError, state_dir
from governor.gateway_api import ServiceState
from governor.incident import IncidentState
from governor.models import ProbeResult, StatsWindow
from governor.policy import ServicePolicy
from governor.status_report import Replica

TOKEN_ENV = "GOVERNOR_GATEWAY_TOKEN"
NO_TOKEN = (
    f"no gateway admin token: set {TOKEN_ENV}, --gateway-token-file, or {STATE_DIR_ENV} to the folder of "
    "`governor up --state-dir` (default ./state, whose secrets/gateway-token is read)"
)


def gateway_token(args: argparse.Namespace) -> str:
    """--gateway-token-file, else $GOVERNOR_GATEWAY_TOKEN, else <state>/secrets/gateway-token (what `governor up`
    made; <state> is $GOVERNOR_STATE_DIR, default ./state); "" when none is found."""
    path: Path | None = getattr(args, "gateway_token_file", None)
    if path is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    default = state_dir() / "secrets" / "gateway-token"
    path = path or (default if default.is_file() else None)
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as err:
        raise UserError(f"{path}: cannot read the gateway token ({err.strerror})") from None


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"HTTP {response.status_code}" + (f": {message}" if message else "")


async def _get(http: httpx.AsyncClient, url: str, token: str, model: type[BaseModel], **params: Any) -> Any:
    if not token:  # an empty bearer is not even a valid header: say what is missing instead
        raise LookupError(NO_TOKEN)
    response = await http.get(url, headers={"Authorization": f"Bearer {token}"}, params=params or None)
    if response.status_code in (401, 403):
        raise LookupError(f"refused the admin token ({_problem(response)}): set {TOKEN_ENV} or --gateway-token-file")
    if response.status_code != 200:
        raise LookupError(_problem(response))
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError) as err:
        raise LookupError(f"answered an unknown shape ({str(err).splitlines()[0]})") from None


async def read_replica(
    http: httpx.AsyncClient, base: str, service: str, token: str, window_s: int, with_stats: bool = True
) -> Replica:
    root = base.rstrip("/") + f"/admin/services/{service}"
    try:
        state = await _get(http, root, token, ServiceState)
        stats = await _get(http, root + "/stats", token, StatsWindow, window=window_s) if with_stats else None
    except LookupError as err:
        return Replica(gateway=base, error=str(err))
    except httpx.HTTPError as err:
        return Replica(gateway=base, error=f"not answering ({type(err).__name__})")
    return Replica(gateway=base, state=state, stats=stats)


async def read_replicas(
    http: httpx.AsyncClient, policy: ServicePolicy, token: str, window_s: int | None = None
) -> list[Replica]:
    window = window_s or policy.ramp.stats_window_s
    return list(
        await asyncio.gather(
            *(read_replica(http, str(base), policy.service, token, window) for base in policy.gateways)
        )
    )


async def probe_all(http: httpx.AsyncClient, policies: dict[str, ServicePolicy]) -> dict[tuple[str, str], ProbeResult]:
    """The seed's check_health for every dependency with a health URL (one GET each, in parallel)."""
    from activities.probes import probe_dependency  # plain async function, no Temporal

    targets = [(p, d) for p in policies.values() for d in p.dependencies if d.health_url]
    results = await asyncio.gather(
        *(probe_dependency(http, d, p.thresholds) for p, d in targets), return_exceptions=True
    )
    return {(p.service, d.name): r for (p, d), r in zip(targets, results, strict=True) if isinstance(r, ProbeResult)}


async def open_incident_states(gc: Any, service: str | None = None, limit: int = 50) -> list[IncidentState]:
    """The open incidents' full states (the state query), at most `limit`, queried in parallel."""
    found = await gc.list_incidents(service=service, open_only=True, limit=limit)
    states = await asyncio.gather(*(gc.state(i.incident_id) for i in found), return_exceptions=True)
    return [s for s in states if isinstance(s, IncidentState)]


def http_client(args: argparse.Namespace) -> httpx.AsyncClient:
    timeout = min(float(getattr(args, "timeout", None) or 5.0), 5.0)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout))
