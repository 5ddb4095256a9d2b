"""Azure OpenAI tiers: the official SDK's `AzureOpenAI` client validates the fake on 127.0.0.1 (paths, `api-key`,
errors), then the gateway, with the openai SDK as its client, is checked to send what that client sends: the
deployment path, the api-version, the tier's key in `api-key` (never a Bearer, never the client's key)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from demo.azure_upstream import AzureUpstream
from demo.upstream import Upstream, run_upstream
from gateway.app import run_gateway
from gateway.deployments import azure_path
from governor.policy import PolicyError, parse_policy
from tests.gateway.conftest import STATIC_BODY, TOKEN

AZURE_KEY = "azure-resource-key-0123456789abcdef"
OPENAI_KEY = "sk-openai-direct-key"
CLIENT_KEY = "sk-client-own-key-must-not-leak"
VERSION = "2024-10-21"
ASK: list[Any] = [{"role": "user", "content": "what is the weather"}]


@contextlib.asynccontextmanager
async def azure_fake(name: str = "azure") -> AsyncIterator[AzureUpstream]:
    fake = AzureUpstream(deployments=("gpt-4o-prod",), name=name, api_key=AZURE_KEY)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def azure_policy(primary: dict[str, Any], secondary_url: str) -> Any:
    chain = [
        {"tier": "tier_0_primary", "timeout_ms": 1000, **primary},
        {"tier": "tier_1_secondary", "upstream": secondary_url, "timeout_ms": 1000, "api_key_env": "T_OPENAI_KEY"},
        {"tier": "tier_4_static", "body": STATIC_BODY},
    ]
    deps = [{"name": "primary-llm", "tier": "tier_0_primary"}]
    return parse_policy({"service": "chat", "dependencies": deps, "chain": chain, "deadline_ms": 3000}, "test")


@contextlib.asynccontextmanager
async def gateway_client(
    monkeypatch: pytest.MonkeyPatch, primary: dict[str, Any], secondary: Upstream
) -> AsyncIterator[openai.AsyncOpenAI]:
    monkeypatch.setenv("T_AZURE_KEY", AZURE_KEY)
    monkeypatch.setenv("T_OPENAI_KEY", OPENAI_KEY)
    async with run_gateway({"chat": azure_policy(primary, secondary.url)}, TOKEN) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/chat/v1", api_key=CLIENT_KEY, max_retries=0)
        async with client:
            yield client


AZURE_TIER = {
    "provider": "azure",
    "azure": {"deployment": "gpt-4o-prod", "api_version": VERSION},
    "api_key_env": "T_AZURE_KEY",
}


async def test_the_azure_fake_speaks_what_the_official_azure_client_sends() -> None:
    async with azure_fake() as fake:
        client = openai.AsyncAzureOpenAI(
            azure_endpoint=fake.url,
            azure_deployment="gpt-4o-prod",
            api_version=VERSION,
            api_key=AZURE_KEY,
            max_retries=0,
        )
        async with client:
            done = await client.chat.completions.create(model="gpt-4o", messages=ASK)
            assert done.choices[0].message.content == "[azure] what is the weather"
            assert fake.last_deployment == "gpt-4o-prod" and fake.last_api_version == VERSION
            assert fake.counters.last_auth == {"api-key": AZURE_KEY}
            chunks = [c async for c in await client.chat.completions.create(model="m", messages=ASK, stream=True)]
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "[azure] what is the weather"
            )
        wrong = openai.AsyncAzureOpenAI(
            azure_endpoint=fake.url, azure_deployment="gpt-4o-prod", api_version=VERSION, api_key="nope", max_retries=0
        )
        async with wrong:
            with pytest.raises(openai.AuthenticationError, match="invalid subscription key"):
                await wrong.chat.completions.create(model="m", messages=ASK)
        other = openai.AsyncAzureOpenAI(
            azure_endpoint=fake.url,
            azure_deployment="gpt-4o-dev",
            api_version=VERSION,
            api_key=AZURE_KEY,
            max_retries=0,
        )
        async with other:
            with pytest.raises(openai.NotFoundError, match="deployment for this resource does not exist") as caught:
                await other.chat.completions.create(model="m", messages=ASK)
            assert caught.value.code == "DeploymentNotFound"


async def test_azure_tier_gets_the_deployment_path_version_and_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with azure_fake() as fake, run_upstream(name="secondary", api_key=OPENAI_KEY) as s:
        async with gateway_client(monkeypatch, {"upstream": fake.url, **AZURE_TIER}, s) as client:
            raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
            done = raw.parse()
            assert raw.headers["x-governor-tier"] == "tier_0_primary"
            assert done.choices[0].message.content == "[azure] what is the weather"
            assert fake.last_deployment == "gpt-4o-prod" and fake.last_api_version == VERSION
            assert fake.counters.last_auth == {"api-key": AZURE_KEY}  # no Bearer, not the client's key
            chunks = [c async for c in await client.chat.completions.create(model="m", messages=ASK, stream=True)]
            assert (
                "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "[azure] what is the weather"
            )
            assert s.counters.by_path == {}


async def test_a_wrong_azure_key_is_the_clients_401_and_an_outage_falls_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with azure_fake() as fake, run_upstream(name="secondary", api_key=OPENAI_KEY) as s:
        async with gateway_client(monkeypatch, {"upstream": fake.url, **AZURE_TIER}, s) as client:
            monkeypatch.setattr(fake, "api_key", "rotated-key")
            with pytest.raises(openai.AuthenticationError, match="invalid subscription key"):
                await client.chat.completions.create(model="m", messages=ASK)
            monkeypatch.setattr(fake, "api_key", AZURE_KEY)
            fake.set(outage=True, outage_mode="503")
            raw = await client.chat.completions.with_raw_response.create(model="m", messages=ASK)
            assert raw.headers["x-governor-tier"] == "tier_1_secondary"
            assert s.counters.last_auth == {"authorization": f"Bearer {OPENAI_KEY}"}  # the Azure key stayed home


async def test_azure_and_openai_deployments_of_one_tier_each_get_their_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        azure_fake() as fake,
        run_upstream(name="direct", api_key=OPENAI_KEY) as direct,
        run_upstream(name="secondary", api_key=OPENAI_KEY) as s,
    ):
        primary = {
            "deployments": [
                {"name": "azure-eu", "upstream": fake.url, **AZURE_TIER},
                {"name": "openai", "upstream": direct.url, "api_key_env": "T_OPENAI_KEY", "model": "gpt-4o"},
            ]
        }
        async with gateway_client(monkeypatch, primary, s) as client:
            seen = set()
            for _ in range(40):
                raw = await client.chat.completions.with_raw_response.create(model="m", messages=ASK)
                assert raw.headers["x-governor-tier"] == "tier_0_primary"
                seen.add(raw.headers["x-governor-deployment"])
            assert seen == {"azure-eu", "openai"}
            assert fake.counters.last_auth == {"api-key": AZURE_KEY}
            assert direct.counters.last_auth == {"authorization": f"Bearer {OPENAI_KEY}"}
            assert direct.counters.last_model == "gpt-4o"
            fake.set(outage=True, outage_mode="close")
            for _ in range(20):
                raw = await client.chat.completions.with_raw_response.create(model="m", messages=ASK)
                assert raw.headers["x-governor-deployment"] == "openai"


def test_azure_path_keeps_the_clients_query_and_replaces_its_api_version() -> None:
    class Dep:
        azure_prefix, azure_query = "/openai/deployments/d1", f"api-version={VERSION}"

    dep: Any = Dep()
    assert azure_path(dep, "/v1/chat/completions") == f"/openai/deployments/d1/chat/completions?api-version={VERSION}"
    assert azure_path(dep, "/chat/completions?x=1&api-version=1999-01-01") == (
        f"/openai/deployments/d1/chat/completions?x=1&api-version={VERSION}"
    )
    assert azure_path(dep, "/v1/embeddings") == f"/openai/deployments/d1/embeddings?api-version={VERSION}"


@pytest.mark.parametrize(
    ("tier", "message"),
    [
        ({"provider": "azure"}, "provider azure needs `azure: {deployment, api_version}`"),
        ({"azure": {"deployment": "d", "api_version": "latest"}}, r"azure\.api_version: String should match"),
        ({"azure": {"deployment": "a/b", "api_version": VERSION}}, r"azure\.deployment: String should match"),
        ({"provider": "anthropic", "azure": {"deployment": "d", "api_version": VERSION}}, "azure is for provider"),
    ],
)
def test_bad_azure_settings_are_named(tier: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        azure_policy({"upstream": "http://127.0.0.1:1", **tier}, "http://127.0.0.1:2")
