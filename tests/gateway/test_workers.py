"""`python -m gateway --workers 2`: two processes on one port answer as one gateway (admin changes everywhere, stats and
metrics merged), and a worker killed with SIGKILL comes back showing the live route."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.upstream import run_upstream
from gateway.__main__ import main
from gateway.workers import Supervisor, max_workers
from tests.gateway.conftest import CHAT
from tests.ports import free_port

pytestmark = pytest.mark.integration  # servers in other processes

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "workers-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Workers:
    proc: asyncio.subprocess.Process
    url: str
    rundir: str = ""
    exit_code: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, event: str, **match: Any) -> dict[str, Any]:
        return await self.wait_for_any(event, **match)

    async def wait_for_any(self, *events: str, **match: Any) -> dict[str, Any]:
        while True:
            for line in self.lines:
                if line.get("event") in events and all(line.get(k) == v for k, v in match.items()):
                    return line
            assert self.proc.returncode is None, "the gateway exited"
            self.seen.clear()
            await asyncio.wait_for(self.seen.wait(), 20)

    def socket(self, index: int) -> str:
        return os.path.join(self.rundir, f"worker-{index}.sock")

    async def fresh(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        """One request on its own new connection (so the kernel picks the worker anew)."""
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
            http.request(method, self.url + path, **kw) as r,
        ):
            body = await r.read()
            return r.status, json.loads(body) if r.content_type == "application/json" else body.decode()

    async def worker(self, index: int, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        """A request to one worker's private socket (what that worker alone holds)."""
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.socket(index))) as http,
            http.request(method, "http://worker" + path, **kw) as r,
        ):
            body = await r.read()
            return r.status, json.loads(body) if r.content_type == "application/json" else body.decode()


async def _read(w: Workers) -> None:
    assert w.proc.stdout is not None
    while line := await w.proc.stdout.readline():
        with contextlib.suppress(ValueError):
            w.lines.append(json.loads(line))
        w.seen.set()
    w.seen.set()


@contextlib.asynccontextmanager
async def workers(tmp_path: Path, count: int = 2) -> AsyncIterator[Workers]:
    async with run_upstream(name="primary") as primary, run_upstream(name="secondary") as secondary:
        (tmp_path / "chat.yaml").write_text(
            "service: chat\n"
            "dependencies: [{name: p, tier: tier_0_primary}, {name: s, tier: tier_1_secondary}]\n"
            f"chain: [{{tier: tier_0_primary, upstream: '{primary.url}'}},"
            f" {{tier: tier_1_secondary, upstream: '{secondary.url}'}}, {{tier: tier_4_static, body: {{x: 1}}}}]\n"
        )
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--policy-dir", str(tmp_path), "--port", str(port),
            "--workers", str(count),
            env={**os.environ, "GOVERNOR_LOG_FORMAT": "json", "GOVERNOR_GATEWAY_TOKEN": TOKEN},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        w = Workers(proc, f"http://127.0.0.1:{port}")
        reader = asyncio.ensure_future(_read(w))
        try:
            w.rundir = (await w.wait_for("gateway_workers_ready"))["rundir"]
            yield w
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == w.exit_code
            await reader
        assert not await asyncio.to_thread(Path(w.rundir).exists), "the supervisor leaves its runtime dir behind"


