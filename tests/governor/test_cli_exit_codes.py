"""Issue 11.8: the installed `governor` exits with its documented code every time.

The Temporal SDK's runtime could crash the interpreter while it shut down after a command had done its work
(`Fatal Python error: PyGILState_Release`, exit 134 or 139; sdk-python issue 300): 2 of 12 `governor list --all`
and 3 of 7 refused approvals. `cli.main:main` now flushes and leaves with `os._exit(code)`. This runs the real
console script, each command in its own process, many times against the dev server, and checks every exit code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from cli import common
from governor.incident import IncidentReport
from tests.governor.test_cli_devserver import Governed, governed  # noqa: F401  (the module-scoped fixture)

pytestmark = pytest.mark.integration

RUNS = int(os.environ.get("GOVERNOR_EXIT_CODE_RUNS", "15"))
GOVERNOR = Path(sys.executable).parent / "governor"


async def run_governor(g: Governed, *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(GOVERNOR),
        *g.flags,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GOVERNOR_USER": ""},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode(errors="replace")


async def open_gate(g: Governed) -> str:
    reported = await g.sdk.report_failure(IncidentReport(service=g.service, dependency="primary-llm", source="test"))
    await g.sdk.wait_for(reported.incident_id, lambda s: s.pending("ramp:10") is not None, timeout=120)
    return reported.incident_id


async def test_every_command_exits_with_its_documented_code(governed: Governed) -> None:  # noqa: F811
    g = governed
    codes: Counter[tuple[str, int]] = Counter()
    odd: list[str] = []

    async def expect(label: str, want: int, *argv: str) -> None:
        code, output = await run_governor(g, *argv)
        codes[(label, code)] += 1
        if code != want or "Fatal Python error" in output or "Traceback" in output:
            odd.append(f"{label}: exit {code} (want {want}): {output[-300:]}")

    for _ in range(RUNS):
        incident = await open_gate(g)
        # three reading or refused commands at once (the crash was at exit, so concurrency only adds pressure)
        await asyncio.gather(
            expect("list", common.EXIT_OK, "list", "--all"),
            expect("show", common.EXIT_OK, "show", incident),
            expect(
                "approve refused",
                common.EXIT_REFUSED,
                "approve",
                incident,
                "--gate",
                "ramp:10",
                "--reason",
                "x",
                "--as",
                "mallory",
            ),
        )
        await expect("show unknown", common.EXIT_UNKNOWN_INCIDENT, "show", f"recovery-{g.service}-nothing")
        await expect(
            "approve accepted",
            common.EXIT_OK,
            "approve",
            incident,
            "--gate",
            "ramp:10",
            "--reason",
            "ok",
            "--as",
            "alice",
        )
        await g.sdk.wait_for(incident, lambda s: s.closed_at is not None, timeout=120)

    assert odd == [], "\n".join(odd)
    assert sum(codes.values()) == 5 * RUNS, codes
