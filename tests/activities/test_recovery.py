"""RecoveryActivities that need no gateway: policy, confirmation by probes, waiting, validation.

Real fake upstreams (demo/upstream.py) on 127.0.0.1; heartbeats and cancellation through ActivityEnvironment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.gateway_admin import GatewayUnavailable
from activities.recovery import RecoveryActivities, WaitProgress
from demo.upstream import run_upstream
from governor.actions import (
    ConfirmFailureInput,
    LoadPolicyInput,
    ValidatePrimaryInput,
    WaitForHealthyInput,
)
from governor.decisions import Verdict
from governor.enums import FailureType
from governor.incident import IncidentReport
from governor.policy import RecoveryChecks, Thresholds
from governor.settings import WorkerSettings
from tests.activities.conftest import make_policy

ROOT = Path(__file__).resolve().parents[2]


def report(failure_type: FailureType | None = FailureType.MODEL_UNAVAILABLE) -> IncidentReport:
    return IncidentReport(service="chat", dependency="primary-llm", failure_type=failure_type, source="test")


# --- load_policy


async def test_load_policy_reads_the_service_from_the_policy_folder(
    acts: RecoveryActivities, settings: WorkerSettings
) -> None:
    settings.policy_dir.mkdir()
    shutil.copy(ROOT / "policies" / "chat.yaml", settings.policy_dir / "chat.yaml")
    policy = await ActivityEnvironment().run(acts.load_policy, LoadPolicyInput(service="chat"))
    assert policy.service == "chat"
    assert [d.name for d in policy.dependencies] == ["primary-llm", "secondary-llm"]


async def test_bad_policy_is_non_retryable_and_names_file_field_and_value(
    acts: RecoveryActivities, settings: WorkerSettings
) -> None:
    settings.policy_dir.mkdir()
    text = (ROOT / "policies" / "chat.yaml").read_text().replace("timeout_ms: 2000", "timeout_ms: -7", 1)
    (settings.policy_dir / "chat.yaml").write_text(text)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.load_policy, LoadPolicyInput(service="chat"))
    assert err.value.non_retryable
    assert "chat.yaml" in err.value.message
    assert "dependencies.0.timeout_ms" in err.value.message
    assert "-7" in err.value.message


async def test_unknown_service_is_non_retryable(acts: RecoveryActivities, settings: WorkerSettings) -> None:
    settings.policy_dir.mkdir()
    shutil.copy(ROOT / "policies" / "chat.yaml", settings.policy_dir / "chat.yaml")
    with pytest.raises(ApplicationError, match=r"no policy for service 'search'.*known: chat") as err:
        await ActivityEnvironment().run(acts.load_policy, LoadPolicyInput(service="search"))
    assert err.value.non_retryable


# --- confirm_failure (the gateway here listens nowhere: stats are unavailable)


async def test_outage_is_confirmed_from_probes_even_without_gateway_stats(acts: RecoveryActivities) -> None:
    async with run_upstream(name="primary", outage=True) as primary:
        policy = make_policy(primary.url + "/health")
        result = await ActivityEnvironment().run(
            acts.confirm_failure, ConfirmFailureInput(policy=policy, dependency="primary-llm", report=report())
        )
    assert result.confirmed
    assert result.classification is not None
    assert result.classification.failure_type is FailureType.MODEL_UNAVAILABLE
    assert len(result.probes) == 1  # stops at the first failing probe: fallback sooner
    assert result.stats is None


async def test_healthy_probes_without_stats_retry_rather_than_guess(acts: RecoveryActivities) -> None:
    async with run_upstream(name="primary") as primary:
        policy = make_policy(primary.url + "/health")
        with pytest.raises(GatewayUnavailable, match=r"gateway http://127\.0\.0\.1:9: GET /admin/services/chat/stats"):
            await ActivityEnvironment().run(
                acts.confirm_failure,
                ConfirmFailureInput(policy=policy, dependency="primary-llm", report=report(), attempts=2),
            )
        assert primary.counters.health == 2


async def test_unreachable_primary_while_secondary_answers_is_a_network_partition(acts: RecoveryActivities) -> None:
    async with run_upstream(name="secondary") as secondary:
        policy = make_policy("http://primary-llm.governor.invalid/health", secondary.url + "/health")
        result = await ActivityEnvironment().run(
            acts.confirm_failure, ConfirmFailureInput(policy=policy, dependency="primary-llm", report=report())
        )
    assert result.classification is not None
    assert result.classification.failure_type is FailureType.NETWORK_PARTITION
    assert {p.dependency: p.error_kind for p in result.probes} == {"primary-llm": "dns", "secondary-llm": None}


async def test_unreachable_everywhere_is_dependency_down(acts: RecoveryActivities) -> None:
    policy = make_policy("http://primary-llm.governor.invalid/health", "http://secondary-llm.governor.invalid/health")
    result = await ActivityEnvironment().run(
        acts.confirm_failure, ConfirmFailureInput(policy=policy, dependency="primary-llm", report=report())
    )
    assert result.classification is not None
    assert result.classification.failure_type is FailureType.DEPENDENCY_DOWN


async def test_unknown_dependency_is_non_retryable(acts: RecoveryActivities) -> None:
    policy = make_policy("http://127.0.0.1:9/health")
    with pytest.raises(ApplicationError, match="no dependency 'vector-db'") as err:
        await ActivityEnvironment().run(
            acts.confirm_failure, ConfirmFailureInput(policy=policy, dependency="vector-db", report=report())
        )
    assert err.value.non_retryable


# --- wait_for_healthy


def wait_input(url: str, passes: int = 3) -> WaitForHealthyInput:
    policy = make_policy(url)
    return WaitForHealthyInput(
        dependency=policy.dependency("primary-llm"), thresholds=Thresholds(), interval_s=0.01, passes=passes
    )


async def test_wait_for_healthy_heartbeats_progress_and_returns_after_consecutive_passes(
    acts: RecoveryActivities,
) -> None:
    async with run_upstream(name="primary", outage=True) as primary:
        env = ActivityEnvironment()
        beats: list[WaitProgress] = []

        def on_heartbeat(*details: object) -> None:
            progress = details[0]
            assert isinstance(progress, WaitProgress)
            beats.append(progress)
            if len(beats) == 2:
                primary.set(outage=False)  # the primary comes back after two failed probes

        env.on_heartbeat = on_heartbeat
        result = await env.run(acts.wait_for_healthy, wait_input(primary.url + "/health"))
    assert [b.consecutive_passes for b in beats] == [0, 0, 1, 2, 3]
    assert [b.probes for b in beats] == [1, 2, 3, 4, 5]
    assert beats[0].last is not None and beats[0].last.error_kind == "http_status"
    assert (result.consecutive_passes, result.probes) == (3, 5)
    assert result.last is not None and result.last.ok


async def test_wait_for_healthy_resumes_from_the_last_heartbeat(acts: RecoveryActivities) -> None:
    # What a retried attempt sees: the previous attempt's heartbeat, decoded by the worker's converter as a dict.
    converter = pydantic_data_converter.payload_converter
    payloads = converter.to_payloads([WaitProgress(consecutive_passes=2, probes=7)])
    details = converter.from_payloads(payloads)
    assert isinstance(details[0], dict)
    async with run_upstream(name="primary") as primary:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, heartbeat_details=details, attempt=2)
        result = await env.run(acts.wait_for_healthy, wait_input(primary.url + "/health"))
        assert primary.counters.health == 1
    assert (result.consecutive_passes, result.probes) == (3, 8)


async def test_wait_for_healthy_stops_cleanly_when_cancelled(acts: RecoveryActivities) -> None:
    async with run_upstream(name="primary", outage=True) as primary:
        env = ActivityEnvironment()
        probed = asyncio.Event()
        env.on_heartbeat = lambda *_: probed.set()
        task = asyncio.create_task(env.run(acts.wait_for_healthy, wait_input(primary.url + "/health")))
        await asyncio.wait_for(probed.wait(), 5)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        probes_at_cancel = primary.counters.health
        await asyncio.sleep(0.05)  # a leaked probing loop would keep counting
        assert primary.counters.health == probes_at_cancel


async def test_wait_for_healthy_without_health_url_is_non_retryable(acts: RecoveryActivities) -> None:
    policy = make_policy("http://127.0.0.1:9/health")
    dep = policy.dependency("primary-llm").model_copy(update={"health_url": None})
    with pytest.raises(ApplicationError, match="no health_url") as err:
        await ActivityEnvironment().run(
            acts.wait_for_healthy, WaitForHealthyInput(dependency=dep, thresholds=Thresholds())
        )
    assert err.value.non_retryable


# --- validate_primary


def validate_input(url: str, checks: RecoveryChecks) -> ValidatePrimaryInput:
    policy = make_policy(url)
    return ValidatePrimaryInput(dependency=policy.dependency("primary-llm"), thresholds=Thresholds(), checks=checks)


async def test_validate_primary_passes_a_healthy_primary(acts: RecoveryActivities) -> None:
    checks = RecoveryChecks(min_samples=8, health_passes=3)
    async with run_upstream(name="primary") as primary:
        result = await ActivityEnvironment().run(acts.validate_primary, validate_input(primary.url + "/health", checks))
        assert primary.counters.health == 8
    assert result.result.verdict is Verdict.PASS
    assert (result.sample.requests, result.sample.errors, result.consecutive_passes) == (8, 0, 8)
    assert 0 < result.sample.p50_ms <= result.sample.p99_ms < checks.p99_ms


async def test_validate_primary_fails_on_latency(acts: RecoveryActivities) -> None:
    checks = RecoveryChecks(min_samples=4, p99_ms=10)
    async with run_upstream(name="primary", latency_ms=25) as primary:
        result = await ActivityEnvironment().run(acts.validate_primary, validate_input(primary.url + "/health", checks))
    assert result.result.verdict is Verdict.FAIL
    failed = {c.name for c in result.result.checks if not c.passed}
    assert failed == {"latency"}
    assert result.sample.p99_ms >= 25
    # one slow probe already decides p99 over 4 probes: no need to keep probing a sick primary
    assert result.sample.requests == 1
    assert result.result.reason.startswith("stopped after 1 of 4 probes")


async def test_validate_primary_fails_a_primary_that_is_still_down(acts: RecoveryActivities) -> None:
    checks = RecoveryChecks(min_samples=4)
    async with run_upstream(name="primary", outage=True, outage_mode="503") as primary:
        result = await ActivityEnvironment().run(acts.validate_primary, validate_input(primary.url + "/health", checks))
    assert result.result.verdict is Verdict.FAIL
    assert result.sample.error_rate == 1.0
    assert {c.name for c in result.result.checks if not c.passed} == {"health_endpoint", "error_rate"}
    assert result.sample.requests == 1


async def test_validate_primary_passes_despite_one_slow_probe_in_a_large_sample(acts: RecoveryActivities) -> None:
    # p99 (nearest rank) of 200 probes is the 2nd slowest: one slow probe must neither fail nor stop validation
    checks = RecoveryChecks(min_samples=200, p99_ms=200)
    async with run_upstream(name="primary", latency_ms=300) as primary:
        env = ActivityEnvironment()
        seen = 0

        def speed_up(*_: object) -> None:
            nonlocal seen
            seen += 1
            if seen == 1:
                primary.set(latency_ms=0)  # after the first (slow) probe, the primary answers fast

        env.on_heartbeat = speed_up
        result = await env.run(acts.validate_primary, validate_input(primary.url + "/health", checks))
    assert result.sample.requests == 200
    assert result.result.verdict is Verdict.PASS, result.result.reason


def test_all_registers_every_contract_activity_but_notify(acts: RecoveryActivities) -> None:
    from temporalio.activity import _Definition

    from governor.actions import Activity

    names = {_Definition.must_from_callable(fn).name for fn in acts.all()}
    # notify and drill_fault have their own classes (activities/notify, activities/drills.py); the worker adds them
    contract = {v for k, v in vars(Activity).items() if k.isupper()} - {Activity.NOTIFY, Activity.DRILL_FAULT}
    assert names == contract
