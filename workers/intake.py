"""The failure intake: an HTTP server that turns Alertmanager webhooks and plain JSON reports into incidents.

    POST /v1/alertmanager   Alertmanager webhook (payload version 4): each firing alert -> report_failure
    POST /v1/reports        one IncidentReport as JSON: {"service", "dependency", "failure_type"?, "severity"?, ...}
    GET  /healthz

Every report goes to `GovernorClient.report_failure` (signal-with-start: a storm joins the open incident). Repeats
are answered from a dedup cache without touching Temporal: an alert is the same while its fingerprint and start time
are; a plain report is the same while its `dedup_key` is (default: service, dependency, failure type and source)
within `GOVERNOR_INTAKE_DEDUP_S`. Bad payloads get a 4xx whose body names the field. When Temporal is unreachable the
answer is 503, so Alertmanager retries. Optional bearer token: GOVERNOR_INTAKE_TOKEN.

Run: `python -m workers.intake` (GOVERNOR_INTAKE_HOST / _PORT, default 127.0.0.1:9095).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.alerts import AlertError, AlertmanagerWebhook, reports_from_webhook
from governor.client import GovernorClient, GovernorError, Reported
from governor.incident import IncidentReport
from governor.logging import configure_logging
from governor.policy import ServicePolicy, load_policy_dir
from governor.settings import TemporalSettings, WorkerSettings

log = structlog.get_logger("governor.intake")

Reporter = Callable[[IncidentReport], Awaitable[Reported]]
MAX_BODY_BYTES = 1 << 20


class IntakeSettings(BaseSettings):
    """GOVERNOR_INTAKE_HOST, _PORT, _TOKEN, _DEDUP_S."""

    model_config = SettingsConfigDict(env_prefix="GOVERNOR_INTAKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9095
    token: str | None = None
    dedup_s: float = Field(default=300.0, gt=0)


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BadPayload(Exception):
    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


def _field_of(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"]).replace(".[", "[")
    return path or "body", first["msg"]


@dataclass
class _Seen:
    expires: float
    reported: Reported | None  # None while the first report is still in flight


class DedupCache:
    """Keys seen recently; a key in flight is shared, so a burst of identical alerts makes one Temporal call."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._inflight: dict[str, asyncio.Future[Reported]] = {}

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, v in self._seen.items() if v.expires <= now]:
            del self._seen[key]

    async def once(self, key: str, call: Callable[[], Awaitable[Reported]]) -> tuple[Reported, bool]:
        """(the report's answer, whether it was a duplicate)."""
        self._expire()
        seen = self._seen.get(key)
        if seen is not None and seen.reported is not None:
            return seen.reported, True
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[Reported] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            reported = await call()
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: followers re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(reported)
        self._seen[key] = _Seen(expires=self.clock() + self.ttl_s, reported=reported)
        return reported, False


def default_dedup_key(report: IncidentReport) -> str:
    ftype = report.failure_type.value if report.failure_type else "-"
    return f"report:{report.service}:{report.dependency}:{ftype}:{report.source}"


