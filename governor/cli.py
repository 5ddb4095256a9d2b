"""`governor`: the on-call command line on top of the client SDK.

Policy commands (setup, validate, scenarios, chain) read the policy files only. Incident commands talk to Temporal
through `governor.client`; controls are updates, so a request the workflow refuses prints its reason and exits 2.

Exit codes: 0 ok, 1 usage or configuration error, 2 refused by the workflow, 3 unknown incident,
4 Temporal or the worker did not answer, 5 audit chain broken.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import shlex
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import BaseModel, ValidationError

from governor.audit import AuditEntry, verify_chain
from governor.decisions import BASE_SEVERITY
from governor.enums import FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import ControlResult, IncidentReport, IncidentState, incident_id
from governor.policy import (
    PolicyError,
    ServicePolicy,
    find_policy,
    is_policy_dir,
    load_policy,
    load_policy_dir,
    parse_policy,
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


# ---- identity ----------------------------------------------------------------------------------------------------


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


# ---- small parsers -----------------------------------------------------------------------------------------------


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


def resolve_incident(text: str) -> str:
    """An incident by workflow id (`recovery-chat-primary-llm`) or as `service/dependency` (`chat/primary-llm`)."""
    if "/" in text:
        service, _, dependency = text.partition("/")
        if service and dependency:
            return incident_id(service, dependency)
    return text


# ---- plain-text rendering ----------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return fmt_time(value)
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None and '' show as '-'."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def fmt_time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


def fmt_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{sign}{h}h{m:02d}m"
    if m:
        return f"{sign}{m}m{s:02d}s"
    return f"{sign}{s}s"


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def approve_command(incident: str, gate: str, verb: str = "approve") -> str:
    why = "why it is safe" if verb == "approve" else "why not"
    return f'governor {verb} {shlex.quote(incident)} --gate {shlex.quote(gate)} --reason "{why}"'


def timeline_rows(state: IncidentState) -> list[list[Any]]:
    """The audit trail as timeline rows: time, offset from detection, actor, action, transition, details."""
    start = state.audit[0].at if state.audit else state.detected_at  # T+0 is the first report
    rows: list[list[Any]] = []
    for entry in state.audit:
        offset = f"+{fmt_duration(entry.at - start)}" if start else ""
        # Every entry records the phase it happened in; show only real transitions.
        if entry.previous_state:
            change = f"{entry.previous_state} -> {entry.new_state}"
        else:
            change = f"-> {entry.new_state}" if entry.action in {"phase", "tier"} else ""
        detail = " ".join(f"{k}={_short(v, 40)}" for k, v in entry.details.items())
        rows.append([entry.at.strftime("%H:%M:%S"), offset, entry.actor, entry.action, change, _short(detail)])
    return rows


def render_incident(state: IncidentState) -> str:
    """`governor show`: where the incident stands, what it waits for (with the exact command), and its timeline."""
    lines = [f"Incident {state.incident_id}  ({state.outcome})"]
    failure = state.failure_type.value if state.failure_type else "unclassified"
    severity = f" ({state.severity.value})" if state.severity else ""
    flags = [f for f, on in (("PAUSED", state.paused), ("WAITING FOR A HUMAN", state.awaiting_human)) if on]
    facts: list[tuple[str, str]] = [
        ("service", f"{state.service} / {state.dependency}"),
        ("failure", f"{failure}{severity}" + (f": {state.reason}" if state.reason else "")),
        ("phase", state.phase.value + (f"  [{', '.join(flags)}]" if flags else "")),
        ("tier", f"{state.tier.value} ({state.tier.quality_percentage}% quality, failed: {state.failed_tier.value})"),
        (
            "degradation",
            f"{state.degradation_level.value} (SLA impact {state.degradation_level.sla_impact})"
            + (f": {state.degradation_level.user_message}" if state.degradation_level.user_message else ""),
        ),
        ("ramp", f"{state.ramp_percent}% to primary (step {state.ramp_step}, attempt {state.attempt})"),
        ("reports", str(max(state.report_count, len(state.reports)))),
        ("detected", fmt_time(state.detected_at)),
        ("mitigated", fmt_time(state.mitigated_at)),
        ("recovered", fmt_time(state.recovered_at)),
    ]
    if state.rollbacks:
        last = state.rollbacks[-1]
        facts.append(("rollbacks", f"{len(state.rollbacks)} (last at {last.percent}%: {last.reason})"))
    if state.forced_tier:
        facts.append(("forced tier", state.forced_tier.value))
    if state.postmortem_path:
        facts.append(("post-mortem", state.postmortem_path))
    width = max(len(k) for k, _ in facts)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in facts]

    lines.append("")
    if state.pending_gates:
        lines.append("Pending gates")
        rows = [
            [g.gate, g.requested_at, g.deadline, ", ".join(g.approvers), g.escalated, g.context]
            for g in state.pending_gates
        ]
        lines.append(_indent(render_table(["gate", "requested", "deadline", "approvers", "escalated", "why"], rows)))
        for g in state.pending_gates:
            lines.append(f"  approve {g.gate}:  {approve_command(state.incident_id, g.gate)}")
            lines.append(f"  reject  {g.gate}:  {approve_command(state.incident_id, g.gate, 'reject')}")
    else:
        lines.append("Pending gates: none")

    lines.append("")
    if state.audit:
        lines.append(f"Timeline ({len(state.audit)} audit entries)")
        rows = timeline_rows(state)
        lines.append(_indent(render_table(["time", "offset", "actor", "action", "change", "details"], rows)))
    else:
        lines.append("Timeline: no audit entries yet")
    return "\n".join(lines)


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def render_result(incident: str, control: str, result: ControlResult) -> str:
    pending = ", ".join(result.pending_gates) or "none"
    return (
        f"{result.message or control + ' accepted'}\n"
        f"  {incident}: phase {result.phase.value}, tier {result.tier.value}, ramp {result.ramp_percent}%, "
        f"pending gates: {pending}"
    )


class ChainVerdict(BaseModel):
    incident_id: str
    entries: int
    intact: bool
    broken_at: int | None = None
    problem: str = ""
    head: str = ""


def verify_audit(incident: str, trail: list[AuditEntry]) -> ChainVerdict:
    """verify_chain plus the why: which link of which entry fails."""
    broken = verify_chain(trail)
    if broken is None:
        return ChainVerdict(incident_id=incident, entries=len(trail), intact=True, head=trail[-1].hash if trail else "")
    entry = trail[broken]
    expected_prev = trail[broken - 1].hash if broken else "0" * 64
    if entry.seq != broken:
        why = f"entry at position {broken} carries seq {entry.seq} (an entry was removed, added or reordered)"
    elif entry.prev_hash != expected_prev:
        why = f"prev_hash {entry.prev_hash[:12]} does not match entry {broken - 1}'s hash {expected_prev[:12]}"
    else:
        why = f"its contents do not match its hash {entry.hash[:12]} (the entry was edited)"
    problem = f"entry {broken} ({entry.action} by {entry.actor} at {fmt_time(entry.at)}): {why}"
    return ChainVerdict(incident_id=incident, entries=len(trail), intact=False, broken_at=broken, problem=problem)


def render_timeline_summary(state: IncidentState) -> str:
    """The post-mortem fallback when governor.postmortem is not available: key times and the timeline."""
    failure = state.failure_type.value if state.failure_type else "unclassified failure"
    lines = [
        f"# Post-mortem (timeline only): {state.service} / {state.dependency}",
        "",
        f"Incident `{state.incident_id}`: {failure}, outcome **{state.outcome}**.",
        "",
    ]
    start = state.detected_at
    for label, at in (
        ("Detected", state.detected_at),
        ("Mitigated", state.mitigated_at),
        ("Recovered", state.recovered_at),
        ("Closed", state.closed_at),
    ):
        after = f" (+{fmt_duration(at - start)})" if at and start and label != "Detected" else ""
        lines.append(f"- {label}: {fmt_time(at)}{after}")
    lines += [
        "",
        "## Timeline",
        "",
        "| time | offset | actor | action | change | details |",
        "|---|---|---|---|---|---|",
    ]
    for row in timeline_rows(state):
        lines.append("| " + " | ".join(_cell(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


# ---- argument parsing --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (argparse's 2 is kept for 'refused by the workflow')."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _UpParser(_Parser):
    """`governor up`'s parser: the launcher's flags (workers.stack.add_stack_arguments) are added when `up` is parsed
    or its help shown, so the other commands never import the launcher and the Temporal SDK it pulls in."""

    _stack_flags = False

    def _add_stack_flags(self) -> None:
        if not self._stack_flags:
            from workers.stack import add_stack_arguments

            add_stack_arguments(self)
            self._stack_flags = True

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_stack_flags()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_stack_flags()
        return super().format_help()


def _shared(suppress: bool) -> _Parser:
    """Options accepted before or after the subcommand (the subcommand's copy must not reset the global one)."""
    p = _Parser(add_help=False, argument_default=argparse.SUPPRESS if suppress else None)
    conn = p.add_argument_group("Temporal connection (defaults from GOVERNOR_TEMPORAL_* environment)")
    conn.add_argument("--address", help="host:port (GOVERNOR_TEMPORAL_ADDRESS, default 127.0.0.1:7233)")
    conn.add_argument("--namespace", help="namespace (GOVERNOR_TEMPORAL_NAMESPACE, default 'default')")
    conn.add_argument("--task-queue", help="worker task queue (GOVERNOR_TEMPORAL_TASK_QUEUE)")
    conn.add_argument("--api-key", help="API key (prefer GOVERNOR_TEMPORAL_API_KEY: flags show in `ps`)")
    conn.add_argument(
        "--tls",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="use TLS (GOVERNOR_TEMPORAL_TLS)",
    )
    conn.add_argument("--tls-cert", type=Path, help="client certificate PEM (GOVERNOR_TEMPORAL_TLS_CERT)")
    conn.add_argument("--tls-key", type=Path, help="client key PEM (GOVERNOR_TEMPORAL_TLS_KEY)")
    conn.add_argument("--tls-ca", type=Path, help="server CA PEM (GOVERNOR_TEMPORAL_TLS_CA)")
    conn.add_argument("--timeout", type=float, help="seconds to wait for Temporal and the worker (default 15)")
    p.add_argument("--policy-dir", type=Path, help=f"policy folder ({POLICY_DIR_ENV}, default ./policies)")
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print JSON instead of text",
    )
    return p


