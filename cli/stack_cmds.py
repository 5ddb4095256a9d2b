"""`governor up`: the embedded stack, and with --demo the live incident. The only CLI module that imports `workers/`
and `demo/`: it wires the demo's processes and scenario into the launcher."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cli.common import EXIT_OK, EXIT_USAGE, UserError, policy_dir
from cli.parser import DEMO_BOT
from demo.pager import pager_ports
from demo.scenario import scenario as demo_scenario
from demo.settings import DEMO_SERVICE, DemoResult, DemoSettings, traffic_file
from demo.traffic import READY_EVENT
from governor.watchdogs import start_or_update_watchdogs
from workers.plan import StackInfo, load_policies, policy_gateway_port
from workers.stack import run_stack
from workers.stack_options import PROJECT_ROOT, StackOptions, options_from_args
from workers.supervisor import ProcessSpec, StackError, port_is_free

__all__ = ["DEMO_BOT", "cmd_up", "demo_processes", "prepare_demo"]


async def cmd_up(args: argparse.Namespace) -> int:
    """`governor up`: the embedded stack (workers/stack.py); with --demo the live incident of demo/scenario.py."""
    started = time.monotonic()
    options = options_from_args(args)
    if getattr(args, "task_queue", None):
        options.task_queue = args.task_queue
    demo = bool(getattr(args, "demo", False))
    if not getattr(args, "policy_dir", None):
        options.policy_dir = PROJECT_ROOT / "demo" / "policies" if demo else policy_dir(args, running=False)
    if not demo and (args.auto_approve or args.exit_after_demo):
        raise UserError("--auto-approve and --exit-after-demo only apply with --demo")
    results: list[Any] = []
    record = PolicyDirRecord(options.state_dir, options.policy_dir)
    try:
        return await _up(args, options, demo, started, results, record)
    except StackError as err:
        red = "\033[31m%s\033[0m" if sys.stderr.isatty() else "%s"
        print(red % f"governor: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        record.remove()


class PolicyDirRecord:
    """`<state>/policy-dir` names the stack's policy folder while it runs (written once the stack is up, removed when
    it stops): `governor show`, `postmortem`, `status` run from the same folder then read the policies the worker and
    the gateway read (the demo's, after `governor up --demo`). A second `up` that fails to start leaves it alone."""

    def __init__(self, state_dir: Path, policies: Path) -> None:
        self.path = state_dir / "policy-dir"
        self.text = f"{policies.resolve()}\n"
        self.written = False

    def around(self, hook: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def run(info: Any) -> None:
            self.write()
            await hook(info)

        return run

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.text)
        self.written = True

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            if self.written and self.path.read_text() == self.text:
                self.path.unlink()


async def _up(
    args: argparse.Namespace,
    options: StackOptions,
    demo: bool,
    started: float,
    results: list[Any],
    record: PolicyDirRecord,
) -> int:
    if demo:
        settings = DemoSettings(auto_approve=args.auto_approve, unattended=args.exit_after_demo, started_at=started)
        # The demo tells its story in sentences; the parts' logs would drown it (they stay in <state>/logs/).
        options.echo = options.echo and args.verbose
        settings.parts_echoed = options.echo
        await run_stack(options, record.around(prepare_demo(options, settings, results)))
    else:
        await run_stack(options, record.around(_start_watchdogs))
    if demo and args.exit_after_demo and not (results and results[-1].recovered):
        print("governor: the demo stopped before the incident recovered", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _start_watchdogs(info: Any) -> None:
    """Without --demo: watch every dependency of every policy (what `governor watch` does)."""
    if not info.policies:
        return
    ids = await start_or_update_watchdogs(info.client, info.policies, info.task_queue)
    print(f"watchdogs watching: {', '.join(ids)}", file=info.out, flush=True)


def demo_processes(options: StackOptions, gateway_url: str, settings: DemoSettings) -> list[ProcessSpec]:
    """The client traffic generator, supervised by the launcher like every other part."""
    out = settings.traffic_file or traffic_file(options.state_dir)
    python = str(options.bin_dir / "python") if options.bin_dir else sys.executable
    return [
        ProcessSpec(
            name="traffic",
            argv=[
                python,
                "-m",
                "demo.traffic",
                "--url",
                f"{gateway_url}/{DEMO_SERVICE}/v1/chat/completions",
                "--rps",
                f"{settings.rps:g}",
                "--out",
                str(out),
            ],
            module="demo.traffic",
            ready_line=READY_EVENT,
        )
    ]


def prepare_demo(
    options: StackOptions, settings: DemoSettings, results: list[DemoResult] | None = None
) -> Callable[[StackInfo], Awaitable[None]]:
    """Wire the demo into the launcher's options as `governor up --demo` does (demo upstreams, the traffic process,
    stop after the scenario when unattended) and return the scenario hook. Raises StackError before anything starts
    when the policy cannot be read or the pager's port is taken."""
    options.demo = True
    options.client_key = True  # the demo's gateway asks for a client key; the traffic process sends it
    options.stop_after_scenario = settings.unattended
    policies = load_policies(options)
    gateway_port = options.gateway_port or policy_gateway_port(policies) or 8080
    gateway_url = f"http://{options.host}:{gateway_port}"
    options.extra_processes = [*options.extra_processes, *demo_processes(options, gateway_url, settings)]
    taken = [port for policy in policies.values() for port in pager_ports(policy) if not port_is_free(port)]
    if taken:
        raise StackError(
            f"cannot start the demo, nothing was started: port {taken[0]} is taken (the demo pager, where "
            f"{options.policy_dir}/*.yaml sends on-call webhooks): stop what uses it"
        )
    return demo_scenario(settings, results)
