"""What operators, apps and users read: Prometheus metrics, health, OFREP flags, the status page."""

from __future__ import annotations

import asyncio

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode

from tests.gateway.conftest import Stack


async def test_metrics_and_healthz(st: Stack) -> None:
    await st.chat()
    st.primary.set(error_rate=1.0)
    await st.chat()
    async with st.http.get(f"{st.url}/healthz") as r:
        assert (r.status, await r.json()) == (200, {"status": "ok", "services": ["chat"]})
    async with st.http.get(f"{st.url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    assert 'governor_gateway_tier_attempts_total{outcome="ok",service="chat",tier="tier_0_primary"} 1.0' in text
    assert 'governor_gateway_tier_attempts_total{outcome="http_500",service="chat",tier="tier_0_primary"} 1.0' in text
    assert 'governor_gateway_responses_total{service="chat",tier="tier_1_secondary"} 1.0' in text
    assert 'governor_gateway_breaker_state{service="chat",tier="tier_0_primary"} 0.0' in text
    for mode, value in (("auto", 1.0), ("open", 0.0), ("closed", 0.0)):  # every mode always there: no series churn
        assert f'governor_gateway_breaker_mode{{mode="{mode}",service="chat",tier="tier_0_primary"}} {value}' in text
    assert 'governor_gateway_primary_weight_ratio{service="chat"} 1.0' in text
    assert "governor_gateway_tier_latency_seconds_bucket" in text


async def test_status_page_uses_statuspage_values(st: Stack) -> None:
    async with st.http.get(f"{st.url}/status.json") as r:
        summary = await r.json()
    assert summary["status"]["indicator"] == "none"
    assert summary["components"][0] | {"updated_at": None} == {
        "id": "chat",
        "name": "chat",
        "status": "operational",
        "description": "",
        "updated_at": None,
        "degradation_level": "normal",
    }
    await st.admin("PUT", "/services/chat/degradation", json={"level": "degraded_l2"})  # as a drill does
    async with st.http.get(f"{st.url}/status.json") as r:
        untold = (await r.json())["components"][0]
    assert (untold["status"], untold["description"], untold["degradation_level"]) == ("operational", "", "normal")
    await st.admin("PUT", "/services/chat/status", json={"component": "major_outage", "message": "<b>Models down</b>"})
    async with st.http.get(f"{st.url}/status.json") as r:
        summary = await r.json()
    assert summary["status"] == {"indicator": "critical", "description": "Major System Outage"}
    async with st.http.get(f"{st.url}/status") as r:
        assert r.headers["content-type"].startswith("text/html")
        page = await r.text()
    assert 'data-status="major_outage"' in page
    assert "&lt;b&gt;Models down&lt;/b&gt;" in page  # escaped


async def test_ofrep_flags_with_the_openfeature_sdk(st: Stack) -> None:
    await st.admin("PUT", "/services/chat/degradation", json={"level": "degraded_l2"})
    api.set_provider(OFREPProvider(st.url, timeout=2.0), domain="gateway-test")
    client = api.get_client("gateway-test")
    search = await asyncio.to_thread(client.get_string_details, "chat.search", "enabled")
    assert (search.value, search.variant, search.error_code) == ("disabled", "disabled", None)
    read_on = await asyncio.to_thread(client.get_boolean_value, "chat.core_read.enabled", False)
    assert read_on is True
    write = await asyncio.to_thread(client.get_string_value, "chat.core_write", "enabled")
    assert write == "degraded"
    level = await asyncio.to_thread(client.get_string_value, "chat.degradation_level", "normal")
    assert level == "degraded_l2"
    # The service may come from the evaluation context; unknown flags fall back to the default with an error code.
    ctx = EvaluationContext(targeting_key="user-1", attributes={"service": "chat"})
    assert await asyncio.to_thread(client.get_string_value, "analytics", "enabled", ctx) == "disabled"
    missing = await asyncio.to_thread(client.get_string_details, "chat.teleport", "nope")
    assert (missing.value, missing.error_code) == ("nope", ErrorCode.FLAG_NOT_FOUND)


async def test_ofrep_bulk_evaluation_with_etag(st: Stack) -> None:
    url = f"{st.url}/ofrep/v1/evaluate/flags"
    async with st.http.post(url, json={"context": {"service": "chat"}}) as r:
        assert r.status == 200
        etag = r.headers["ETag"]
        flags = {f["key"]: f["value"] for f in (await r.json())["flags"]}
    assert flags["chat.search"] == "enabled"
    assert flags["chat.search.enabled"] is True
    async with st.http.post(url, json={}, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with st.http.post(url, data=b"{oops") as r:
        assert r.status == 400
        assert (await r.json())["errorCode"] == "PARSE_ERROR"
