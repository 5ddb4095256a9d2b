"""The admin API the governor steers the gateway with: bearer auth, idempotent changes, clear refusals."""

from __future__ import annotations

import aiohttp
import pytest

from governor.enums import DegradationLevel
from governor.policy import Degradation
from tests.gateway.conftest import Stack


async def test_bearer_token_is_required(st: Stack) -> None:
    url = f"{st.url}/admin/services"
    async with st.http.get(url) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with st.http.get(url, headers={"Authorization": "Basic abc"}) as r:
        assert r.status == 401
    async with st.http.get(url, headers={"Authorization": "Bearer wrong"}) as r:
        assert r.status == 403
    status, body = await st.admin("GET", "/services")
    assert (status, body) == (200, {"services": ["chat"]})


async def test_service_state_has_the_pinned_shape(st: Stack) -> None:
    status, state = await st.admin("GET", "/services/chat")
    assert status == 200
    assert state["service"] == "chat"
    assert state["pinned_tier"] is None
    assert state["primary_weight"] == 100
    assert set(state["breakers"]) == {"tier_0_primary", "tier_1_secondary", "tier_3_degraded"}
    assert {k: state["breakers"]["tier_0_primary"][k] for k in ("state", "mode", "failures")} == {
        "state": "closed",
        "mode": "auto",
        "failures": 0,
    }
    assert state["degradation"]["level"] == "normal"
    assert set(state["degradation"]["flags"].values()) == {"enabled"}
    assert state["status"]["component"] == "operational"
    assert state["incident"] is None


async def test_changes_are_idempotent_and_record_the_incident(st: Stack) -> None:
    incident = {"X-Governor-Incident": "recovery-chat"}
    body = {"pinned_tier": "tier_1_secondary", "primary_weight": 10}
    s1, first = await st.admin("PUT", "/services/chat/route", json=body, headers=incident)
    s2, second = await st.admin("PUT", "/services/chat/route", json=body, headers=incident)
    assert (s1, s2) == (200, 200)
    assert first == second
    assert second["incident"] == "recovery-chat"
    _, audit = await st.admin("GET", "/services/chat/audit")
    assert [c["changed"] for c in audit["changes"]] == [True, False]
    assert audit["changes"][0]["incident"] == "recovery-chat"
    # Only the given field changes.
    _, state = await st.admin("PUT", "/services/chat/route", json={"primary_weight": 50})
    assert (state["pinned_tier"], state["primary_weight"]) == ("tier_1_secondary", 50)


async def test_degradation_level_sets_the_policy_flags(st: Stack) -> None:
    _, state = await st.admin("PUT", "/services/chat/degradation", json={"level": "degraded_l2"})
    expected = Degradation().flags_for(DegradationLevel.DEGRADED_L2)
    assert state["degradation"]["level"] == "degraded_l2"
    assert state["degradation"]["flags"] == {k: v.value for k, v in expected.items()}
    _, state = await st.admin(
        "PUT", "/services/chat/degradation", json={"level": "degraded_l1", "flags": {"search": "canary"}}
    )
    assert state["degradation"]["flags"]["search"] == "canary"
    assert state["degradation"]["flags"]["analytics"] == "disabled"
    # Degraded answers say so.
    _, headers, _ = await st.chat()
    assert headers["X-Governor-Degradation"] == "degraded_l1"


