"""Where the gateway's time goes: py-spy on `python -m gateway` while wrk drives it, per case, by area.

    .venv/bin/python -m bench.gateway_profile                  # small body and fall-through, 8 s each
    .venv/bin/python -m bench.gateway_profile --cases small sse --seconds 5

Each case: the fake upstream, the gateway on the benchmark's policies (bench/gateway.py: the `chat` chain with
breakers, stats, cache and metrics on; `fall` with its primary down), wrk with 1 thread and 20 connections, and
`py-spy record --gil` on the gateway (samples while it holds the GIL: its work, not its waits in epoll). Prints the
share of the samples in each area, a frame counted in the first area whose marker it matches, leaf first: the
kernel calls the gateway makes (the response's and the upstream request's write), the event loop's own C code, and
the gateway's Python by module. The same areas as docs/benchmarks.md ("Where the gateway's time goes").
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench.gateway import CASES, fall_policy, gateway_policy
from bench.harness import BODY, PY, STATE, free_port, process, wait_http, wrk

AREAS = [
    # (area, marker in the leaf frame); the first match wins, checked in this order
    ("response write (server.py, one transport.write)", "_Response.send (gateway/server.py"),
    ("upstream request write (client.py)", "_Connection.send (gateway/client.py"),
    ("event loop (uvloop, C)", "Runner.run ("),
    ("body check (JSON parse)", "(gateway/shaping.py"),
    ("HTTP server protocol (server.py)", "(gateway/server.py"),
    ("upstream client (client.py)", "(gateway/client.py"),
    ("metrics", "(gateway/metrics.py"),
    ("stats windows", "(gateway/stats.py"),
    ("breakers", "(gateway/breaker.py"),
    ("cache", "(gateway/cache.py"),
    ("chain walk (chain.py, deployment_walk.py)", "(gateway/chain.py"),
    ("chain walk (chain.py, deployment_walk.py)", "(gateway/deployment_walk.py"),
    ("app routing (app.py, http.py)", "(gateway/app.py"),
    ("app routing (app.py, http.py)", "(gateway/http.py"),
]
IDLE = ("EpollSelector.select (", "select (selectors.py")


def areas(raw: str) -> tuple[int, Counter[str]]:
    """Samples in total (idle left out) and per area, from py-spy's raw (collapsed) output."""
    total, per = 0, Counter[str]()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        if leaf.startswith(IDLE):
            continue
        n = int(count)
        total += n
        area = next((a for a, marker in AREAS if marker in leaf), "other (stdlib, prometheus_client, structlog, ...)")
        per[area] += n
    return total, per


def profile_case(case: str, seconds: float, rate: int) -> tuple[float, int, Counter[str]]:
    """(RPS, samples, samples per area) for one case on a fresh gateway."""
    up_port, dead = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    path, body = ("/chat/v1/chat/completions", BODY) if case == "small" else (CASES[case][0], CASES[case][2])
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(process([PY, "-m", "demo.upstream", "--name", "bench", "--port", str(up_port)]))
        wait_http(f"{upstream}/health", proc=up)
        policies = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        gateway_policy(policies, upstream)
        fall_policy(policies, upstream, dead)
        port = free_port()
        cmd = [PY, "-m", "gateway", "--policy-dir", str(policies), "--port", str(port), "--log-level", "WARNING"]
        env = {"GOVERNOR_GATEWAY_TOKEN": secrets.token_urlsafe(16)}
        gw = stack.enter_context(process(cmd, env=env, log=STATE / "gateway-profile.log"))
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=gw)
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, 20, 2, body=body)  # warm-up (the fall-through case opens the primary's breaker here)
        out = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "raw.txt"
        result: dict[str, dict] = {}
        load = threading.Thread(target=lambda: result.setdefault("wrk", wrk(url, 20, seconds + 2, body=body)))
        load.start()
        spy = Path(sys.executable).parent / "py-spy"
        subprocess.run(
            [str(spy), "record", "--pid", str(gw.pid), "--gil", "--format", "raw", "--output", str(out),
             "--rate", str(rate), "--duration", str(max(1, round(seconds)))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        load.join()
        total, per = areas(out.read_text())
    r = result["wrk"]
    return r["requests"] / (r["duration_us"] / 1e6), total, per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["small", "fall-through"], choices=["small", *CASES])
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds profiled per case (default 8)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be > 0")
    STATE.mkdir(parents=True, exist_ok=True)
    results = {case: profile_case(case, args.seconds, args.rate) for case in args.cases}
    names = [a for a, _ in AREAS]
    order = list(dict.fromkeys([*names, "other (stdlib, prometheus_client, structlog, ...)"]))
    print("| area | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for area in order:
        cells = [f"{100 * per[area] / total:.1f} %" if total else "" for _, total, per in results.values()]
        if any(c not in ("0.0 %", "") for c in cells):
            print(f"| {area} | " + " | ".join(cells) + " |")
    print("| samples (GIL held) | " + " | ".join(f"{total:,}" for _, total, _ in results.values()) + " |")
    print("| RPS while profiled | " + " | ".join(f"{rps:,.0f}" for rps, _, _ in results.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
