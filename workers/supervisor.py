"""A small process supervisor: preflight (ports free, modules present), start in stages, wait until ready, keep
each child's log, and stop them all (apps first, then Temporal) on Ctrl-C, SIGTERM or when one dies.

Generic: it knows processes and ports, not the governor; `workers/stack.py` gives it the governor's parts.
"""

from __future__ import annotations

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
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx


class StackError(RuntimeError):
    """The stack cannot start or keep running; the message says what is wrong and what to do."""


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


# --------------------------------------------------------------------------------------------------- checks


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


# --------------------------------------------------------------------------------------------------- processes

COLORS = ["36", "35", "33", "32", "34", "96", "95", "93"]


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


async def http_ok(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(url)).is_success
    except httpx.HTTPError:
        return False


async def tcp_open(host: str, port: int) -> bool:
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


class StateLock:
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


def say(out: IO[str] | None, text: str = "") -> None:
    if out is not None:
        print(text, file=out, flush=True)


def _shown_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def stages(apps: list[ProcessSpec]) -> list[list[ProcessSpec]]:
    """Start order: the servers the worker talks to (upstreams, gateway, intake) together, then the worker (so its
    watchdogs never probe a gateway that is still starting), then any extra process (a traffic generator)."""
    servers = [s for s in apps if s.name.startswith("upstream-") or s.name in {"gateway", "intake"}]
    worker = [s for s in apps if s.name == "worker"]
    rest = [s for s in apps if s not in servers and s not in worker]
    return [stage for stage in (servers, worker, *([s] for s in rest)) if stage]


async def all_or_none(starts: list[Awaitable[None]]) -> None:
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


class Interrupted(Exception):
    """Ctrl-C arrived while the stack was starting."""


async def supervise(
    children: list[Child],
    stop: asyncio.Event,
    scenario: Callable[[], Awaitable[None]] | None,
    stop_after_scenario: bool,
    out: IO[str],
) -> str | None:
    """Wait for Ctrl-C, a child's death, or the scenario's end; return a failure message or None."""
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    exits = {child.exited: child for child in children}
    scenario_task = asyncio.ensure_future(scenario()) if scenario else None
    waiting: set[asyncio.Future[Any]] = {stopper, *exits}
    if scenario_task:
        waiting.add(scenario_task)
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                say(out, "\nCtrl-C or SIGTERM received")
                return None
            for task in done:
                if task in exits and not exits[task].stopping:
                    child = exits[task]
                    return f"{child.describe_exit(task.result())}\nstopping the rest of the stack"
            if scenario_task is not None and scenario_task in done:
                waiting.discard(scenario_task)
                error = scenario_task.exception()
                if error is not None:
                    say(out, "".join(traceback.format_exception(error)).rstrip())
                    return f"the scenario failed: {error!r}"
                if stop_after_scenario:
                    return None
                say(out, "scenario finished; the stack keeps running until Ctrl-C")
    finally:
        stopper.cancel()
        if scenario_task is not None and not scenario_task.done():
            scenario_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await scenario_task


async def stop_all(children: list[Child], timeout_s: float) -> None:
    """The apps first (the worker still needs Temporal to shut down cleanly), then Temporal."""
    apps = [c for c in children if c.spec.name != "temporal"]
    temporal = [c for c in children if c.spec.name == "temporal"]
    await asyncio.gather(*(c.stop(timeout_s) for c in reversed(apps)))
    await asyncio.gather(*(c.stop(timeout_s) for c in temporal))
