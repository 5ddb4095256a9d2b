"""Incident commands: list, show, simulate, failover, recover, the controls, audit, postmortem, watch.

They talk to Temporal through the client SDK (governor.client); a control the workflow refuses exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.service import RPCError

from cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN_INCIDENT,
    UserError,
    connect,
    emit,
    maybe_policy,
    policy_dir,
    primary_dependency,
    resolve_identity,
    resolve_incident,
)
from cli.render import (
    render_incident,
    render_result,
    render_table,
    render_timeline_summary,
    summary_rows,
)
from cli.watching import watch
from governor.drill import DrillRequest
from governor.enums import FallbackTier, RecoveryPhase
from governor.incident import IncidentReport, IncidentState, incident_id
from governor.plan import recovery_plan
from governor.policy import PolicyError, ServicePolicy, load_policy_dir
from governor.postmortem import postmortem_json, render_postmortem
from governor.watchdogs import start_or_update_watchdogs


async def cmd_list(args: argparse.Namespace) -> int:
    gc = await connect(args)

    async def draw() -> tuple[Any, Callable[[], str], bool]:
        incidents, text = await _listing(gc, args)
        return incidents, text, False

    if args.watch or args.watch_count:
        return await watch(args, "list", draw)
    incidents, text = await _listing(gc, args)
    emit(args, incidents, text)
    return EXIT_OK


async def _listing(gc: Any, args: argparse.Namespace) -> tuple[list[Any], Callable[[], str]]:
    incidents = await gc.list_incidents(
        service=args.service,
        phase=args.phase,
        awaiting_approval=True if args.awaiting else None,
        open_only=not args.all,
        limit=args.limit + 1,
    )
    more = len(incidents) > args.limit
    incidents = incidents[: args.limit]
    unfiltered = 0
    if not incidents and (args.awaiting or args.phase or args.service):  # say what the filter hid
        unfiltered = len(await gc.list_incidents(open_only=not args.all, limit=args.limit))
    headers = ["incident", "failure", "severity", "phase", "tier", "ramp", "approval", "status", "started"]

    def text() -> str:
        if not incidents:
            return empty_list_message(args, unfiltered)
        table = render_table(headers, summary_rows(incidents))
        return table + (f"\n(first {args.limit} shown; narrow with --service/--phase or raise --limit)" if more else "")

    return incidents, text


def empty_list_message(args: argparse.Namespace, unfiltered: int) -> str:
    """What an empty `governor list` means: none at all, or none matching the filters while others exist."""
    scope = "incidents" if args.all else "open incidents"
    if not unfiltered:
        return f"no {scope}"
    wanted = [
        "awaiting an approval" if args.awaiting else "",
        f"in phase {args.phase.value}" if args.phase else "",
        f"of service {args.service}" if args.service else "",
    ]
    return (
        f"none of the {unfiltered} {scope} is " + ", ".join(w for w in wanted if w) + " (drop the filter to see them)"
    )


async def cmd_show(args: argparse.Namespace) -> int:
    gc = await connect(args)
    incident = resolve_incident(args.incident)

    async def draw() -> tuple[Any, Callable[[], str], bool]:
        state = await gc.state(incident)
        return state, _shown(args, state), state.closed_at is not None

    if args.watch or args.watch_count:
        return await watch(args, f"show {incident}", draw)
    state, text, _ = await draw()
    emit(args, state, text)  # --json stays the state (what `audit verify --file` reads); the plan: `governor recovery`
    return EXIT_OK


def _shown(args: argparse.Namespace, state: IncidentState) -> Callable[[], str]:
    try:
        policy = maybe_policy(args, state.service)
    except PolicyError:
        policy = None  # the plan then assumes the seed's ramp; the incident itself is still shown
    plan = recovery_plan(state, policy, datetime.now(UTC))

    def text() -> str:
        from cli.status_render import plan_summary, render_plan

        lines = ["", f"Recovery plan {plan.plan_id}: {plan_summary(plan)}", *render_plan(plan)]
        return render_incident(state) + "\n" + "\n".join(lines)

    return text


async def cmd_simulate(args: argparse.Namespace) -> int:
    if args.drill:
        return await cmd_drill(args)
    if args.duration is not None:
        raise UserError("--duration is for a drill: add --drill")
    policy = maybe_policy(args, args.service)
    dependency = args.dependency or (primary_dependency(policy) if policy else None)
    if dependency is None:
        raise UserError(f"no policy for {args.service!r} in {policy_dir(args)}: pass --dependency")
    if policy is not None:
        try:
            policy.dependency(dependency)
        except KeyError as err:
            raise UserError(str(err.args[0])) from None
    report = IncidentReport(
        service=args.service,
        dependency=dependency,
        failure_type=args.failure_type,
        severity=args.severity,
        source="governor simulate",
        message=args.message or f"simulated {args.failure_type.value}",
        metrics=dict(args.metric),
        reported_at=datetime.now().astimezone(),
    )
    gc = await connect(args)
    reported = await gc.report_failure(report)
    verb = {True: "opened", False: "joined open incident", None: "reported to"}[reported.started]
    emit(
        args,
        reported,
        f"{verb} {reported.incident_id} ({args.failure_type.value})\n  follow it: governor show {reported.incident_id}",
    )
    return EXIT_OK


async def cmd_drill(args: argparse.Namespace) -> int:
    """`simulate --drill`: a game day on a healthy service; the workflow injects, recovers and restores it."""
    who = resolve_identity(args.actor)
    policy = maybe_policy(args, args.service)
    if policy is None:
        raise UserError(
            f"no policy for service {args.service!r} in {policy_dir(args)}: a drill needs the service's policy"
        )
    dependency = args.dependency or primary_dependency(policy)
    try:
        dep = policy.dependency(dependency)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    if dep.tier is None or not [t for t in policy.tiers if t.rank > dep.tier.rank]:
        raise UserError(f"{dependency} backs no tier with a fallback below it: nothing for a drill to fail over to")
    gc = await connect(args)
    found = await gc.find_open(args.service)
    if found:
        ids = ", ".join(i.incident_id for i in found)
        raise UserError(
            f"{args.service} has an open incident ({ids}): no drill on a service that is already recovering "
            "(finish or close it first, see `governor show`)",
            EXIT_REFUSED,
        )
    duration = args.duration or policy.drills.duration_s
    fault = policy.drills.faults.get(dependency)
    injection = (
        f"fault injected through {fault.url} (detection probes it)"
        if fault is not None
        else f"the breaker of {dep.tier.value} is forced open in every gateway replica"
    )
    report = IncidentReport(
        service=args.service,
        dependency=dependency,
        failure_type=args.failure_type,
        severity=args.severity,
        source=f"governor simulate --drill ({who})",
        message=args.message or f"drill: {args.failure_type.value} on {dependency}",
        metrics=dict(args.metric),
        reported_at=datetime.now().astimezone(),
        drill=DrillRequest(duration_s=duration, requested_by=who),
    )
    reported = await gc.report_failure(report)
    if reported.started is False:  # an incident opened between the check and the report: the drill joined nothing
        raise UserError(f"{args.service} opened an incident meanwhile ({reported.incident_id}): no drill", EXIT_REFUSED)
    emit(
        args,
        {**reported.model_dump(mode="json"), "drill": report.drill.model_dump(mode="json") if report.drill else None},
        f"drill {reported.incident_id} started by {who} ({args.failure_type.value}): {injection} for {duration:g} s,"
        " then the workflow clears it and ramps back\n"
        f"  on-call and internal audiences only; the status page is "
        + ("updated (drills.status_page: true)" if policy.drills.status_page else "left untouched")
        + f"\n  follow it: governor show {reported.incident_id}; findings: governor postmortem {reported.incident_id}",
    )
    return EXIT_OK


async def _one_open(gc: Any, service: str, dependency: str | None) -> Any | None:
    """The service's open incident (one per service, whichever dependency failed: `--dependency` names what a new
    report is about, not which incident). Incidents opened per dependency by older versions are found too."""
    found = await gc.find_open(service)
    if len(found) > 1:
        mine = [i for i in found if i.incident_id == incident_id(service)]
        if mine:
            return mine[0]
        older = [i for i in found if dependency is None or i.dependency == dependency]
        if len(older) == 1:
            return older[0]
        ids = ", ".join(i.incident_id for i in found)
        raise UserError(f"{service} has {len(found)} open incidents ({ids}): pass --dependency")
    return found[0] if found else None


def one_tier_down(served: FallbackTier, policy: ServicePolicy | None) -> FallbackTier:
    """The seed's trigger_fallback without a target: the next tier of the service's chain below the one served."""
    chain = policy.tiers if policy is not None else list(FallbackTier)
    below = [t for t in chain if t.rank > served.rank]
    if not below:
        raise UserError(f"already at the lowest tier of the chain ({served.value}): pass --tier to choose one")
    return below[0]


async def _served_now(args: argparse.Namespace, policy: ServicePolicy | None) -> FallbackTier:
    """The tier the service's gateways serve now (the worst replica), primary when nothing answers."""
    if policy is None:
        return FallbackTier.TIER_0_PRIMARY
    from cli.observe import gateway_token, http_client, read_replicas
    from governor.status_report import service_view

    async with http_client(args) as http:
        view = service_view(policy, await read_replicas(http, policy, gateway_token(args)))
    if view.tier is None:
        raise UserError(
            f"no gateway of {args.service} answered ({'; '.join(view.errors)}), so the tier served now is unknown: "
            "pass --tier"
        )
    return view.tier


