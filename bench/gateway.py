"""Gateway benchmark: the fake upstream direct, through the full gateway, and through LiteLLM's proxy, side by side.

    .venv/bin/python -m bench.gateway                 # 3 rounds x 5 s per run, writes docs/benchmarks.md ("Gateway")
    .venv/bin/python -m bench.gateway --duration 2 --rounds 1 --no-doc
    .venv/bin/python -m bench.gateway --hotpath       # also: bare proxies, to choose the hot path's client/server

Drives each target with wrk (1 thread) at 1 and 20 connections: POST /v1/chat/completions with a small JSON body.
The gateway runs as `python -m gateway` with a full chain (breakers, stats windows, cache, Prometheus metrics all on).
LiteLLM (`litellm[proxy]==1.108.7`) is installed in its own venv under bench/.state/ (git-ignored) on first use, run
with LITELLM_LOCAL_MODEL_COST_MAP=True, one worker and a random master key, against the same upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / "bench" / ".state"
LITELLM_VERSION = "1.108.7"
LITELLM_VENV = STATE / "litellm-venv"
PY = sys.executable
BODY = '{"model":"fake","messages":[{"role":"user","content":"hello there, how are you today?"}]}'
STREAM_BODY = BODY[:-1] + ',"stream":true}'

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
def process(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[subprocess.Popen]:
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
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


def measure(
    target: str, url: str, clients: int, duration: float, headers: dict[str, str] | None = None, body: str = BODY
) -> Run:
    wrk(url, clients, min(2.0, duration / 3), headers, body)  # warm-up: pools, JIT-free caches, LiteLLM's imports
    load = os.getloadavg()[0]
    r = wrk(url, clients, duration, headers, body)
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
    )


def interleaved(
    targets: dict[str, tuple[str, dict[str, str] | None]], clients: int, duration: float, rounds: int
) -> list[Run]:
    """Each target `rounds` times, interleaved, keeping the median round by RPS: the machine is shared, so one
    unlucky run (another process waking up) does not decide the table."""
    samples: dict[str, list[Run]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, headers) in targets.items():
            samples[name].append(measure(name, url, clients, duration, headers))
            print(fmt_run(samples[name][-1]), flush=True)
    chosen = []
    for runs in samples.values():
        runs.sort(key=lambda r: r.rps)
        chosen.append(runs[len(runs) // 2])
    return chosen


def translation_policy(dirpath: Path, upstream: str) -> None:
    """Service `claude`: the same chain, its primary an Anthropic Messages API fake (the translation path)."""
    (dirpath / "claude.yaml").write_text(f"""service: claude
dependencies:
  - {{name: primary-llm, tier: tier_0_primary, health_url: {upstream}/health}}
chain:
  - {{tier: tier_0_primary, upstream: {upstream}, timeout_ms: 5000, provider: anthropic, model: claude-sonnet-4-5}}
  - {{tier: tier_4_static, body: {{choices: [{{index: 0, message: {{role: assistant, content: "limited mode"}}}}]}}}}
""")


def deployments_policy(dirpath: Path, upstream: str) -> None:
    """Service `spread`: its primary two weighted deployments (both on the fake: the picking path, not the network)."""
    (dirpath / "spread.yaml").write_text(f"""service: spread
dependencies:
  - {{name: primary-llm, tier: tier_0_primary}}
chain:
  - tier: tier_0_primary
    timeout_ms: 5000
    deployments: [{{name: east, upstream: {upstream}, weight: 3}}, {{name: west, upstream: {upstream}, weight: 1}}]
  - {{tier: tier_4_static, body: {{choices: [{{index: 0, message: {{role: assistant, content: "limited mode"}}}}]}}}}
""")


def gateway_policy(dirpath: Path, upstream: str) -> None:
    (dirpath / "chat.yaml").write_text(f"""service: chat
dependencies:
  - {{name: primary-llm, tier: tier_0_primary, health_url: {upstream}/health}}