def _who() -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help=f"who is acting (else ${USER_ENV}, else user in ~/.config/governor/config.toml)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="governor",
        description="Fallback Governor: durable incident recovery for AI services, on Temporal.",
        parents=[_shared(suppress=False)],
        epilog="Exit codes: 0 ok, 1 usage/config error, 2 refused by the workflow, 3 unknown incident, "
        "4 Temporal or worker not answering, 5 audit chain broken.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    shared = _shared(suppress=True)
    who = _who()

    def add(name: str, help_: str, *, actor: bool = False) -> argparse.ArgumentParser:
        parents = [shared, who] if actor else [shared]
        return sub.add_parser(name, help=help_, description=help_, parents=parents)

    # -- policy ---------------------------------------------------------------------------------------------------
    p = add(
        "setup", "check a service's policy and show what the governor will do (or --init a starter policy)", actor=True
    )
    p.add_argument("--service", required=True)
    p.add_argument("--init", action="store_true", help="write a starter policy if the service has none")
    p.add_argument("--dependency", default="primary-llm", help="with --init: the primary dependency's name")
    p.add_argument("--primary-url", help="with --init: the primary upstream base URL")
    p.add_argument("--secondary-url", help="with --init: a secondary upstream base URL")
    p.add_argument("--approver", action="append", default=[], help="with --init: who may approve gates (repeat)")

    p = add("validate", "validate policy files or folders; errors name the file, the field and the bad value")
    p.add_argument("paths", nargs="+", type=Path, metavar="POLICY")

    add("scenarios", "the ten failure types: detection method, typical recovery time, manual intervention")

    p = add("chain", "a service's fallback chain from its policy: quality, latency, approval to exit")
    p.add_argument("--service", required=True)

    # -- incidents --------------------------------------------------------------------------------------------------
    add("status", "every service: its open incident, tier, quality, degradation and ramp")

    p = add("list", "incidents found through their search attributes (open ones unless --all)")
    p.add_argument("--service")
    p.add_argument("--phase", type=parse_phase)
    p.add_argument("--awaiting", action="store_true", help="only incidents waiting for an approval")
    p.add_argument("--all", action="store_true", help="closed incidents too")
    p.add_argument("--limit", type=parse_positive, default=100, help="at most this many rows (default 100)")

    p = add("show", "one incident: phase, tier, degradation, ramp, pending gates, timeline")
    p.add_argument("incident", metavar="INCIDENT", help="workflow id (recovery-chat-primary-llm) or chat/primary-llm")

    p = add("simulate", "report a failure of a given type through the SDK (opens or joins an incident)")
    p.add_argument("--service", required=True)
    p.add_argument("--dependency", help="default: the dependency backing the primary in the policy")
    p.add_argument("--type", required=True, type=parse_failure_type, dest="failure_type", metavar="FAILURE_TYPE")
    p.add_argument("--severity", type=parse_severity)
    p.add_argument("--message", default="")
    p.add_argument("--metric", action="append", type=parse_metric, default=[], metavar="NAME=VALUE")

    p = add(
        "failover", "force a tier on the service's open incident, or report a manual failure to open one", actor=True
    )
    p.add_argument("--service", required=True)
    p.add_argument("--tier", required=True, type=parse_tier)
    p.add_argument("--dependency", help="which incident (default: the only open one, else the primary's dependency)")
    p.add_argument("--reason", default="manual failover")

    p = add("recover", "declare the service's dependency remediated (the workflow validates, then ramps)", actor=True)
    p.add_argument("--service", required=True)
    p.add_argument("--dependency")
    p.add_argument("--reason", default="")

    for verb, help_ in (("approve", "approve a pending gate"), ("reject", "reject a pending gate")):
        p = add(verb, help_, actor=True)
        p.add_argument("incident", metavar="INCIDENT")
        p.add_argument("--gate", required=True, help="e.g. ramp:10, exit:tier_3_degraded, promote")
        p.add_argument("--reason", required=True, help="why; it goes on record")

    for verb, help_ in (
        ("pause", "hold the incident at its next safe point"),
        ("resume", "continue a paused incident"),
        ("abort", "abort the ramp: primary weight 0, fallback tier pinned again"),
        ("promote", "skip the remaining ramp steps (gated like the last step)"),
    ):
        p = add(verb, help_, actor=True)
        p.add_argument("incident", metavar="INCIDENT")
        p.add_argument("--reason", default="")

    p = add("force-tier", "pin the incident to a tier (manual override)", actor=True)
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("--tier", required=True, type=parse_tier)
    p.add_argument("--reason", default="")

    p = add("note", "add a note to the incident's record", actor=True)
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("text", nargs="+", metavar="TEXT")

    p = add("audit", "the incident's hash-chained audit trail")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="ACTION", parser_class=_Parser, required=True)
    v = audit_sub.add_parser("verify", help="prove the chain is intact, or say where it breaks", parents=[shared])
    v.add_argument("incident", nargs="?", metavar="INCIDENT")
    v.add_argument("--file", type=Path, help="verify a saved state (`governor show --json`) instead of querying")

    p = add("postmortem", "print the incident's post-mortem")
    p.add_argument("incident", metavar="INCIDENT")
    p.add_argument("--output", type=Path, help="write to this file instead of stdout")

    # -- running it -------------------------------------------------------------------------------------------------
    p = add("watch", "start a watchdog per dependency of every policy, or hand running ones the edited policy")
    p.add_argument("--service", help="only this service's policy")

    up_help = (
        "run the whole stack on this machine (Temporal dev server, worker, gateway, intake, watchdogs); "
        "--demo plays a live incident"
    )
    sub._parser_class = _UpParser  # the launcher's own flags join on first use (see _UpParser)
    p = sub.add_parser("up", help=up_help, description=up_help, parents=[shared])
    sub._parser_class = _Parser
    p.add_argument(
        "--auto-approve",
        nargs="?",
        const=True,
        default=False,
        type=parse_bool,
        metavar="BOOL",
        help=f"with --demo: {DEMO_BOT} approves the gates after a few seconds (default: wait for a human)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="with --demo: show every part's output here too (it always goes to <state>/logs/)",
    )
    p.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="with --demo: stop the stack when the incident is over; exit 0 only if it recovered (CI, benchmarks)",
    )
    return parser