async def test_status_component_and_message(st: Stack) -> None:
    _, state = await st.admin(
        "PUT", "/services/chat/status", json={"component": "partial_outage", "message": "Primary model down"}
    )
    assert {k: state["status"][k] for k in ("component", "message")} == {
        "component": "partial_outage",
        "message": "Primary model down",
    }


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/services/chat/route", b"{not json", "body"),
        ("/services/chat/route", b"[1, 2]", "body"),
        ("/services/chat/route", b'{"primary_weight": 101}', "primary_weight"),
        ("/services/chat/route", b'{"primary_weight": true}', "primary_weight"),
        ("/services/chat/route", b'{"pinned_tier": "tier_9"}', "pinned_tier"),
        ("/services/chat/route", b'{"pinned": "tier_1_secondary"}', "pinned"),
        ("/services/chat/breakers/tier_0_primary", b'{"mode": "half"}', "mode"),
        ("/services/chat/breakers/tier_7", b'{"mode": "open"}', "tier"),
        ("/services/chat/degradation", b'{"flags": {}}', "level"),
        ("/services/chat/degradation", b'{"level": "sort_of_ok"}', "level"),
        ("/services/chat/degradation", b'{"level": "normal", "flags": {"serch": "disabled"}}', "flags.serch"),
        ("/services/chat/degradation", b'{"level": "normal", "flags": {"search": "off"}}', "flags.search"),
        ("/services/chat/status", b'{"component": "down"}', "component"),
    ],
)
async def test_bad_admin_input_is_422_naming_the_field(st: Stack, path: str, body: bytes, field: str) -> None:
    status, err = await st.admin("PUT", path, data=body, headers={"content-type": "application/json"})
    assert status == 422, err
    assert err["error"]["field"] == field
    assert field.split(".")[-1] in err["error"]["message"]


async def test_pinning_a_tier_outside_the_chain_is_refused() -> None:
    from tests.gateway.conftest import stack

    async with stack(drop_tiers=("tier_2_cache",)) as s:
        status, err = await s.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_2_cache"})
        assert status == 422
        assert "not in 'chat'" in err["error"]["message"]


async def test_unknown_service_and_route_and_bad_window(st: Stack) -> None:
    status, err = await st.admin("GET", "/services/nope")
    assert status == 404
    assert err["error"]["field"] == "service"
    status, _ = await st.admin("GET", "/services/chat/nothing")
    assert status == 404
    status, err = await st.admin("GET", "/services/chat/stats?window=abc")
    assert (status, err["error"]["field"]) == (422, "window")


async def test_stats_windows_per_tier(st: Stack) -> None:
    for _ in range(4):
        await st.chat()
    st.primary.set(error_rate=1.0)
    await st.chat()
    status, stats = await st.admin("GET", "/services/chat/stats?window=10")
    assert status == 200
    assert stats["window_s"] == 10
    primary = stats["tiers"]["tier_0_primary"]
    assert {k: primary[k] for k in ("requests", "errors", "error_rate", "rate_limited", "in_flight")} == {
        "requests": 5,
        "errors": 1,
        "error_rate": 0.2,
        "rate_limited": 0,
        "in_flight": 0,
    }
    assert 0 < primary["p50_ms"] <= primary["p95_ms"] <= primary["p99_ms"]
    assert primary["rps"] == 0.5
    assert stats["tiers"]["tier_1_secondary"]["requests"] == 1
    # served: the tier each client's answer came from (the failed primary attempt was answered by the secondary)
    assert (primary["served"], stats["tiers"]["tier_1_secondary"]["served"]) == (4, 1)


async def test_served_counts_follow_the_fall_through_not_the_pin(st: Stack) -> None:
    await st.admin("PUT", "/services/chat/route", json={"pinned_tier": "tier_1_secondary", "primary_weight": 0})
    st.secondary.set(error_rate=1.0)  # the pinned secondary fails: the gateway answers from below it on its own
    for _ in range(3):
        status, headers, _ = await st.chat()
        assert status == 200 and headers["X-Governor-Tier"] != "tier_1_secondary"
    _, stats = await st.admin("GET", "/services/chat/stats?window=10")
    served = {tier: t["served"] for tier, t in stats["tiers"].items() if t["served"]}
    assert served == {headers["X-Governor-Tier"]: 3}
    assert stats["tiers"]["tier_1_secondary"]["requests"] == 3  # tried each time, served none


async def test_admin_body_too_large_is_413(st: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{st.url}/admin/services/chat/status",
            data=b"{" + b" " * 70_000 + b"}",
            headers={"Authorization": "Bearer test-admin-token-3f9a"},
        ) as r:
            assert r.status == 413
