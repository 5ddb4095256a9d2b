"""The gateway's per-request metrics are plain counts (gateway/metrics.py); their /metrics text must be what
prometheus_client's own Counter and Histogram would print for the same observations, so dashboards, alert rules
(deploy/prometheus) and `promtool` see no difference."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.metrics import LATENCY_BUCKETS, GatewayMetrics

OBSERVED = [0.00005, 0.00005001, 0.0003, 0.0025, 0.7, 30.0, 31.0, 0.0]


PER_REQUEST = ("governor_gateway_tier_attempts", "governor_gateway_tier_skipped", "governor_gateway_responses",
               "governor_gateway_tier_latency_seconds")  # fmt: skip


def _lines(text: str) -> list[str]:
    """The per-request metrics' lines (not the state gauges), with `_created` timestamps blanked."""
    return sorted(
        re.sub(r"(_created\{[^}]*\}) \S+$", r"\1 TS", line)
        for line in text.splitlines()
        if any(name in line for name in PER_REQUEST)
    )


def _reference() -> str:
    reg = CollectorRegistry()
    attempts = Counter(
        "governor_gateway_tier_attempts", "Requests tried on a tier, by outcome", ["service", "tier", "outcome"],
        registry=reg,
    )  # fmt: skip
    skipped = Counter(
        "governor_gateway_tier_skipped",
        "Requests a tier did not try, by why (breaker_open, deadline) and the failure cause behind it",
        ["service", "tier", "reason", "cause"],
        registry=reg,
    )
    served = Counter(
        "governor_gateway_responses", "Responses by the tier that served them", ["service", "tier"], registry=reg
    )
    latency = Histogram(
        "governor_gateway_tier_latency_seconds",
        "Time to an answer (or failure) per tier attempt",
        ["service", "tier"],
        registry=reg,
        buckets=LATENCY_BUCKETS,
    )
    for i, seconds in enumerate(OBSERVED):
        tier = "tier_0_primary" if i % 3 else "tier_1_secondary"
        attempts.labels("chat", tier, "ok" if i % 2 else "http_5xx").inc()
        latency.labels("chat", tier).observe(seconds)
    skipped.labels("chat", "tier_0_primary", "breaker_open", "http_5xx").inc(2)
    served.labels("chat", "tier_1_secondary").inc()
    return generate_latest(reg).decode()


def _ours() -> str:
    m = GatewayMetrics({})
    for i, seconds in enumerate(OBSERVED):
        tier = "tier_0_primary" if i % 3 else "tier_1_secondary"
        m.count_attempt("chat", tier, "ok" if i % 2 else "http_5xx", seconds)
    m.count_skipped("chat", "tier_0_primary", "breaker_open", "http_5xx")
    m.count_skipped("chat", "tier_0_primary", "breaker_open", "http_5xx")
    m.count_served("chat", "tier_1_secondary")
    return m.render()[0].decode()


def test_the_exposition_is_prometheus_clients_own_for_the_same_observations() -> None:
    ours = _lines(_ours())
    assert len(ours) > 40
    assert ours == _lines(_reference())


def test_bucket_edges_are_inclusive_and_the_sum_adds_up() -> None:
    text = _ours()
    primary = 'service="chat",tier="tier_0_primary"'
    # observations 1, 2, 4, 5, 7 went to the primary: 5.001e-05, 0.0003, 0.7, 30.0, 0.0
    assert f'governor_gateway_tier_latency_seconds_bucket{{le="5e-05",{primary}}} 1.0' in text
    assert f'governor_gateway_tier_latency_seconds_bucket{{le="0.0005",{primary}}} 3.0' in text
    assert f'governor_gateway_tier_latency_seconds_bucket{{le="30.0",{primary}}} 5.0' in text
    assert f'governor_gateway_tier_latency_seconds_bucket{{le="+Inf",{primary}}} 5.0' in text
    total = float(re.search(rf"governor_gateway_tier_latency_seconds_sum\{{{primary}\}} (\S+)", text).group(1))  # type: ignore[union-attr]
    assert total == pytest.approx(0.00005001 + 0.0003 + 0.7 + 30.0 + 0.0)


@pytest.mark.skipif(not shutil.which("promtool"), reason="no promtool")
def test_promtool_accepts_the_exposition() -> None:
    out = subprocess.run(["promtool", "check", "metrics"], input=_ours(), capture_output=True, text=True, timeout=30)
    # promtool lints names (counters end in _total); it must find no format error
    assert "error" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr
