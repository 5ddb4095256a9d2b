"""`governor up` on the command line: the flags the README and the Makefile use, and its errors before anything starts."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from cli.main import run
from cli.parser import build_parser
from demo.scenario import DEMO_POLICY_DIR
from governor.detection import watchdog_id

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process


@pytest.mark.parametrize(
    ("argv", "auto"),
    [
        (["up", "--demo"], False),
        (["up", "--demo", "--auto-approve"], True),
        (["up", "--demo", "--auto-approve=true"], True),  # the Makefile's `--auto-approve=$(AUTO_APPROVE)`
        (["up", "--demo", "--auto-approve=false"], False),
    ],
)
def test_auto_approve_flag_forms(argv: list[str], auto: bool) -> None:
    args = build_parser().parse_args(argv)
    assert (args.command, args.demo, args.auto_approve) == ("up", True, auto)


async def test_bad_flag_value_and_demo_only_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--demo", "--auto-approve=maybe"])
    assert exited.value.code == 1
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err
    assert await run(["up", "--auto-approve"]) == 1
    assert "only apply with --demo" in capsys.readouterr().err


async def test_taken_pager_port_stops_the_demo_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        policies = tmp_path / "policies"
        policies.mkdir()
        text = (DEMO_POLICY_DIR / "chat.yaml").read_text().replace("127.0.0.1:9105", f"127.0.0.1:{port}")
        (policies / "chat.yaml").write_text(text)
        state = tmp_path / "state"
        code = await run(["up", "--demo", "--policy-dir", str(policies), "--state-dir", str(state)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"port {port} is taken (the demo pager" in err and "nothing was started" in err
    assert not state.exists()


async def test_watch_starts_a_watchdog_per_dependency(
    dev_env: WorkflowEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = dev_env.client.service_client.config.target_host
    queue = f"watch-cli-{uuid.uuid4().hex[:8]}"
    argv = ["watch", "--address", address, "--task-queue", queue, "--policy-dir", str(DEMO_POLICY_DIR)]
    assert await run(argv) == 0
    assert capsys.readouterr().out.strip() == "watching: watchdog-chat-primary-llm, watchdog-chat-secondary-llm"
    try:
        for dependency in ("primary-llm", "secondary-llm"):
            desc = await dev_env.client.get_workflow_handle(watchdog_id("chat", dependency)).describe()
            assert desc.status is WorkflowExecutionStatus.RUNNING and desc.task_queue == queue
        assert await run([*argv, "--service", "search"]) == 1
        assert "has no policy for service 'search'" in capsys.readouterr().err
    finally:
        for dependency in ("primary-llm", "secondary-llm"):
            await dev_env.client.get_workflow_handle(watchdog_id("chat", dependency)).terminate("test over")
