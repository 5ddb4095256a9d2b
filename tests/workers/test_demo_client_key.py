"""`governor up --demo`'s client key: made once per state folder (hash in the key file, the key in a 0600 file),
handed to the gateway (`--keys-file`) and the traffic process, shown in the banner; the traffic then gets through a
gateway that asks for keys, and a request without the key does not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from demo.traffic import TrafficGenerator
from gateway.app import GatewaySettings, run_gateway
from governor.client_keys import hash_key
from tests.gateway.conftest import TOKEN, chat_policy
from tests.gateway.scripted import run_scripted
from workers.plan import StackInfo, banner, issue_client_key, issue_tokens, plan_stack
from workers.stack_options import StackOptions
from workers.supervisor import ProcessSpec, StackError

PROJECT = Path(__file__).resolve().parents[2]


def planned(state: Path) -> object:
    traffic = ProcessSpec(name="traffic", argv=[sys.executable, "-m", "demo.traffic"])
    options = StackOptions(
        state_dir=state, policy_dir=PROJECT / "demo" / "policies", client_key=True, extra_processes=[traffic]
    )
    plan = plan_stack(options)
    issue_tokens(plan, state.resolve())
    issue_client_key(plan, state.resolve())
    return plan


def test_the_demo_key_is_made_once_and_handed_to_the_gateway_and_the_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOVERNOR_GATEWAY_TOKEN", raising=False)
    first = planned(tmp_path / "s")
    again = planned(tmp_path / "s")
    assert first.client_key and first.client_key == again.client_key  # type: ignore[attr-defined]
    key = first.client_key  # type: ignore[attr-defined]
    secrets = (tmp_path / "s" / "secrets").resolve()
    stored = json.loads((secrets / "client-keys.json").read_text())
    assert [k["name"] for k in stored["keys"]] == ["demo"] and stored["keys"][0]["sha256"] == hash_key(key)
    assert key not in (secrets / "client-keys.json").read_text()
    assert (secrets / "demo-client-key").stat().st_mode & 0o777 == 0o600
    by_name = {spec.name: spec for spec in again.apps}  # type: ignore[attr-defined]
    argv = by_name["gateway"].argv
    assert argv[argv.index("--keys-file") + 1] == str(secrets / "client-keys.json")
    assert by_name["traffic"].env["GOVERNOR_CLIENT_KEY"] == key

    info = StackInfo(
        state_dir=tmp_path / "s", log_dir=tmp_path / "s" / "logs", policy_dir=PROJECT / "demo" / "policies",
        temporal_address="127.0.0.1:7233", namespace="default", task_queue="q", ui_url="http://127.0.0.1:8233",
        gateway_url=None, status_url=None, gateway_token="t", intake_token="", token_files=again.token_files,  # type: ignore[attr-defined]
        worker_metrics_url=None, intake_url=None, upstreams={}, policies={},
        client=None,  # type: ignore[arg-type]
        temporal_bin=Path("temporal"), python=Path(sys.executable), client_key=key,
    )  # fmt: skip
    text = "\n".join(banner(info))
    assert f"Client key      {key}" in text and "demo-client-key (0600" in text

    (secrets / "demo-client-key").write_text("sk-gov-lost\n")  # a key the file does not hold: a new one is made
    replaced = planned(tmp_path / "s")
    assert replaced.client_key not in {key, "sk-gov-lost"}  # type: ignore[attr-defined]
    assert len(json.loads((secrets / "client-keys.json").read_text())["keys"]) == 1

    (secrets / "client-keys.json").write_text("[]")
    with pytest.raises(StackError, match=r"client-keys\.json"):
        planned(tmp_path / "s")


async def test_the_traffic_gets_through_a_keyed_gateway_with_the_key_and_not_without(tmp_path: Path) -> None:
    from governor.client_keys import add_key

    keys = tmp_path / "keys.json"
    key = add_key(keys, "demo", ["*"])
    async with run_scripted("primary") as up:
        policy = chat_policy(up.url, up.url, up.url)
        async with run_gateway({"chat": policy}, TOKEN, settings=GatewaySettings(keys_file=str(keys))) as gw:
            url = f"{gw.url}/chat/v1/chat/completions"
            async with TrafficGenerator(url, rps=50, api_key=key) as with_key:
                await with_key.wait_for_requests(20)
            async with TrafficGenerator(url, rps=50) as without:
                await without.wait_for_requests(10)
    assert with_key.requests >= 20 and with_key.failed == 0
    assert without.failed == without.requests >= 10
    assert all(r.status == 401 for r in without.records)
