"""`governor up`'s options and their command-line flags, free of the Temporal SDK so the CLI can build its parser
without importing the launcher."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from governor.enums import FallbackTier
from governor.incident import DEFAULT_TASK_QUEUE
from workers.supervisor import ProcessSpec

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEMO_UPSTREAM_TIERS = {
    FallbackTier.TIER_0_PRIMARY: "primary",
    FallbackTier.TIER_1_SECONDARY: "secondary",
    FallbackTier.TIER_3_DEGRADED: "degraded",
}
DEFAULT_UPSTREAM_PORTS = {"primary": 9101, "secondary": 9102, "degraded": 9103}


@dataclass
class StackOptions:
    """What `governor up` starts and where. Ports left as None follow the policy files (gateways, upstream URLs)."""

    state_dir: Path = Path("state")
    policy_dir: Path = Path("policies")
    host: str = "127.0.0.1"
    temporal_port: int = 7233
    ui_port: int = 8233
    gateway_port: int | None = None
    metrics_port: int = 9464
    intake_port: int = 9095
    upstream_ports: dict[str, int] | None = None
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    gateway_token: str | None = None
    """Admin token shared by the gateway and the worker; default $GOVERNOR_GATEWAY_TOKEN, else a random token kept
    in `<state>/secrets/gateway-token` (0600), made on the first `up` of that state folder."""
    intake_token: str | None = None
    """Bearer token services report failures to the intake with; default $GOVERNOR_INTAKE_TOKEN, else a random
    token kept in `<state>/secrets/intake-token` (0600)."""
    demo: bool = False
    worker: bool = True
    gateway: bool = True
    intake: bool = True
    """The failure intake (`python -m workers.intake`): Alertmanager webhooks and JSON reports become incidents."""
    bin_dir: Path | None = None
    """The virtualenv's bin folder (python, temporal); default: the one this Python runs from."""
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 10.0
    echo: bool = True
    """Copy every child's output to the terminal with a short colored prefix (it always goes to the log files)."""
    stop_after_scenario: bool = False
    """Stop the stack when the scenario returns (unattended runs); otherwise keep running until Ctrl-C."""
    extra_processes: list[ProcessSpec] = field(default_factory=list)
    """More processes to supervise (started after the others), e.g. a traffic generator."""
    client_key: bool = False
    """Give the gateway a client key file (<state>/secrets/client-keys.json) holding one key, `demo`, whose value is
    kept in <state>/secrets/demo-client-key, shown in the banner and handed to the `traffic` process
    (GOVERNOR_CLIENT_KEY). `governor up --demo` sets it."""
    out: IO[str] | None = None


def add_stack_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """The options `governor up` and `python -m workers.stack` share; `exclude` names flags the caller defines itself
    (the CLI's shared --namespace and --policy-dir)."""
    d = StackOptions()
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--demo",), {"action": "store_true", "help": "also start the simulated model upstreams"}),
        (("--state-dir",), {"type": Path, "help": "Temporal DB, logs, post-mortems (default state/)"}),
        (("--policy-dir",), {"type": Path, "help": "the service policy files (default policies/)"}),
        (("--temporal-port",), {"type": int, "help": "Temporal gRPC (default 7233)"}),
        (("--ui-port",), {"type": int, "help": "Temporal Web UI (default 8233)"}),
        (("--gateway-port",), {"type": int, "help": "gateway (default: the policy's local gateway, 8080)"}),
        (("--metrics-port",), {"type": int, "help": "worker metrics (default 9464)"}),
        (("--intake-port",), {"type": int, "help": "failure intake (default 9095)"}),
        (("--namespace",), {"help": f"Temporal namespace (default {d.namespace})"}),
        (("--no-worker",), {"dest": "worker", "action": "store_false", "help": "do not start the worker"}),
        (("--no-gateway",), {"dest": "gateway", "action": "store_false", "help": "do not start the gateway"}),
        (("--no-intake",), {"dest": "intake", "action": "store_false", "help": "do not start the failure intake"}),
        (("--quiet",), {"dest": "echo", "action": "store_false", "help": "children's output to log files only"}),
    ]
    skip = set(exclude)
    for flags, kwargs in options:
        if not skip.intersection(flags):
            parser.add_argument(*flags, **kwargs)


def options_from_args(args: argparse.Namespace) -> StackOptions:
    """StackOptions from parsed arguments; anything absent or None keeps its default."""
    d = StackOptions()

    def get(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    return StackOptions(
        state_dir=get("state_dir", d.state_dir),
        policy_dir=get("policy_dir", d.policy_dir),
        temporal_port=get("temporal_port", d.temporal_port),
        ui_port=get("ui_port", d.ui_port),
        gateway_port=get("gateway_port", d.gateway_port),
        metrics_port=get("metrics_port", d.metrics_port),
        intake_port=get("intake_port", d.intake_port),
        namespace=get("namespace", d.namespace),
        demo=get("demo", d.demo),
        worker=get("worker", d.worker),
        gateway=get("gateway", d.gateway),
        intake=get("intake", d.intake),
        echo=get("echo", d.echo),
    )
