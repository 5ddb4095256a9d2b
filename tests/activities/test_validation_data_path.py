"""Validation through the data path, on real servers: the real gateway, the demo's fake models, the real activity.

A primary whose /health answers while 30 % of its completions fail must never pass validation; a clean one passes;
the probes go to the tier's upstream even with its breaker forced open, and never count as client traffic.
"""

from __future__ import annotations

import random

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.recovery import RecoveryActivities
from demo.upstream import run_upstream
from gateway.app import run_gateway
from governor.actions import ValidatePrimaryInput
from governor.decisions import Verdict
from governor.enums import FallbackTier
from tests.activities.conftest import TOKEN, make_policy


def validation(policy, gateway: str, **checks: object) -> ValidatePrimaryInput:  # type: ignore[no-untyped-def]
    rc = policy.recovery_checks.model_copy(update={"min_samples": 20, "health_passes": 3, **checks})
    return ValidatePrimaryInput(
        dependency=policy.dependency("primary-llm"),
        thresholds=policy.thresholds,
        checks=rc,
        service="chat",
        gateways=[gateway],
        tier=FallbackTier.TIER_0_PRIMARY,
    )


async def test_a_primary_failing_30_percent_of_completions_with_a_healthy_health_never_passes(
    acts: RecoveryActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake's 30 % is drawn per completion: seeded, so the 20 probes see the same few failures every run (unseeded,
    # about one run in 130 drew fewer than the two failures asserted below).
    monkeypatch.setattr("demo.upstream.random", random.Random(3))
    async with run_upstream(name="primary") as primary:
        policy = make_policy(primary.url + "/health")
        async with run_gateway({"chat": policy}, TOKEN) as gw:
            async with httpx.AsyncClient(trust_env=False) as http:
                forced = await http.put(
                    f"{gw.url}/admin/services/chat/breakers/tier_0_primary",
                    json={"mode": "open"},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
                assert forced.status_code == 200  # isolation holds the breaker open during validation
            primary.set(error_rate=0.3)
            bad = await ActivityEnvironment().run(acts.validate_primary, validation(policy, gw.url))
            primary.set(error_rate=0.0)
            good = await ActivityEnvironment().run(acts.validate_primary, validation(policy, gw.url))
            async with httpx.AsyncClient(trust_env=False) as http:
                stats = (
                    await http.get(f"{gw.url}/admin/services/chat/stats", headers={"Authorization": f"Bearer {TOKEN}"})
                ).json()
    assert bad.result.verdict is Verdict.FAIL, bad.result.reason
    assert "data path:" in bad.result.reason and "failed (http_5" in bad.result.reason, bad.result.reason
    assert bad.sample.requests == 40 and bad.sample.errors >= 2  # 20 health probes, all passing, + 20 completions
    assert good.result.verdict is Verdict.PASS, good.result.reason
    assert "data path: 20 POST /v1/chat/completions answered well" in good.result.reason
    assert primary.counters.completions >= 40, "the probes reached the upstream through the forced-open breaker"
    assert stats["tiers"].get("tier_0_primary", {}).get("requests", 0) == 0, "probes are not client traffic"


async def test_a_200_with_the_wrong_body_is_a_failed_probe(acts: RecoveryActivities) -> None:
    async with run_upstream(name="primary") as primary:
        policy = make_policy(primary.url + "/health")
        async with run_gateway({"chat": policy}, TOKEN) as gw:
            primary.set(garbage=True, garbage_kind="json_error")
            result = await ActivityEnvironment().run(acts.validate_primary, validation(policy, gw.url))
    assert result.result.verdict is Verdict.FAIL and "bad_body" in result.result.reason, result.result.reason


async def test_the_probe_endpoint_refuses_bad_input_with_the_field_named() -> None:
    async with run_upstream(name="primary") as primary:
        policy = make_policy(primary.url + "/health")
        async with run_gateway({"chat": policy}, TOKEN) as gw, httpx.AsyncClient(trust_env=False) as http:
            url, auth = f"{gw.url}/admin/services/chat/probe", {"Authorization": f"Bearer {TOKEN}"}
            cases = {
                "none": await http.post(url, headers=auth),
                "null": await http.post(url, content=b"null", headers=auth),
                "count": await http.post(url, json={"tier": "tier_0_primary", "count": 10_000}, headers=auth),
                "cache": await http.post(url, json={"tier": "tier_2_cache"}, headers=auth),
                "anonymous": await http.post(url, json={"tier": "tier_0_primary"}),
            }
    assert cases["anonymous"].status_code == 401
    assert cases["cache"].status_code == 404 and "no upstream tier" in cases["cache"].text
    assert cases["count"].status_code in (400, 422) and "count" in cases["count"].text
    assert cases["none"].status_code in (400, 422) and cases["null"].status_code in (400, 422)
