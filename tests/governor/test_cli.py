"""The `governor` CLI without Temporal: argument parsing, identity, rendering, and the policy commands."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cli import common, incident_cmds, render
from cli import main as cli_main
from governor import postmortem
from governor.audit import append_entry
from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import IncidentState, PendingGate
from governor.policy import load_policy
from governor.timefmt import format_duration

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
T0 = datetime(2026, 11, 30, 4, 0, 0, tzinfo=UTC)


def sample_state() -> IncidentState:
    state = IncidentState(
        incident_id="recovery-chat",
        service="chat",
        dependency="primary-llm",
        failure_type=FailureType.ERROR_SPIKE,
        severity=Severity.CRITICAL,
        reason="error rate 30% > 5%",
        phase=RecoveryPhase.GRADUAL_RESTORE,
        tier=FallbackTier.TIER_1_SECONDARY,
        degradation_level=DegradationLevel.DEGRADED_L1,
        ramp_percent=10,
        ramp_step=1,
        detected_at=T0,
        pending_gates=[
            PendingGate(
                gate="ramp:10",
                requested_at=T0 + timedelta(minutes=5),
                deadline=T0 + timedelta(minutes=20),
                approvers=["alice", "bob"],
                context="start the ramp at 10%",
            )
        ],
    )
    append_entry(state.audit, at=T0, action="reported", actor="client", details={"message": "503s"})
    append_entry(
        state.audit, at=T0 + timedelta(seconds=2), action="phase", previous_state="detection", new_state="isolation"
    )
    append_entry(
        state.audit,
        at=T0 + timedelta(minutes=3, seconds=12),
        action="tier",
        actor="system",
        previous_state="tier_0_primary",
        new_state="tier_1_secondary",
        details={"reason": "primary failed"},
    )
    return state


# ---- identity ----------------------------------------------------------------------------------------------------


def test_identity_flag_wins_over_env_and_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('user = "carol"\n')
    assert common.resolve_identity("alice", {"GOVERNOR_USER": "bob"}, config) == "alice"
    assert common.resolve_identity(None, {"GOVERNOR_USER": "bob"}, config) == "bob"
    assert common.resolve_identity(None, {}, config) == "carol"


def test_identity_config_location_follows_env(tmp_path: Path) -> None:
    (tmp_path / "governor").mkdir()
    (tmp_path / "governor" / "config.toml").write_text('user = "dave"\n')
    assert common.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "governor" / "config.toml"
    assert common.resolve_identity(None, {"XDG_CONFIG_HOME": str(tmp_path)}) == "dave"
    explicit = tmp_path / "other.toml"
    explicit.write_text('user = "erin"\n')
    assert common.resolve_identity(None, {"GOVERNOR_CONFIG": str(explicit), "XDG_CONFIG_HOME": str(tmp_path)}) == "erin"


def test_identity_refuses_without_a_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(common.UserError) as err:
        common.resolve_identity(None, {"GOVERNOR_USER": "  "}, missing)
    assert "--as NAME" in str(err.value) and "GOVERNOR_USER" in str(err.value) and str(missing) in str(err.value)


@pytest.mark.parametrize("content", ['user = ""\n', "user = 3\n", "user = [\n"])
def test_identity_bad_config_names_the_file(tmp_path: Path, content: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(content)
    with pytest.raises(common.UserError) as err:
        common.resolve_identity(None, {}, config)
    assert str(config) in str(err.value)


async def test_control_without_identity_exits_1_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOVERNOR_USER", raising=False)
    monkeypatch.setenv("GOVERNOR_CONFIG", str(tmp_path / "missing.toml"))
    # Port 1 would fail to connect: the identity check must come first, so this answers at once.
    code = await cli_main.run(
        ["--address", "127.0.0.1:1", "approve", "recovery-chat", "--gate", "ramp:10", "--reason", "flat"]
    )
    err = capsys.readouterr().err
    assert code == common.EXIT_USAGE
    assert "who is acting?" in err and "Traceback" not in err


# ---- parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tier"),
    [
        ("tier_1_secondary", FallbackTier.TIER_1_SECONDARY),
        ("1", FallbackTier.TIER_1_SECONDARY),
        ("static", FallbackTier.TIER_4_STATIC),
        ("TIER_2_CACHE", FallbackTier.TIER_2_CACHE),
    ],
)
def test_parse_tier_accepts_value_index_and_short_name(text: str, tier: FallbackTier) -> None:
    assert common.parse_tier(text) is tier


def test_bad_tier_is_a_usage_error_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main.parse_args(["force-tier", "x", "--tier", "tier_9"])
    assert exit_.value.code == common.EXIT_USAGE
    assert "unknown tier 'tier_9'" in capsys.readouterr().err


def test_options_work_before_and_after_the_subcommand() -> None:
    before = cli_main.parse_args(["--json", "--address", "h:1", "show", "chat/primary-llm"])
    after = cli_main.parse_args(["show", "chat/primary-llm", "--json", "--address", "h:1"])
    for args in (before, after):
        assert args.json is True and args.address == "h:1" and args.incident == "chat/primary-llm"
    plain = cli_main.parse_args(["show", "x"])
    assert plain.json is False and plain.address is None


def test_incident_shorthand_and_metrics() -> None:
    assert common.resolve_incident("chat/primary-llm") == "recovery-chat"
    assert common.resolve_incident("recovery-chat") == "recovery-chat"
    args = cli_main.parse_args(["simulate", "--service", "chat", "--type", "ERROR_SPIKE", "--metric", "error_rate=0.3"])
    assert args.failure_type is FailureType.ERROR_SPIKE and args.metric == [("error_rate", 0.3)]
    with pytest.raises(SystemExit):
        cli_main.parse_args(["simulate", "--service", "chat", "--type", "meltdown"])


def test_approve_needs_gate_and_reason() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main.parse_args(["approve", "recovery-chat", "--gate", "ramp:10"])
    assert exit_.value.code == common.EXIT_USAGE


# ---- rendering ---------------------------------------------------------------------------------------------------


def test_table_aligns_columns_and_shows_missing_as_dash() -> None:
    text = render.render_table(["name", "tier"], [["chat", None], ["search-api", "tier_1_secondary"]])
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "TIER"]
    assert lines[1] == "chat        -"
    assert lines[2].index("tier_1") == lines[0].index("TIER")


def test_show_gives_the_exact_approve_command_and_the_timeline() -> None:
    text = render.render_incident(sample_state())
    assert "phase        gradual_restore" in text
    assert "tier_1_secondary (90% quality" in text
    assert "degraded_l1 (SLA impact MINOR)" in text
    command = next(line for line in text.splitlines() if "approve ramp:10" in line).split(":  ", 1)[1]
    assert shlex.split(command) == [
        "governor",
        "approve",
        "recovery-chat",
        "--gate",
        "ramp:10",
        "--reason",
        "why it is safe",
    ]
    assert cli_main.parse_args(shlex.split(command)[1:]).gate == "ramp:10"  # the printed command parses
    assert "04:03:12  +3m 12s" in text
    assert "tier_0_primary -> tier_1_secondary" in text


def test_one_duration_format_for_the_cli_and_the_postmortem() -> None:
    assert format_duration(timedelta(seconds=42)) == "42.0s"
    assert format_duration(timedelta(minutes=3, seconds=5)) == "3m 05s"
    assert format_duration(timedelta(hours=2, minutes=1)) == "2h 01m 00s"
    assert format_duration(-75) == "-1m 15s" and format_duration(None) == "n/a"
    assert postmortem.format_duration is format_duration


def test_timeline_summary_is_markdown_with_every_entry() -> None:
    state = sample_state()
    text = render.render_timeline_summary(state)
    assert text.startswith("# Post-mortem (timeline only): chat / primary-llm")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(state.audit)  # header + one row per audit entry
    assert "| 04:03:12 | +3m 12s | system | tier |" in text


# ---- audit verify ------------------------------------------------------------------------------------------------


async def test_audit_verify_file_intact_then_edited_then_cut(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sample_state()
    saved = tmp_path / "state.json"
    saved.write_text(state.model_dump_json())
    assert await cli_main.run(["audit", "verify", "--file", str(saved)]) == common.EXIT_OK
    assert "audit chain intact (3 entries" in capsys.readouterr().out

    data = json.loads(saved.read_text())
    data["audit"][1]["actor"] = "mallory"
    saved.write_text(json.dumps(data))
    assert await cli_main.run(["audit", "verify", "--file", str(saved)]) == common.EXIT_CHAIN_BROKEN
    out = capsys.readouterr().out
    assert "BROKEN at entry 1 (phase by mallory" in out and "was edited" in out

    data = json.loads(state.model_dump_json())
    del data["audit"][1]
    saved.write_text(json.dumps(data))
    assert await cli_main.run(["audit", "verify", "--file", str(saved), "--json"]) == common.EXIT_CHAIN_BROKEN
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["intact"] is False and verdict["broken_at"] == 1 and "seq 2" in verdict["problem"]


async def test_audit_verify_bad_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "state.json"
    saved.write_text('{"incident_id": 5}')
    assert await cli_main.run(["audit", "verify", "--file", str(saved)]) == common.EXIT_USAGE
    err = capsys.readouterr().err
    assert str(saved) in err and "Traceback" not in err


# ---- policy commands ---------------------------------------------------------------------------------------------


async def test_validate_reports_file_field_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((POLICIES / "chat.yaml").read_text())
    data["thresholds"]["error_rate_critical"] = 7
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    code = await cli_main.run(["validate", str(POLICIES / "chat.yaml"), str(bad)])
    captured = capsys.readouterr()
    assert code == common.EXIT_USAGE
    assert "ok  " in captured.out and "chat.yaml: service chat" in captured.out
    assert str(bad) in captured.err and "thresholds.error_rate_critical" in captured.err and "7" in captured.err

    assert await cli_main.run(["validate", str(POLICIES), "--json"]) == common.EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["service"] == "chat"


async def test_scenarios_lists_the_ten_failure_types(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli_main.run(["scenarios", "--json"]) == common.EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert [d["failure_type"] for d in data] == [t.value for t in FailureType]
    corruption = next(d for d in data if d["failure_type"] == "data_corruption")
    assert corruption == {
        "failure_type": "data_corruption",
        "detection_method": "checksum_validation",
        "typical_recovery_minutes": 60,
        "requires_manual_intervention": True,
        "base_severity": "CRITICAL",
    }
    assert await cli_main.run(["scenarios"]) == common.EXIT_OK
    assert len(capsys.readouterr().out.strip().splitlines()) == 11


async def test_chain_reads_quality_latency_and_exit_approval(capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli_main.run(["--policy-dir", str(POLICIES), "chain", "--service", "chat", "--json"]) == common.EXIT_OK
    chain = {r["tier"]: r for r in json.loads(capsys.readouterr().out)["chain"]}
    assert chain["tier_1_secondary"]["quality_percentage"] == 90
    assert chain["tier_1_secondary"]["latency_multiplier"] == 1.2
    assert chain["tier_3_degraded"]["approval_to_exit"] is True
    assert chain["tier_1_secondary"]["approval_to_exit"] is False
    assert await cli_main.run(["chain", "--service", "chat", "--policy-dir", str(POLICIES)]) == common.EXIT_OK
    assert "tier_4_static     static answer (HTTP 200)" in capsys.readouterr().out


async def test_unknown_service_names_the_known_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOVERNOR_POLICY_DIR", str(POLICIES))
    assert await cli_main.run(["chain", "--service", "billing"]) == common.EXIT_USAGE
    assert "no policy for service 'billing' (known: chat)" in capsys.readouterr().err
    assert await cli_main.run(["setup", "--service", "billing"]) == common.EXIT_USAGE
    assert "--init --primary-url" in capsys.readouterr().err


async def test_setup_init_writes_a_valid_starter_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--policy-dir",
        str(tmp_path),
        "setup",
        "--service",
        "search",
        "--init",
        "--primary-url",
        "http://127.0.0.1:9201",
        "--approver",
        "alice",
    ]
    assert await cli_main.run(args) == common.EXIT_OK
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'search.yaml'}" in out and "Service search: policy valid" in out
    policy = load_policy(tmp_path / "search.yaml")
    assert policy.approvals.approvers == ["alice"]
    assert policy.dependencies[0].health_url == "http://127.0.0.1:9201/health"
    # A second run finds the policy and leaves the file alone.
    before = (tmp_path / "search.yaml").read_text()
    assert await cli_main.run(args) == common.EXIT_OK
    assert (tmp_path / "search.yaml").read_text() == before


async def test_unreachable_temporal_exits_4_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = await cli_main.run(["--address", "127.0.0.1:1", "--timeout", "2", "list"])
    err = capsys.readouterr().err
    assert code == common.EXIT_UNAVAILABLE
    assert "cannot reach Temporal at 127.0.0.1:1" in err and "Traceback" not in err


def test_postmortem_uses_governor_postmortem_and_falls_back_without_a_policy() -> None:
    state = sample_state()
    markdown, data, partial = incident_cmds.postmortem_text(state, load_policy(POLICIES / "chat.yaml"))
    assert partial == "" and markdown.startswith("# Post-mortem: chat: error_spike on primary-llm (CRITICAL)")
    assert data is not None and data["incident_id"] == state.incident_id
    markdown, data, partial = incident_cmds.postmortem_text(state, None)
    assert "no policy for service 'chat'" in partial and data is None
    assert markdown.startswith("# Post-mortem (timeline only)")


def _imported_roots(folder: Path) -> dict[str, set[str]]:
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_the_layers_import_only_downwards() -> None:
    """DESIGN's table: governor/ imports none of the CLI, workers, demo or workflows; demo/ no launcher or workflow;
    of the CLI only cli/stack_cmds.py reaches into workers/ and demo/."""
    root = Path(__file__).resolve().parents[2]
    domain = _imported_roots(root / "governor")
    assert not {"cli", "workers", "demo", "workflows", "activities", "gateway"} & set(domain), domain
    demo = _imported_roots(root / "demo")
    assert not {"cli", "workers", "workflows", "activities"} & set(demo), demo
    cli_imports = _imported_roots(root / "cli")
    # the parser takes `up`'s flags from workers/stack_options.py, which is free of the Temporal SDK
    assert cli_imports.get("workers", set()) | cli_imports.get("demo", set()) == {"stack_cmds.py", "parser.py"}
    parser_source = (root / "cli" / "parser.py").read_text()
    assert [line for line in parser_source.splitlines() if line.startswith(("from workers", "from demo"))] == [
        "from workers.stack_options import add_stack_arguments"
    ]
