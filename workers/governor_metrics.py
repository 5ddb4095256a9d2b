"""The governor's own metrics on the worker's Prometheus endpoint (beside the Temporal SDK's).

Gauges come from a collector that reads Temporal's visibility every `every_s`: open incidents by service, phase,
tier and severity; pending approvals and the oldest one's age (from the incidents' `state` query, asked only of
those awaiting an approval). Counters come from the workflows themselves through `workflow.metric_meter()`, which
the SDK keeps replay-safe: `governor_rollbacks_total`, `governor_notification_sla_missed_total`.

Every label set once seen is set to 0 when it disappears, so a closed incident's series reads 0 instead of freezing
at its last value. `governor_metrics_collected` is 1 after each successful collection (the alert rule
`GovernorWorkerMetricsAbsent` fires when no worker reports it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import structlog
from temporalio.common import MetricMeter

from governor.client import GovernorClient, GovernorError, IncidentSummary

log = structlog.get_logger("governor.metrics")

MAX_STATE_QUERIES = 100
"""At most this many `state` queries per collection (incidents awaiting an approval, newest first)."""


class GaugeSet:
    """A gauge whose label sets are all rewritten on every collection: those not seen this time go to 0."""

    def __init__(self, meter: MetricMeter, name: str, description: str, *, floating: bool = False) -> None:
        self.floating = floating
        self.gauge = (meter.create_gauge_float if floating else meter.create_gauge)(name, description, None)
        self.seen: set[tuple[tuple[str, str], ...]] = set()

    def publish(self, values: dict[tuple[tuple[str, str], ...], float]) -> None:
        for labels in self.seen - values.keys():
            self.gauge.set(0, dict(labels))  # type: ignore[arg-type]
        for labels, value in values.items():
            self.gauge.set(value if self.floating else int(value), dict(labels))  # type: ignore[arg-type]
        self.seen |= values.keys()


def incident_counts(incidents: list[IncidentSummary]) -> dict[tuple[tuple[str, str], ...], float]:
    """Open incidents per (service, phase, tier, severity)."""
    counts = Counter(
        (
            ("service", i.service or ""),
            ("phase", i.phase.value if i.phase else ""),
            ("tier", i.tier.value if i.tier else ""),
            ("severity", i.severity.value if i.severity else ""),
        )
        for i in incidents
    )
    return {k: float(v) for k, v in counts.items()}


class GovernorMetrics:
    """Collects the gauges from Temporal; `run()` until cancelled."""

    def __init__(self, governor: GovernorClient, meter: MetricMeter, every_s: float = 15.0) -> None:
        self.governor = governor
        self.every_s = every_s
        self.open = GaugeSet(meter, "governor_incidents_open", "Open incidents by service, phase, tier and severity")
        self.pending = GaugeSet(meter, "governor_approvals_pending", "Approval gates waiting for on-call, per service")
        self.waiting = GaugeSet(
            meter, "governor_approval_wait_seconds", "Age of the oldest pending approval, per service", floating=True
        )
        self.collected = meter.create_gauge("governor_metrics_collected", "1 after each successful collection", None)

    async def collect_once(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        incidents = await self.governor.list_incidents(limit=None)
        self.open.publish(incident_counts(incidents))
        pending: Counter[tuple[tuple[str, str], ...]] = Counter()
        oldest: dict[tuple[tuple[str, str], ...], float] = {}
        awaiting = [i for i in incidents if i.awaiting_approval]
        for summary in awaiting[:MAX_STATE_QUERIES]:
            try:
                state = await self.governor.state(summary.incident_id)
            except GovernorError as err:  # a closing incident, or no worker for its queue: counted next time
                log.info("metrics_state_query_failed", incident_id=summary.incident_id, error=str(err))
                continue
            key = (("service", state.service),)
            for gate in state.pending_gates:
                pending[key] += 1
                oldest[key] = max(oldest.get(key, 0.0), (now - gate.requested_at).total_seconds())
        for service in {i.service or "" for i in incidents}:
            pending.setdefault((("service", service),), 0)
            oldest.setdefault((("service", service),), 0.0)
        self.pending.publish({k: float(v) for k, v in pending.items()})
        self.waiting.publish(oldest)
        self.collected.set(1)

    async def run(self) -> None:
        while True:
            try:
                await self.collect_once()
            except GovernorError as err:
                self.collected.set(0)
                log.warning("metrics_collection_failed", error=str(err))
            await asyncio.sleep(self.every_s)
