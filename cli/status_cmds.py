"""Live views: `governor status` (the seed's status report), `governor chain`/`hierarchy` (the chain, the tier serving
now marked) and `governor recovery` (the recovery checks and the ramp with their latest results, what is left, the
ETA). They read every gateway replica's admin API, probe each dependency and query Temporal for the open incidents."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from cli.common import EXIT_OK, UserError, connect, emit, maybe_policy, policy_dir, resolve_incident
from cli.observe import gateway_token, http_client, open_incident_states, probe_all, read_replicas
from cli.render import chain_rows, render_chain
from cli.status_render import render_chain_view, render_recovery, render_status
from governor.client import GovernorUnavailable
from governor.incident import IncidentState
from governor.plan import recovery_plan, recovery_view
from governor.policy import ServicePolicy, find_policy, load_policy_dir
from governor.status_report import chain_view, status_report


async def _incidents_or_note(args: argparse.Namespace, service: str | None = None) -> tuple[list[IncidentState], str]:
    """The open incidents' states, or none and why (the gateways' view is still worth printing without Temporal)."""
    try:
        gc = await connect(args)
        return await open_incident_states(gc, service), ""
    except (GovernorUnavailable, TimeoutError) as err:
        return [], f"Temporal not answering ({err}): incidents not shown"


async def cmd_status(args: argparse.Namespace) -> int:
    directory = policy_dir(args)
    policies = load_policy_dir(directory) if directory.is_dir() else {}
    if not policies:
        raise UserError(f"{directory}: no policy files, so no service to report on (see `governor setup --init`)")
    token = gateway_token(args)
    now = datetime.now(UTC)
    async with http_client(args) as http:
        replicas_task = asyncio.gather(*(read_replicas(http, p, token) for p in policies.values()))
        probes_task = probe_all(http, policies)
        incidents_task = _incidents_or_note(args)
        replica_lists, probes, (incidents, note) = await asyncio.gather(replicas_task, probes_task, incidents_task)
    replicas = dict(zip(policies, replica_lists, strict=True))
    plans = [(s, recovery_plan(s, policies.get(s.service), now)) for s in incidents]
    report = status_report(now, policies, replicas, probes, plans)
    data: dict[str, Any] = report.model_dump(mode="json")
    data["notes"] = [note] if note else []
    emit(args, data, lambda: render_status(report) + (f"\n  note: {note}" if note else ""))
    return EXIT_OK


async def cmd_chain(args: argparse.Namespace) -> int:
    """The chain with the tier serving now marked; `--policy-only` is the policy's table alone."""
    given = {s for s in (getattr(args, "service_arg", None), getattr(args, "service_flag", None)) if s}
    if len(given) != 1:
        raise UserError(f"governor {args.command}: name one service (e.g. `governor {args.command} chat`)")
    args.service = given.pop()
    policy = find_policy(policy_dir(args), args.service)
    if getattr(args, "policy_only", False):
        from cli.policy_cmds import cmd_chain as policy_chain

        return policy_chain(args)
    async with http_client(args) as http:
        replicas = await read_replicas(http, policy, gateway_token(args))
    view = chain_view(policy, replicas)
    data = {**view.model_dump(mode="json"), "chain": chain_rows(policy)}  # `chain`: the policy's rows, as before
    emit(args, data, lambda: render_chain_view(view) + "\n" + render_chain(policy))
    return EXIT_OK


cmd_hierarchy = cmd_chain
"""The seed's quick command name for the chain (`/fallback-governance hierarchy`)."""


async def cmd_recovery(args: argparse.Namespace) -> int:
    gc = await connect(args)
    state = await gc.state(resolve_incident(args.incident))
    policy: ServicePolicy | None = maybe_policy(args, state.service)
    view = recovery_view(state, policy, datetime.now(UTC))
    emit(args, view, lambda: render_recovery(view))
    return EXIT_OK
