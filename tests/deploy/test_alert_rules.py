"""The shipped alert rules and their routing, checked by the real tools: promtool (check and unit tests) and amtool.

deploy/prometheus/alerts.yml is written from deploy/policies by `governor alert-rules`; it must be what the command
writes today, so a policy change that forgets the rule file fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from governor.alert_rules import prometheus_rules, render_rules
from governor.policy import load_policy_dir

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GOVERNOR = Path(sys.executable).parent / "governor"


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        pytest.fail(f"{name} (Debian's {package} package) is not installed: run `make system-deps`")
    return found


def run(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False)


def test_the_shipped_rule_file_is_what_the_policies_give() -> None:
    written = render_rules(prometheus_rules(load_policy_dir(ROOT / "deploy" / "policies")))
    assert RULES.read_text() == written, (
        "deploy/prometheus/alerts.yml is stale: governor alert-rules --policy-dir deploy/policies "
        "--output deploy/prometheus/alerts.yml"
    )


def test_one_burn_rate_pair_per_dependency_labelled_for_the_intake() -> None:
    policies = load_policy_dir(ROOT / "deploy" / "policies")
    groups = {g["name"]: g["rules"] for g in prometheus_rules(policies)["groups"]}
    burn = groups["governor-burn-rate"]
    expected = {(s, d.name) for s, p in policies.items() for d in p.dependencies}
    assert {(r["labels"]["service"], r["labels"]["dependency"]) for r in burn} == expected
    assert len(burn) == 2 * len(expected), "the workbook's pair (fast and slow) for each dependency"
    assert all(r["labels"]["governor_report"] == "true" for r in burn)
    assert not any(r["labels"].get("governor_report") for r in groups["governor-health"])


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool", "prometheus")
    check = run(promtool, "check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    tests = run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_the_unit_tests_catch_a_rule_that_forgets_the_skipped_requests(tmp_path: Path) -> None:
    """The unit tests can fail: with the breaker's skips no longer blamed, the hidden outage goes unnoticed."""
    promtool = tool("promtool", "prometheus")
    broken = RULES.read_text().replace('cause!~"deadline|operator"', 'cause!~"deadline|operator|http_5xx"')
    assert broken != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tests = run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tests.returncode != 0
    assert "GovernorErrorBudgetBurnFast" in tests.stdout + tests.stderr


def test_the_cli_writes_the_rule_file_and_names_a_bad_folder(tmp_path: Path) -> None:
    out = tmp_path / "alerts.yml"
    wrote = run(str(GOVERNOR), "alert-rules", "--policy-dir", str(ROOT / "deploy" / "policies"), "--output", str(out))
    assert wrote.returncode == 0, wrote.stderr
    assert out.read_text() == RULES.read_text()
    assert f"wrote {out}: 8 alert rules" in wrote.stderr
    printed = run(str(GOVERNOR), "alert-rules", "--policy-dir", str(ROOT / "deploy" / "policies"))
    assert printed.returncode == 0 and printed.stdout == RULES.read_text()
    assert yaml.safe_load(printed.stdout)["groups"]
    missing = run(str(GOVERNOR), "alert-rules", "--policy-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1
    assert "nowhere: policy folder does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unwritable = run(
        str(GOVERNOR), "alert-rules", "--policy-dir", str(ROOT / "deploy" / "policies"), "--output", str(tmp_path)
    )
    assert unwritable.returncode == 1
    assert "cannot write the rule file" in unwritable.stderr and "Traceback" not in unwritable.stderr


def test_alertmanager_routes_dependency_burns_to_the_intake_and_the_rest_to_on_call() -> None:
    amtool = tool("amtool", "prometheus-alertmanager")
    check = run(amtool, "check-config", str(ALERTMANAGER))
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    intake = receivers["governor-intake"]["webhook_configs"][0]
    assert intake["url"] == "http://intake:9095/v1/alertmanager"
    assert intake["http_config"]["authorization"]["credentials_file"] == "/tmp/governor/intake-token"

    def route(*labels: str) -> str:
        result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    policies = load_policy_dir(ROOT / "deploy" / "policies")
    for rule in prometheus_rules(policies)["groups"][0]["rules"]:
        labels = [f"{k}={v}" for k, v in rule["labels"].items()]
        assert route(f"alertname={rule['alert']}", *labels) == "governor-intake"
    for rule in prometheus_rules(policies)["groups"][1]["rules"]:
        assert route(f"alertname={rule['alert']}", "service=chat", f"severity={rule['labels']['severity']}") == (
            "oncall"
        )


def test_the_alertmanager_entrypoint_renders_a_valid_config_with_the_secrets(tmp_path: Path) -> None:
    """The compose service's start command, run by a real shell with the paths moved under tmp_path."""
    amtool = tool("amtool", "prometheus-alertmanager")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["alertmanager"]["entrypoint"][2].replace("$$", "$")
    rendered = tmp_path / "governor"
    script = script.replace("/tmp/governor", str(rendered)).replace("/etc/alertmanager/governor.yml", str(ALERTMANAGER))
    assert "exec /bin/alertmanager --config.file=" in script
    script = script.replace("exec /bin/alertmanager", f"exec {amtool} check-config {rendered}/alertmanager.yml #")
    token, url = "s3cret token$with/odd|chars", "https://pager.example/hooks/gov?team=sre&x=1|2"
    env = {"PATH": os.environ["PATH"], "GOVERNOR_INTAKE_TOKEN": token, "GOVERNOR_ONCALL_WEBHOOK_URL": url}
    result = run("/bin/sh", "-c", script, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (rendered / "intake-token").read_text() == token
    assert (rendered / "intake-token").stat().st_mode & 0o077 == 0, "the token file is readable by its owner only"
    config = yaml.safe_load((rendered / "alertmanager.yml").read_text())
    oncall = {r["name"]: r for r in config["receivers"]}["oncall"]
    assert oncall["webhook_configs"][0]["url"] == url