# ---- commands ----------------------------------------------------------------------------------------------------


def _policy_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "policy_dir", None):
        return Path(args.policy_dir)
    return Path(os.environ.get(POLICY_DIR_ENV) or "policies")


def _temporal_settings(args: argparse.Namespace) -> TemporalSettings:
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


def _emit(args: argparse.Namespace, data: Any, text: str | Callable[[], str]) -> None:
    if getattr(args, "json", False):
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        elif isinstance(data, list):
            data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text() if callable(text) else text)


def _primary_dependency(policy: ServicePolicy) -> str:
    for dep in policy.dependencies:
        if dep.tier in (None, FallbackTier.TIER_0_PRIMARY):
            return dep.name
    return policy.dependencies[0].name


def _maybe_policy(args: argparse.Namespace, service: str) -> ServicePolicy | None:
    """The service's policy if the policy folder has one; a broken policy file is still an error."""
    directory = _policy_dir(args)
    if not directory.is_dir():
        return None
    policies = load_policy_dir(directory)
    return policies.get(service)


def cmd_setup(args: argparse.Namespace) -> int:
    directory = _policy_dir(args)
    policies = load_policy_dir(directory) if directory.is_dir() else {}
    policy = policies.get(args.service)
    if policy is None:
        if not args.init:
            known = ", ".join(sorted(policies)) or "none"
            raise UserError(
                f"{directory}: no policy for service {args.service!r} (known: {known})\n"
                f"  to start one: governor setup --service {args.service} --init --primary-url URL"
            )
        policy = _write_starter_policy(args, directory)
    _emit(args, policy, lambda: render_setup(policy))
    return EXIT_OK


