"""The CLI follows a stack started with `governor up --state-dir X` through GOVERNOR_STATE_DIR: its admin token and
its policy record; with no token at all it says what is missing (an empty bearer is not even a valid header)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import httpx
import pytest

from cli.common import policy_dir
from cli.observe import NO_TOKEN, _get, gateway_token
from governor.gateway_api import ServiceState


def test_the_state_dir_names_the_token_and_the_policy_record(tmp_path: Path, monkeypatch) -> None:
    state, policies = tmp_path / "elsewhere", tmp_path / "demo-policies"
    (state / "secrets").mkdir(parents=True)
    policies.mkdir()
    (state / "secrets" / "gateway-token").write_text("s3cret\n")
    (state / "policy-dir").write_text(str(policies))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVERNOR_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("GOVERNOR_POLICY_DIR", raising=False)
    args = argparse.Namespace(gateway_token_file=None, policy_dir=None)
    assert gateway_token(args) == "" and policy_dir(args) == Path("policies")
    monkeypatch.setenv("GOVERNOR_STATE_DIR", str(state))
    assert gateway_token(args) == "s3cret" and policy_dir(args) == policies


def test_no_token_is_named_not_sent_as_an_empty_bearer() -> None:
    async def go() -> None:
        async with httpx.AsyncClient() as http:
            with pytest.raises(LookupError) as err:
                await _get(http, "http://127.0.0.1:9/admin/services/chat", "", ServiceState)
            assert str(err.value) == NO_TOKEN and "GOVERNOR_STATE_DIR" in NO_TOKEN

    asyncio.run(go())
