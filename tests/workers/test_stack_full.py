"""The whole embedded stack as `governor up --demo` starts it: every part answers, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from tests.ports import free_ports
from workers.stack import StackInfo, StackOptions, run_stack

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def policy_on_ports(folder: Path, gateway: int, primary: int, secondary: int, degraded: int) -> Path:
    """policies/chat.yaml with its gateway and upstreams moved to free ports (the launcher follows the policy)."""
    text = (ROOT / "policies" / "chat.yaml").read_text()
    for old, new in {"8080": gateway, "9101": primary, "9102": secondary, "9103": degraded}.items():
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    folder.mkdir()
    (folder / "chat.yaml").write_text(text)
    return folder


async def test_demo_stack_serves_traffic_and_stops_every_process(tmp_path: Path, stray_children) -> None:
    temporal, ui, gateway, primary, secondary, degraded, metrics, intake = free_ports(8)
    policies = policy_on_ports(tmp_path / "policies", gateway, primary, secondary, degraded)
    out = io.StringIO()
    options = StackOptions(
        state_dir=tmp_path / "state",
        policy_dir=policies,
        temporal_port=temporal,
        ui_port=ui,
        metrics_port=metrics,
        intake_port=intake,
        demo=True,
        stop_after_scenario=True,
        out=out,
    )
    seen: dict[str, object] = {}

    async def use_it(info: StackInfo) -> None:
        seen["pids"] = dict(info.pids)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"{info.gateway_url}/chat/v1/chat/completions",
                json={"model": "demo", "messages": [{"role": "user", "content": "hello"}]},
            )
            seen["tier"] = (answer.status_code, answer.headers.get("x-governor-tier"))
            seen["status_page"] = (await http.get(info.status_url or "")).status_code
            seen["intake"] = (await http.get(f"{info.intake_url}/healthz")).status_code
            seen["upstreams"] = sorted(info.upstreams)
            seen["primary_control"] = (await http.get(f"{info.upstreams['primary']}/control")).status_code
        pollers = await info.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=info.namespace,
                task_queue=TaskQueue(name=info.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        seen["pollers"] = len(pollers.pollers)

    await run_stack(options, use_it)

    assert seen["tier"] == (200, "tier_0_primary")
    assert seen["status_page"] == 200 and seen["intake"] == 200 and seen["primary_control"] == 200
    assert seen["upstreams"] == ["degraded", "primary", "secondary"]
    assert isinstance(seen["pollers"], int) and seen["pollers"] >= 1
    pids = seen["pids"]
    assert isinstance(pids, dict)
    assert set(pids) == {
        "temporal", "upstream-primary", "upstream-secondary", "upstream-degraded", "gateway", "intake", "worker",
    }  # fmt: skip
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert stray_children() == []
    banner = out.getvalue()
    assert f"http://127.0.0.1:{gateway}/status" in banner
    assert "workflow signal" in banner and "--name approve" in banner
    logs = tmp_path / "state" / "logs"
    assert {p.stem for p in logs.glob("*.log")} == set(pids)
