"""The gateway's Prometheus metrics: attempts per tier and outcome, skips per tier and cause, answers per tier,
latency per tier, plus the state gauges (gateway/status.py). Label children are cached, so the hot path never
builds a label tuple twice."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from gateway.status import StateCollector

LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
)  # fmt: skip
"""Seconds; the first bucket is 50 us, so a cache hit or the gateway's own overhead does not all land in one bucket
(attempts are timed with time.perf_counter)."""


class GatewayMetrics:
    def __init__(self, services: dict[str, Any]) -> None:
        self.registry = CollectorRegistry()
        self.attempts = Counter(
            "governor_gateway_tier_attempts",
            "Requests tried on a tier, by outcome",
            ["service", "tier", "outcome"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "governor_gateway_tier_skipped",
            "Requests a tier did not try, by why (breaker_open, deadline) and the failure cause behind it",
            ["service", "tier", "reason", "cause"],
            registry=self.registry,
        )
        self.served = Counter(
            "governor_gateway_responses",
            "Responses by the tier that served them",
            ["service", "tier"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "governor_gateway_tier_latency_seconds",
            "Time to an answer (or failure) per tier attempt",
            ["service", "tier"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.registry.register(StateCollector(services))
        self._attempt_children: dict[tuple[str, str, str], Any] = {}
        self._skipped_children: dict[tuple[str, str, str, str], Any] = {}
        self._served_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}

    def count_attempt(self, service: str, tier: str, outcome: str, elapsed: float) -> None:
        key = (service, tier, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.attempts.labels(service, tier, outcome)
        child.inc()
        lkey = (service, tier)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.latency.labels(service, tier)
        hist.observe(elapsed)

    def count_skipped(self, service: str, tier: str, reason: str, cause: str) -> None:
        key = (service, tier, reason, cause)
        child = self._skipped_children.get(key)
        if child is None:
            child = self._skipped_children[key] = self.skipped.labels(service, tier, reason, cause)
        child.inc()

    def count_served(self, service: str, tier: str) -> None:
        key = (service, tier)
        child = self._served_children.get(key)
        if child is None:
            child = self._served_children[key] = self.served.labels(service, tier)
        child.inc()

    def render(self) -> tuple[bytes, bytes]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
