"""The failure intake: an HTTP server that turns Alertmanager webhooks and plain JSON reports into incidents.

    POST /v1/alertmanager   Alertmanager webhook (payload version 4): each firing alert -> report_failure
    POST /v1/reports        one IncidentReport as JSON: {"service", "dependency", "failure_type"?, "severity"?, ...}
    POST /v1/slack/interactions   Slack's Approve / Reject buttons (workers/slack_actions.py), when
                            GOVERNOR_INTAKE_SLACK_SIGNING_SECRET is set; authenticated by Slack's signature
    GET  /healthz

Every report reaches `GovernorClient.report_failure` (signal-with-start: a storm joins the open incident, a report
after it closed opens the next one). Reports for one incident that arrive together are coalesced into one signal
(`Coalescer`), and each is answered 202 only after Temporal accepted that signal. `duplicate: true` says the same
report (an alert while its fingerprint and start time are the same; a plain report while its `dedup_key` is, default:
service, dependency, failure type and source) already reached the same incident run within `GOVERNOR_INTAKE_DEDUP_S`.
Bad payloads get a 4xx whose body names the field. When Temporal is unreachable, or more than
`GOVERNOR_INTAKE_MAX_PENDING` reports wait for it, the answer is 503 with Retry-After, so Alertmanager retries.
Optional bearer token: GOVERNOR_INTAKE_TOKEN.

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from governor.alerts import AlertError, AlertmanagerWebhook, reports_from_webhook
from governor.client import GovernorClient, GovernorError, GovernorUnavailable, Reported
from governor.incident import MAX_COALESCED_DISTINCT, IncidentReport, incident_id
from governor.logging import configure_logging
from governor.policy import ServicePolicy, load_policy_dir
from governor.settings import TemporalSettings, WorkerSettings
from workers.slack_actions import SLACK_PATH, SlackActions

log = structlog.get_logger("governor.intake")

Reporter = Callable[[IncidentReport], Awaitable[Reported]]
MAX_BODY_BYTES = 1 << 20


class IntakeSettings(BaseSettings):
    """GOVERNOR_INTAKE_HOST, _PORT, _TOKEN, _DEDUP_S, _COALESCE_MS, _MAX_PENDING, _SLACK_SIGNING_SECRET."""

    model_config = SettingsConfigDict(env_prefix="GOVERNOR_INTAKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9095
    token: str | None = None
    dedup_s: float = Field(default=300.0, gt=0)
    """How long a delivered report's key is remembered, to answer `duplicate: true` for repeats to the same run."""
    coalesce_ms: float = Field(default=20.0, ge=0, le=1000)
    """Reports for one incident within this window (or while its last signal is in flight) become one signal."""
    max_pending: int = Field(default=10_000, gt=0)
    """Reports waiting for Temporal beyond this are refused with 503 and Retry-After."""
    slack_signing_secret: str | None = None
    """The Slack app's signing secret: set, the intake serves the app's Interactivity Request URL."""


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


class Overloaded(Exception):
    """More reports are waiting for Temporal than the intake holds; the client should retry after a moment."""


@dataclass
class _Waiting:
    report: IncidentReport
    key: str
    answer: asyncio.Future[tuple[Reported, bool]]


