"""Issue 14.5's rough edges: `show --watch` / `list --watch`, one case for the execution status in text and JSON,
`validate --json` with path/value/message per error, multi-line values that keep `show`'s tables whole, and the
policy folder of the `governor up` running from here (the demo's `demo/policies`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import common
from cli import main as cli_main
from cli.render import LINE_BREAK, render_incident
from cli.stack_cmds import PolicyDirRecord
from governor.enums import RecoveryPhase
from tests.governor.test_cli import sample_state
from tests.governor.test_cli_devserver import Governed, governed

__all__ = ["governed"]  # the CLI tests' dev-server fixture, shared

ROOT = Path(__file__).resolve().parents[2]


# ---- validate --json -------------------------------------------------------------------------------------------


async def test_validate_json_gives_path_value_and_message_per_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((ROOT / "policies" / "chat.yaml").read_text())
    data["thresholds"]["error_rate_critical"] = 7
    data["ramp"]["sample_interval_s"] = "soon"
    del data["chain"][0]["tier"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    unreadable = tmp_path / "missing.yaml"
    code = await cli_main.run(["validate", str(ROOT / "policies" / "chat.yaml"), str(bad), str(unreadable), "--json"])
    assert code == common.EXIT_USAGE
    ok, broken, missing = json.loads(capsys.readouterr().out)
    assert ok["ok"] is True and "errors" not in ok
    assert broken["ok"] is False and broken["error"].startswith(f"{bad}: invalid policy")
    by_path = {e["path"]: e for e in broken["errors"]}
    assert set(by_path) == {"thresholds.error_rate_critical", "ramp.sample_interval_s", "chain.0.tier"}
    assert by_path["thresholds.error_rate_critical"]["value"] == 7
    assert "less than or equal to 1" in by_path["thresholds.error_rate_critical"]["message"]
    assert by_path["ramp.sample_interval_s"]["value"] == "soon"
    assert by_path["chain.0.tier"] == {"path": "chain.0.tier", "value": None, "message": "Field required"}
    # a file that cannot be read has no field: one error without path or value
    assert missing["errors"] == [{"path": None, "value": None, "message": missing["error"]}]
    assert "cannot read policy file" in missing["error"]


# ---- multi-line values in `show` ------------------------------------------------------------------------------


def test_multi_line_values_keep_shows_tables_and_facts_aligned() -> None:
    state = sample_state()
    state.reason = "error rate 30% > 5%\nEvidence for chat/primary-llm:\n- primary-llm: down (timeout)"
    state.pending_gates[0].context = "Evidence for chat/primary-llm:\n- primary-llm: healthy again\n\n- 3 probes"
    out = render_incident(state)
    lines = out.splitlines()
    # the reason's further lines hang under the value column of the `failure` fact
    failure = next(i for i, line in enumerate(lines) if line.startswith("  failure"))
    column = lines[failure].index("error_spike")
    assert lines[failure + 1] == " " * column + "Evidence for chat/primary-llm:"
    assert lines[failure + 2] == " " * column + "- primary-llm: down (timeout)"
    # the gate's table row is one line, its cell joined with the line-break mark
    gates = lines.index("Pending gates")
    header, row = lines[gates + 1], lines[gates + 2]
    assert header.lstrip().startswith("GATE") and row.lstrip().startswith("ramp:10")
    assert row.endswith(f"Evidence for chat/primary-llm:{LINE_BREAK}- primary-llm: healthy again{LINE_BREAK}- 3 probes")
    assert lines[gates + 3].startswith("  approve ramp:10:")
    assert not any(line.startswith("- ") for line in lines)  # no stray continuation at the left margin


# ---- the policy folder of a running `governor up` ----------------------------------------------------------------


async def test_the_cli_reads_the_policies_of_the_stack_running_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(common.POLICY_DIR_ENV, raising=False)
    demo = tmp_path / "demo" / "policies"
    demo.mkdir(parents=True)
    args = argparse.Namespace(policy_dir=None)
    assert common.policy_dir(args) == Path("policies")  # nothing running: ./policies

    record = PolicyDirRecord(Path("state"), demo)
    ran: list[Path] = []

    async def stack_up(info: Any) -> None:
        ran.append(common.policy_dir(args))

    await record.around(stack_up)(None)  # what `governor up` does once its stack is up
    assert ran == [demo] and common.policy_dir(args) == demo
    assert common.policy_dir(args, running=False) == Path("policies")  # `governor up` itself ignores the record
    monkeypatch.setenv(common.POLICY_DIR_ENV, "mine")
    assert common.policy_dir(args) == Path("mine")  # the environment and the flag still win
    assert common.policy_dir(argparse.Namespace(policy_dir="flag")) == Path("flag")
    monkeypatch.delenv(common.POLICY_DIR_ENV)

    record.remove()  # the stack stopped
    assert not (tmp_path / "state" / "policy-dir").exists() and common.policy_dir(args) == Path("policies")

    # another stack's record (a second `up` that failed to start never wrote one; this one did) is left alone
    record.write()
    (tmp_path / "state" / "policy-dir").write_text(f"{tmp_path}\n")
    record.remove()
    assert common.policy_dir(args) == tmp_path
    (tmp_path / "state" / "policy-dir").write_text(f"{tmp_path / 'gone'}\n")
    assert common.policy_dir(args) == Path("policies")  # a record naming no folder is ignored


# ---- status case and --watch, on the dev server -------------------------------------------------------------------


@pytest.mark.integration
async def test_status_is_one_case_and_watch_redraws_until_the_incident_closes(governed: Governed) -> None:
    g = governed
    incident = f"recovery-{g.service}"
    await g.governor("simulate", "--service", g.service, "--type", "error_spike")
    await g.sdk.wait_for(incident, lambda s: s.pending("ramp:10") is not None, timeout=20)
    await g.listed(lambda found: bool(found))

    code, out, _ = await g.governor("list", "--service", g.service, "--json")
    assert code == 0 and [i["status"] for i in json.loads(out)] == ["running"]
    code, out, _ = await g.governor("list", "--service", g.service)
    assert code == 0 and re.search(rf"{incident} .* running ", out), out

    code, out, _ = await g.governor(
        "list", "--service", g.service, "--watch", "--interval", "0.1", "--watch-count", "3"
    )
    assert code == 0 and out.count("Every 0.1 s: governor list") == 3 and out.count(incident) == 3
    code, out, _ = await g.governor("list", "--service", g.service, "--json", "--watch-count", "2", "--interval", "0.1")
    assert code == 0 and [json.loads(line)[0]["status"] for line in out.splitlines()] == ["running", "running"]

    async def approve_soon() -> None:
        await asyncio.sleep(1.0)
        await g.sdk.approve(incident, "ramp:10", "alice", "watched it")

    approving = asyncio.create_task(approve_soon())
    code, out, _ = await asyncio.wait_for(
        g.governor("show", incident, "--watch", "--interval", "0.3"), timeout=60
    )  # no count: it stops by itself when the incident closes
    await approving
    assert code == 0
    draws = out.count(f"governor show {incident}")
    assert draws >= 3, out
    assert out.count("(Ctrl-C stops)") == draws - 1 and out.rstrip().count("(closed: watching stops)") == 1
    last = out[out.rindex("Every 0.3 s") :]
    assert "Incident " + incident + "  (recovered)" in last and RecoveryPhase.GRADUAL_RESTORE.value in out

    code, out, _ = await g.governor("list", "--service", g.service, "--all", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "completed"