chain:
  - {{tier: tier_0_primary, upstream: {upstream}, timeout_ms: 5000}}
  - {{tier: tier_1_secondary, upstream: http://127.0.0.1:{free_port()}, timeout_ms: 5000}}
  - {{tier: tier_2_cache, ttl_s: 300, max_entries: 10000}}
  - tier: tier_4_static
    body: {{choices: [{{index: 0, message: {{role: assistant, content: "limited mode"}}}}]}}
""")


def ensure_litellm() -> Path | None:
    """The LiteLLM proxy's entry point, installing it in its own venv on first use; None (with a reason) if it fails."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    STATE.mkdir(parents=True, exist_ok=True)
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...", flush=True)
    try:
        subprocess.run([PY, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True
        )
    except subprocess.CalledProcessError as err:
        print(f"LiteLLM could not be installed: {err}", file=sys.stderr)
        return None
    return exe if exe.exists() else None


def litellm_config(path: Path, upstream: str, master_key: str) -> None:
    path.write_text(f"""model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: {upstream}/v1
      api_key: sk-fake-upstream
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master_key}
""")


HOTPATH_VARIANTS = {
    "uvicorn + httpx.AsyncClient": "httpx",
    "uvicorn + aiohttp.ClientSession": "aiohttp",
    "uvicorn + gateway.client.Pool": "pool",
    "aiohttp.web + gateway.client.Pool": "web_pool",
}

HOTPATH_PROXY = r"""
import asyncio, sys
UP = sys.argv[2]
KIND = sys.argv[1]
PORT = int(sys.argv[3])
H = [(b"content-type", b"application/json"), (b"x-governor-tier", b"tier_0_primary")]

def make_forward():
    if KIND == "httpx":
        import httpx
        c = httpx.AsyncClient(base_url=UP, limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))
        async def fwd(method, path, body):
            r = await c.request(method, path, content=body, headers={"content-type": "application/json"})
            return r.status_code, r.content
        return fwd
    if KIND == "aiohttp":
        import aiohttp
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        async def fwd(method, path, body):
            async with s.request(method, UP + path, data=body, headers={"content-type": "application/json"}) as r:
                return r.status, await r.read()
        return fwd
    from gateway.client import Pool
    pool = Pool(UP)
    async def fwd(method, path, body):
        r = await pool.request(method, path, [(b"content-type", b"application/json")], body, pool.loop.time() + 5)
        return r.status, await r.read(pool.loop.time() + 5)
    return fwd

if KIND == "web_pool":
    import uvloop
    from aiohttp import web
    async def main():
        fwd = make_forward()
        async def handler(request):
            status, data = await fwd(request.method, request.path, await request.read())
            return web.Response(body=data, status=status, headers={"content-type": "application/json",
                                                                   "x-governor-tier": "tier_0_primary"})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", PORT).start()
        await asyncio.Event().wait()
    uvloop.run(main())
else:
    import uvicorn
    fwd = None
    async def app(scope, receive, send):
        global fwd
        if scope["type"] != "http":
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            return
        if fwd is None:
            fwd = make_forward()
        body = b""
        more = True
        while more:
            m = await receive()
            body += m.get("body", b"")
            more = m.get("more_body", False)
        status, data = await fwd(scope["method"], scope["path"], body)
        await send({"type": "http.response.start", "status": status, "headers": H})
        await send({"type": "http.response.body", "body": data})
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, lifespan="off")
"""


def run_hotpath(upstream: str, duration: float) -> list[Run]:
    STATE.mkdir(parents=True, exist_ok=True)
    script = STATE / "hotpath_proxy.py"
    script.write_text(HOTPATH_PROXY)
    runs = []
    for label, kind in HOTPATH_VARIANTS.items():
        port = free_port()
        with process([PY, str(script), kind, upstream, str(port)], env={"PYTHONPATH": str(ROOT)}) as proc:
            wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
            for clients in (1, 20):
                runs.append(measure(label, f"http://127.0.0.1:{port}/v1/chat/completions", clients, duration))
                print(fmt_run(runs[-1]), flush=True)
    return runs


def fmt_run(r: Run) -> str:
    return (
        f"{r.target:<34} c={r.clients:<3} {r.rps:>9,.0f} rps  p50 {r.p50_ms:7.3f}  p95 {r.p95_ms:7.3f}  "
        f"p99 {r.p99_ms:7.3f} ms  errors {r.errors}  load {r.load_before:.2f}"
    )


def table(runs: list[Run], rss: dict[str, int]) -> str:
    direct = {r.clients: r for r in runs if r.target == "direct"}
    lines = [
        "| target | clients | RPS | p50 ms | p95 ms | p99 ms | added p50 ms | errors | RSS MiB | load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        added = "" if r.target == "direct" or r.clients not in direct else f"{r.p50_ms - direct[r.clients].p50_ms:+.3f}"
        mem = f"{rss[r.target] / 1024:.0f}" if r.target in rss else ""
        lines.append(
            f"| {r.target} | {r.clients} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p95_ms:.3f} | {r.p99_ms:.3f} | "
            f"{added} | {r.errors} | {mem} | {r.load_before:.2f} |"
        )
    return "\n".join(lines)


def verdict(runs: list[Run], rss: dict[str, int]) -> list[str]:
    by = {(r.target, r.clients): r for r in runs}
    out = []
    d1, g1, g20 = by.get(("direct", 1)), by.get(("gateway", 1)), by.get(("gateway", 20))
    l20 = by.get(("litellm", 20))
    if d1 and g1:
        added = g1.p50_ms - d1.p50_ms
        out.append(f"added p50 at 1 client: {added:.3f} ms (target <= 0.5 ms): {'met' if added <= 0.5 else 'MISSED'}")
    if g20:
        out.append(
            f"gateway RPS at 20 clients: {g20.rps:,.0f} (target >= 5,000): {'met' if g20.rps >= 5000 else 'MISSED'}"
        )
    if g20 and l20 and l20.rps > 0:
        ratio = g20.rps / l20.rps
        out.append(
            f"gateway / LiteLLM throughput at 20 clients: {ratio:.1f}x (target >= 50x): "
            f"{'met' if ratio >= 50 else 'MISSED'}"
        )
    if "gateway" in rss and "litellm" in rss:
        share = rss["gateway"] / rss["litellm"]
        out.append(f"gateway RSS / LiteLLM RSS: {share:.2f} (target < 0.33): {'met' if share < 1 / 3 else 'MISSED'}")
    return out


def write_doc(section: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Gateway\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target, interleaved; the median is kept")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--hotpath", action="store_true", help="also measure bare-proxy hot-path choices")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    rss: dict[str, int] = {}
    notes: list[str] = []
    up_port, gw_port, ll_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    token = secrets.token_urlsafe(24)
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(process([PY, "-m", "demo.upstream", "--name", "bench", "--port", str(up_port)]))
        wait_http(f"{upstream}/health", proc=up)
        an_port = free_port()
        an_up = stack.enter_context(
            process([PY, "-m", "demo.upstream", "--api", "anthropic", "--name", "bench", "--port", str(an_port)])
        )
        wait_http(f"http://127.0.0.1:{an_port}/health", proc=an_up)
        policy_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        gateway_policy(policy_dir, upstream)
        translation_policy(policy_dir, f"http://127.0.0.1:{an_port}")
        deployments_policy(policy_dir, upstream)
        gw = stack.enter_context(
            process(
                [
                    PY,
                    "-m",
                    "gateway",
                    "--policy-dir",
                    str(policy_dir),
                    "--port",
                    str(gw_port),
                    "--log-level",
                    "WARNING",
                ],
                env={"GOVERNOR_GATEWAY_TOKEN": token},
                log=STATE / "gateway.log",
            )
        )
        wait_http(f"http://127.0.0.1:{gw_port}/healthz", proc=gw)
        gw_url = f"http://127.0.0.1:{gw_port}/chat/v1/chat/completions"
        spread = f"http://127.0.0.1:{gw_port}/spread/v1/chat/completions"
        for clients in (1, 20):
            targets: dict[str, tuple[str, dict[str, str] | None]] = {
                "direct": (f"{upstream}/v1/chat/completions", None),
                "gateway": (gw_url, None),
            }
            if clients == 20:  # the deployment-picking path, interleaved with the single-deployment one
                targets["gateway (2 deployments)"] = (spread, None)
            runs += interleaved(targets, clients, args.duration, args.rounds)
        claude = f"http://127.0.0.1:{gw_port}/claude/v1/chat/completions"
        for name, body in (("gateway -> anthropic (JSON)", BODY), ("gateway -> anthropic (SSE)", STREAM_BODY)):
            runs.append(measure(name, claude, 20, args.duration, None, body))
            print(fmt_run(runs[-1]), flush=True)
        rss["gateway"] = rss_kb(gw.pid)
        rss["direct"] = rss_kb(up.pid)
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{gw_port}/admin/services/chat/stats?window=60",
                headers={"Authorization": f"Bearer {token}"},
            )
        ) as r:
            tiers = json.load(r)["tiers"]
        served = {t: s["requests"] for t, s in tiers.items() if s["requests"]}
        notes.append(f"gateway stats window during the run (requests by tier, last 60 s): {served}")
        if not args.no_litellm:
            exe = ensure_litellm()
            if exe is None:
                notes.append(f"LiteLLM {LITELLM_VERSION} could not be installed; see the console output.")
            else:
                master = "sk-" + secrets.token_urlsafe(32)
                cfg = STATE / "litellm.yaml"
                litellm_config(cfg, upstream, master)
                env = {
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                    "LITELLM_LOG": "ERROR",
                    "LITELLM_MODE": "PRODUCTION",
                    "NO_DOCS": "True",
                    "DISABLE_ADMIN_UI": "True",
                }
                ll = stack.enter_context(
                    process(
                        [
                            str(exe),
                            "--config",
                            str(cfg),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(ll_port),
                            "--num_workers",
                            "1",
                        ],
                        env=env,
                        log=STATE / "litellm.log",
                    )
                )
                try:
                    wait_http(f"http://127.0.0.1:{ll_port}/health/liveliness", timeout=180, proc=ll)
                except RuntimeError as err:
                    notes.append(f"LiteLLM did not start: {err} (log: bench/.state/litellm.log)")
                else:
                    auth = {"Authorization": f"Bearer {master}"}
                    for clients in (1, 20):
                        runs.append(
                            measure(
                                "litellm",
                                f"http://127.0.0.1:{ll_port}/v1/chat/completions",
                                clients,
                                args.duration,
                                auth,
                            )
                        )
                        print(fmt_run(runs[-1]), flush=True)
                    rss["litellm"] = rss_kb(ll.pid)
        if args.hotpath:
            hot = run_hotpath(upstream, args.duration)
        else:
            hot = []
    print()
    result_table = table(runs, rss)
    print(result_table)
    checks = verdict(runs, rss)
    for line in checks + notes:
        print(line)
    (STATE / "gateway-results.json").write_text(
        json.dumps(
            {
                "runs": [asdict(r) for r in runs],
                "hotpath": [asdict(r) for r in hot],
                "rss_kb": rss,
                "checks": checks,
                "notes": notes,
            },
            indent=2,
        )
    )
    if not args.no_doc:
        cmd = (
            "python -m bench.gateway"
            + (f" --duration {args.duration:g}" if args.duration != 10 else "")
            + (" --hotpath" if args.hotpath else "")
        )
        cpu = platform.processor() or platform.machine()
        section = [
            "## Gateway",
            "",
            f"Command: `.venv/bin/{cmd}` ({args.duration:g} s per run after a warm-up, {args.rounds} interleaved "
            "rounds per target with the median kept, wrk with 1 thread, "
            f"POST /v1/chat/completions with a {len(BODY)}-byte JSON body; {os.cpu_count()} cores ({cpu}); "
            f"wrk, the upstream, and the proxy under test share them).",
            "",
            "Upstream: `demo.upstream` (raw asyncio + httptools). Gateway: `python -m gateway`, full chain "
            "(primary, secondary, cache, static), breakers, stats windows, cache writes and Prometheus metrics on. "
            f"LiteLLM: `litellm[proxy]=={LITELLM_VERSION}`, 1 worker, master key, LITELLM_LOCAL_MODEL_COST_MAP=True. "
            "'gateway -> anthropic': the same gateway translating to an Anthropic Messages API fake "
            "(`demo.upstream --api anthropic`), one round, JSON and a streamed answer (SSE, translated event by event). "
            "'gateway (2 deployments)': a primary of two weighted deployments (3:1, both on the same fake), "
            "interleaved with 'gateway': the cost of picking a deployment. "
            "RSS: resident memory after the runs (the process and its children). "
            "'added p50' is the target's p50 minus the direct p50 at the same client count.",
            "",
            result_table,
            "",
            *[f"- {c}" for c in checks + notes],
            "",
        ]
        if hot:
            section += [
                "### Hot-path choices (bare proxies, same upstream, same run)",
                "",
                "| proxy | clients | RPS | p50 ms | p99 ms |",
                "|---|---:|---:|---:|---:|",
                *[f"| {r.target} | {r.clients} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} |" for r in hot],
                "",
            ]
        write_doc("\n".join(section) + "\n")
        print("wrote docs/benchmarks.md (## Gateway)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
