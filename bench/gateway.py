"""Gateway benchmark: the fake upstream direct, the full gateway, and reference proxies on the same fakes, one run.

    .venv/bin/python -m bench.gateway                 # 3 rounds x 5 s per run, writes docs/benchmarks.md ("Gateway")
    .venv/bin/python -m bench.gateway --duration 2 --rounds 1 --no-doc
    .venv/bin/python -m bench.gateway --no-nginx --no-portkey --no-litellm   # direct and the gateway only
    .venv/bin/python -m bench.gateway --hotpath       # also: bare proxies, to choose the hot path's client/server

Drives each target with wrk (1 thread) at 1 and 20 connections: POST /v1/chat/completions with a small JSON body
(and at 20 connections the 2 KB, SSE and fall-through cases against nginx and HAProxy),
every target of a client count interleaved round by round (the median round kept, the `uptime` line before each
round printed and kept). The gateway runs as `python -m gateway` with a full chain (breakers, stats windows, cache,
Prometheus metrics all on). References, each optional (a missing binary or a failed install prints why and skips
the row): nginx and HAProxy (the Debian packages, one worker or thread, upstream keepalive), Portkey's gateway (npm, installed under
bench/.state/portkey on first use, run by node with --headless) and LiteLLM's proxy (`litellm[proxy]==1.108.7`, in
its own venv under bench/.state). The translation rows (openai -> anthropic, JSON and SSE) put the gateway and
LiteLLM side by side on the same Anthropic Messages API fake.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from bench.harness import (
    BODY,
    BODY_2KB,
    PY,
    ROOT,
    STATE,
    STREAM_BODY,
    Run,
    Target,
    check_answer,
    free_port,
    interleaved,
    process,
    rss_kb,
    wait_http,
)
from bench.hotpath import run_hotpath
from bench.references import (
    CLAUDE_BODY,
    LITELLM_VERSION,
    Skip,
    start_haproxy,
    start_litellm,
    start_nginx,
    start_portkey,
)

# The gateway's pass-through figure documented before the providers work (docs/benchmarks.md, commit 7210dab,
# 2026-11-30, `--duration 5`, 3 rounds, load average 1.51 before the run): issue 12 keeps pass-through >= 0.9x of it.
BASELINE_RPS_20 = 10_403.0
BASELINE_NOTE = "docs/benchmarks.md of 2026-11-30 (commit 7210dab, --duration 5, load average 1.51)"
BASELINE_REF = "1c19706"
ASGI_ROW = "gateway --http asgi"


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


def fall_policy(dirpath: Path, upstream: str, dead_port: int) -> None:
    """Service `fall`: its primary down (nothing listens on `dead_port`), its secondary the fake: the fall-through
    case (the primary's breaker opens in the warm-up; then every request skips it, a probe now and then)."""
    (dirpath / "fall.yaml").write_text(f"""service: fall
dependencies:
  - {{name: primary-llm, tier: tier_0_primary}}
  - {{name: secondary-llm, tier: tier_1_secondary}}
chain:
  - {{tier: tier_0_primary, upstream: http://127.0.0.1:{dead_port}, timeout_ms: 5000}}
  - {{tier: tier_1_secondary, upstream: {upstream}, timeout_ms: 5000}}
  - {{tier: tier_4_static, body: {{choices: [{{index: 0, message: {{role: assistant, content: "limited mode"}}}}]}}}}
""")


CASES = {
    # case: (gateway path, reference proxies' path, body); the direct row posts the same body to the fake
    "2 KB": ("/chat/v1/chat/completions", "/v1/chat/completions", BODY_2KB),
    "SSE": ("/chat/v1/chat/completions", "/sse/v1/chat/completions", STREAM_BODY),
    "fall-through": ("/fall/v1/chat/completions", "/fall/v1/chat/completions", BODY),
}
"""The cases beside the small body, at 20 clients: a 2 KB request and answer, a streamed answer, the primary down."""
CASE_TARGETS = {"SSE": 0.9, "fall-through": 0.9}
"""Issue 15's targets, gateway / nginx RPS (none for 2 KB)."""
REFERENCES = ("nginx", "haproxy")


def case_name(target: str, case: str) -> str:
    return target if case == "small" else f"{target} [{case}]"


def ratio_table(runs: list[Run]) -> str:
    """Gateway against nginx and HAProxy, per case at 20 clients: RPS and CPU per request side by side."""
    by = {(r.target, r.clients): r for r in runs}
    lines = [
        "| case | gateway RPS | nginx RPS | HAProxy RPS | gateway / nginx RPS | gateway / HAProxy RPS "
        "| gateway CPU ms/req | nginx CPU ms/req | CPU gateway / nginx | target (RPS vs nginx) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case in ("small", *CASES):
        g = by.get((case_name("gateway", case), 20))
        if g is None:
            continue
        refs = {ref: by.get((case_name(ref, case), 20)) for ref in REFERENCES}
        n, h = refs["nginx"], refs["haproxy"]
        target = 0.8 if case == "small" else CASE_TARGETS.get(case)
        cells = [
            case,
            f"{g.rps:,.0f}",
            f"{n.rps:,.0f}" if n else "",
            f"{h.rps:,.0f}" if h else "",
            f"{g.rps / n.rps:.2f}x" if n and n.rps else "",
            f"{g.rps / h.rps:.2f}x" if h and h.rps else "",
            f"{g.cpu_ms_per_req:.3f}" if g.cpu_ms_per_req else "",
            f"{n.cpu_ms_per_req:.3f}" if n and n.cpu_ms_per_req else "",
            f"{g.cpu_ms_per_req / n.cpu_ms_per_req:.2f}x" if n and n.cpu_ms_per_req and g.cpu_ms_per_req else "",
            ""
            if target is None
            else f">= {target}x: " + (_met(g.rps / n.rps >= target) if n and n.rps else "no nginx"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(runs: list[Run], rss: dict[str, int]) -> str:
    direct = {(_case(r.target), r.clients): r for r in runs if r.target.split(" [")[0] == "direct"}
    lines = [
        "| target | clients | RPS | p50 ms | p95 ms | p99 ms | added p50 ms | CPU ms/req | errors | RSS MiB "
        "| load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        base = direct.get((_case(r.target), r.clients))
        added = "" if base is None or base is r else f"{r.p50_ms - base.p50_ms:+.3f}"
        key = r.target if r.target in rss else r.target.split(" ")[0]
        mem = f"{rss[key] / 1024:.0f}" if key in rss else ""
        cpu = "" if r.cpu_ms_per_req is None else f"{r.cpu_ms_per_req:.3f}"
        lines.append(
            f"| {r.target} | {r.clients} | {r.rps:,.0f} | {r.p50_ms:.3f} | {r.p95_ms:.3f} | {r.p99_ms:.3f} | "
            f"{added} | {cpu} | {r.errors} | {mem} | {r.load_before:.2f} |"
        )
    return "\n".join(lines)


def _case(target: str) -> str:
    """`gateway [SSE]` -> `SSE`; a row without a case is the small body (or a translation row, its own case)."""
    return target.split(" [", 1)[1].rstrip("]") if " [" in target else "small"


def _ratio(by: dict[tuple[str, int], Run], a: str, b: str) -> float | None:
    ra, rb = by.get((a, 20)), by.get((b, 20))
    return ra.rps / rb.rps if ra and rb and rb.rps > 0 else None


def verdict(runs: list[Run], rss: dict[str, int]) -> list[str]:
    by = {(r.target, r.clients): r for r in runs}
    out = []
    d1, g1, g20 = by.get(("direct", 1)), by.get(("gateway", 1)), by.get(("gateway", 20))
    if d1 and g1:
        added = g1.p50_ms - d1.p50_ms
        out.append(f"added p50 at 1 client: {added:.3f} ms (target <= 0.5 ms): {'met' if added <= 0.5 else 'MISSED'}")
    if g20:
        out.append(
            f"gateway RPS at 20 clients: {g20.rps:,.0f} (target >= 5,000): {'met' if g20.rps >= 5000 else 'MISSED'}"
        )
        share = g20.rps / BASELINE_RPS_20
        out.append(
            f"pass-through at 20 clients: {g20.rps:,.0f} = {share:.2f}x the {BASELINE_RPS_20:,.0f} RPS of "
            f"{BASELINE_NOTE} (target >= 0.9x): {'met' if share >= 0.9 else 'MISSED'}"
            " (another day and load; the same-run comparison below is the fair one)"
        )
    for (name, clients), base in by.items():
        if name.startswith("gateway @") and clients == 20 and g20 and base.rps > 0:
            share = g20.rps / base.rps
            out.append(
                f"pass-through at 20 clients, same run: gateway / {name} (main before the providers work): "
                f"{share:.2f}x (target >= 0.9x): {'met' if share >= 0.9 else 'MISSED'}"
            )
    n1, n20 = by.get(("nginx", 1)), by.get(("nginx", 20))
    if d1 and g1 and n1:
        added = g1.p50_ms - d1.p50_ms
        out.append(
            f"issue 15: added p50 at 1 client {added:.3f} ms (nginx {n1.p50_ms - d1.p50_ms:.3f}; target <= 0.12 ms): "
            f"{'met' if added <= 0.12 else 'MISSED'}"
        )
    if g20 and n20 and n20.rps > 0:
        share = g20.rps / n20.rps
        out.append(f"issue 15: gateway / nginx RPS at 20 clients {share:.2f}x (target >= 0.8x): {_met(share >= 0.8)}")
        if g20.cpu_ms_per_req and n20.cpu_ms_per_req:
            cpu = g20.cpu_ms_per_req / n20.cpu_ms_per_req
            out.append(
                f"issue 15: CPU per request at 20 clients {g20.cpu_ms_per_req:.3f} ms = {cpu:.2f}x nginx's "
                f"{n20.cpu_ms_per_req:.3f} (target <= 2x): {_met(cpu <= 2)}"
            )
    for case, target in CASE_TARGETS.items():
        ratio = _ratio(by, case_name("gateway", case), case_name("nginx", case))
        if ratio is not None:
            out.append(
                f"issue 15: gateway / nginx RPS, {case} at 20 clients {ratio:.2f}x (target >= {target}x): "
                f"{_met(ratio >= target)}"
            )
    for (name, clients), multi in by.items():
        if name.startswith("gateway --workers ") and clients == 20 and g20 and g20.rps > 0:
            out.append(f"{name} / one gateway process, RPS at 20 clients, same run: {multi.rps / g20.rps:.2f}x")
    a20 = by.get((ASGI_ROW, 20))
    if g20 and a20 and a20.rps > 0:
        out.append(f"gateway (--http fast) / {ASGI_ROW} RPS at 20 clients, same run: {g20.rps / a20.rps:.2f}x")
    for ref, label in (("nginx", "nginx"), ("portkey", "Portkey")):
        ratio = _ratio(by, "gateway", ref)
        if ratio is not None:
            out.append(f"gateway / {label} throughput at 20 clients: {ratio:.2f}x")
    ratio = _ratio(by, "gateway", "litellm")
    if ratio is not None:
        out.append(
            f"gateway / LiteLLM throughput at 20 clients: {ratio:.1f}x (target >= 50x): "
            f"{'met' if ratio >= 50 else 'MISSED'}"
        )
    for kind in ("JSON", "SSE"):
        ratio = _ratio(by, f"gateway -> anthropic ({kind})", f"litellm -> anthropic ({kind})")
        if ratio is not None:
            out.append(f"gateway / LiteLLM translating openai -> anthropic ({kind}) at 20 clients: {ratio:.1f}x")
    if "gateway" in rss and "litellm" in rss:
        share = rss["gateway"] / rss["litellm"]
        out.append(f"gateway RSS / LiteLLM RSS: {share:.2f} (target < 0.33): {'met' if share < 1 / 3 else 'MISSED'}")
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


SECTION = re.compile(r"^## Gateway\n.*?(?=^## |\Z)", re.S | re.M)
HOTPATH = re.compile(r"^### Hot-path choices.*?(?=^##|\Z)", re.S | re.M)


def write_doc(section: str, keep_hotpath: bool = False) -> None:
    """Replace the Gateway section of docs/benchmarks.md; without a new hot-path run, keep the old hot-path table."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    old = SECTION.search(text)
    if keep_hotpath and old and (hot := HOTPATH.search(old.group(0))):
        kept = (
            hot.group(0)
            .rstrip("\n")
            .replace(
                "(bare proxies, same upstream, same run)",
                "(bare proxies; kept from an earlier `--hotpath` run, not rerun with the table above)",
            )
        )
        section += f"{kept}\n\n"
    if old:
        text = SECTION.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def start_gateway(
    stack: contextlib.ExitStack,
    upstream: str,
    anthropic: str | None,
    token: str,
    ref: str | None = None,
    http: str | None = None,
    dead_port: int = 0,
    workers: int = 1,
) -> tuple[int, int]:
    """`python -m gateway` on the bench's policies; with `ref`, that commit's gateway/ and governor/ (the same-run
    pass-through baseline; only the `chat` service, which every version's policy format takes); with `http`, that
    HTTP server (`--http asgi`: uvicorn, the server before gateway/server.py)."""
    policy_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    gateway_policy(policy_dir, upstream)
    cwd = ROOT
    if ref is None and anthropic is not None:
        translation_policy(policy_dir, anthropic)
        deployments_policy(policy_dir, upstream)
        fall_policy(policy_dir, upstream, dead_port)
    if ref is not None:
        cwd = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-")))
        try:
            tar = subprocess.run(
                ["git", "archive", "--format=tar", ref, "gateway", "governor"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            raise Skip(f"git archive {ref}: {getattr(err, 'stderr', b'').decode().strip() or err}") from err
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(cwd, filter="data")
    port = free_port()
    cmd = [PY, "-m", "gateway", "--policy-dir", str(policy_dir), "--port", str(port), "--log-level", "WARNING"]
    if http is not None:
        cmd += ["--http", http]
    if workers > 1:  # the supervisor's pid: CPU and RSS count its worker processes (descendants)
        cmd += ["--workers", str(workers)]
    log = STATE / ("gateway.log" if ref is None else "gateway-baseline.log")
    if http is not None:
        log = STATE / f"gateway-{http}.log"
    if workers > 1:
        log = STATE / f"gateway-workers-{workers}.log"
    gw = stack.enter_context(process(cmd, env={"GOVERNOR_GATEWAY_TOKEN": token}, log=log, cwd=cwd))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=gw)
    except RuntimeError as err:
        if ref is None:
            raise
        raise Skip(f"the gateway at {ref} did not start: {err} (log: bench/.state/gateway-baseline.log)") from err
    return port, gw.pid


def case_targets(bases: dict[str, str], pids: dict[str, int]) -> dict[str, dict[str, Target]]:
    """Per case, the rows run interleaved at 20 clients: the fake direct, the gateway and each reference running."""
    out: dict[str, dict[str, Target]] = {}
    for case, (gateway_path, proxy_path, body) in CASES.items():
        targets = {}
        for name, base in bases.items():
            path = gateway_path if name == "gateway" else "/v1/chat/completions" if name == "direct" else proxy_path
            targets[case_name(name, case)] = Target(f"{base}{path}", body=body, pid=pids.get(name))
        for t in targets.values():
            check_answer(t, b"delta" if t.body is STREAM_BODY else b"choices")
        out[case] = targets
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target, interleaved; the median is kept")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM's proxy out")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    parser.add_argument("--no-haproxy", action="store_true", help="leave HAProxy out")
    parser.add_argument("--no-portkey", action="store_true", help="leave Portkey's gateway out")
    parser.add_argument(
        "--no-cases", action="store_true", help="leave out the 2 KB, SSE and fall-through cases (small body only)"
    )
    parser.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help=f"a commit whose gateway runs beside today's as the pass-through baseline ('' for none; "
        f"default {BASELINE_REF}, main before issue 12's providers work)",
    )
    parser.add_argument("--hotpath", action="store_true", help="also measure bare-proxy hot-path choices")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--no-asgi", action="store_true", help=f"leave out the `{ASGI_ROW}` row (the gateway on uvicorn)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run `gateway --workers N` (N worker processes on one port) as its own row (default 1: no row)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be >= 1 and --duration > 0")
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    rss: dict[str, int] = {}
    pids: dict[str, int] = {}
    notes: list[str] = []
    loads: list[str] = []
    up_port, an_port, dead_port = free_port(), free_port(), free_port()
    upstream, anthropic = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{an_port}"
    token = secrets.token_urlsafe(24)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(process([PY, "-m", "demo.upstream", "--name", "bench", "--port", str(up_port)]))
        wait_http(f"{upstream}/health", proc=up)
        cmd = [PY, "-m", "demo.upstream", "--api", "anthropic", "--name", "bench", "--port", str(an_port)]
        an_up = stack.enter_context(process(cmd))
        wait_http(f"{anthropic}/health", proc=an_up)
        gw_port, pids["gateway"] = start_gateway(stack, upstream, anthropic, token, dead_port=dead_port)
        gw = f"http://127.0.0.1:{gw_port}"
        passthrough = {
            "direct": Target(f"{upstream}/v1/chat/completions", pid=up.pid),
            "gateway": Target(f"{gw}/chat/v1/chat/completions", pid=pids["gateway"]),
        }
        if not args.no_asgi:
            asgi_port, pids[ASGI_ROW] = start_gateway(stack, upstream, None, token, http="asgi")
            passthrough[ASGI_ROW] = Target(f"http://127.0.0.1:{asgi_port}/chat/v1/chat/completions", pid=pids[ASGI_ROW])
        if args.workers > 1:
            name = f"gateway --workers {args.workers}"
            w_port, pids[name] = start_gateway(stack, upstream, None, token, workers=args.workers)
            passthrough[name] = Target(f"http://127.0.0.1:{w_port}/chat/v1/chat/completions", pid=pids[name])
        translation = {
            "gateway -> anthropic (JSON)": Target(f"{gw}/claude/v1/chat/completions"),
            "gateway -> anthropic (SSE)": Target(f"{gw}/claude/v1/chat/completions", body=STREAM_BODY),
        }
        if args.baseline_ref:
            name = f"gateway @{args.baseline_ref}"
            try:
                port, pids[name] = start_gateway(stack, upstream, None, token, args.baseline_ref)
                passthrough[name] = Target(f"http://127.0.0.1:{port}/chat/v1/chat/completions")
            except Skip as err:
                print(f"skipping {name}: {err}", flush=True)
                notes.append(f"{name} skipped: {err}")
        bases: dict[str, str] = {"direct": upstream, "gateway": gw}
        proxies = (
            ("nginx", args.no_nginx, lambda: start_nginx(up_port, dead_port)),
            ("haproxy", args.no_haproxy, lambda: start_haproxy(up_port, dead_port)),
        )
        for name, off, start in proxies:
            if off:
                continue
            try:
                bases[name], pids[name] = stack.enter_context(start())
                passthrough[name] = Target(f"{bases[name]}/v1/chat/completions", pid=pids[name])
            except Skip as err:
                print(f"skipping {name}: {err}", flush=True)
                notes.append(f"{name} skipped: {err}")
        if not args.no_portkey:
            try:
                passthrough["portkey"], pids["portkey"] = stack.enter_context(start_portkey(upstream))
                passthrough["portkey"].pid = pids["portkey"]
            except Skip as err:
                print(f"skipping portkey: {err}", flush=True)
                notes.append(f"portkey skipped: {err}")
        pids["direct"] = up.pid
        cases = {} if args.no_cases else case_targets(bases, pids)
        if not args.no_litellm:
            try:
                url, auth, pids["litellm"] = stack.enter_context(
                    start_litellm(upstream, anthropic, "sk-" + secrets.token_urlsafe(32))
                )
                passthrough["litellm"] = Target(url, auth)
                claude_sse = CLAUDE_BODY[:-1] + ',"stream":true}'
                check_answer(Target(url, auth, claude_sse), b"delta")
                translation["litellm -> anthropic (JSON)"] = Target(url, auth, CLAUDE_BODY)
                translation["litellm -> anthropic (SSE)"] = Target(url, auth, claude_sse)
            except (Skip, RuntimeError) as err:
                print(f"skipping litellm: {err}", flush=True)
                notes.append(f"litellm skipped: {err}")
        for t in translation.values():
            check_answer(t, b"delta" if '"stream":true' in t.body else b"choices")
        for clients in (1, 20):
            targets = dict(passthrough)
            if clients == 20:  # the deployment-picking path, interleaved with the single-deployment one
                targets["gateway (2 deployments)"] = Target(f"{gw}/spread/v1/chat/completions")
            runs += interleaved(targets, clients, args.duration, args.rounds, loads)
        req = urllib.request.Request(
            f"{gw}/admin/services/chat/stats?window=60", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req) as r:
            tiers = json.load(r)["tiers"]
        served = {t: s["requests"] for t, s in tiers.items() if s["requests"]}
        notes.append(f"gateway stats window after the pass-through rounds (requests by tier, last 60 s): {served}")
        runs += interleaved(translation, 20, args.duration, args.rounds, loads)
        for targets in cases.values():
            runs += interleaved(targets, 20, args.duration, args.rounds, loads)
        rss = {name: rss_kb(pid) for name, pid in pids.items()}
        hot = run_hotpath(upstream, args.duration) if args.hotpath else []
    print()
    result_table = table(runs, rss)
    print(result_table)
    ratios = ratio_table(runs)
    print()
    print(ratios)
    checks = verdict(runs, rss)
    for line in checks + notes:
        print(line)
    results = {"runs": [asdict(r) for r in runs], "hotpath": [asdict(r) for r in hot], "rss_kb": rss}
    results |= {"checks": checks, "notes": notes, "loads": loads, "started": started}
    (STATE / "gateway-results.json").write_text(json.dumps(results, indent=2))
    if not args.no_doc:
        write_doc(doc_section(args, result_table, ratios, checks, notes, loads, started, hot), keep_hotpath=not hot)
        print("wrote docs/benchmarks.md (## Gateway)")
    return 0


def doc_section(
    args: argparse.Namespace,
    result_table: str,
    ratios: str,
    checks: list[str],
    notes: list[str],
    loads: list[str],
    started: str,
    hot: list[Run],
) -> str:
    flags = [f"--duration {args.duration:g}", f"--rounds {args.rounds}"]
    flags += [
        f"--{f}"
        for f in ("no-nginx", "no-haproxy", "no-portkey", "no-litellm", "no-asgi", "no-cases", "hotpath")
        if getattr(args, f.replace("-", "_"))
    ]
    if args.baseline_ref != BASELINE_REF:
        flags.append(f"--baseline-ref '{args.baseline_ref}'")
    if args.workers > 1:
        flags.append(f"--workers {args.workers}")
    cpu = platform.processor() or platform.machine()
    nginx_v = _version(["nginx", "-v"])
    section = [
        "## Gateway",
        "",
        f"Command: `.venv/bin/python -m bench.gateway {' '.join(flags)}` (run {started}; {args.duration:g} s per run "
        f"after a warm-up, {args.rounds} interleaved rounds per target with the median kept, wrk with 1 thread, "
        f"POST /v1/chat/completions with a {len(BODY)}-byte JSON body; {os.cpu_count()} cores ({cpu}) shared by wrk, "
        "the upstream, the proxy under test and other sessions' work: see the load lines below).",
        "",
        "Upstream: `demo.upstream` (raw asyncio + httptools). Gateway: `python -m gateway`, full chain "
        "(primary, secondary, cache, static), breakers, stats windows, cache writes and Prometheus metrics on. "
        f"nginx: the Debian package ({nginx_v or 'nginx'}), `proxy_pass` to an `upstream {{}}` block with "
        '`keepalive 64`, `proxy_http_version 1.1`, `Connection ""`, 1 worker, access log off (`proxy_buffering off` '
        "for the SSE case). "
        f"HAProxy: the Debian package ({_version(['haproxy', '-v'])}), `nbthread 1`, `http-reuse always`, "
        "`option http-keep-alive`, no logging. "
        "Cases at 20 clients beside the small body: '2 KB' (a 2 KB request whose answer, the fake's echo, is 2 KB), "
        "'SSE' (a streamed answer, relayed as it comes), 'fall-through' (the primary down, nothing listening on its "
        "port, the answer from the secondary: the gateway's breaker open, nginx's `backup` server after "
        "`max_fails=1 fail_timeout=10s`, HAProxy's `backup` server after a failed connect check); 'direct' posts the "
        "same body to the fake. "
        "Portkey: `@portkey-ai/gateway` from npm with `@hono/node-server` held at 1.13.x by an npm override (its "
        "dependencies otherwise nest 1.19.x, with which its streaming answers 500 `immutable`), `node build/start-server.js "
        "--headless --port=N` with NODE_ENV=production, forwarding to the same fake as an OpenAI-compatible provider "
        "(`x-portkey-provider: openai`, `x-portkey-custom-host`). "
        f"LiteLLM: `litellm[proxy]=={LITELLM_VERSION}`, 1 worker, master key, LITELLM_LOCAL_MODEL_COST_MAP=True. "
        "'-> anthropic': the gateway (service `claude`) and LiteLLM (model `anthropic/claude-sonnet-4-5`) translating "
        "the same chat completion to the same Anthropic Messages API fake (`demo.upstream --api anthropic`), JSON and "
        "a streamed answer (SSE, translated event by event), interleaved. "
        f"'gateway @{args.baseline_ref or BASELINE_REF}': main's gateway before issue 12's providers work (`git archive` "
        "of its gateway/ and governor/, the same chat service), interleaved with today's: the same-run pass-through "
        "baseline. "
        "'gateway (2 deployments)': a primary of two weighted deployments (3:1, both on the same fake), "
        "interleaved with 'gateway': the cost of picking a deployment. "
        f"'gateway' serves on its own HTTP/1.1 server (`--http fast`, gateway/server.py); '{ASGI_ROW}' is the same "
        "gateway on uvicorn (the server before it), interleaved with it. "
        "CPU ms/req: the target's user + system CPU (/proc, its process and children) over the measured run, per "
        "request. "
        "RSS: resident memory after the runs (the process and its children). "
        "'added p50' is the target's p50 minus the direct p50 at the same client count.",
        "",
        result_table,
        "",
        "Gateway against nginx and HAProxy per case, 20 clients (from the table above):",
        "",
        ratios,
        "",
        *[f"- {c}" for c in checks + notes],
        "",
        "Load (`uptime`) before each round:",
        "",
        *[f"    {line}" for line in loads],
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
    return "\n".join(section) + "\n"


def _version(cmd: list[str]) -> str:
    """The first line a binary prints for its version (nginx writes it to stderr), or its name when it is missing."""
    if not shutil.which(cmd[0]) and not os.access(f"/usr/sbin/{cmd[0]}", os.X_OK):
        return cmd[0]
    exe = shutil.which(cmd[0]) or f"/usr/sbin/{cmd[0]}"
    out = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True)
    return ((out.stdout or out.stderr).strip().splitlines() or [cmd[0]])[0]


if __name__ == "__main__":
    sys.exit(main())
