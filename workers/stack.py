"""The embedded stack behind `governor up`: the Temporal dev server, the worker, the gateway and the demo upstreams.

One process supervises the others: it checks every port and binary before starting anything, starts the parts in
order and waits until each is ready, keeps their logs under `<state>/logs/`, and stops all of them on Ctrl-C,
SIGTERM, or when one of them dies. Temporal keeps its history in `<state>/temporal.db`, so a second `up` resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from workers.plan import (
    Plan,
    Scenario,
    StackInfo,
    banner,
    issue_client_key,
    issue_tokens,
    load_policies,
    oncall_hints,
    plan_stack,
    policy_gateway_port,
    policy_upstream_ports,
    shown_path,
)
from workers.stack_options import (
    DEFAULT_UPSTREAM_PORTS,
    DEMO_UPSTREAM_TIERS,
    LOOPBACK_HOSTS,
    PROJECT_ROOT,
    StackOptions,
    add_stack_arguments,
    options_from_args,
)
from workers.supervisor import (
    COLORS,
    Child,
    Interrupted,
    PortUse,
    ProcessSpec,
    StackError,
    StateLock,
    all_or_none,
    http_ok,
    port_is_free,
    port_problems,
    preflight,
    say,
    stages,
    stop_all,
    supervise,
    tcp_open,
    terminal_line,
    wait_ready,
)
from workers.temporal_admin import connect_temporal, ensure_search_attributes, worker_polling

__all__ = [
    "DEFAULT_UPSTREAM_PORTS",
    "DEMO_UPSTREAM_TIERS",
    "LOOPBACK_HOSTS",
    "PROJECT_ROOT",
    "Child",
    "Plan",
    "PortUse",
    "ProcessSpec",
    "Scenario",
    "StackError",
    "StackInfo",
    "StackOptions",
    "add_stack_arguments",
    "banner",
    "connect_temporal",
    "ensure_search_attributes",
    "load_policies",
    "main",
    "oncall_hints",
    "options_from_args",
    "plan_stack",
    "policy_gateway_port",
    "policy_upstream_ports",
    "port_is_free",
    "port_problems",
    "preflight",
    "run_stack",
    "terminal_line",
    "wait_ready",
]


async def run_stack(options: StackOptions, scenario: Scenario | None = None) -> None:
    """Start the stack, run the scenario once everything is ready, and stop every process on Ctrl-C or failure.

    Raises StackError (with a message that says what to do) when the stack cannot start or a part dies.
    """
    out = options.out if options.out is not None else sys.stdout
    plan = plan_stack(options)
    specs = [plan.temporal, *plan.apps]
    preflight(specs)
    for warning in plan.warnings:
        say(out, f"warning: {warning}")

    state = options.state_dir.resolve()
    log_dir = state / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    lock = StateLock(state)
    lock.acquire()
    issue_tokens(plan, state)
    if options.client_key:
        issue_client_key(plan, state)

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
        child = Child(spec, log_dir, echo, COLORS[len(children) % len(COLORS)], width)
        children.append(child)
        await child.start(env)
        return child

    async def start_or_stop(spec: ProcessSpec, check: Callable[[], Awaitable[bool]] | None) -> None:
        child = await start(spec)
        if check is None and spec.ready_line:

            async def check() -> bool:
                return child.printed_ready_line.is_set()

        if check is not None:
            await race_stop(wait_ready(child, check, options.ready_timeout_s))

    async def race_stop(coro: Awaitable[None]) -> None:
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
            raise Interrupted
        task.result()

    failure: str | None = None
    try:
        address = f"{options.host}:{options.temporal_port}"
        started_at = time.monotonic()
        say(out, f"starting the Temporal dev server on {address} (state in {shown_path(state)}/temporal.db)")
        connected: list[Client] = []

        async def temporal_ready() -> bool:
            if not await tcp_open(options.host, options.temporal_port):
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
            say(out, f"registered search attributes: {', '.join(added)}")

        def readiness(spec: ProcessSpec) -> Callable[[], Awaitable[bool]] | None:
            if spec.ready is not None:
                return spec.ready
            if spec.ready_url:
                url = spec.ready_url
                return lambda: http_ok(url)
            if spec.name == "worker":
                return worker_polling(client, options.namespace, options.task_queue)
            return None

        for stage in stages(plan.apps):
            say(out, f"starting {', '.join(spec.name for spec in stage)}")
            await all_or_none([start_or_stop(spec, readiness(spec)) for spec in stage])

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
            intake_token=plan.intake_token,
            token_files=plan.token_files,
            worker_metrics_url=f"http://{options.host}:{options.metrics_port}/metrics" if options.worker else None,
            intake_url=f"http://{options.host}:{options.intake_port}" if options.intake else None,
            upstreams={n: f"http://{options.host}:{p}" for n, p in plan.upstream_ports.items()} if options.demo else {},
            policies=plan.policies,
            client=client,
            temporal_bin=plan.temporal_bin,
            python=plan.python,
            pids={c.spec.name: c.pid for c in children},
            out=out,
            client_key=plan.client_key or None,
        )
        say(out, f"ready in {time.monotonic() - started_at:.1f} s")
        say(out, "\n".join(["", *banner(info), ""]))

        run_scenario = (lambda: scenario(info)) if scenario else None
        failure = await supervise(children, stop, run_scenario, options.stop_after_scenario, out)
    except Interrupted:
        say(out, "interrupted during start-up")
    except StackError as err:
        failure = str(err)
    finally:
        if children:
            say(out, "stopping: " + ", ".join(c.spec.name for c in reversed(children)))
        await stop_all(children, options.stop_timeout_s)  # a second Ctrl-C meanwhile kills at once
        for installed_sig in installed:
            loop.remove_signal_handler(installed_sig)
        lock.release()
        if children:
            say(out, "stopped")
    if failure:
        raise StackError(failure)


# --------------------------------------------------------------------------------------------------- entry point


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
