"""Real fake-model upstreams on 127.0.0.1 and a real gateway in front of them, one set per test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from demo.upstream import Upstream, run_upstream
from gateway.app import GatewaySettings, RunningGateway, run_gateway
from gateway.breaker import BreakerConfig
from governor.policy import ServicePolicy, parse_policy

TOKEN = "test-admin-token-3f9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "what is the weather"}]}
STATIC_BODY = {
    "id": "static-fallback",
    "object": "chat.completion",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "limited mode"}}],
}


def chat_policy(primary: str, secondary: str, degraded: str, **overrides: Any) -> ServicePolicy:
    chain: list[dict[str, Any]] = [
        {"tier": "tier_0_primary", "upstream": primary, "timeout_ms": 400},
        {"tier": "tier_1_secondary", "upstream": secondary, "timeout_ms": 400},
        {"tier": "tier_2_cache", "ttl_s": 60, "max_entries": 100},
        {"tier": "tier_3_degraded", "upstream": degraded, "timeout_ms": 400, "max_tokens": 3},
        {"tier": "tier_4_static", "body": STATIC_BODY},
    ]
    drop = overrides.pop("drop_tiers", ())
    if "breaker_policy" in overrides:  # the policy's `breaker:` block (stack's `breaker` is the gateway's config)
        overrides["breaker"] = overrides.pop("breaker_policy")
    chain = [t for t in chain if t["tier"] not in drop]
    data = {
        "service": "chat",
        "dependencies": [
            {"name": "primary-llm", "tier": "tier_0_primary"},
            {"name": "secondary-llm", "tier": "tier_1_secondary"},
        ],
        "chain": chain,
        "deadline_ms": 2000,
        **overrides,
    }
    return parse_policy(data, "test")


@dataclass
class Stack:
    primary: Upstream
    secondary: Upstream
    degraded: Upstream
    gw: RunningGateway
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.gw.url

    def service(self, name: str = "chat") -> Any:
        return self.gw.app.services[name]

    async def chat(self, body: dict[str, Any] | None = None, **kw: Any) -> tuple[int, Any, bytes]:
        async with self.http.post(f"{self.url}/chat/v1/chat/completions", json=body or CHAT, **kw) as r:
            return r.status, r.headers.copy(), await r.read()

    async def admin(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**AUTH, **kw.pop("headers", {})}
        async with self.http.request(method, f"{self.url}/admin{path}", headers=headers, **kw) as r:
            return r.status, await r.json()


@contextlib.asynccontextmanager
async def stack(breaker: BreakerConfig | None = None, **policy: Any) -> AsyncIterator[Stack]:
    async with (
        run_upstream(name="primary") as p,
        run_upstream(name="secondary") as s,
        run_upstream(name="degraded") as d,
    ):
        pol = chat_policy(p.url, s.url, d.url, **policy)
        settings = GatewaySettings(max_body_bytes=64 * 1024, breaker=breaker or BreakerConfig())
        async with run_gateway({"chat": pol}, TOKEN, settings=settings) as gw, aiohttp.ClientSession() as http:
            yield Stack(p, s, d, gw, http)


@pytest.fixture
async def st() -> AsyncIterator[Stack]:
    async with stack() as s:
        yield s
