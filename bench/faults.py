"""The fault matrix: issue 10's messy failures on the real stack, one case after another, as a table anyone can rerun.

    .venv/bin/python -m bench.faults [--cases noisy-healthy,bad-200-html] [--write-docs] [--json out.json]

One stack for all cases (`governor up --demo`'s parts: Temporal dev server, worker, gateway, the demo's fake models,
watchdogs at the demo's cadence) with 40 req/s of client traffic through the gateway (demo/traffic.py). Each case
injects its faults through the fake models' `/control`, then every fault is reset and the matrix waits for the
incident to close before the next case. Policy: the demo's (demo/policies/chat.yaml) without approval gates, with
`recovery_checks.stable_s: 10` (longer than the flapping case's 8 s up-window), `reassess_s: 3` and a two-step ramp
(50 % for 4 s, then 100 %) so that each case stays short.

Per case: client requests and failed ones, the tiers that served them, incidents opened, failure type, severity,
the worst degradation level the incident showed, the status page's worst indicator (/status.json), gates asked,
rollbacks, flaps, the outcome, and whether the design's promise held. "Shown vs served": seconds (outside the ramp)
where the tier the incident shows was not the tier that served most clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx

from bench.fault_cases import cases
from bench.fault_matrix import Case, CaseResult, Matrix, shares
from bench.fault_stack import ROOT, demo_stack_options
from demo.settings import DEMO_WATCHDOG
from demo.traffic import TrafficGenerator
from governor.watchdogs import start_or_update_watchdogs
from workers.stack import StackInfo, run_stack

RPS = 40.0
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Fault matrix"


def matrix_policy(data: dict[str, Any]) -> None:
    """The demo policy, made quick for the matrix (see the module's docstring)."""
    data["recovery_checks"] |= {"stable_s": 10, "reassess_s": 3}
    data["ramp"] = {
        "steps": [{"percent": 50, "soak_s": 4}, {"percent": 100, "soak_s": 0}],
        "sample_interval_s": 1,
        "stats_window_s": 4,
    }


async def run_matrix(folder: Path, selected: list[Case], progress: bool = True) -> list[CaseResult]:
    """Start the stack once under `folder`, run `selected` in turn, stop the stack; the results in order."""
    results: list[CaseResult] = []

    async def scenario(info: StackInfo) -> None:
        await start_or_update_watchdogs(info.client, {"chat": info.policies["chat"]}, info.task_queue, DEMO_WATCHDOG)
        async with (
            httpx.AsyncClient(timeout=5, trust_env=False) as http,
            TrafficGenerator(f"{info.gateway_url}/chat/v1/chat/completions", rps=RPS) as traffic,
        ):
            await traffic.wait_for_requests(int(RPS * 2))
            matrix = Matrix(info, http, traffic)
            matrix.start_sampling()
            try:
                for case in selected:
                    if progress:
                        print(f"-- {case.name}: {case.title}", file=sys.stderr, flush=True)
                    result = await matrix.run(case)
                    results.append(result)
                    if progress:
                        print("   " + row(result), file=sys.stderr, flush=True)
            finally:
                await matrix.stop_sampling()

    await run_stack(demo_stack_options(folder, matrix_policy), scenario)
    return results


COLUMNS = [
    "case",
    "requests",
    "failed",
    "tiers served",
    "incidents",
    "failure type",
    "severity",
    "worst level",
    "status page",
    "gates",
    "rollbacks",
    "flaps",
    "outcome",
    "shown vs served",
    "as promised",
]


def cells(r: CaseResult) -> list[str]:
    diverged, compared = r.shown_vs_served
    return [
        r.name,
        str(r.requests),
        str(r.failed),
        shares(r.tiers),
        str(r.incidents),
        ", ".join(r.failure_types) or "-",
        ", ".join(r.severities) or "-",
        r.worst_level,
        r.worst_indicator,
        ", ".join(r.gates) or "-",
        str(r.rollbacks),
        str(r.flaps),
        r.outcome,
        f"{diverged}/{compared} s",
        "yes" if not r.problems else "NO: " + "; ".join(r.problems),
    ]


def row(r: CaseResult) -> str:
    return " | ".join(cells(r))


def markdown(results: list[CaseResult], titles: dict[str, str], command: str) -> str:
    lines = [
        "Issue 10's messy failures on one real stack (bench/faults.py: dev server, worker, gateway, the demo's fake",
        "models and watchdogs), each case's faults injected through the models' `/control`, reset, and the incident",
        "left to close before the next case. Policy: the demo's without gates, `stable_s: 10` (the flapping case's",
        "up-window is 8 s), `reassess_s: 3`, ramp 50 % for 4 s then 100 %. Tiers served: the clients' answers",
        "(`X-Governor-Tier`) while the case ran, recovery included. Worst level: the incident's degradation level;",
        "status page: the worst /status.json indicator; shown vs served: seconds, outside the ramp, where the tier the",
        "incident showed was not the one that served most clients the second before. The 2-core machine was shared.",
        "",
        f"Command: `{command}` (one stack, {RPS:.0f} req/s of client traffic, real timings), measured "
        + time.strftime("%Y-%m-%d", time.gmtime())
        + ":",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in results]
    lines += ["", "Cases:", ""]
    lines += [f"- `{r.name}`: {titles[r.name]}; " + "; ".join(f"{k}: {v}" for k, v in r.facts.items()) for r in results]
    diverging = [r for r in results if r.diverged]
    if diverging:
        lines += ["", "Seconds where the shown tier was not the served one (first few):", ""]
        lines += [f"- `{r.name}`: " + "; ".join(r.diverged) for r in diverging]
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the fault matrix's section of `path`."""
    text = path.read_text()
    start = text.find(SECTION)
    block = f"{SECTION}\n\n{body}"
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


def as_json(r: CaseResult) -> dict[str, Any]:
    """`asdict` would turn the Counter of tiers into a Counter of its items."""
    return {**{f.name: getattr(r, f.name) for f in fields(r)}, "tiers": dict(r.tiers)}


def load_result(data: dict[str, Any]) -> CaseResult:
    """A CaseResult back from `--json`."""
    result = CaseResult(**data)
    result.tiers = Counter(data["tiers"])
    result.shown_vs_served = (int(data["shown_vs_served"][0]), int(data["shown_vs_served"][1]))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--noisy-s", type=float, default=30.0, help="how long the noisy case lasts")
    parser.add_argument("--hold-s", type=float, default=40.0, help="how long the flapping and 30 %% cases last")
    known = cases()
    parser.add_argument("--cases", default="", help=f"comma-separated, default all: {', '.join(known)}")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS.relative_to(ROOT)}")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--from-json", type=Path, default=None, help="render a --json file again, run nothing")
    parser.add_argument("--command", default=None, help="with --from-json: the command that produced it")
    args = parser.parse_args(argv)
    known = cases(hold_s=args.hold_s, noisy_s=args.noisy_s)
    names = [n.strip() for n in args.cases.split(",") if n.strip()] or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    command = ".venv/bin/python -m bench.faults" + (f" --cases {args.cases}" if args.cases else "")
    if args.from_json:
        results = [load_result(d) for d in json.loads(args.from_json.read_text())]
        command = args.command or command
    else:
        with tempfile.TemporaryDirectory(prefix="fault-matrix-") as tmp:
            results = asyncio.run(run_matrix(Path(tmp), [known[n] for n in names]))
    table = markdown(results, {n: c.title for n, c in known.items()}, command)
    print(table)
    if args.json:
        args.json.write_text(json.dumps([as_json(r) for r in results], indent=2, default=str))
    if args.write_docs:
        write_section(DOCS, table)
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
