"""DESIGN: importing governor's domain modules must not pull in the Temporal SDK (the gateway and tools import them).

Run in a fresh interpreter, since this test process has long imported temporalio. `make lint`'s import contract
`domain-without-temporal` checks the same statically; this checks what really happens at import time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = next(
    c["source_modules"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    if c["id"] == "domain-without-temporal"
)
"""The modules of `make lint`'s contract, so the two checks never drift apart."""


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


def test_the_domain_modules_leave_temporalio_out_of_sys_modules() -> None:
    loaded = loaded_after_importing(DOMAIN)
    assert set(DOMAIN) <= loaded
    assert not {m for m in loaded if m == "temporalio" or m.startswith("temporalio.")}


def test_the_check_sees_temporalio_when_it_is_imported() -> None:
    assert "temporalio" in loaded_after_importing(["governor.client"])  # the SDK module does import it
