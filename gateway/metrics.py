"""The gateway's Prometheus metrics: attempts per tier and outcome, skips per tier and cause, answers per tier,
latency per tier, plus the state gauges (gateway/status.py).

The four per-request metrics are plain counts in dicts, turned into metric families only when /metrics is scraped:
prometheus_client's own Counter and Histogram take a lock on every increment and walk the buckets on every
observation, several percent of the gateway's CPU per request (docs/benchmarks.md, "Where the gateway's time goes").
The exposition is the same as theirs: `_total` and `_created` for counters, cumulative `_bucket`s, `_count`, `_sum`
and `_created` for the histogram. The event loop is the only writer; a scrape reads a snapshot of each dict."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway.status import StateCollector

LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
)  # fmt: skip
"""Seconds; the first bucket is 50 us, so a cache hit or the gateway's own overhead does not all land in one bucket
(attempts are timed with time.perf_counter)."""
_LE = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]


class _Counts:
    """One counter's children: label values -> [value, created]."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: list[str]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], list[float]] = {}

    def inc(self, key: tuple[str, ...]) -> None:
        slot = self.values.get(key)
        if slot is None:
            self.values[key] = [1.0, time.time()]
        else:
            slot[0] += 1

    def family(self) -> Metric:
        fam = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, (value, created) in list(self.values.items()):
            fam.add_metric(list(key), value, created=created)
        return fam


class _Latency:
    """The latency histogram's children: label values -> [per-bucket counts (+Inf last), sum, created]."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[Any]] = {}

    def observe(self, key: tuple[str, str], seconds: float) -> None:
        slot = self.values.get(key)
        if slot is None:
            slot = self.values[key] = [[0] * len(_LE), 0.0, time.time()]
        slot[0][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        slot[1] += seconds

    def family(self) -> Metric:
        fam = HistogramMetricFamily(
            "governor_gateway_tier_latency_seconds",
            "Time to an answer (or failure) per tier attempt",
            labels=["service", "tier"],
        )
        for key, (counts, total, created) in list(self.values.items()):
            cumulative, running = [], 0
            for le, n in zip(_LE, list(counts), strict=True):
                running += n
                cumulative.append((le, running))
            fam.add_metric(list(key), cumulative, total)
            fam.add_sample(fam.name + "_created", dict(zip(fam._labelnames, key, strict=True)), created)
        return fam


class _HotCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield m.attempts.family()
        yield m.skipped.family()
        yield m.served.family()
        yield m.latency.family()


class GatewayMetrics:
    def __init__(self, services: dict[str, Any]) -> None:
        self.registry = CollectorRegistry()
        self.attempts = _Counts(
            "governor_gateway_tier_attempts", "Requests tried on a tier, by outcome", ["service", "tier", "outcome"]
        )
        self.skipped = _Counts(
            "governor_gateway_tier_skipped",
            "Requests a tier did not try, by why (breaker_open, deadline) and the failure cause behind it",
            ["service", "tier", "reason", "cause"],
        )
        self.served = _Counts(
            "governor_gateway_responses", "Responses by the tier that served them", ["service", "tier"]
        )
        self.latency = _Latency()
        self.registry.register(_HotCollector(self))
        self.registry.register(StateCollector(services))

    def count_attempt(self, service: str, tier: str, outcome: str, elapsed: float) -> None:
        self.attempts.inc((service, tier, outcome))
        self.latency.observe((service, tier), elapsed)

    def count_skipped(self, service: str, tier: str, reason: str, cause: str) -> None:
        self.skipped.inc((service, tier, reason, cause))

    def count_served(self, service: str, tier: str) -> None:
        self.served.inc((service, tier))

    def render(self) -> tuple[bytes, bytes]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
