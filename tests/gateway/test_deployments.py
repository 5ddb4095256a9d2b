"""Several deployments per tier under concurrent load, on real fakes on 127.0.0.1: weighted sharing, a per-deployment
breaker with cooldown, the failed deployment's request retried on another one with no client error, the tier falling
through only when every deployment is down, per-deployment keys (none leaked to another), stats, state and probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from demo.upstream import Upstream, run_upstream
from gateway.app import RunningGateway, run_gateway
from governor.policy import PolicyError, parse_policy
from tests.gateway.conftest import AUTH, CHAT, STATIC_BODY, TOKEN
from tests.gateway.scripted import Reply, run_scripted

EAST_KEY, WEST_KEY, SECONDARY_KEY = "sk-east-deployment-key", "sk-west-deployment-key", "sk-secondary-key"
CLIENT_KEY = "sk-client-key-never-upstream"


def policy(east: str, west: str, secondary: str, **primary: Any) -> Any:
    deployments = primary.pop(
        "deployments",
        [
            {"name": "east", "region": "us-east", "upstream": east, "api_key_env": "T_EAST_KEY", "model": "m-east"},
            {"name": "west", "upstream": west, "api_key_env": "T_WEST_KEY"},
        ],
    )
    chain = [
        {"tier": "tier_0_primary", "timeout_ms": 1000, "model": "m-tier", "deployments": deployments, **primary},
        {"tier": "tier_1_secondary", "upstream": secondary, "timeout_ms": 1000, "api_key_env": "T_SECONDARY_KEY"},
        {"tier": "tier_4_static", "body": STATIC_BODY},
    ]
    deps = [{"name": "primary-llm", "tier": "tier_0_primary"}]
    return parse_policy({"service": "chat", "dependencies": deps, "chain": chain, "deadline_ms": 3000}, "test")


@dataclass
class Trio:
    east: Upstream
    west: Upstream
    secondary: Upstream
    gw: RunningGateway
    http: httpx.AsyncClient

    async def burst(self, n: int, concurrency: int = 20) -> list[httpx.Response]:
        gate = asyncio.Semaphore(concurrency)
        url = f"{self.gw.url}/chat/v1/chat/completions"

        async def one() -> httpx.Response:
            async with gate:
                return await self.http.post(url, json=CHAT, headers={"Authorization": f"Bearer {CLIENT_KEY}"})

        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def admin(self, path: str) -> Any:
        r = await self.http.get(f"{self.gw.url}/admin/services/chat{path}", headers=AUTH)
        assert r.status_code == 200, r.text
        return r.json()


@contextlib.asynccontextmanager
async def trio(monkeypatch: pytest.MonkeyPatch, **primary: Any) -> AsyncIterator[Trio]:
    monkeypatch.setenv("T_EAST_KEY", EAST_KEY)
    monkeypatch.setenv("T_WEST_KEY", WEST_KEY)
    monkeypatch.setenv("T_SECONDARY_KEY", SECONDARY_KEY)
    async with (
        run_upstream(name="east", api_key=EAST_KEY) as e,
        run_upstream(name="west", api_key=WEST_KEY) as w,
        run_upstream(name="secondary", api_key=SECONDARY_KEY) as s,
    ):
        pol = policy(e.url, w.url, s.url, **primary)
        async with run_gateway({"chat": pol}, TOKEN) as gw, httpx.AsyncClient(timeout=10) as http:
            yield Trio(e, w, s, gw, http)


def completions(up: Upstream) -> int:
    return up.counters.by_path.get("/v1/chat/completions", 0)


async def test_each_deployment_gets_its_own_key_and_model_and_weights_share_the_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployments = [
        {"name": "east", "upstream": "EAST", "api_key_env": "T_EAST_KEY", "model": "m-east", "weight": 3},
        {"name": "west", "upstream": "WEST", "api_key_env": "T_WEST_KEY", "weight": 1},
    ]
    async with run_upstream(name="east", api_key=EAST_KEY) as e, run_upstream(name="west", api_key=WEST_KEY) as w:
        for d, up in zip(deployments, (e, w), strict=True):
            d["upstream"] = up.url
        async with trio(monkeypatch, deployments=deployments) as t:
            answers = await t.burst(400)
            assert [r.status_code for r in answers] == [200] * 400  # a wrong key would be a 401 from the fake
            assert {r.headers["x-governor-tier"] for r in answers} == {"tier_0_primary"}
            shares = Counter(r.headers["x-governor-deployment"] for r in answers)
            assert shares["east"] + shares["west"] == 400
            assert 0.65 <= shares["east"] / 400 <= 0.85, shares  # 3:1, roughly
            assert e.counters.last_auth == {"authorization": f"Bearer {EAST_KEY}"}
            assert w.counters.last_auth == {"authorization": f"Bearer {WEST_KEY}"}
            assert e.counters.last_model == "m-east" and w.counters.last_model == "m-tier"  # the tier's, by default
            assert completions(t.secondary) == 0
            stats = await t.admin("/stats?window=60")
            per = stats["deployments"]["tier_0_primary"]
            assert per["east"]["requests"] == shares["east"] and per["west"]["requests"] == shares["west"]
            assert stats["tiers"]["tier_0_primary"]["requests"] == 400  # one outcome per request


async def test_one_deployment_down_moves_its_share_to_the_other_with_no_client_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with trio(monkeypatch) as t:
        t.east.set(outage=True, outage_mode="503")
        answers = await t.burst(200)
        assert [r.status_code for r in answers] == [200] * 200
        assert {r.headers["x-governor-tier"] for r in answers} == {"tier_0_primary"}
        assert {r.headers["x-governor-deployment"] for r in answers} == {"west"}
        retried = [r for r in answers if "x-governor-reason" in r.headers]
        assert retried and all(r.headers["x-governor-reason"] == "tier_0_primary[east]=http_503" for r in retried)
        # east's breaker opened after its consecutive failures: it stopped getting requests (20 were in flight).
        assert 5 <= completions(t.east) <= 5 + 20 and completions(t.east) < 100
        assert completions(t.west) == 200 and completions(t.secondary) == 0
        stats = await t.admin("/stats?window=60")
        tier = stats["tiers"]["tier_0_primary"]
        assert tier["errors"] == 0 and tier["requests"] == 200  # the tier is healthy: the watchdog sees no failure
        east = stats["deployments"]["tier_0_primary"]["east"]
        assert east["errors"] == completions(t.east) and east["causes"] == {"http_5xx": completions(t.east)}
        state = await t.admin("")
        assert state["breakers"]["tier_0_primary"]["state"] == "closed"
        metrics = (await t.http.get(f"{t.gw.url}/metrics")).text
        gauge, labels = "governor_gateway_deployment_breaker_state", 'service="chat",tier="tier_0_primary"'
        assert f'{gauge}{{deployment="east",{labels}}} 2.0' in metrics
        assert f'{gauge}{{deployment="west",{labels}}} 0.0' in metrics
        shown = {d["name"]: d for d in state["deployments"]["tier_0_primary"]}
        assert shown["east"]["breaker"]["state"] == "open" and shown["east"]["breaker"]["open_cause"] == "http_5xx"
        assert shown["west"]["breaker"]["state"] == "closed"


async def test_all_deployments_down_falls_through_and_the_tier_reports_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch) as t:
        t.east.set(outage=True, outage_mode="503")
        t.west.set(outage=True, outage_mode="close")
        answers = await t.burst(60, concurrency=5)
        assert [r.status_code for r in answers] == [200] * 60
        assert {r.headers["x-governor-tier"] for r in answers} == {"tier_1_secondary"}
        first = answers[0].headers["x-governor-reason"]
        assert "tier_0_primary[east]=http_503" in first and "tier_0_primary[west]=disconnected" in first
        reasons = {r.headers["x-governor-reason"] for r in answers}
        assert "tier_0_primary=deployments_resting" in reasons or "tier_0_primary=breaker_open" in reasons
        assert t.secondary.counters.last_auth == {"authorization": f"Bearer {SECONDARY_KEY}"}  # its own key
        state = await t.admin("")
        assert state["breakers"]["tier_0_primary"]["state"] == "open"  # the tier is down: its breaker says so
        stats = await t.admin("/stats?window=60")
        tier = stats["tiers"]["tier_0_primary"]
        assert tier["errors"] >= 5 and set(tier["causes"]) <= {"http_5xx", "disconnected"}


async def test_cooldown_then_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch, cooldown_s=3) as t:  # long enough for both bursts on a loaded 2-core machine
        t.east.set(outage=True, outage_mode="503")
        await t.burst(40, concurrency=4)
        rested_at = time.monotonic()
        before = completions(t.east)
        await t.burst(40, concurrency=4)
        assert completions(t.east) == before  # resting: not tried at all
        t.east.set(outage=False)
        await asyncio.sleep(max(0.0, rested_at + 3.1 - time.monotonic()))  # the cooldown is over: probes go to east
        answers = await t.burst(200, concurrency=4)
        assert [r.status_code for r in answers] == [200] * 200
        shares = Counter(r.headers["x-governor-deployment"] for r in answers)
        assert 60 <= shares["east"] <= 140, shares  # back to about half
        state = await t.admin("")
        assert {d["name"]: d["breaker"]["state"] for d in state["deployments"]["tier_0_primary"]} == {
            "east": "closed",
            "west": "closed",
        }


async def test_a_standby_gets_traffic_only_when_the_weighted_ones_are_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_upstream(name="east", api_key=EAST_KEY) as e, run_upstream(name="west", api_key=WEST_KEY) as w:
        deployments = [
            {"name": "east", "upstream": e.url, "api_key_env": "T_EAST_KEY", "bulkhead": {"max_concurrent": 2}},
            {"name": "west", "upstream": w.url, "api_key_env": "T_WEST_KEY", "weight": 0},
        ]
        async with trio(monkeypatch, deployments=deployments) as t:
            calm = await t.burst(20, concurrency=1)
            assert {r.headers["x-governor-deployment"] for r in calm} == {"east"}
            e.set(latency_ms=300)
            busy = await t.burst(6, concurrency=6)  # east's bulkhead takes 2; the other 4 go to the standby
            shares = Counter(r.headers["x-governor-deployment"] for r in busy)
            assert shares == {"east": 2, "west": 4}, shares
            assert all(
                r.headers["x-governor-reason"] == "tier_0_primary[east]=bulkhead_full"
                for r in busy
                if r.headers["x-governor-deployment"] == "west"
            )
            stats = await t.admin("/stats?window=60")
            assert stats["deployments"]["tier_0_primary"]["east"]["skipped_by"] == {"bulkhead_full": 4}


async def test_state_shows_where_keys_come_from_never_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch) as t:
        await t.burst(10)
        state, stats = await t.admin(""), await t.admin("/stats?window=60")
        shown = {d["name"]: d for d in state["deployments"]["tier_0_primary"]}
        assert shown["east"]["credential"] == "env:T_EAST_KEY" and shown["east"]["region"] == "us-east"
        assert shown["west"]["credential"] == "env:T_WEST_KEY" and shown["west"]["model"] == "m-tier"
        assert state["credentials"] == {"tier_1_secondary": "env:T_SECONDARY_KEY"}
        text = json.dumps(state) + json.dumps(stats)
        for key in (EAST_KEY, WEST_KEY, SECONDARY_KEY, CLIENT_KEY):
            assert key not in text


async def test_the_probe_goes_to_each_deployment_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch) as t:
        t.west.set(outage=True, outage_mode="503")
        r = await t.http.post(
            f"{t.gw.url}/admin/services/chat/probe",
            json={"tier": "tier_0_primary", "count": 4, "body": CHAT},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        outcomes = r.json()["outcomes"]
        assert [o["deployment"] for o in outcomes] == ["east", "west", "east", "west"]
        assert [o["ok"] for o in outcomes] == [True, False, True, False]
        assert {o["reason"] for o in outcomes if not o["ok"]} == {"http_503"}
        assert completions(t.east) == 2


@pytest.mark.parametrize(
    ("deployments", "message"),
    [
        ([], "deployments must list at least one deployment"),
        ([{"weight": -1}], r"deployments\.0\.weight: Input should be greater than or equal to 0 \(got -1\)"),
        ([{"weight": 0}, {"weight": 0}], r"the deployments' weights add up to 0 \(\[0, 0\]\)"),
        ([{"name": "a"}, {"region": "a"}], r"deployments\[0\] and \[1\] are both named 'a'"),
        ([{"weight": "heavy"}], r"deployments\.0\.weight"),
        ([{"api_key_env": "A", "api_key_file": "/k"}], "set api_key_env or api_key_file, not both"),
        ([{"bulkhead": {"max_concurrent": 1, "when_full": "shed"}}], "shed is for the tier's bulkhead"),
        ([{"name": "bad name"}], r"deployments\.0\.name: String should match pattern"),
        ([{"provider": "azure"}], r"deployments\[0\] \(d0\): provider azure needs `azure"),
        ([{"colour": "red"}], r"deployments\.0\.colour: Extra inputs are not permitted"),
    ],
)
def test_bad_deployments_are_named(deployments: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy("", "", "http://127.0.0.1:3", deployments=deployments, upstream="http://127.0.0.1:1")


def test_a_cooldown_without_deployments_is_named() -> None:
    with pytest.raises(PolicyError, match="cooldown_s applies to a tier's deployments, and this tier lists none"):
        tier = {"tier": "tier_0_primary", "upstream": "http://127.0.0.1:1", "cooldown_s": 5}
        parse_policy({"service": "chat", "dependencies": [{"name": "p"}], "chain": [tier]}, "test")


def test_a_deployment_without_any_upstream_is_named() -> None:
    with pytest.raises(PolicyError, match=r"deployments\[1\] \(d1\): needs an upstream URL"):
        policy("", "", "http://127.0.0.1:3", deployments=[{"upstream": "http://127.0.0.1:1"}, {}])
    with pytest.raises(PolicyError, match="tier_4_static: deployments is for upstream tiers only"):
        parse_policy(
            {
                "service": "chat",
                "dependencies": [{"name": "p", "tier": "tier_0_primary"}],
                "chain": [
                    {"tier": "tier_0_primary", "upstream": "http://127.0.0.1:1"},
                    {"tier": "tier_4_static", "body": STATIC_BODY, "deployments": [{"weight": 1}]},
                ],
            },
            "test",
        )


async def test_a_stream_moves_to_the_next_deployment_before_its_first_event(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch) as t:
        t.east.set(outage=True, outage_mode="503")
        client = openai.AsyncOpenAI(base_url=f"{t.gw.url}/chat/v1", api_key=CLIENT_KEY, max_retries=0)
        async with client:
            for _ in range(8):
                raw = await client.chat.completions.with_raw_response.create(
                    model="m", messages=[{"role": "user", "content": "what is the weather"}], stream=True
                )
                assert raw.headers["x-governor-tier"] == "tier_0_primary"
                assert raw.headers["x-governor-deployment"] == "west"
                text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
                assert text == "[west] what is the weather"
        stats = await t.admin("/stats?window=60")
        assert stats["tiers"]["tier_0_primary"]["errors"] == 0 and stats["tiers"]["tier_0_primary"]["requests"] == 8


async def test_all_down_names_each_deployment_and_retry_after_is_their_cooldown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with trio(monkeypatch, cooldown_s=7) as t:
        t.east.set(outage=True, outage_mode="503")
        t.west.set(outage=True, outage_mode="503")
        t.secondary.set(outage=True, outage_mode="503")
        r = (await t.burst(1))[0]
        assert r.status_code == 200 and r.headers["x-governor-tier"] == "tier_4_static"
        answers = await t.burst(12, concurrency=1)
        assert {a.headers["x-governor-tier"] for a in answers} == {"tier_4_static"}
        state = await t.admin("")
        assert all(d["breaker"]["state"] == "open" for d in state["deployments"]["tier_0_primary"])
        svc = t.gw.app.services["chat"]
        assert 6 <= svc.retry_after_s([]) <= 7  # the deployments' cooldown, not the default 5 s or the tier's 60 s
        tried = answers[0].headers["x-governor-reason"]
        assert "tier_0_primary[east]=http_503" in tried and "tier_0_primary[west]=http_503" in tried


async def test_the_tier_bulkhead_bounds_all_its_deployments_together(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch, bulkhead={"max_concurrent": 3}) as t:
        t.east.set(latency_ms=300)
        t.west.set(latency_ms=300)
        answers = await t.burst(5, concurrency=5)
        tiers = Counter(r.headers["x-governor-tier"] for r in answers)
        assert tiers == {"tier_0_primary": 3, "tier_1_secondary": 2}, tiers
        assert all(
            r.headers["x-governor-reason"] == "tier_0_primary=bulkhead_full"
            for r in answers
            if r.headers["x-governor-tier"] == "tier_1_secondary"
        )


async def test_an_operator_drains_one_deployment_and_hands_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async with trio(monkeypatch) as t:
        url = f"{t.gw.url}/admin/services/chat/breakers/tier_0_primary"
        r = await t.http.put(f"{url}/east", json={"mode": "open"}, headers={**AUTH, "X-Governor-Incident": "inc-1"})
        assert r.status_code == 200, r.text
        drained = await t.burst(40)
        assert {a.headers["x-governor-deployment"] for a in drained} == {"west"}
        assert all("x-governor-reason" not in a.headers for a in drained)  # not tried at all, so no client sees it
        assert completions(t.east) == 0
        audit = await t.admin("/audit")
        assert audit["changes"][-1]["what"] == "breaker:tier_0_primary[east]" and audit["changes"][-1]["changed"]
        assert (await t.http.put(f"{url}/east", json={"mode": "auto"}, headers=AUTH)).status_code == 200
        back = await t.burst(100)
        assert {a.headers["x-governor-deployment"] for a in back} == {"east", "west"}
        for bad, field in (
            (f"{url}/north", "deployment"),
            (f"{t.gw.url}/admin/services/chat/breakers/tier_1_secondary/x", "deployment"),
        ):
            r = await t.http.put(bad, json={"mode": "open"}, headers=AUTH)
            assert r.status_code == 404 and r.json()["error"]["field"] == field
        r = await t.http.put(f"{url}/east", json={"mode": "sideways"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error"]["field"] == "mode"


async def test_the_tier_retry_redraws_the_deployments_after_all_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECONDARY_KEY", SECONDARY_KEY)
    async with run_scripted("east") as e, run_scripted("west") as w, run_scripted("secondary") as s:
        e.then(Reply(status=503))
        w.then(Reply(status=502))
        deployments = [{"name": "east", "upstream": e.url}, {"name": "west", "upstream": w.url}]
        pol = policy("", "", s.url, deployments=deployments, retry={"attempts": 1, "backoff_ms": 20})
        async with run_gateway({"chat": pol}, TOKEN) as gw, httpx.AsyncClient(timeout=10) as http:
            r = await http.post(f"{gw.url}/chat/v1/chat/completions", json=CHAT)
        assert r.status_code == 200 and r.headers["x-governor-tier"] == "tier_0_primary"
        reason = r.headers["x-governor-reason"]
        assert "tier_0_primary[east]=http_503" in reason and "tier_0_primary[west]=http_502" in reason
        assert ", retried in " in reason and len(e.received) + len(w.received) == 3 and not s.received


@pytest.mark.parametrize("exclude_none", [False, True])
def test_a_policy_with_deployments_survives_its_own_dump(exclude_none: bool) -> None:
    """Policies travel through Temporal as dumps: the parsed dump must be the same policy."""
    pol = policy("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", cooldown_s=3)
    plain = policy("", "", "http://127.0.0.1:3", deployments=None, upstream="http://127.0.0.1:1")
    for one in (pol, plain):
        assert parse_policy(one.model_dump(mode="json", exclude_none=exclude_none), "dump") == one
