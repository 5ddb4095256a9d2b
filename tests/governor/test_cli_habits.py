"""The CLI's kubectl/gh habits: did-you-mean, examples in help, connection flags listed once, completion,
the policy JSON Schema, setup --init on an existing policy, the starter policy's gates."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from cli import common
from cli import main as cli_main
from cli.parser import build_parser
from governor.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]


def test_a_typo_of_a_command_suggests_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["lsit"])
    assert exc.value.code == common.EXIT_USAGE
    assert "(did you mean 'list'?)" in capsys.readouterr().err


def test_a_word_far_from_every_command_gets_no_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return capsys.readouterr().out


def test_every_command_has_examples_and_lists_connection_flags_only_at_the_top(
    capsys: pytest.CaptureFixture[str],
) -> None:
    top = _help(["--help"], capsys)
    assert "--address" in top and "--tls-cert" in top
    for command in ("setup", "validate", "list", "show", "approve", "force-tier", "up", "policy", "completion"):
        text = _help([command, "--help"], capsys)
        assert "Examples:\n  # " in text and f"governor {command}" in text, command
        assert "--tls-cert" not in text and "--api-key" not in text, command
    # Still accepted after the subcommand.
    assert build_parser().parse_args(["list", "--address", "h:1"]).address == "h:1"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
async def test_completion_script_names_the_commands(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli_main.run(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert "governor" in out and "force-tier" in out and "postmortem" in out


async def test_policy_schema_validates_the_shipped_policies_and_rejects_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "schema.json"
    assert await cli_main.run(["policy", "schema", "--output", str(out)]) == 0
    schema = json.loads(out.read_text())
    for path in [*(ROOT / "policies").glob("*.yaml"), *(ROOT / "demo" / "policies").glob("*.yaml")]:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    bad = yaml.safe_load((ROOT / "policies" / "chat.yaml").read_text())
    bad["no_such_field"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


async def test_setup_init_on_an_existing_policy_says_it_wrote_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--policy-dir", str(tmp_path), "setup", "--service", "search", "--init"]
    args += ["--primary-url", "http://127.0.0.1:9201", "--approver", "alice"]
    assert await cli_main.run(args) == 0
    capsys.readouterr()
    assert await cli_main.run(args) == 0
    assert "already has a policy for 'search'; --init wrote nothing" in capsys.readouterr().err


async def test_starter_policy_gates_only_exits_of_tiers_in_its_chain(tmp_path: Path) -> None:
    args = ["--policy-dir", str(tmp_path), "setup", "--service", "search", "--init"]
    args += ["--primary-url", "http://127.0.0.1:9201", "--approver", "alice"]
    assert await cli_main.run(args) == 0
    policy = load_policy(tmp_path / "search.yaml")
    tiers = {link.tier.value for link in policy.chain}
    assert "tier_3_degraded" not in tiers
    assert policy.approvals.gates == ["exit:tier_4_static"]


async def test_unreachable_temporal_is_one_plain_line_and_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = await cli_main.run(["--address", f"127.0.0.1:{port}", "--timeout", "2", "list"])
    err = capsys.readouterr().err
    assert code == common.EXIT_UNAVAILABLE
    assert err.count("\n") == 1 and "tonic" not in err and "ConnectError" not in err
    assert f"cannot reach Temporal at 127.0.0.1:{port}" in err and "connection refused" in err


def test_an_empty_filtered_list_says_incidents_are_open_but_none_match() -> None:
    from cli.incident_cmds import empty_list_message

    args = build_parser().parse_args(["list", "--awaiting"])
    assert empty_list_message(args, 0) == "no open incidents"
    assert empty_list_message(args, 1) == (
        "none of the 1 open incidents is awaiting an approval (drop the filter to see them)"
    )