async def cmd_failover(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    policy = maybe_policy(args, args.service)
    if policy is not None and args.tier is not None and args.tier not in policy.tiers:
        chain = ", ".join(t.value for t in policy.tiers)
        raise UserError(f"{args.tier.value} is not in {args.service}'s chain ({chain})")
    gc = await connect(args)
    current = await _one_open(gc, args.service, args.dependency)
    messages: list[str] = []
    if args.tier is None:
        served = (await gc.state(current.incident_id)).tier if current is not None else await _served_now(args, policy)
        args.tier = one_tier_down(served, policy)
        messages.append(f"one tier down from {served.value}: {args.tier.value}")
    if current is None:
        dependency = args.dependency or (primary_dependency(policy) if policy else None)
        if dependency is None:
            raise UserError(f"no open incident and no policy for {args.service!r}: pass --dependency")
        reported = await gc.report_failure(
            IncidentReport(
                service=args.service,
                dependency=dependency,
                source=f"governor failover ({who})",
                message=f"manual failover to {args.tier.value} by {who}: {args.reason}",
                reported_at=datetime.now().astimezone(),
                manual=True,
            )
        )
        target = reported.incident_id
        messages.append(f"reported a manual failure: {target}")
        # The workflow confirms a report before it accepts a tier (force_tier is refused during detection).
        await gc.wait_for(
            target,
            lambda s: s.phase is not RecoveryPhase.DETECTION or s.closed_at is not None,
            timeout=args.timeout or 60,
        )
    else:
        target = current.incident_id
    result = await gc.force_tier(target, args.tier, who, args.reason)
    messages.append(render_result(target, f"force_tier {args.tier.value}", result))
    emit(args, {"incident_id": target, "result": result.model_dump(mode="json")}, "\n".join(messages))
    return EXIT_OK


async def cmd_recover(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    gc = await connect(args)
    current = await _one_open(gc, args.service, args.dependency)
    if current is None:
        which = f"{args.service}/{args.dependency}" if args.dependency else args.service
        raise UserError(f"no open incident for {which} (see `governor list`)", EXIT_UNKNOWN_INCIDENT)
    result = await gc.declare_remediated(current.incident_id, who, args.reason)
    emit(
        args,
        {"incident_id": current.incident_id, "result": result.model_dump(mode="json")},
        render_result(current.incident_id, "declare_remediated", result),
    )
    return EXIT_OK


async def cmd_control(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    incident = resolve_incident(args.incident)
    gc = await connect(args)
    command = args.command
    if command in {"approve", "reject"}:
        result = await getattr(gc, command)(incident, args.gate, who, args.reason, gate_id=args.gate_id)
        label = f"{command} {args.gate}"
    elif command == "force-tier":
        result = await gc.force_tier(incident, args.tier, who, args.reason)
        label = f"force_tier {args.tier.value}"
    elif command == "note":
        result = await gc.note(incident, who, " ".join(args.text))
        label = "note"
    else:
        result = await getattr(gc, command)(incident, who, args.reason)
        label = command
    emit(
        args,
        {"incident_id": incident, "result": result.model_dump(mode="json")},
        render_result(incident, label, result),
    )
    return EXIT_OK


def postmortem_text(state: IncidentState, policy: ServicePolicy | None) -> tuple[str, dict[str, Any] | None, str]:
    """(Markdown, JSON or None, why it is timeline-only or ''): the full post-mortem needs the service's policy."""
    if policy is None:
        why = f"no policy for service {state.service!r} in the policy folder (the full report needs it)"
        return render_timeline_summary(state), None, why
    now = datetime.now(UTC)  # an open incident's figures run to now ("open for X so far")
    return render_postmortem(state, policy, now=now), postmortem_json(state, policy, now=now), ""


async def cmd_postmortem(args: argparse.Namespace) -> int:
    gc = await connect(args)
    state = await gc.state(resolve_incident(args.incident))
    try:
        policy = maybe_policy(args, state.service)
    except PolicyError as err:
        print(f"note: ignoring the policy folder: {err}", file=sys.stderr)
        policy = None  # the post-mortem reads the incident; a broken policy folder must not hide it
    markdown, data, partial = postmortem_text(state, policy)
    if partial:
        print(f"note: {partial}; printing the timeline only", file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown)
        print(f"wrote {args.output}")
    elif args.json:
        full = {"incident_id": state.incident_id, "timeline_only": bool(partial), "markdown": markdown}
        emit(args, data if data is not None else full, "")
    else:
        print(markdown, end="" if markdown.endswith("\n") else "\n")
    return EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    policies = load_policy_dir(policy_dir(args))
    if args.service is not None:
        if args.service not in policies:
            raise UserError(f"{policy_dir(args)} has no policy for service {args.service!r}")
        policies = {args.service: policies[args.service]}
    if not policies:
        raise UserError(f"{policy_dir(args)} has no policy file (*.yaml)")
    gc = await connect(args)
    try:
        ids = await start_or_update_watchdogs(gc.temporal, policies, gc.task_queue)
    except RPCError as err:
        raise UserError(f"cannot start the watchdogs: {err.message}", EXIT_UNAVAILABLE) from None
    emit(args, {"watchdogs": ids}, lambda: "watching: " + ", ".join(ids))
    return EXIT_OK