class Coalescer:
    """One signal per incident per flush: reports for the same incident that arrive within `window_s` of each other,
    or while the previous signal is still in flight, go to Temporal together as one signal-with-start (the first
    distinct report carries the others in `also` and the total in `coalesced`). Every report is answered only after
    Temporal accepted the signal that carries it, so an answered report is never lost; when Temporal fails, every
    report of that signal gets the error (503). At most `max_pending` reports wait (queued or in flight): beyond that, `Overloaded`.

    Dedup is bound to the incident's run: a report is a duplicate when the same key already reached the same run
    (earlier in this signal, or in an earlier one). A report after the incident closed reaches Temporal like any other
    and opens the next incident; it is never answered from a cache.
    """

    def __init__(
        self,
        reporter: Reporter,
        window_s: float = 0.02,
        max_pending: int = 10_000,
        remember_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reporter = reporter
        self.window_s = window_s
        self.max_pending = max_pending
        self.remember_s = remember_s
        self.clock = clock
        self.pending = 0
        self.signals = 0
        self._queues: dict[str, list[_Waiting]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._delivered: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        """dedup key -> (run id it reached, when); oldest first, forgotten after `remember_s`."""

    async def submit(self, report: IncidentReport, key: str) -> tuple[Reported, bool]:
        """(the incident the report reached, whether the same key had already reached that run)."""
        if self.pending >= self.max_pending:
            raise Overloaded(f"{self.pending} reports are waiting for Temporal")
        wid = incident_id(report.service)
        answer: asyncio.Future[tuple[Reported, bool]] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(wid, []).append(_Waiting(report, key, answer))
        self.pending += 1
        if wid not in self._flushers:
            self._flushers[wid] = asyncio.create_task(self._flush(wid), name=f"intake-flush-{wid}")
        return await asyncio.shield(answer)  # a client hanging up must not cancel the others' signal

    async def _flush(self, wid: str) -> None:
        batch: list[_Waiting] = []
        try:
            await asyncio.sleep(self.window_s)
            while batch := self._queues.pop(wid, []):
                try:
                    for chunk in _chunks(batch):
                        await self._send(chunk)  # a failed chunk answers its own reports; the next still goes
                finally:
                    self.pending -= len(batch)  # counted until answered: the bound covers reports in flight too
        finally:
            self._flushers.pop(wid, None)
            # cancelled (the intake is stopping): whoever still waits hears so, nobody hangs
            for waiting in [*batch, *self._queues.pop(wid, [])]:
                if not waiting.answer.done():
                    waiting.answer.set_exception(GovernorUnavailable("the intake stopped before Temporal answered"))
                    waiting.answer.exception()

    async def _send(self, batch: list[_Waiting]) -> None:
        distinct: dict[str, _Waiting] = {}
        for waiting in batch:
            distinct.setdefault(waiting.key, waiting)
        head, *others = [w.report for w in distinct.values()]
        signal = head.model_copy(update={"coalesced": len(batch), "also": others})
        try:
            reported = await self.reporter(signal)
        except Exception as err:
            log.warning("intake_signal_failed", incident_id=incident_id(head.service), error=str(err))
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(err)
                    waiting.answer.exception()  # retrieved here: the handler re-raises it, nobody logs it as lost
            return
        finally:
            self.signals += 1
        now = self.clock()
        self._forget(now)
        seen_here: set[str] = set()
        for i, waiting in enumerate(batch):
            before = self._delivered.get(waiting.key)
            duplicate = waiting.key in seen_here or (
                before is not None and reported.run_id is not None and before[0] == reported.run_id
            )
            seen_here.add(waiting.key)
            answer = reported if i == 0 else reported.model_copy(update={"started": False})
            if not waiting.answer.done():
                waiting.answer.set_result((answer, duplicate))
        for key in distinct:
            self._delivered.pop(key, None)
            self._delivered[key] = (reported.run_id, now)

    def _forget(self, now: float) -> None:
        while self._delivered:
            key, (_, at) = next(iter(self._delivered.items()))
            if now - at < self.remember_s and len(self._delivered) < 100_000:
                return
            del self._delivered[key]


MAX_SIGNAL_BYTES = 256 * 1024
"""Distinct reports one signal carries add up to at most this (Temporal refuses payloads over 2 MB)."""


def _chunks(batch: list[_Waiting]) -> list[list[_Waiting]]:
    """Split a batch so that no signal carries more than MAX_COALESCED_DISTINCT distinct reports or
    MAX_SIGNAL_BYTES of them; repeats of a key ride with its first occurrence."""
    chunks: list[list[_Waiting]] = []
    where: dict[str, int] = {}
    count = size = 0
    for waiting in batch:
        i = where.get(waiting.key)
        if i is None:
            nbytes = len(waiting.report.message) + len(waiting.key) + 64 * (1 + len(waiting.report.metrics)) + 256
            if not chunks or count >= MAX_COALESCED_DISTINCT or (count and size + nbytes > MAX_SIGNAL_BYTES):
                chunks.append([])
                count = size = 0
            count += 1
            size += nbytes
            i = where[waiting.key] = len(chunks) - 1
        chunks[i].append(waiting)
    return chunks


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
        coalesce_s: float = 0.02,
        max_pending: int = 10_000,
        slack: SlackActions | None = None,
    ) -> None:
        self.reporter = reporter
        self.policies = policies
        self.token = token
        self.slack = slack
        self.coalescer = Coalescer(reporter, window_s=coalesce_s, max_pending=max_pending, remember_s=dedup_s)
        self.counts = {
            "received": 0,
            "reported": 0,
            "duplicates": 0,
            "refused": 0,
            "resolved_skipped": 0,
            "overloaded": 0,
        }

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._errors])
        app.router.add_post("/v1/alertmanager", self.alertmanager)
        app.router.add_post("/v1/reports", self.plain_report)
        app.router.add_get("/healthz", self.healthz)
        if self.slack is not None:
            app.router.add_post(SLACK_PATH, self.slack.handle)
            app.on_cleanup.append(self._drain_slack)
        return app

    async def _drain_slack(self, app: web.Application) -> None:
        if self.slack is not None:  # decisions already acknowledged to Slack still get their answer
            await self.slack.drain()

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Any:
        try:
            if request.path not in {"/healthz", SLACK_PATH}:  # Slack signs its requests; it sends no bearer token
                self._authorize(request)
            return await handler(request)
        except BadPayload as err:
            self.counts["refused"] += 1
            log.warning("intake_refused", path=request.path, field=err.field, error=err.message)
            return web.json_response({"error": {"field": err.field, "message": err.message}}, status=err.status)
        except Overloaded as err:
            self.counts["overloaded"] += 1
            log.warning("intake_overloaded", path=request.path, error=str(err))
            return web.json_response(
                {"error": {"field": None, "message": f"the intake is full ({err}); retry shortly"}},
                status=503,
                headers={"Retry-After": "1"},
            )
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
        reported, duplicate = await self.coalescer.submit(report, key)
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
            "run_id": reported.run_id,
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
        results = list(await asyncio.gather(*(self._report(r) for r in reports)))
        return web.json_response({"reports": results, "skipped_resolved": skipped}, status=202)

    async def plain_report(self, request: web.Request) -> web.Response:
        self.counts["received"] += 1
        data = await self._json(request)
        if not isinstance(data, dict):
            raise BadPayload("body", f"must be a JSON object, got {type(data).__name__}")
        data.setdefault("source", "client")
        for field, default in (("coalesced", 1), ("also", [])):
            if data.get(field, default) != default:
                raise BadPayload(field, "is set by the intake when it merges reports, not by the sender")
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
        slack = {"slack": self.slack.counts} if self.slack is not None else {}
        return web.json_response(
            {
                "status": "ok",
                **self.counts,
                "pending": self.coalescer.pending,
                "signals": self.coalescer.signals,
                **slack,
            }
        )


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
    coalesce_s: float = 0.02,
    max_pending: int = 10_000,
    slack: SlackActions | None = None,
) -> AsyncIterator[RunningIntake]:
    """Serve the intake in this event loop (tests, the embedded stack); port 0 picks a free port."""
    intake = Intake(
        reporter,
        policies=policies,
        token=token,
        dedup_s=dedup_s,
        coalesce_s=coalesce_s,
        max_pending=max_pending,
        slack=slack,
    )
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
    secret = settings.slack_signing_secret
    slack = SlackActions(secret, policies, governor) if secret else None
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
        coalesce_s=settings.coalesce_ms / 1000,
        max_pending=settings.max_pending,
        slack=slack,
    ) as running:
        log.info(
            "intake_started",
            url=running.url,
            services=sorted(policies),
            auth=settings.token is not None,
            slack_approvals=slack is not None,
        )
        await stop.wait()
    log.info("intake_stopped")


if __name__ == "__main__":
    asyncio.run(main())