class Intake:
    """The aiohttp application; `reporter` is `GovernorClient.report_failure` in production."""

    def __init__(
        self,
        reporter: Reporter,
        policies: dict[str, ServicePolicy] | None = None,
        token: str | None = None,
        dedup_s: float = 300.0,
    ) -> None:
        self.reporter = reporter
        self.policies = policies
        self.token = token
        self.dedup = DedupCache(dedup_s)
        self.counts = {"received": 0, "reported": 0, "duplicates": 0, "refused": 0, "resolved_skipped": 0}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._errors])
        app.router.add_post("/v1/alertmanager", self.alertmanager)
        app.router.add_post("/v1/reports", self.plain_report)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        try:
            if request.path != "/healthz":
                self._authorize(request)
            return await handler(request)
        except BadPayload as err:
            self.counts["refused"] += 1
            log.warning("intake_refused", path=request.path, field=err.field, error=err.message)
            return web.json_response({"error": {"field": err.field, "message": err.message}}, status=err.status)
        except GovernorError as err:
            log.error("intake_temporal_unavailable", path=request.path, error=str(err))
            return web.json_response(
                {"error": {"field": None, "message": f"cannot reach the governor: {err}"}},
                status=503,
                headers={"Retry-After": "5"},
            )

    def _authorize(self, request: web.Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise BadPayload("Authorization", "missing or wrong bearer token", status=401)

    async def _json(self, request: web.Request) -> Any:
        if request.content_type not in {"application/json", ""} and not request.content_type.endswith("+json"):
            raise BadPayload("Content-Type", f"must be application/json, got {request.content_type}", status=415)
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError as err:
            raise BadPayload("body", f"not valid JSON ({err})", status=400) from None

    def _check_known(self, report: IncidentReport, where: str) -> None:
        if self.policies is None:
            return
        policy = self.policies.get(report.service)
        if policy is None:
            known = ", ".join(sorted(self.policies)) or "none"
            raise BadPayload(f"{where}service", f"unknown service {report.service!r} (known: {known})")
        if report.dependency not in {d.name for d in policy.dependencies}:
            names = ", ".join(d.name for d in policy.dependencies)
            raise BadPayload(
                f"{where}dependency", f"service {report.service!r} has no dependency {report.dependency!r} ({names})"
            )

    async def _report(self, report: IncidentReport) -> dict[str, Any]:
        key = report.dedup_key or default_dedup_key(report)
        reported, duplicate = await self.dedup.once(key, lambda: self.reporter(report))
        self.counts["duplicates" if duplicate else "reported"] += 1
        log.info(
            "intake_report",
            incident_id=reported.incident_id,
            duplicate=duplicate,
            source=report.source,
            failure_type=report.failure_type.value if report.failure_type else None,
        )
        return {
            "incident_id": reported.incident_id,
            "started": reported.started,
            "duplicate": duplicate,
            "dedup_key": key,
        }

    async def alertmanager(self, request: web.Request) -> web.Response:
        self.counts["received"] += 1
        data = await self._json(request)
        try:
            payload = AlertmanagerWebhook.model_validate(data)
        except ValidationError as err:
            field, msg = _field_of(err)
            raise BadPayload(field, msg) from None
        try:
            reports = reports_from_webhook(payload)
        except AlertError as err:
            raise BadPayload(err.field, err.message) from None
        for i, report in enumerate(reports):
            self._check_known(report, f"alerts[{i}].labels.")
        skipped = sum(1 for a in payload.alerts if a.status != "firing")
        self.counts["resolved_skipped"] += skipped
        results = [await self._report(r) for r in reports]
        return web.json_response({"reports": results, "skipped_resolved": skipped}, status=202)

    async def plain_report(self, request: web.Request) -> web.Response:
        self.counts["received"] += 1
        data = await self._json(request)
        if not isinstance(data, dict):
            raise BadPayload("body", f"must be a JSON object, got {type(data).__name__}")
        data.setdefault("source", "client")
        try:
            report = IncidentReport.model_validate(data)
        except ValidationError as err:
            field, msg = _field_of(err)
            raise BadPayload(field, msg) from None
        self._check_known(report, "")
        if report.manual and self.token is None:  # a manual failover moves traffic off a healthy primary
            raise BadPayload("manual", "a manual failover needs an intake with a token (GOVERNOR_INTAKE_TOKEN)", 403)
        return web.json_response(await self._report(report), status=202)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self.counts})


@dataclass
class RunningIntake:
    intake: Intake
    url: str
    port: int


@contextlib.asynccontextmanager
async def run_intake(
    reporter: Reporter,
    host: str = "127.0.0.1",
    port: int = 0,
    policies: dict[str, ServicePolicy] | None = None,
    token: str | None = None,
    dedup_s: float = 300.0,
) -> AsyncIterator[RunningIntake]:
    """Serve the intake in this event loop (tests, the embedded stack); port 0 picks a free port."""
    intake = Intake(reporter, policies=policies, token=token, dedup_s=dedup_s)
    runner = web.AppRunner(intake.app(), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield RunningIntake(intake=intake, url=f"http://{host}:{bound}", port=bound)
    finally:
        await runner.cleanup()


async def main() -> None:
    settings = IntakeSettings()
    if not settings.token and not is_loopback(settings.host):
        raise SystemExit(f"GOVERNOR_INTAKE_TOKEN must be set when the intake listens beyond loopback ({settings.host})")
    worker = WorkerSettings()
    configure_logging(worker.log_format, worker.log_level)
    policies = load_policy_dir(worker.policy_dir)
    governor = await GovernorClient.connect(TemporalSettings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_intake(
        governor.report_failure,
        settings.host,
        settings.port,
        policies=policies,
        token=settings.token,
        dedup_s=settings.dedup_s,
    ) as running:
        log.info("intake_started", url=running.url, services=sorted(policies), auth=settings.token is not None)
        await stop.wait()
    log.info("intake_stopped")


if __name__ == "__main__":
    asyncio.run(main())