async def test_every_admin_change_reaches_every_worker(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        answered = {(await w.fresh("GET", "/healthz"))[1]["worker"] for _ in range(40)}
        assert answered == {0, 1}, "fresh connections all landed on one worker"
        changes = [
            ("route", {"pinned_tier": "tier_1_secondary"}, lambda s: s["pinned_tier"] == "tier_1_secondary"),
            ("route", {"primary_weight": 25}, lambda s: s["primary_weight"] == 25),
            ("breakers/tier_0_primary", {"mode": "open"}, lambda s: s["breakers"]["tier_0_primary"]["mode"] == "open"),
            ("degradation", {"level": "degraded_l2"}, lambda s: s["degradation"]["level"] == "degraded_l2"),
            (
                "status",
                {"component": "partial_outage", "message": "primary down"},
                lambda s: s["status"] == {**s["status"], "component": "partial_outage", "message": "primary down"},
            ),
            ("route", {"pinned_tier": None}, lambda s: s["pinned_tier"] is None and s["primary_weight"] == 100),
        ]
        for n, (path, body, shows) in enumerate(changes * 2):
            headers = {**AUTH, "X-Governor-Incident": f"recovery-chat-{n}"}
            status, state = await w.fresh("PUT", f"/admin/services/chat/{path}", json=body, headers=headers)
            assert status == 200 and shows(state), (path, body, state)
            for index in (0, 1):
                status, state = await w.worker(index, "GET", "/admin/services/chat", headers=AUTH)
                assert shows(state) and state["incident"] == f"recovery-chat-{n}", (index, path, state)
            for _ in range(6):
                status, state = await w.fresh("GET", "/admin/services/chat", headers=AUTH)
                assert status == 200 and shows(state), (path, state)
        # A refused change is refused once, by the worker that got it, and changes nothing anywhere.
        status, err = await w.fresh("PUT", "/admin/services/chat/route", json={"pinned_tier": "x"}, headers=AUTH)
        assert status == 422 and err["error"]["field"] == "pinned_tier"
        status, _ = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": 5})
        assert status == 401
        status, err = await w.fresh("PUT", "/admin/services/chat/breakers/tier_4_static", json={"mode": "open"},
                                    headers=AUTH)  # fmt: skip
        assert status == 404 and err["error"]["type"] == "not_found" and err["error"]["field"] == "tier", err


async def test_stats_and_metrics_sum_every_worker(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        for _ in range(30):
            status, _ = await w.fresh("POST", "/chat/v1/chat/completions", json=CHAT)
            assert status == 200
        per_worker = []
        for index in (0, 1):
            _, stats = await w.worker(index, "GET", "/admin/services/chat/stats?window=60", headers=AUTH)
            per_worker.append(stats["tiers"]["tier_0_primary"]["requests"])
        assert sum(per_worker) == 30 and 0 not in per_worker, per_worker
        for _ in range(6):
            status, stats = await w.fresh("GET", "/admin/services/chat/stats?window=60", headers=AUTH)
            assert status == 200 and stats["tiers"]["tier_0_primary"]["requests"] == 30, stats
            assert stats["tiers"]["tier_0_primary"]["served"] == 30 and stats["window_s"] == 60
        status, text = await w.fresh("GET", "/metrics")
        assert status == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        primary = (("service", "chat"), ("tier", "tier_0_primary"))
        assert samples[("governor_gateway_responses_total", primary)] == 30
        assert samples[("governor_gateway_tier_latency_seconds_count", primary)] == 30
        assert samples[("governor_gateway_tier_latency_seconds_bucket", (("le", "+Inf"), *primary))] == 30
        assert samples[("governor_gateway_primary_weight_ratio", (("service", "chat"),))] == 1.0
        promtool = shutil.which("promtool")
        if promtool is not None:
            check = await asyncio.create_subprocess_exec(
                promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await check.communicate(text.encode())
            assert check.returncode == 0, out.decode()


async def test_a_killed_worker_comes_back_with_the_live_route(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        status, _ = await w.fresh("PUT", "/admin/services/chat/route", json={"pinned_tier": "tier_4_static"},
                                  headers=AUTH)  # fmt: skip
        assert status == 200
        status, _ = await w.fresh("PUT", "/admin/services/chat/status", json={"component": "major_outage"},
                                  headers={**AUTH, "X-Governor-Incident": "recovery-chat-k"})  # fmt: skip
        assert status == 200
        _, health = await w.worker(0, "GET", "/healthz")
        os.kill(health["pid"], signal.SIGKILL)
        back = await w.wait_for("gateway_worker_ready", worker=0, restarts=1)
        assert back["pid"] != health["pid"]
        _, state = await w.worker(0, "GET", "/admin/services/chat", headers=AUTH)
        assert state["pinned_tier"] == "tier_4_static" and state["primary_weight"] == 0
        assert state["status"]["component"] == "major_outage" and state["incident"] == "recovery-chat-k"
        _, page = await w.worker(0, "GET", "/status.json")
        _, sibling_page = await w.worker(1, "GET", "/status.json")
        assert (
            page["incidents"] == sibling_page["incidents"] and page["incidents"][0]["workflow_id"] == "recovery-chat-k"
        )
        for _ in range(10):
            status, answer = await w.fresh("POST", "/chat/v1/chat/completions", json=CHAT)
            assert (status, answer) == (200, {"x": 1})


async def test_the_worker_marker_is_no_way_around_the_fan_out(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        forged = {**AUTH, "X-Governor-Worker-From": "1"}
        for weight in (10, 20, 30, 40):
            status, _ = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": weight},
                                      headers=forged)  # fmt: skip
            assert status == 200
            for index in (0, 1):
                _, state = await w.worker(index, "GET", "/admin/services/chat", headers=AUTH)
                assert state["primary_weight"] == weight, (index, state)
        # Make worker 1 differ behind the fan-out's back: the next change through the public port says which worker.
        status, _ = await w.worker(1, "PUT", "/admin/services/chat/status", json={"component": "major_outage"},
                                   headers=AUTH)  # fmt: skip
        assert status == 200
        codes = set()
        for _ in range(8):
            status, body = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": 50}, headers=AUTH)
            codes.add(status)
            if status == 503:
                assert "worker" in body["error"]["message"] and "status" in body["error"]["message"], body
        assert codes == {503}, codes  # whichever worker got it, the other one differs
        status, _ = await w.fresh("PUT", "/admin/services/chat/status", json={"component": "operational"},
                                  headers=AUTH)  # fmt: skip
        assert status == 200
        status, _ = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": 50}, headers=AUTH)
        assert status == 200


async def test_concurrent_writes_to_different_workers_end_the_same_everywhere(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        for burst in range(3):
            weights = [burst * 20 + n for n in range(16)]
            answers = await asyncio.gather(
                *(
                    w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": weight}, headers=AUTH)
                    for weight in weights
                )
            )
            assert all(status == 200 for status, _ in answers), answers
            shown = [(await w.worker(i, "GET", "/admin/services/chat", headers=AUTH))[1] for i in (0, 1)]
            assert shown[0]["primary_weight"] == shown[1]["primary_weight"] in weights, shown


def test_a_fresh_worker_takes_a_siblings_settings_with_deployment_breakers() -> None:
    from gateway.breaker import BreakerConfig
    from gateway.service import ServiceRuntime
    from gateway.siblings import apply_state, operator_settings
    from governor.enums import DegradationLevel, FallbackTier
    from governor.gateway_api import AuditLog, StatusComponent
    from governor.policy import parse_policy

    deployments = [
        {"name": "east", "upstream": "http://127.0.0.1:1"},
        {"name": "west", "upstream": "http://127.0.0.1:2"},
    ]
    chain = [
        {"tier": "tier_0_primary", "deployments": deployments},
        {"tier": "tier_1_secondary", "upstream": "http://127.0.0.1:3"},
        {"tier": "tier_4_static", "body": {"x": 1}},
    ]
    pol = parse_policy({"service": "chat", "dependencies": [{"name": "p"}], "chain": chain}, "test")
    live, fresh = ServiceRuntime(pol, BreakerConfig()), ServiceRuntime(pol, BreakerConfig())
    live.set_route({"pinned_tier": FallbackTier.TIER_1_SECONDARY, "primary_weight": 10})
    live.set_breaker(FallbackTier.TIER_1_SECONDARY, "closed")
    live.links[0].deployments[1].breaker.set_mode("open")
    live.set_degradation(DegradationLevel.DEGRADED_L2, {})
    live.set_status(StatusComponent.PARTIAL_OUTAGE, "east is down")
    live.record_change("route", {"pinned_tier": "tier_1_secondary"}, "recovery-chat-p", True)
    assert operator_settings(fresh.state()) != operator_settings(live.state())
    apply_state(fresh, live.state(), AuditLog.model_validate({"service": "chat", "changes": list(live.audit)}))
    assert operator_settings(fresh.state()) == operator_settings(live.state())
    assert fresh.state().deployments["tier_0_primary"][1].breaker.mode == "open"
    assert list(fresh.audit) == list(live.audit) and fresh.incident == "recovery-chat-p"


def test_a_taken_port_is_refused_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "chat.yaml").write_text(
        "service: chat\ndependencies: [{name: p}]\nchain: [{tier: tier_0_primary, upstream: 'http://127.0.0.1:1'}]\n"
    )
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--workers", "2", "--policy-dir", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", str(max_workers() + 1), "100000"])
def test_a_bad_worker_count_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", value, "--policy-dir", "/nonexistent"]) == 2
    assert "--workers must be" in capsys.readouterr().err


def test_workers_need_the_fast_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workers", "2", "--http", "asgi", "--policy-dir", "/nonexistent"]) == 2
    assert "needs --http fast" in capsys.readouterr().err


def test_a_worker_that_never_starts_stops_the_gateway(capfd: pytest.CaptureFixture[str]) -> None:
    assert Supervisor(2, lambda index, count, rundir: 3).run() == 1
    assert "exited with code 3 before serving, 5 times in a row" in capfd.readouterr().err


async def test_a_worker_killed_while_its_sibling_is_wedged_waits_for_it_and_comes_back(tmp_path: Path) -> None:
    """One worker stopped (SIGSTOP: its socket takes the copy request, never answers), the other killed: the
    restarted one waits for a sibling that answers instead of failing its start until the gateway stops."""
    async with workers(tmp_path) as w:
        status, _ = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": 30}, headers=AUTH)
        assert status == 200
        pids = [(await w.worker(i, "GET", "/healthz"))[1]["pid"] for i in (0, 1)]
        os.kill(pids[1], signal.SIGSTOP)
        try:
            os.kill(pids[0], signal.SIGKILL)
            seen = await w.wait_for_any("gateway_worker_waiting_for_siblings", "gateway_worker_start_failed")
            assert seen["event"] == "gateway_worker_waiting_for_siblings", seen
        finally:
            os.kill(pids[1], signal.SIGCONT)
        await w.wait_for("gateway_worker_ready", worker=0, restarts=1)
        _, state = await w.worker(0, "GET", "/admin/services/chat", headers=AUTH)
        assert state["primary_weight"] == 30
        assert not [line for line in w.lines if line.get("event") == "gateway_worker_start_failed"]


async def test_an_oversized_write_is_answered_as_one_process_answers_it(tmp_path: Path) -> None:
    """The token, the service and the route are judged before the body's size, as by a single gateway."""

    async def head_only(port: int, path: str, auth: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"PUT {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 2000000\r\n\r\n".encode())
        line = await reader.readline()
        writer.close()
        return line.split(b" ")[1]

    async with workers(tmp_path) as w:
        port = int(w.url.rpartition(":")[2])
        bearer = f"Authorization: Bearer {TOKEN}\r\n"
        for path, auth, status in [
            ("/admin/services/chat/route", "", b"401"),
            ("/admin/services/chat/route", "Authorization: Bearer nope\r\n", b"403"),
            ("/admin/services/nope/route", bearer, b"404"),
            ("/admin/services/chat/nothing", bearer, b"404"),
            ("/admin/services/chat/route", bearer, b"413"),
        ]:
            for _ in range(4):  # fresh connections: whichever worker takes it
                assert await head_only(port, path, auth) == status, (path, auth)


async def _exited(pid: int) -> None:
    """Until process `pid` (not our child) has exited: its pidfd turns readable."""
    fd = os.pidfd_open(pid)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, done.set)
    try:
        await asyncio.wait_for(done.wait(), 15)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_workers_of_a_killed_supervisor_stop_and_remove_the_runtime_dir(tmp_path: Path) -> None:
    async with workers(tmp_path) as w:
        pids = [(await w.worker(i, "GET", "/healthz"))[1]["pid"] for i in (0, 1)]
        w.exit_code = -signal.SIGKILL
        w.proc.kill()  # no chance to clean up: its workers get SIGTERM (PR_SET_PDEATHSIG)
        for pid in pids:
            await _exited(pid)


async def test_an_incident_id_beyond_ascii_reaches_every_worker(tmp_path: Path) -> None:
    """Headers are forwarded as the bytes that came in: a non-ASCII incident id is no reason to fail the fan-out."""
    async with workers(tmp_path) as w:
        for n in range(4):  # fresh connections: whichever worker takes it
            headers = {**AUTH, "X-Governor-Incident": f"recovery-chat-é{n}"}
            status, state = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": n},
                                          headers=headers)  # fmt: skip
            assert status == 200, state
            shown = [(await w.worker(i, "GET", "/admin/services/chat", headers=AUTH))[1] for i in (0, 1)]
            assert [(s["primary_weight"], s["incident"]) for s in shown] == [(n, state["incident"])] * 2, shown


