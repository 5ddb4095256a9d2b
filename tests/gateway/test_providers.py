"""Per-tier providers, credentials and models: the official openai SDK as the gateway's client, an OpenAI-format
primary and an Anthropic Messages API secondary (demo fakes on 127.0.0.1) asserting what they received."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from gateway.credentials import CredentialError
from governor.policy import PolicyError, parse_policy
from tests.gateway.conftest import STATIC_BODY, TOKEN

CLIENT_KEY = "sk-client-own-key-must-not-leak"
PRIMARY_KEY = "sk-primary-tier-key"
SECONDARY_KEY = "sk-ant-secondary-tier-key"
CLAUDE = "claude-sonnet-4-5"
ASK: list[Any] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is the weather"}]
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "the weather somewhere",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


@dataclass
class Pair:
    primary: Upstream
    secondary: Upstream
    client: openai.AsyncOpenAI


def policy(primary_url: str, secondary_url: str, **tiers: dict[str, Any]) -> Any:
    chain = [
        {
            "tier": "tier_0_primary",
            "upstream": primary_url,
            "timeout_ms": 1000,
            "model": "gpt-4o-mini",
            "api_key_env": "TEST_PRIMARY_KEY",
            **tiers.get("primary", {}),
        },
        {
            "tier": "tier_1_secondary",
            "upstream": secondary_url,
            "timeout_ms": 1000,
            "provider": "anthropic",
            "model": CLAUDE,
            "api_key_env": "TEST_SECONDARY_KEY",
            **tiers.get("secondary", {}),
        },
        {"tier": "tier_4_static", "body": STATIC_BODY},
    ]
    deps = [{"name": "primary-llm", "tier": "tier_0_primary"}]
    return parse_policy({"service": "chat", "dependencies": deps, "chain": chain, "deadline_ms": 3000}, "test")


@contextlib.asynccontextmanager
async def pair(monkeypatch: pytest.MonkeyPatch, **tiers: dict[str, Any]) -> AsyncIterator[Pair]:
    monkeypatch.setenv("TEST_PRIMARY_KEY", PRIMARY_KEY)
    monkeypatch.setenv("TEST_SECONDARY_KEY", SECONDARY_KEY)
    async with (
        run_upstream(name="primary", api_key=PRIMARY_KEY) as p,
        run_upstream(name="secondary", api="anthropic", api_key=SECONDARY_KEY) as s,
    ):
        async with run_gateway({"chat": policy(p.url, s.url, **tiers)}, TOKEN) as gw:
            client = openai.AsyncOpenAI(base_url=f"{gw.url}/chat/v1", api_key=CLIENT_KEY, max_retries=0)
            async with client:
                yield Pair(p, s, client)


async def test_openai_tier_gets_its_own_key_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        raw = await st.client.chat.completions.with_raw_response.create(model="client-model", messages=ASK)
        done = raw.parse()
    assert raw.headers["x-governor-tier"] == "tier_0_primary"
    assert done.choices[0].message.content == "[primary] what is the weather"
    assert st.primary.counters.last_auth == {"authorization": f"Bearer {PRIMARY_KEY}"}
    assert st.primary.counters.last_model == "gpt-4o-mini"
    assert st.secondary.counters.completions == 0


async def test_primary_down_anthropic_secondary_answers_in_openai_format(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True, outage_mode="503")
        raw = await st.client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK, max_tokens=50)
        done = raw.parse()
    assert raw.headers["x-governor-tier"] == "tier_1_secondary"
    assert raw.headers["x-governor-reason"] == "tier_0_primary=http_503"
    assert done.object == "chat.completion"
    assert done.model == CLAUDE
    assert done.choices[0].message.content == "[secondary] what is the weather"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 5
    assert done.usage.total_tokens == done.usage.prompt_tokens + 5
    auth = st.secondary.counters.last_auth
    assert auth == {"x-api-key": SECONDARY_KEY, "anthropic-version": "2023-06-01"}
    assert CLIENT_KEY not in json.dumps(auth) and "authorization" not in auth
    assert st.secondary.counters.last_model == CLAUDE
    assert st.secondary.counters.last_max_tokens == 50


async def test_anthropic_tier_defaults_max_tokens_and_maps_max_tokens_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        await st.client.chat.completions.create(model="m", messages=ASK)
        assert st.secondary.counters.last_max_tokens == 4096
        cut = await st.client.chat.completions.create(model="m", messages=ASK, max_completion_tokens=2)
    assert cut.choices[0].message.content == "[secondary] what"
    assert cut.choices[0].finish_reason == "length"


async def test_stream_translated_chunk_by_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        st.secondary.set(stream_interval_ms=2)
        stream = await st.client.chat.completions.create(
            model="m", messages=ASK, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == CLAUDE for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["[secondary]", " what", " is", " the", " weather"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_stream_without_include_usage_has_no_usage_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        stream = await st.client.chat.completions.create(model="m", messages=ASK, stream=True)
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_tool_calls_translated_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        done = await st.client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, tool_choice="required")  # type: ignore[arg-type]
        call = done.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert done.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"query": "what is the weather"}  # type: ignore[union-attr]
        # the tool's answer goes back as a tool message: a tool_result block in a user turn upstream
        follow = [
            *ASK,
            done.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        again = await st.client.chat.completions.create(model="m", messages=follow, tools=TOOLS)  # type: ignore[arg-type]
        assert again.choices[0].finish_reason == "stop"
        stream = await st.client.chat.completions.create(
            model="m",
            messages=ASK,
            tools=TOOLS,
            stream=True,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
        chunks = [c async for c in stream]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert {d.index for d in deltas} == {0}
    args = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert len(deltas) == 3 and json.loads(args) == {"query": "what is the weather"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_anthropic_client_error_translated_to_openai_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WRONG_KEY", "sk-ant-wrong")
    async with pair(monkeypatch, secondary={"api_key_env": "TEST_WRONG_KEY"}) as st:
        st.primary.set(outage=True)
        with pytest.raises(openai.AuthenticationError) as caught:
            await st.client.chat.completions.create(model="m", messages=ASK)
    err = caught.value
    assert err.response.headers["x-governor-tier"] == "tier_1_secondary"
    assert err.body == {"message": "invalid x-api-key", "type": "authentication_error", "param": None, "code": None}


@pytest.mark.parametrize("fault", [{"outage": True, "outage_mode": "503"}, {"rate_limit": True}])
async def test_anthropic_529_and_429_fall_through(monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any]) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        st.secondary.set(**fault)
        raw = await st.client.chat.completions.with_raw_response.create(model="m", messages=ASK)
    assert raw.headers["x-governor-tier"] == "tier_4_static"
    shown = "overloaded" if "outage" in fault else "rate_limited"  # 529 overloaded_error: its own cause
    assert f"tier_1_secondary={shown}" in raw.headers["x-governor-reason"]


async def test_tier_without_credential_sends_no_auth_header(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_upstream(name="primary") as p, run_upstream(name="secondary", api="anthropic") as s:
        chain = [
            {"tier": "tier_0_primary", "upstream": p.url},
            {"tier": "tier_1_secondary", "upstream": s.url, "provider": "anthropic"},
        ]
        pol = parse_policy({"service": "chat", "dependencies": [], "chain": chain}, "test")
        async with run_gateway({"chat": pol}, TOKEN) as gw:
            client = openai.AsyncOpenAI(base_url=f"{gw.url}/chat/v1", api_key=CLIENT_KEY, max_retries=0)
            await client.chat.completions.create(
                model="client-model", messages=ASK, extra_headers={"x-api-key": CLIENT_KEY}
            )
            assert p.counters.last_auth == {}
            assert p.counters.last_model == "client-model"
            p.set(outage=True)
            await client.chat.completions.create(model="claude-haiku", messages=ASK)
            assert s.counters.last_auth == {"anthropic-version": "2023-06-01"}
            assert s.counters.last_model == "claude-haiku"
            await client.close()


async def test_key_from_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "primary.key").write_text(f"  {PRIMARY_KEY}\n")
    monkeypatch.setenv("TEST_SECRETS", str(tmp_path))
    primary = {"api_key_env": None, "api_key_file": "$TEST_SECRETS/primary.key"}
    async with pair(monkeypatch, primary=primary) as st:
        await st.client.chat.completions.create(model="m", messages=ASK)
    assert st.primary.counters.last_auth == {"authorization": f"Bearer {PRIMARY_KEY}"}


async def test_missing_credentials_refuse_the_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TEST_NOT_SET", raising=False)
    pol = policy("http://127.0.0.1:9", "http://127.0.0.1:9", primary={"api_key_env": "TEST_NOT_SET"})
    with pytest.raises(CredentialError, match="api_key_env TEST_NOT_SET is not set"):
        async with run_gateway({"chat": pol}, TOKEN):
            pass
    missing = tmp_path / "nope.key"
    pol = policy(
        "http://127.0.0.1:9", "http://127.0.0.1:9", primary={"api_key_env": None, "api_key_file": str(missing)}
    )
    with pytest.raises(CredentialError, match=f"api_key_file {missing}: No such file"):
        async with run_gateway({"chat": pol}, TOKEN):
            pass
    with pytest.raises(PolicyError, match="set api_key_env or api_key_file, not both"):
        policy("http://a", "http://b", primary={"api_key_file": "/x"})
    with pytest.raises(PolicyError, match="provider"):
        policy("http://a", "http://b", primary={"provider": "gemini"})


async def test_untranslatable_request_skips_the_anthropic_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        bad: list[Any] = [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
        ]
        raw = await st.client.chat.completions.with_raw_response.create(model="m", messages=bad)  # type: ignore[arg-type]
    assert raw.headers["x-governor-tier"] == "tier_4_static"
    assert (
        "tier_1_secondary=untranslatable: messages[0].content: part type 'input_audio'"
        in raw.headers["x-governor-reason"]
    )
    assert st.secondary.counters.completions == 0


async def test_the_anthropic_fake_speaks_what_the_anthropic_sdk_parses() -> None:
    """The official anthropic SDK validates the fake the translation is tested against."""
    async with run_upstream(name="secondary", api="anthropic", api_key=SECONDARY_KEY) as s:
        client = anthropic.AsyncAnthropic(base_url=s.url, api_key=SECONDARY_KEY, max_retries=0)
        msg = await client.messages.create(
            model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi there"}]
        )
        assert msg.content[0].type == "text" and msg.content[0].text == "[secondary] hi there"
        assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 3
        async with client.messages.stream(
            model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "[secondary] hi" and final.stop_reason == "end_turn"
        s.set(outage=True, outage_mode="503")
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 529 and caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        s.set(outage=False, rate_limit=True)
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        bad = anthropic.AsyncAnthropic(base_url=s.url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            await bad.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
        await client.close()
        await bad.close()


async def test_anthropic_stream_cut_falls_through_before_first_chunk_and_errors_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with pair(monkeypatch) as st:
        st.primary.set(outage=True)
        st.secondary.set(stream_cut_after=0)
        raw = await st.client.chat.completions.with_raw_response.create(model="m", messages=ASK, stream=True)
        assert raw.headers["x-governor-tier"] == "tier_4_static"
        assert "tier_1_secondary=stream_failed_before_first_event" in raw.headers["x-governor-reason"]
        st.secondary.set(stream_cut_after=4)  # message_start, ping, block start, one delta: then the connection drops
        stream = await st.client.chat.completions.create(model="m", messages=ASK, stream=True)
        got: list[str] = []
        with pytest.raises(openai.APIError, match="stream ended early"):
            async for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
    assert "".join(got) == "[secondary]"


async def test_keys_appear_in_no_admin_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    async with pair(monkeypatch) as st:
        await st.client.chat.completions.create(model="m", messages=ASK)
        base = str(st.client.base_url).removesuffix("/chat/v1/")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            texts = []
            for path in ("/admin/services", "/admin/services/chat", "/admin/services/chat/stats", "/metrics"):
                async with http.get(base + path) as r:
                    assert r.status == 200, path
                    texts.append(await r.text())
    for text in texts:
        assert PRIMARY_KEY not in text and SECONDARY_KEY not in text and CLIENT_KEY not in text
