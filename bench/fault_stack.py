"""The real stack for fault cases: the demo's fake models, the gateway, the watchdogs, the dev server and a worker,
started by `workers.stack.run_stack` on free loopback ports with the demo policy (no approval gates, no
notification routes: nobody listens). Used by bench/faults.py and the end-to-end tests (tests/e2e/).
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from governor.client import GovernorClient
from governor.incident import IncidentState
from workers.stack import StackOptions

ROOT = Path(__file__).resolve().parents[1]
DEMO_POLICY = ROOT / "demo" / "policies" / "chat.yaml"
DEMO_PORTS = {"gateway": "8080", "primary": "9101", "secondary": "9102", "degraded": "9103"}


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports, bound together so none repeats, then released."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def demo_policy_on_ports(folder: Path, ports: dict[str, int], tune: Callable[[dict[str, Any]], None] | None) -> Path:
    """The demo policy with its gateway and models on `ports` (keyed like DEMO_PORTS), without approval gates or
    notification routes, recovery re-checks every 3 s and a 5 s stability window; `tune` may change it further."""
    text = DEMO_POLICY.read_text()
    for part, old in DEMO_PORTS.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{ports[part]}")
    data = yaml.safe_load(text)
    data["approvals"] = {"approvers": ["alice"], "gates": [], "timeout_s": 120}
    data["notifications"] = {"routes": {}}
    data["recovery_checks"] |= {"stable_s": 5, "reassess_s": 3}
    if tune is not None:
        tune(data)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chat.yaml").write_text(yaml.safe_dump(data))
    return folder


def demo_stack_options(
    folder: Path, tune: Callable[[dict[str, Any]], None] | None = None, out: TextIO | None = None
) -> StackOptions:
    """`governor up --demo`'s stack under `folder` on free ports, stopping when the scenario ends."""
    temporal, ui, gateway, primary, secondary, degraded, metrics, intake = free_ports(8)
    ports = {"gateway": gateway, "primary": primary, "secondary": secondary, "degraded": degraded}
    return StackOptions(
        state_dir=folder / "state",
        policy_dir=demo_policy_on_ports(folder / "policies", ports, tune),
        temporal_port=temporal,
        ui_port=ui,
        metrics_port=metrics,
        intake_port=intake,
        demo=True,
        stop_after_scenario=True,
        echo=False,
        out=out if out is not None else io.StringIO(),
    )


async def until(
    what: str, gc: GovernorClient, wid: str, check: Callable[[IncidentState], bool], limit_s: float
) -> IncidentState:
    """Poll the incident's state until `check` holds; AssertionError naming `what` and the last state otherwise."""
    deadline = time.monotonic() + limit_s
    state: IncidentState | None = None
    while time.monotonic() < deadline:
        try:
            state = await gc.state(wid)
            if check(state):
                return state
        except Exception:  # not started yet
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(
        f"{what}: never held in {limit_s:.0f} s; last: "
        + (f"phase={state.phase} tier={state.tier} failed={state.failed_dependencies}" if state else "no incident")
    )