async def test_a_write_that_waited_for_a_held_lock_does_not_hold_up_the_stop(tmp_path: Path) -> None:
    import fcntl
    import time

    from gateway.workers import STOP_GRACE_S

    async with workers(tmp_path) as w:
        fd = os.open(os.path.join(w.rundir, "admin.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a worker stopped (SIGSTOP) in the middle of a write holds it
            status, body = await w.fresh("PUT", "/admin/services/chat/route", json={"primary_weight": 5}, headers=AUTH)
            assert status == 503 and body["error"]["type"] == "workers_busy", body
            began = time.monotonic()
            w.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(w.proc.wait(), 15) == 0
            assert time.monotonic() - began < STOP_GRACE_S / 2, "a worker waited for the lock until it was killed"
        finally:
            os.close(fd)


def test_a_worker_that_dies_right_after_serving_is_restarted_with_a_backoff(tmp_path: Path) -> None:
    """Not a tight fork loop (each start copies the state under the workers' lock): 0.2 s, 0.4 s, 0.8 s..."""
    import subprocess

    starts = tmp_path / "starts"
    script = f"""
import os, signal, sys, time
from pathlib import Path
from gateway.workers import Supervisor, tell_ready
starts = Path({str(starts)!r})

def serve_then_die(index, count, rundir):
    with starts.open("a") as f:
        f.write(f"{{time.monotonic()}}\\n")
    if len(starts.read_text().split()) >= 6:
        os.kill(os.getppid(), signal.SIGTERM)
    tell_ready()
    return 3

sys.exit(Supervisor(1, serve_then_die).run())
"""
    # Its own process: SIGTERM reaches the supervisor's sigtimedwait only when no other thread can take it.
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=20, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    times = [float(t) for t in starts.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the first two quick deaths restart at once (a kill now and then), then 0.2 s, 0.4 s, 0.8 s
    assert len(times) >= 6 and all(gap >= 0.15 for gap in gaps[2:]) and sum(gaps) >= 1.3, gaps
