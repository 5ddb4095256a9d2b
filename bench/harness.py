"""What the gateway benchmark's parts share: processes, wrk runs, interleaved rounds with the median kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "bench" / ".state"
PY = sys.executable
BODY = '{"model":"fake","messages":[{"role":"user","content":"hello there, how are you today?"}]}'
STREAM_BODY = BODY[:-1] + ',"stream":true}'
BODY_2KB = BODY.replace("hello there, how are you today?", " ".join([f"word{i:04d}" for i in range(221)]))
"""A 2 KB request whose answer (the fake echoes the last user message) is about 2 KB too."""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
%(extra)s
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"errors_status":%%d,"errors_connect":%%d,' ..
    '"errors_read":%%d,"errors_timeout":%%d,"p50_us":%%d,"p95_us":%%d,"p99_us":%%d,"mean_us":%%f}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


@dataclass
class Run:
    target: str
    clients: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    requests: int
    load_before: float
    cpu_ms_per_req: float | None = None
    """The target's own CPU (user + system, its process and children) per request served, when its pid is known."""


@dataclass
class Target:
    """One row's endpoint: where wrk posts, with which headers and body."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = BODY
    pid: int | None = None
    """The serving process, for its CPU per request (nginx: the master, whose worker is counted with it)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str, timeout: float = 60.0, headers: dict[str, str] | None = None, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode} before answering")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status < 500:
                    return
        except Exception as err:
            last = err
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout:.0f} s ({last})")


def check_answer(target: Target, expect: bytes = b"choices") -> None:
    """One request before timing: a reference that answers errors would otherwise make a fast, meaningless row."""
    req = urllib.request.Request(
        target.url, data=target.body.encode(), headers={"Content-Type": "application/json", **target.headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{target.url} answered {err.code}: {err.read()[:300]!r}") from err
    except OSError as err:
        raise RuntimeError(f"{target.url}: {err}") from err
    if expect not in data:
        raise RuntimeError(f"{target.url} answered without {expect.decode()!r}: {data[:300]!r}")


def rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            pids.extend(int(c) for c in children)
    return total


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None, cwd: Path = ROOT
) -> Iterator[subprocess.Popen]:
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)  # bench/.state is git-ignored: absent in a fresh clone
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def wrk(url: str, clients: int, duration: float, headers: dict[str, str] | None = None, body: str = BODY) -> dict:
    extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % {"body": body, "extra": extra})
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    return json.loads(line[8:])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants alive now (/proc; 0.0 where it cannot be read)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def measure(
    target: str,
    url: str,
    clients: int,
    duration: float,
    headers: dict[str, str] | None = None,
    body: str = BODY,
    pid: int | None = None,
) -> Run:
    wrk(url, clients, min(2.0, duration / 3), headers, body)  # warm-up: pools, JIT-free caches, LiteLLM's imports
    load = os.getloadavg()[0]
    cpu0 = cpu_s(pid) if pid else 0.0
    r = wrk(url, clients, duration, headers, body)
    cpu = (cpu_s(pid) - cpu0) * 1000 / r["requests"] if pid and r["requests"] else None
    errors = r["errors_status"] + r["errors_connect"] + r["errors_read"] + r["errors_timeout"]
    return Run(
        target,
        clients,
        r["requests"] / (r["duration_us"] / 1e6),
        r["p50_us"] / 1000,
        r["p95_us"] / 1000,
        r["p99_us"] / 1000,
        errors,
        r["requests"],
        load,
        cpu,
    )


def uptime() -> str:
    """The machine's load line (`uptime`), kept with each round: other sessions share the 2 cores."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def interleaved(
    targets: dict[str, Target], clients: int, duration: float, rounds: int, loads: list[str] | None = None
) -> list[Run]:
    """Each target `rounds` times, interleaved, keeping the median round by RPS: the machine is shared, so one
    unlucky run (another process waking up) does not decide the table. The `uptime` line before each round is
    printed and appended to `loads`."""
    samples: dict[str, list[Run]] = {name: [] for name in targets}
    for i in range(rounds):
        line = f"{clients} clients, round {i + 1}/{rounds}: {uptime()}"
        print(line, flush=True)
        if loads is not None:
            loads.append(line)
        for name, t in targets.items():
            samples[name].append(measure(name, t.url, clients, duration, t.headers, t.body, t.pid))
            print(fmt_run(samples[name][-1]), flush=True)
    chosen = []
    for runs in samples.values():
        runs.sort(key=lambda r: r.rps)
        chosen.append(runs[len(runs) // 2])
    return chosen


def fmt_run(r: Run) -> str:
    cpu = "" if r.cpu_ms_per_req is None else f"  cpu {r.cpu_ms_per_req:.3f} ms/req"
    return (
        f"{r.target:<34} c={r.clients:<3} {r.rps:>9,.0f} rps  p50 {r.p50_ms:7.3f}  p95 {r.p95_ms:7.3f}  "
        f"p99 {r.p99_ms:7.3f} ms  errors {r.errors}  load {r.load_before:.2f}{cpu}"
    )