def _write_starter_policy(args: argparse.Namespace, directory: Path) -> ServicePolicy:
    if not args.primary_url:
        raise UserError("--init needs --primary-url (the primary upstream's base URL)")
    approvers = args.approver or [resolve_identity(getattr(args, "actor", None))]
    chain: list[dict[str, Any]] = [{"tier": "tier_0_primary", "upstream": args.primary_url}]
    if args.secondary_url:
        chain.append({"tier": "tier_1_secondary", "upstream": args.secondary_url})
    chain += [
        {"tier": "tier_2_cache", "ttl_s": 300},
        {"tier": "tier_4_static", "body": {"error": "temporarily limited", "retry_after_s": 60}},
    ]
    data = {
        "service": args.service,
        "dependencies": [
            {"name": args.dependency, "tier": "tier_0_primary", "health_url": args.primary_url.rstrip("/") + "/health"}
        ],
        "chain": chain,
        "approvals": {"approvers": approvers},
    }
    path = directory / f"{args.service}.yaml"
    policy = parse_policy(data, str(path))
    if path.exists():
        raise UserError(f"{path} exists but defines another service; not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    header = f"# Starter policy for {args.service}, written by `governor setup --init`. Every field: README.md.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {path}")
    return policy


def render_setup(policy: ServicePolicy) -> str:
    lines = [f"Service {policy.service}: policy valid", ""]
    lines.append("Dependencies")
    rows = [
        [d.name, d.type, d.tier.value if d.tier else "tier_0_primary", d.health_url, f"{d.timeout_ms} ms", d.retries]
        for d in policy.dependencies
    ]
    lines.append(_indent(render_table(["name", "type", "backs", "health url", "timeout", "retries"], rows)))
    lines += ["", render_chain(policy), ""]
    steps = " > ".join(f"{s.percent}% ({fmt_duration(timedelta(seconds=s.soak_s))})" for s in policy.ramp.steps)
    lines.append(f"Ramp back to primary: {steps}")
    lines.append(
        f"Rollback when the primary's error rate > {policy.rollback.error_rate:.0%} during a step; "
        f"after {policy.rollback.max_attempts} attempts wait for a human"
    )
    gates = ", ".join(policy.approvals.gates) or "none"
    lines.append(
        f"Approval gates: {gates}; approvers: {', '.join(policy.approvals.approvers)}"
        + ("; four-eyes" if policy.approvals.four_eyes else "")
    )
    lines.append(f"Gateways: {', '.join(policy.gateways)}")
    dep = _primary_dependency(policy)
    lines += ["", f"Try it: governor simulate --service {policy.service} --dependency {dep} --type model_unavailable"]
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    for path in args.paths:
        try:
            if is_policy_dir(path):  # an unusable path (too long, unreadable) is a PolicyError, not a traceback
                policies = load_policy_dir(path)
                for service, policy in policies.items():
                    results.append(
                        {
                            "file": str(path),
                            "ok": True,
                            "service": service,
                            "tiers": len(policy.chain),
                            "dependencies": len(policy.dependencies),
                        }
                    )
                if not policies:
                    results.append({"file": str(path), "ok": False, "error": f"{path}: no *.yaml policy files"})
            else:
                policy = load_policy(path)
                results.append(
                    {
                        "file": str(path),
                        "ok": True,
                        "service": policy.service,
                        "tiers": len(policy.chain),
                        "dependencies": len(policy.dependencies),
                    }
                )
        except PolicyError as err:
            results.append({"file": str(path), "ok": False, "error": str(err)})
    failed = [r for r in results if not r["ok"]]
    if args.json:
        _emit(args, results, "")
    else:
        for r in results:
            if r["ok"]:
                print(f"ok  {r['file']}: service {r['service']}, {r['dependencies']} dependencies, {r['tiers']} tiers")
        for r in failed:
            print(r["error"], file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK


def cmd_scenarios(args: argparse.Namespace) -> int:
    data = [
        {
            "failure_type": t.value,
            "detection_method": t.detection_method,
            "typical_recovery_minutes": t.typical_recovery_minutes,
            "requires_manual_intervention": t.requires_manual_intervention,
            "base_severity": BASE_SEVERITY[t].value,
        }
        for t in FailureType
    ]
    rows = [
        [
            d["failure_type"],
            d["detection_method"],
            d["typical_recovery_minutes"],
            d["requires_manual_intervention"],
            d["base_severity"],
        ]
        for d in data
    ]
    _emit(
        args,
        data,
        lambda: render_table(
            ["failure type", "detection", "typical recovery (min)", "manual intervention", "base severity"], rows
        ),
    )
    return EXIT_OK


def chain_rows(policy: ServicePolicy) -> list[dict[str, Any]]:
    rows = []
    for spec in policy.chain:
        tier = spec.tier
        if spec.upstream:
            serves = spec.upstream
        elif tier is FallbackTier.TIER_2_CACHE:
            serves = f"cache (ttl {spec.ttl_s}s)"
        elif tier is FallbackTier.TIER_4_STATIC:
            serves = f"static answer (HTTP {spec.status})"
        else:
            serves = "explicit error (503)"
        rows.append(
            {
                "tier": tier.value,
                "serves": serves,
                "quality_percentage": tier.quality_percentage,
                "latency_multiplier": tier.latency_multiplier,
                "degradation_level": policy.degradation.level_for(tier).value,
                "approval_to_exit": policy.approvals.is_gated(f"exit:{tier.value}"),
                "approval_to_enter": policy.approvals.is_gated(f"enter:{tier.value}"),
            }
        )
    return rows


def render_chain(policy: ServicePolicy) -> str:
    rows = [
        [
            r["tier"],
            r["serves"],
            f"{r['quality_percentage']}%",
            f"{r['latency_multiplier']}x",
            r["degradation_level"],
            r["approval_to_exit"],
        ]
        for r in chain_rows(policy)
    ]
    table = render_table(["tier", "serves", "quality", "latency", "degradation", "approval to exit"], rows)
    return f"Fallback chain of {policy.service} (on failure, each tier falls through to the next)\n" + _indent(table)


def cmd_chain(args: argparse.Namespace) -> int:
    policy = find_policy(_policy_dir(args), args.service)
    _emit(args, {"service": policy.service, "chain": chain_rows(policy)}, lambda: render_chain(policy))
    return EXIT_OK


# -- commands on Temporal ------------------------------------------------------------------------------------------


async def _connect(args: argparse.Namespace) -> Any:
    from governor.client import DEFAULT_RPC_TIMEOUT, GovernorClient

    timeout = timedelta(seconds=args.timeout) if getattr(args, "timeout", None) else DEFAULT_RPC_TIMEOUT
    return await GovernorClient.connect(_temporal_settings(args), rpc_timeout=timeout)


def _summary_rows(incidents: list[Any]) -> list[list[Any]]:
    return [
        [
            i.incident_id,
            i.failure_type.value if i.failure_type else None,
            i.severity.value if i.severity else None,
            i.phase.value if i.phase else None,
            i.tier.value if i.tier else None,
            f"{i.ramp_percent}%" if i.ramp_percent is not None else None,
            "WAITING" if i.awaiting_approval else "",
            i.status.lower(),
            i.started_at,
        ]
        for i in incidents
    ]


async def cmd_list(args: argparse.Namespace) -> int:
    gc = await _connect(args)
    incidents = await gc.list_incidents(
        service=args.service,
        phase=args.phase,
        awaiting_approval=True if args.awaiting else None,
        open_only=not args.all,
        limit=args.limit + 1,
    )
    more = len(incidents) > args.limit
    incidents = incidents[: args.limit]
    headers = ["incident", "failure", "severity", "phase", "tier", "ramp", "approval", "status", "started"]

    def text() -> str:
        if not incidents:
            return "no open incidents" if not args.all else "no incidents"
        table = render_table(headers, _summary_rows(incidents))
        return table + (f"\n(first {args.limit} shown; narrow with --service/--phase or raise --limit)" if more else "")

    _emit(args, incidents, text)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace) -> int:
    gc = await _connect(args)
    incidents = await gc.list_incidents(limit=None)
    directory = _policy_dir(args)
    services = sorted(load_policy_dir(directory)) if directory.is_dir() else []
    rows: list[dict[str, Any]] = []
    for i in incidents:
        tier = i.tier or FallbackTier.TIER_0_PRIMARY
        rows.append(
            {
                "service": i.service,
                "dependency": i.dependency,
                "incident_id": i.incident_id,
                "phase": i.phase.value if i.phase else None,
                "tier": tier.value,
                "quality": tier.quality_percentage,
                "degradation": i.degradation_level.value if i.degradation_level else None,
                "ramp_percent": i.ramp_percent,
                "awaiting_approval": i.awaiting_approval,
            }
        )
    with_incident = {i.service for i in incidents}
    for service in services:
        if service not in with_incident:
            rows.append(
                {
                    "service": service,
                    "dependency": None,
                    "incident_id": None,
                    "phase": None,
                    "tier": FallbackTier.TIER_0_PRIMARY.value,
                    "quality": 100,
                    "degradation": "normal",
                    "ramp_percent": None,
                    "awaiting_approval": False,
                }
            )
    rows.sort(key=lambda r: (r["service"] or "", r["dependency"] or ""))

    def text() -> str:
        head = f"{len(incidents)} open incident(s); {len(services)} service(s) with a policy in {directory}"
        table = render_table(
            ["service", "dependency", "incident", "phase", "tier", "quality", "degradation", "ramp", "approval"],
            [
                [
                    r["service"],
                    r["dependency"],
                    r["incident_id"],
                    r["phase"],
                    r["tier"],
                    f"{r['quality']}%",
                    r["degradation"],
                    f"{r['ramp_percent']}%" if r["ramp_percent"] is not None else None,
                    "WAITING" if r["awaiting_approval"] else "",
                ]
                for r in rows
            ],
        )
        return head + ("\n" + table if rows else "")

    _emit(args, {"open_incidents": len(incidents), "services": rows}, text)
    return EXIT_OK


async def cmd_show(args: argparse.Namespace) -> int:
    gc = await _connect(args)
    state = await gc.state(resolve_incident(args.incident))
    _emit(args, state, lambda: render_incident(state))
    return EXIT_OK


async def cmd_simulate(args: argparse.Namespace) -> int:
    policy = _maybe_policy(args, args.service)
    dependency = args.dependency or (_primary_dependency(policy) if policy else None)
    if dependency is None:
        raise UserError(f"no policy for {args.service!r} in {_policy_dir(args)}: pass --dependency")
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
    gc = await _connect(args)
    reported = await gc.report_failure(report)
    verb = {True: "opened", False: "joined open incident", None: "reported to"}[reported.started]
    _emit(
        args,
        reported,
        f"{verb} {reported.incident_id} ({args.failure_type.value})\n  follow it: governor show {reported.incident_id}",
    )
    return EXIT_OK


async def _one_open(gc: Any, service: str, dependency: str | None) -> Any | None:
    found = await gc.find_open(service, dependency)
    if len(found) > 1:
        ids = ", ".join(i.incident_id for i in found)
        raise UserError(f"{service} has {len(found)} open incidents ({ids}): pass --dependency")
    return found[0] if found else None


async def cmd_failover(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    policy = _maybe_policy(args, args.service)
    if policy is not None and args.tier not in policy.tiers:
        chain = ", ".join(t.value for t in policy.tiers)
        raise UserError(f"{args.tier.value} is not in {args.service}'s chain ({chain})")
    gc = await _connect(args)
    current = await _one_open(gc, args.service, args.dependency)
    messages: list[str] = []
    if current is None:
        dependency = args.dependency or (_primary_dependency(policy) if policy else None)
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
    _emit(args, {"incident_id": target, "result": result.model_dump(mode="json")}, "\n".join(messages))
    return EXIT_OK


async def cmd_recover(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    gc = await _connect(args)
    current = await _one_open(gc, args.service, args.dependency)
    if current is None:
        which = f"{args.service}/{args.dependency}" if args.dependency else args.service
        raise UserError(f"no open incident for {which} (see `governor list`)", EXIT_UNKNOWN_INCIDENT)
    result = await gc.declare_remediated(current.incident_id, who, args.reason)
    _emit(
        args,
        {"incident_id": current.incident_id, "result": result.model_dump(mode="json")},
        render_result(current.incident_id, "declare_remediated", result),
    )
    return EXIT_OK


async def cmd_control(args: argparse.Namespace) -> int:
    who = resolve_identity(args.actor)
    incident = resolve_incident(args.incident)
    gc = await _connect(args)
    command = args.command
    if command in {"approve", "reject"}:
        result = await getattr(gc, command)(incident, args.gate, who, args.reason)
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
    _emit(
        args,
        {"incident_id": incident, "result": result.model_dump(mode="json")},
        render_result(incident, label, result),
    )
    return EXIT_OK


def _load_saved_trail(path: Path) -> tuple[str, list[AuditEntry]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read a saved state ({err})") from None
    try:
        if isinstance(data, list):
            return str(path), [AuditEntry.model_validate(e) for e in data]
        state = IncidentState.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: not an incident state or audit list ({where}: {first['msg']})") from None
    return state.incident_id, state.audit


async def cmd_audit(args: argparse.Namespace) -> int:
    if args.file is not None:
        incident, trail = _load_saved_trail(args.file)
    elif args.incident:
        gc = await _connect(args)
        incident = resolve_incident(args.incident)
        trail = (await gc.state(incident)).audit
    else:
        raise UserError("audit verify needs an INCIDENT or --file STATE.json")
    verdict = verify_audit(incident, trail)
    if verdict.intact:
        text = f"{incident}: audit chain intact ({verdict.entries} entries, head {verdict.head[:12] or '-'})"
    else:
        text = f"{incident}: audit chain BROKEN at {verdict.problem}"
    _emit(args, verdict, text)
    return EXIT_OK if verdict.intact else EXIT_CHAIN_BROKEN


def postmortem_module() -> Any | None:
    """governor.postmortem when that module exists (another part of the project writes it)."""
    try:
        return importlib.import_module("governor.postmortem")
    except ModuleNotFoundError as err:
        if err.name == "governor.postmortem":
            return None
        raise


def render_postmortem(state: IncidentState, policy: ServicePolicy | None) -> tuple[str, dict[str, Any] | None, str]:
    """(Markdown, JSON or None, why it is timeline-only or ''): the full report when governor.postmortem can make it."""
    module = postmortem_module()
    render = None
    if module is not None:
        render = getattr(module, "render_markdown", None) or getattr(module, "render_postmortem", None)
    if not callable(render):
        return render_timeline_summary(state), None, "governor.postmortem is not available"
    params = inspect.signature(render).parameters
    kwargs: dict[str, Any] = {}
    if "policy" in params:
        if policy is None and params["policy"].default is inspect.Parameter.empty:
            why = f"no policy for service {state.service!r} in the policy folder (the full report needs it)"
            return render_timeline_summary(state), None, why
        kwargs["policy"] = policy
    markdown = render(state, **kwargs)
    as_json = getattr(module, "postmortem_json", None)
    data = as_json(state, **kwargs) if callable(as_json) else None
    return markdown, data, ""


async def cmd_postmortem(args: argparse.Namespace) -> int:
    gc = await _connect(args)
    state = await gc.state(resolve_incident(args.incident))
    try:
        policy = _maybe_policy(args, state.service)
    except PolicyError as err:
        print(f"note: ignoring the policy folder: {err}", file=sys.stderr)
        policy = None  # the post-mortem reads the incident; a broken policy folder must not hide it
    markdown, data, partial = render_postmortem(state, policy)
    if partial:
        print(f"note: {partial}; printing the timeline only", file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown)
        print(f"wrote {args.output}")
    elif args.json:
        full = {"incident_id": state.incident_id, "timeline_only": bool(partial), "markdown": markdown}
        _emit(args, data if data is not None else full, "")
    else:
        print(markdown, end="" if markdown.endswith("\n") else "\n")
    return EXIT_OK


async def cmd_watch(args: argparse.Namespace) -> int:
    from temporalio.service import RPCError

    from workflows.watchdog import start_or_update_watchdogs

    policies = load_policy_dir(_policy_dir(args))
    if args.service is not None:
        if args.service not in policies:
            raise UserError(f"{_policy_dir(args)} has no policy for service {args.service!r}")
        policies = {args.service: policies[args.service]}
    if not policies:
        raise UserError(f"{_policy_dir(args)} has no policy file (*.yaml)")
    gc = await _connect(args)
    try:
        ids = await start_or_update_watchdogs(gc.temporal, policies, gc.task_queue)
    except RPCError as err:
        raise UserError(f"cannot start the watchdogs: {err.message}", EXIT_UNAVAILABLE) from None
    _emit(args, {"watchdogs": ids}, lambda: "watching: " + ", ".join(ids))
    return EXIT_OK


DEMO_BOT = "demo-bot"


async def cmd_up(args: argparse.Namespace) -> int:
    """`governor up`: the embedded stack (workers/stack.py); with --demo the live incident of demo/scenario.py."""
    import time

    from workers.stack import PROJECT_ROOT, StackError, options_from_args, run_stack

    started = time.monotonic()
    options = options_from_args(args)
    if getattr(args, "task_queue", None):
        options.task_queue = args.task_queue
    demo = bool(getattr(args, "demo", False))
    if not getattr(args, "policy_dir", None):
        options.policy_dir = PROJECT_ROOT / "demo" / "policies" if demo else _policy_dir(args)
    if not demo and (args.auto_approve or args.exit_after_demo):
        raise UserError("--auto-approve and --exit-after-demo only apply with --demo")
    results: list[Any] = []
    try:
        if demo:
            from demo.scenario import DemoSettings, prepare_demo

            settings = DemoSettings(auto_approve=args.auto_approve, unattended=args.exit_after_demo, started_at=started)
            # The demo tells its story in sentences; the parts' logs would drown it (they stay in <state>/logs/).
            options.echo = options.echo and args.verbose
            settings.parts_echoed = options.echo
            await run_stack(options, prepare_demo(options, settings, results))
        else:
            await run_stack(options, _start_watchdogs)
    except StackError as err:
        red = "\033[31m%s\033[0m" if sys.stderr.isatty() else "%s"
        print(red % f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    if demo and args.exit_after_demo and not (results and results[-1].recovered):
        print("governor: the demo stopped before the incident recovered", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _start_watchdogs(info: Any) -> None:
    """Without --demo: watch every dependency of every policy (what `governor watch` does)."""
    from workflows.watchdog import start_or_update_watchdogs

    if not info.policies:
        return
    ids = await start_or_update_watchdogs(info.client, info.policies, info.task_queue)
    print(f"watchdogs watching: {', '.join(ids)}", file=info.out, flush=True)


SYNC_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "setup": cmd_setup,
    "validate": cmd_validate,
    "scenarios": cmd_scenarios,
    "chain": cmd_chain,
}
ASYNC_COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "status": cmd_status,
    "list": cmd_list,
    "show": cmd_show,
    "simulate": cmd_simulate,
    "failover": cmd_failover,
    "recover": cmd_recover,
    "audit": cmd_audit,
    "postmortem": cmd_postmortem,
    "watch": cmd_watch,
    "up": cmd_up,
    **{c: cmd_control for c in ("approve", "reject", "pause", "resume", "abort", "promote", "force-tier", "note")},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


async def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; user errors print a message (no traceback) and map to the exit codes above."""
    from governor.client import (
        ControlRefused,
        GovernorConfigError,
        GovernorError,
        GovernorUnavailable,
        IncidentNotFound,
    )

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command in SYNC_COMMANDS:
            return SYNC_COMMANDS[args.command](args)
        return int(await ASYNC_COMMANDS[args.command](args))
    except UserError as err:
        print(f"governor: {err}", file=sys.stderr)
        return err.exit_code
    except PolicyError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ControlRefused as err:
        print(f"refused: {err.reason}", file=sys.stderr)
        return EXIT_REFUSED
    except IncidentNotFound as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_UNKNOWN_INCIDENT
    except GovernorConfigError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (GovernorUnavailable, TimeoutError) as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except GovernorError as err:
        print(f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`governor = governor.cli:main`)."""
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
