"""Issue 12.8: `governor up --demo` gives each demo tier its own provider key and its fake its wire format."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.plan import issue_tokens, plan_stack
from workers.stack_options import StackOptions

POLICIES = Path(__file__).parents[2] / "demo" / "policies"


def test_demo_tiers_get_their_own_keys_and_the_secondary_speaks_anthropic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEMO_PRIMARY_API_KEY", raising=False)
    monkeypatch.setenv("DEMO_SECONDARY_API_KEY", "sk-ant-from-env")
    options = StackOptions(state_dir=tmp_path, policy_dir=POLICIES, demo=True)
    plan = plan_stack(options)
    issue_tokens(plan, tmp_path.resolve())
    apps = {spec.name: spec for spec in plan.apps}
    primary, secondary, degraded = apps["upstream-primary"], apps["upstream-secondary"], apps["upstream-degraded"]
    assert primary.argv[-4:] == ["--api", "openai", "--api-key-env", "DEMO_PRIMARY_API_KEY"]
    assert secondary.argv[-4:] == ["--api", "anthropic", "--api-key-env", "DEMO_SECONDARY_API_KEY"]
    assert degraded.argv[-2:] == ["--api", "openai"]
    made = (tmp_path / "secrets" / "demo-primary-api-key").read_text().strip()
    assert len(made) >= 40 and (tmp_path / "secrets" / "demo-primary-api-key").stat().st_mode & 0o777 == 0o600
    gateway = apps["gateway"].env
    assert gateway["DEMO_PRIMARY_API_KEY"] == primary.env["DEMO_PRIMARY_API_KEY"] == made
    assert gateway["DEMO_SECONDARY_API_KEY"] == secondary.env["DEMO_SECONDARY_API_KEY"] == "sk-ant-from-env"
    assert "DEMO_PRIMARY_API_KEY" not in apps["worker"].env
    again = plan_stack(options)
    issue_tokens(again, tmp_path.resolve())
    assert {s.name: s for s in again.apps}["gateway"].env["DEMO_PRIMARY_API_KEY"] == made
