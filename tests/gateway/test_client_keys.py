"""Client keys on the data plane: the official openai SDK as the client of a real gateway with a key file, in front
of a scripted upstream that records what it received (the client's key must never reach it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from gateway.__main__ import main as gateway_main
from gateway.app import GatewaySettings, RunningGateway, run_gateway
from governor.client_keys import add_key, hash_key, remove_key
from tests.gateway.conftest import CHAT, TOKEN, chat_policy
from tests.gateway.scripted import Reply, Scripted, run_scripted

MESSAGES: Any = CHAT["messages"]


@contextlib.asynccontextmanager
async def keyed(
    keys_file: Path, services: tuple[str, ...] = ("chat",)
) -> AsyncIterator[tuple[RunningGateway, Scripted]]:
    async with run_scripted("primary") as up, run_scripted("secondary") as sec:
        policies = {}
        for name in services:
            pol = chat_policy(up.url, sec.url, sec.url, drop_tiers=("tier_2_cache",))
            policies[name] = pol.model_copy(update={"service": name})
        settings = GatewaySettings(keys_file=str(keys_file))
        async with run_gateway(policies, TOKEN, settings=settings) as gw:
            yield gw, up


def sdk(gw: RunningGateway, key: str | None, service: str = "chat") -> openai.AsyncOpenAI:
    # max_retries=0: the SDK would otherwise retry a 429 itself and hide what the gateway answered.
    return openai.AsyncOpenAI(base_url=f"{gw.url}/{service}/v1", api_key=key or "", max_retries=0)


async def test_missing_unknown_and_not_allowed_keys_are_refused_with_openai_errors(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    good = add_key(keys, "app-a", ["chat"])
    async with keyed(keys, ("chat", "search")) as (gw, up):
        async with httpx.AsyncClient() as http:  # no Authorization at all (the SDK always sends one)
            r = await http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT)
        assert r.status_code == 401
        assert (
            r.json()["error"]["code"] == "missing_api_key" and "Authorization: Bearer" in r.json()["error"]["message"]
        )
        assert r.headers["www-authenticate"].startswith("Bearer")

        with pytest.raises(openai.AuthenticationError) as unknown:
            await sdk(gw, "sk-gov-not-a-real-key").chat.completions.create(model="m", messages=MESSAGES)
        assert unknown.value.status_code == 401 and unknown.value.code == "invalid_api_key"
        assert "unknown API key" in unknown.value.message

        with pytest.raises(openai.PermissionDeniedError) as denied:
            await sdk(gw, good, "search").chat.completions.create(model="m", messages=MESSAGES)
        assert denied.value.code == "service_not_allowed"
        assert "'app-a' may not call service 'search'" in denied.value.message
        assert up.received == []  # nothing refused reached the upstream

        with capture_logs() as logs:
            answer = await sdk(gw, good).chat.completions.create(model="m", messages=MESSAGES)
        assert answer.choices[0].message.content == "[primary]"
        assert len(up.received) == 1
        seen = {k.lower(): v for k, v in up.received[0].headers.items()}
        assert "authorization" not in seen, "the client's gateway key went upstream"
        assert good not in json.dumps(logs, default=str) and good not in keys.read_text()


async def test_rate_limit_answers_429_with_retry_after_under_concurrent_load(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "batch", ["*"], rate_limit_rps=2, burst=4)
    async with keyed(keys) as (gw, _), httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        url = f"{gw.url}/chat/v1/chat/completions"
        answers = await asyncio.gather(*(http.post(url, json=CHAT) for _ in range(20)))
        ok = [r for r in answers if r.status_code == 200]
        limited = [r for r in answers if r.status_code == 429]
        assert 4 <= len(ok) <= 5 and len(ok) + len(limited) == 20  # the burst (plus at most one refilled token)
        for r in limited:
            assert (
                r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "rate_limit_error"
            )
            assert 1 <= int(r.headers["retry-after"]) <= 1  # the next token is at most 0.5 s away at 2 req/s
        with pytest.raises(openai.RateLimitError) as err:
            await sdk(gw, key).chat.completions.create(model="m", messages=MESSAGES)
        assert err.value.code == "rate_limit_exceeded"
        await asyncio.sleep(0.6)  # a token comes back
        assert (await http.post(url, json=CHAT)).status_code == 200


async def test_concurrency_cap_refuses_the_extra_requests_and_frees_slots(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "worker", ["chat"], max_concurrent=2)
    async with keyed(keys) as (gw, up), httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as http:
        up.then(*(Reply(delay_s=0.4) for _ in range(6)))
        url = f"{gw.url}/chat/v1/chat/completions"
        answers = await asyncio.gather(*(http.post(url, json=CHAT) for _ in range(6)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 200, 429, 429, 429, 429]
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded" and refused.headers["retry-after"]
        assert up.max_in_flight == 2
        again = await asyncio.gather(*(http.post(url, json=CHAT) for _ in range(2)))
        assert [r.status_code for r in again] == [200, 200]  # the finished requests gave their slots back


async def test_a_key_made_or_revoked_while_the_gateway_runs_takes_effect(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    add_key(keys, "first", ["chat"])
    async with keyed(keys) as (gw, _), httpx.AsyncClient() as http:
        url = f"{gw.url}/chat/v1/chat/completions"
        late = add_key(keys, "late", ["chat"])
        auth = {"Authorization": f"Bearer {late}"}
        status = 0
        for _ in range(30):  # the file is re-read at most once a second
            status = (await http.post(url, json=CHAT, headers=auth)).status_code
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        remove_key(keys, "late")
        for _ in range(30):
            status = (await http.post(url, json=CHAT, headers=auth)).status_code
            if status == 401:
                break
            await asyncio.sleep(0.1)
        assert status == 401
        keys.write_text("{not json")  # a broken file keeps the last good keys (only "first" now)
        await asyncio.sleep(1.1)
        assert (await http.post(url, json=CHAT, headers=auth)).status_code == 401


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys = tmp_path / "secrets" / "keys.json"
    env = {**os.environ, "GOVERNOR_GATEWAY_KEYS_FILE": str(keys)}
    cmd = [sys.executable, "-m", "gateway", "keys", "create", "--name", "app", "--services", "chat,search"]
    made = subprocess.run([*cmd, "--rate-limit", "5", "--max-concurrent", "3"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("sk-gov-") and len(key) > 40
    stored: dict[str, Any] = json.loads(keys.read_text())
    assert stored["keys"][0]["sha256"] == hash_key(key) and key not in keys.read_text()
    assert stored["keys"][0]["services"] == ["chat", "search"] and stored["keys"][0]["max_concurrent"] == 3
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    listed = subprocess.run([sys.executable, "-m", "gateway", "keys", "list"], env=env, capture_output=True, text=True)
    assert "app\tservices=chat,search\t5 req/s" in listed.stdout and key not in listed.stdout
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "a key named 'app' exists already" in again.stderr
    bad = subprocess.run(
        [*cmd[:-4], "--name", "x", "--services", "chat", "--rate-limit", "-1"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "rate_limit_rps" in bad.stderr


def test_the_gateway_refuses_an_open_data_plane_beyond_loopback_and_a_broken_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVERNOR_GATEWAY_TOKEN", TOKEN)
    monkeypatch.delenv("GOVERNOR_GATEWAY_KEYS_FILE", raising=False)
    policy_dir = Path(__file__).resolve().parents[2] / "policies"
    assert gateway_main(["--policy-dir", str(policy_dir), "--host", "0.0.0.0"]) == 2
    assert "needs client keys when it listens beyond loopback" in capsys.readouterr().err
    broken = tmp_path / "keys.json"
    broken.write_text(json.dumps({"keys": [{"name": "a", "sha256": "nothex", "services": ["chat"]}]}))
    assert gateway_main(["--policy-dir", str(policy_dir), "--keys-file", str(broken)]) == 2
    assert "keys.0.sha256" in capsys.readouterr().err
