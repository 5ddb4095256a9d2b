"""The worker process: runs the recovery and watchdog workflows and every activity on one task queue.

Settings come from the environment (governor.settings); logs are structlog JSON carrying the incident id;
Temporal's SDK metrics are served for Prometheus on GOVERNOR_METRICS_HOST:GOVERNOR_METRICS_PORT
(127.0.0.1:9464 unless configured); SIGINT/SIGTERM shut down cleanly.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any

import httpx
import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from governor.client import GovernorClient, connect
from governor.logging import configure_logging
from governor.settings import TemporalSettings, WorkerSettings
from workers.governor_metrics import GovernorMetrics

log = structlog.get_logger("governor.worker")


def workflow_classes() -> list[type]:
    from workflows.recovery import IncidentRecoveryWorkflow
    from workflows.watchdog import WatchdogWorkflow

    return [IncidentRecoveryWorkflow, WatchdogWorkflow]


def activity_functions(http: httpx.AsyncClient, settings: WorkerSettings, client: Client) -> list[Any]:
    """Every activity, built once with its dependencies."""
    from activities.drills import DrillActivities
    from activities.notify import NotificationActivities
    from activities.recovery import RecoveryActivities
    from activities.watch import WatchActivities

    return [
        *RecoveryActivities(http, settings).all(),
        NotificationActivities(http, settings).notify,
        DrillActivities(http).drill_fault,
        *_activity_methods(WatchActivities(http, settings, client)),
    ]


def _activity_methods(obj: object) -> list[Any]:
    return [
        getattr(obj, name)
        for name in dir(obj)
        if not name.startswith("_") and hasattr(getattr(obj, name), "__temporal_activity_definition")
    ]


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Any],
    workflows: Sequence[type] | None = None,
    nonsticky_poll_ratio: float = WorkerSettings.model_fields["nonsticky_poll_ratio"].default,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows or workflow_classes()),
        activities=list(activities),
        max_concurrent_activities=200,
        nonsticky_to_sticky_poll_ratio=nonsticky_poll_ratio,
    )


async def run_worker(temporal: TemporalSettings, settings: WorkerSettings, stop: asyncio.Event) -> None:
    runtime = None
    if settings.metrics_port:
        # Prometheus conventions: counters end in _total, units in the name, durations in seconds.
        metrics = PrometheusConfig(
            bind_address=f"{settings.metrics_host}:{settings.metrics_port}",
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
        runtime = Runtime(telemetry=TelemetryConfig(metrics=metrics))
    if not settings.gateway_token:
        log.warning("gateway_token_unset", detail="GOVERNOR_GATEWAY_TOKEN unset: the gateways will refuse every change")
    client = await connect(temporal, runtime=runtime)
    async with httpx.AsyncClient(timeout=settings.http_timeout_s) as http:
        worker = build_worker(
            client,
            temporal.task_queue,
            activity_functions(http, settings, client),
            nonsticky_poll_ratio=settings.nonsticky_poll_ratio,
        )
        log.info(
            "worker_started",
            address=temporal.address,
            namespace=temporal.namespace,
            task_queue=temporal.task_queue,
            policy_dir=str(settings.policy_dir),
            metrics=f"{settings.metrics_host}:{settings.metrics_port}" if settings.metrics_port else None,
        )
        collector = None
        if runtime is not None:  # the governor's own gauges on the same endpoint (workers/governor_metrics.py)
            governor = GovernorClient(client, task_queue=temporal.task_queue)
            collector = asyncio.create_task(GovernorMetrics(governor, runtime.metric_meter).run())
        async with worker:
            await stop.wait()
            if collector is not None:
                collector.cancel()
            log.info("worker_stopping", reason="signal")
    log.info("worker_stopped")


async def main() -> None:
    settings = WorkerSettings()
    configure_logging(settings.log_format, settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_worker(TemporalSettings(), settings, stop)


if __name__ == "__main__":
    asyncio.run(main())
