"""The `governor` command line: its parser (every command, its flags and their types)."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from cli.common import (
    EXIT_USAGE,
    POLICY_DIR_ENV,
    USER_ENV,
    parse_bool,
    parse_drill_duration,
    parse_failure_type,
    parse_metric,
    parse_phase,
    parse_positive,
    parse_seconds,
    parse_severity,
    parse_tier,
)
from cli.examples import examples
from workers.stack_options import add_stack_arguments

DEMO_BOT = "demo-bot"


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1 (argparse's 2 is kept for 'refused by the workflow')."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        message += did_you_mean(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def did_you_mean(message: str) -> str:
    """`(did you mean 'list'?)` for argparse's "invalid choice: 'lsit' (choose from ...)", else nothing."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return ""
    choices = re.findall(r"'([^']*)'", found.group(2))
    close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shared(suppress: bool) -> _Parser:
    """Options accepted before or after the subcommand (the subcommand's copy must not reset the global one)."""
    p = _Parser(add_help=False, argument_default=argparse.SUPPRESS if suppress else None)
    conn: Any = p.add_argument_group("Temporal connection (defaults from GOVERNOR_TEMPORAL_* environment)")
    if suppress:  # a subcommand accepts them too, but its help points to `governor --help` instead of repeating them
        conn = _Hidden(conn)
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


class _Hidden:
    """An argument group whose arguments are accepted but not listed in the help."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        kwargs["help"] = argparse.SUPPRESS
        self.group.add_argument(*names, **kwargs)


def _who() -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument(
        "--as",
        dest="actor",
        metavar="NAME",
        help=f"who is acting (else ${USER_ENV}, else user in ~/.config/governor/config.toml)",
    )
    return p


def _gateway_token(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gateway-token-file",
        type=Path,
        help="file holding the gateways' admin token (else $GOVERNOR_GATEWAY_TOKEN, else state/secrets/gateway-token)",
    )


def _watch(p: argparse.ArgumentParser, until: str) -> None:
    p.add_argument("--watch", "-w", action="store_true", help=f"redraw every --interval seconds {until}")
    p.add_argument(
        "--interval", type=parse_seconds, default=2.0, metavar="SECONDS", help="with --watch: seconds between redraws"
    )
    p.add_argument("--watch-count", type=parse_positive, metavar="N", help="stop after N redraws (implies --watch)")


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
        return sub.add_parser(
            name,
            help=help_,
            description=help_,
            parents=parents,
            epilog=examples(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

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

    for name, help_ in (
        (
            "chain",
            "a service's fallback chain: the tier serving now (→), each tier's breaker, quality, approval to exit",
        ),
        ("hierarchy", "the seed's name for `chain`: the fallback chain with the tier serving now marked"),
    ):
        p = add(name, help_)
        p.add_argument("service_arg", nargs="?", metavar="SERVICE")
        p.add_argument("--service", dest="service_flag", help="the same as SERVICE")
        p.add_argument("--policy-only", action="store_true", help="the policy's table only; do not ask the gateways")
        _gateway_token(p)

    p = add("alert-rules", "Prometheus alert rules from the policies: SLO burn rate per dependency, governor health")
    p.add_argument("--output", type=Path, metavar="FILE", help="write the rule file here (default: standard output)")

    p = add("policy", "policy tools: `schema` writes the policy's JSON Schema so editors validate YAML as it is typed")
    policy_sub = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=_Parser, required=True)
    sch = policy_sub.add_parser("schema", help="the policy's JSON Schema (from the pydantic models)", parents=[shared])
    sch.add_argument("--output", type=Path, metavar="FILE", help="write it here (default: standard output)")

    p = add("completion", "print the shell completion script (bash or zsh)")
    p.add_argument("shell", choices=("bash", "zsh"), metavar="SHELL", help="bash or zsh")

    # -- incidents --------------------------------------------------------------------------------------------------
    p = add(
        "status",
        "the seed's status report, live: health, degradation, active fallbacks, breakers, open incidents and progress",
    )
    _gateway_token(p)

    p = add("recovery", "an incident's recovery checks and ramp with their latest results, what is left, the ETA")
    p.add_argument("incident", metavar="INCIDENT", help="workflow id (recovery-chat) or chat/primary-llm")

    p = add("list", "incidents found through their search attributes (open ones unless --all)")
    p.add_argument("--service")
    p.add_argument("--phase", type=parse_phase)
    p.add_argument("--awaiting", action="store_true", help="only incidents waiting for an approval")
    p.add_argument("--all", action="store_true", help="closed incidents too")
    p.add_argument("--limit", type=parse_positive, default=100, help="at most this many rows (default 100)")
    _watch(p, "until Ctrl-C")

    p = add("show", "one incident: phase, tier, degradation, ramp, pending gates, timeline")
    p.add_argument("incident", metavar="INCIDENT", help="workflow id (recovery-chat) or chat/primary-llm")
    _watch(p, "until the incident closes or Ctrl-C")

    p = add(
        "simulate",
        "report a failure of a given type through the SDK (opens or joins an incident), or with --drill run a drill",
        actor=True,
    )
    p.add_argument("--service", required=True)
    p.add_argument("--dependency", help="default: the dependency backing the primary in the policy")
    p.add_argument("--type", required=True, type=parse_failure_type, dest="failure_type", metavar="FAILURE_TYPE")
    p.add_argument("--severity", type=parse_severity)
    p.add_argument("--message", default="")
    p.add_argument("--metric", action="append", type=parse_metric, default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--drill",
        action="store_true",
        help="a game day: force the failed tier's breaker open, recover for real, tell on-call only, restore on its own",
    )
    p.add_argument(
        "--duration",
        type=parse_drill_duration,
        metavar="SECONDS",
        help="with --drill: how long the injected failure lasts (default: the policy's drills.duration_s, 60)",
    )

    p = add(
        "failover", "force a tier on the service's open incident, or report a manual failure to open one", actor=True
    )
    p.add_argument("--service", required=True)
    p.add_argument(
        "--tier", type=parse_tier, help="the tier to serve (default: one tier down from the tier served now)"
    )
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
        p.add_argument(
            "--gate-id",
            help="the pending request's id (governor show lists it); without it, the request pending right now",
        )
        p.add_argument("--reason", required=True, help="why; it goes on record")

    for verb, help_ in (
        ("pause", "hold the incident at its next safe point"),
        ("resume", "continue a paused incident"),
        ("abort", "abort the ramp: primary weight 0, fallback tier pinned again"),
        ("promote", "skip the remaining ramp steps (gated like the last step)"),
        ("claim", "take ownership of the incident: its recovery plan names you as the owner"),
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
    p = sub.add_parser(
        "up",
        help=up_help,
        description=up_help,
        parents=[shared],
        epilog=examples("up"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_arguments(p, exclude=("--namespace", "--policy-dir"))  # those two are the shared options above
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
