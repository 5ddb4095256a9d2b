"""The notify activity and its channels against real HTTP and SMTP servers on 127.0.0.1 that record what they get.

Each payload is checked against the receiving service's documented shape (PagerDuty Events API v2, Slack Block Kit
limits, CloudEvents 1.0 structured mode with its HMAC signature, RFC 5322 mail headers), and the retry design is
checked end to end: a retried activity never sends twice to a channel that already took the notification.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import hashlib
import hmac
import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import Envelope, Session
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import NotificationActivities, NotifyProgress
from activities.notify.slack import slack_message
from governor.actions import NotifyInput, NotifyResult
from governor.enums import NotificationAudience, Severity
from governor.policy import ChannelSpec, Notifications

# ---------------------------------------------------------------------------------------------------------------------
# Recording servers


@dataclasses.dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    """An aiohttp server that records every request and answers from a per-path script (default 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, list[tuple[int, dict[str, str], str]]] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""
        self.gates: dict[str, asyncio.Event] = {}
        """Requests to these paths are answered only once the event is set."""

    def script(self, path: str, *responses: int | tuple[int, dict[str, str], str]) -> None:
        """Answer the next requests to `path` with these statuses (or (status, headers, body)), then 200."""
        self._scripts[path] = [r if isinstance(r, tuple) else (r, {}, "") for r in responses]

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def url(self, path: str) -> str:
        return self.base + path

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, dict(request.headers), await request.read()))
        if request.path in self.gates:
            await self.gates[request.path].wait()
        queue = self._scripts.get(request.path)
        status, headers, body = queue.pop(0) if queue else (200, {}, "ok")
        return web.Response(status=status, headers=headers, text=body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for gate in self.gates.values():  # release any request still held, so shutdown never waits on it
            gate.set()
        if self._runner:
            await self._runner.cleanup()


class MailRecorder:
    """aiosmtpd handler: keeps every message it accepts; `reject` answers RCPT with an SMTP code first."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, email.message.EmailMessage]] = []
        self.reject: list[str] = []

    async def handle_RCPT(
        self, server: SMTPProtocol, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.reject:
            return self.reject.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        self.messages.append((envelope, msg))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = Recorder()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[str, MailRecorder]]:
    """A real SMTP server (aiosmtpd's protocol) on an ephemeral port in the test's event loop."""
    handler = MailRecorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTPProtocol(handler, hostname="mx.test"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"smtp://127.0.0.1:{port}", handler
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def notify_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        yield client


@pytest.fixture
def activities(notify_http: httpx.AsyncClient) -> NotificationActivities:
    return NotificationActivities(notify_http, gateway_token="gw-token", backoff_s=0.01, max_backoff_s=0.5)


def closed_port() -> int:
    """A port nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------------------
# Running the activity as Temporal would, attempt by attempt


class Attempts:
    """Runs `notify` in an ActivityEnvironment per attempt, carrying the last heartbeat into the next attempt."""

    def __init__(
        self,
        activities: NotificationActivities,
        maximum_attempts: int = 3,
        heartbeat_timeout: timedelta | None = None,
        on_heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.activities = activities
        self.maximum_attempts = maximum_attempts
        self.heartbeat_timeout = heartbeat_timeout
        self.on_heartbeat = on_heartbeat
        self.attempt = 0
        self.heartbeats: list[Sequence[Any]] = []

    def _beat(self, *details: Any) -> None:
        self.heartbeats.append(details)
        self.on_heartbeat()

    async def run(self, input: NotifyInput) -> NotifyResult:
        self.attempt += 1
        env = ActivityEnvironment()
        now = datetime.now(UTC)
        env.info = dataclasses.replace(
            env.info,
            activity_type="notify",
            attempt=self.attempt,
            heartbeat_details=list(self.heartbeats[-1]) if self.heartbeats else [],
            scheduled_time=now,
            current_attempt_scheduled_time=now,
            started_time=now,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=None,
            retry_policy=RetryPolicy(maximum_attempts=self.maximum_attempts),
            heartbeat_timeout=self.heartbeat_timeout,
        )
        env.on_heartbeat = self._beat
        return await env.run(self.activities.notify, input)


def notify_input(channels: list[ChannelSpec], **overrides: Any) -> NotifyInput:
    fields: dict[str, Any] = {
        "incident_id": "recovery-chat",
        "event": "fallback_active",
        "audience": NotificationAudience.ONCALL,
        "channels": channels,
        "severity": Severity.CRITICAL,
        "title": "chat is served by tier_1_secondary",
        "message": "error_spike on primary-llm (CRITICAL): 12% errors. Serving from tier_1_secondary.",
        "details": {
            "service": "chat",
            "dependency": "primary-llm",
            "phase": "fallback_active",
            "tier": "tier_1_secondary",
            "degradation_level": "degraded_l1",
        },
    }
    fields.update(overrides)
    fields.setdefault("idempotency_key", f"{fields['incident_id']}:{fields['event']}:{fields['audience']}")
    return NotifyInput(**fields)


def webhook(url: str, **extra: Any) -> ChannelSpec:
    return ChannelSpec(type="webhook", url=url, **extra)


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# ---------------------------------------------------------------------------------------------------------------------
# Channels: payload shapes


async def test_webhook_posts_the_notification_as_json_with_its_idempotency_key(
    activities: NotificationActivities, recorder: Recorder
) -> None:
    input = notify_input([webhook(recorder.url("/hook"))])

    result = await Attempts(activities).run(input)

    assert result.ok, result
    [delivery] = result.deliveries
    assert (delivery.channel, delivery.status_code, delivery.attempts) == ("webhook", 200, 1)
    assert delivery.target == recorder.base + "/…" and delivery.delivered_at is not None
    [got] = recorder.at("/hook")
    assert got.method == "POST" and got.headers["Content-Type"] == "application/json"
    assert got.headers["Idempotency-Key"] == "recovery-chat:fallback_active:oncall"
    assert got.headers["X-Governor-Incident"] == "recovery-chat"
    body = got.json()
    assert body["idempotency_key"] == got.headers["Idempotency-Key"] == body["id"]
    assert (body["incident_id"], body["event"], body["audience"], body["severity"]) == (
        "recovery-chat",
        "fallback_active",
        "oncall",
        "CRITICAL",
    )
    assert body["details"]["tier"] == "tier_1_secondary" and body["sla_minutes"] == 0
    # Standard Webhooks: the id (the idempotency key) and the send time always, the signature only with secret_env
    assert got.headers["webhook-id"] == got.headers["Idempotency-Key"]
    assert abs(int(got.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 5
    assert "webhook-signature" not in got.headers and "X-Governor-Signature" not in got.headers


async def test_pagerduty_trigger_then_resolve_follow_events_api_v2(
    activities: NotificationActivities, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PD_ROUTING_KEY", "R0UT1NGKEY0000000000000000000000")
    recorder.script("/v2/enqueue", (202, {"Content-Type": "application/json"}, '{"status":"success"}'))
    spec = ChannelSpec(type="pagerduty", url=recorder.url("/v2/enqueue"), secret_env="TEST_PD_ROUTING_KEY")

    trigger = await Attempts(activities).run(notify_input([spec], title="x" * 2000))
    resolve = await Attempts(activities).run(notify_input([spec], event="resolved", severity=None))

    assert trigger.ok and resolve.ok
    assert trigger.deliveries[0].status_code == 202
    first, second = (r.json() for r in recorder.at("/v2/enqueue"))
    # trigger: routing_key, event_action, dedup_key, payload.summary/source/severity are required
    assert first["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    assert first["event_action"] == "trigger"
    assert first["dedup_key"] == "recovery-chat"
    payload = first["payload"]
    assert len(payload["summary"]) <= 1024 and payload["summary"].startswith("xxx")
    assert payload["source"] == "fallback-governor/chat"
    assert payload["severity"] == "critical"
    assert RFC3339.match(payload["timestamp"])
    assert payload["component"] == "primary-llm" and payload["group"] == "chat"
    assert payload["custom_details"]["idempotency_key"] == "recovery-chat:fallback_active:oncall"
    # resolve: the same dedup_key closes the same alert; no payload needed
    assert second == {
        "routing_key": "R0UT1NGKEY0000000000000000000000",
        "event_action": "resolve",
        "dedup_key": "recovery-chat",
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.CRITICAL, "critical"), (Severity.HIGH, "error"), (Severity.MEDIUM, "warning"), (Severity.LOW, "info")],
)
async def test_pagerduty_severity_follows_the_incident_severity(
    activities: NotificationActivities, recorder: Recorder, severity: Severity, expected: str
) -> None:
    spec = ChannelSpec(type="pagerduty", url=recorder.url("/v2/enqueue"), routing_key="inline-key")

    result = await Attempts(activities).run(notify_input([spec], severity=severity))

    assert result.ok
    [got] = recorder.received
    assert got.json()["payload"]["severity"] == expected and got.json()["routing_key"] == "inline-key"


def check_slack_limits(message: dict[str, Any]) -> None:
    """Slack's documented Block Kit limits for the blocks we use."""
    assert isinstance(message["text"], str) and message["text"]  # the notification fallback
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "context", "actions", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(f["type"] in {"mrkdwn", "plain_text"} and 1 <= len(f["text"]) <= 2000 for f in fields)
        if kind == "context":
            assert 1 <= len(block["elements"]) <= 10
        if kind == "actions":
            for element in block["elements"]:
                assert len(element["text"]["text"]) <= 75 and len(element["url"]) <= 3000


async def test_slack_message_is_block_kit_within_slacks_limits(
    activities: NotificationActivities, recorder: Recorder
) -> None:
    many = {f"field {i}": "v" * 5000 for i in range(15)}
    input = notify_input(
        [ChannelSpec(type="slack", url=recorder.url("/services/T000/B000/XXXX"))],
        title="chat <b>&</b> " + "t" * 400,
        message="m" * 10_000,
        details={"service": "chat", "tier": "tier_2_cache", "fields": many, "url": "http://127.0.0.1:8233/x"},
    )

    result = await Attempts(activities).run(input)

    assert result.ok and result.deliveries[0].target == recorder.base + "/…"  # the webhook path is a secret
    [got] = recorder.received
    message = got.json()
    check_slack_limits(message)
    header, section, fields = message["blocks"][:3]
    assert header["text"]["text"].startswith(":red_circle: chat <b>&</b>")  # plain_text: no escaping
    assert section["text"]["text"].startswith("mmm")
    assert fields["fields"][0]["text"] == "*Event*\nfallback_active"
    assert fields["fields"][-1]["text"].startswith("*More*")  # what did not fit is summarised, not dropped
    assert "&lt;b&gt;" not in header["text"]["text"]
    assert any(b["type"] == "actions" for b in message["blocks"])
    assert "recovery-chat:fallback_active:oncall" in json.dumps(message["blocks"][-1])


def test_slack_escapes_mrkdwn_and_never_splits_an_entity() -> None:
    message = slack_message(notify_input([], message="<&>" * 2000))
    text = message["blocks"][1]["text"]["text"]
    assert len(text) <= 3000 and text.startswith("&lt;&amp;&gt;")
    assert re.search(r"&[a-z]*…$", text) is None  # the cut lands between entities
    check_slack_limits(message)


async def test_cloudevent_is_structured_mode_and_signed(
    activities: NotificationActivities, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CE_SECRET", "s3cret")
    spec = ChannelSpec(type="cloudevents", url=recorder.url("/events"), secret_env="TEST_CE_SECRET")

    result = await Attempts(activities).run(notify_input([spec]))

    assert result.ok
    [got] = recorder.received
    assert got.headers["Content-Type"].startswith("application/cloudevents+json")
    expected = "sha256=" + hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["X-Governor-Signature"], expected)
    event = got.json()
    for attribute in ("specversion", "id", "source", "type"):  # REQUIRED context attributes
        assert isinstance(event[attribute], str) and event[attribute]
    assert event["specversion"] == "1.0"
    assert event["id"] == "recovery-chat:fallback_active:oncall" == got.headers["Idempotency-Key"]
    assert event["source"] == "/fallback-governor/services/chat"
    assert event["type"] == "dev.fallbackgovernor.incident.fallback_active"
    assert event["subject"] == "recovery-chat"
    assert RFC3339.match(event["time"]) and event["datacontenttype"] == "application/json"
    known = {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"}
    assert all(re.fullmatch(r"[a-z0-9]{1,20}", name) for name in set(event) - known)  # extension attribute names
    assert event["data"]["title"] == "chat is served by tier_1_secondary"


async def test_email_over_smtp_carries_a_message_id_derived_from_the_key(
    activities: NotificationActivities, smtp_server: tuple[str, MailRecorder]
) -> None:
    url, mailbox = smtp_server
    spec = ChannelSpec(type="email", url=url, to=["lead@example.com", "cto@example.com"], sender="gov@example.com")
    input = notify_input([spec], audience=NotificationAudience.LEADERSHIP, event="escalation", title="chat: escalation")

    result = await Attempts(activities).run(input)
    again = await Attempts(activities).run(input)  # a resend keeps the same Message-ID: receivers deduplicate

    assert result.ok and again.ok, result
    assert result.deliveries[0].target == f"{url} to lead@example.com, cto@example.com"
    (envelope, msg), (_, msg2) = mailbox.messages
    assert envelope.mail_from == "gov@example.com"
    assert envelope.rcpt_tos == ["lead@example.com", "cto@example.com"]
    assert msg["Subject"] == "[CRITICAL] chat: escalation"
    assert msg["From"] == "gov@example.com" and msg["To"] == "lead@example.com, cto@example.com"
    assert msg["Date"] and email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    key = "recovery-chat:escalation:leadership"
    assert msg["Message-ID"] == f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@example.com>"
    assert msg["Message-ID"] == msg2["Message-ID"]
    root = f"<{hashlib.sha256(b'recovery-chat').hexdigest()[:40]}@example.com>"
    assert msg["In-Reply-To"] == root and msg["References"] == root  # one thread per incident
    assert msg["X-Governor-Idempotency-Key"] == key and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert "error_spike on primary-llm" in body
    assert re.search(r"^Incident +recovery-chat\r?$", body, re.M)


async def test_email_refused_for_good_is_not_retried(
    activities: NotificationActivities, smtp_server: tuple[str, MailRecorder]
) -> None:
    url, mailbox = smtp_server
    mailbox.reject = ["550 5.1.1 no such user"]
    spec = ChannelSpec(type="email", url=url, to=["nobody@example.com"])

    result = await Attempts(activities).run(notify_input([spec]))

    [delivery] = result.deliveries
    assert not delivery.ok and not delivery.retryable and delivery.attempts == 1
    assert delivery.status_code == 550 and "no such user" in delivery.error
    assert mailbox.messages == []


# ---------------------------------------------------------------------------------------------------------------------
# Retries and idempotency


async def test_retry_sends_only_to_the_channel_that_failed(
    activities: NotificationActivities, recorder: Recorder
) -> None:
    recorder.script("/b", 503, 503, 503)  # three quick tries of attempt 1 fail, attempt 2 succeeds
    input = notify_input([webhook(recorder.url("/a")), webhook(recorder.url("/b"))])
    attempts = Attempts(activities)

    with pytest.raises(ApplicationError) as failed:
        await attempts.run(input)

    assert failed.value.type == "NotifyChannelsPending" and not failed.value.non_retryable
    assert "1 of 2 channels" in str(failed.value) and "HTTP 503" in str(failed.value)
    assert (len(recorder.at("/a")), len(recorder.at("/b"))) == (1, 3)
    progress = NotifyProgress.model_validate(attempts.heartbeats[-1][0])
    assert list(progress.done) == ["0:webhook"] and progress.tries == {"0:webhook": 1, "1:webhook": 3}

    result = await attempts.run(input)

    assert result.ok, result
    assert (len(recorder.at("/a")), len(recorder.at("/b"))) == (1, 4)  # /a was not sent again
    assert [d.attempts for d in result.deliveries] == [1, 4]
    keys = {r.headers["Idempotency-Key"] for r in recorder.received}
    assert keys == {"recovery-chat:fallback_active:oncall"}  # every send carried the same key


async def test_rate_limit_retry_after_is_honoured(activities: NotificationActivities, recorder: Recorder) -> None:
    recorder.script("/short", (429, {"Retry-After": "0"}, "slow down"))
    recorder.script("/long", (429, {"Retry-After": "120"}, "slow down"))

    short = await Attempts(activities).run(notify_input([webhook(recorder.url("/short"))]))
    with pytest.raises(ApplicationError) as long_wait:
        await Attempts(activities).run(notify_input([webhook(recorder.url("/long"))]))

    assert short.ok and short.deliveries[0].attempts == 2  # waited inside the attempt and tried again
    assert len(recorder.at("/long")) == 1  # a 2-minute wait is not spent inside the attempt ...
    assert long_wait.value.next_retry_delay == timedelta(seconds=120)  # ... Temporal waits it instead


async def test_a_channel_that_is_down_is_reported_after_the_last_attempt(
    activities: NotificationActivities, recorder: Recorder
) -> None:
    down = webhook(f"http://127.0.0.1:{closed_port()}/hook")
    input = notify_input([down, webhook(recorder.url("/up"))])
    attempts = Attempts(activities, maximum_attempts=2)

    with pytest.raises(ApplicationError):
        await attempts.run(input)
    result = await attempts.run(input)  # the last attempt the retry policy allows returns instead of raising

    assert not result.ok
    failed, delivered = result.deliveries
    assert not failed.ok and failed.retryable and failed.attempts == 6  # 3 quick tries in each of 2 attempts
    assert "connection refused" in failed.error and failed.status_code is None
    assert delivered.ok and len(recorder.at("/up")) == 1


async def test_bad_configuration_fails_that_channel_at_once_and_keeps_the_others(
    activities: NotificationActivities, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_MISSING_SECRET", raising=False)
    with pytest.raises(ValueError, match="http:// or https://"):  # a non-http URL never gets past the policy
        webhook("ftp://127.0.0.1/x")
    recorder.script("/gone", (404, {}, "no_service"))
    channels = [
        webhook(recorder.url("/gone")),
        ChannelSpec(type="cloudevents", url=recorder.url("/ce"), secret_env="TEST_MISSING_SECRET"),
        ChannelSpec(type="pagerduty", url=recorder.url("/pd")),
        webhook(recorder.url("/ok")),
    ]

    result = await Attempts(activities).run(notify_input(channels))  # first attempt: nothing left to retry

    gone, unsigned, no_key, ok = result.deliveries
    assert not result.ok and ok.ok
    assert all(not d.retryable for d in (gone, unsigned, no_key))
    assert gone.status_code == 404 and "HTTP 404" in gone.error and "no_service" in gone.error and gone.attempts == 1
    assert "TEST_MISSING_SECRET" in unsigned.error and "not set" in unsigned.error
    assert "routing key" in no_key.error
    assert [r.path for r in recorder.received] == ["/gone", "/ok"]  # nothing was sent unsigned or keyless


async def test_a_slow_channel_keeps_the_attempt_alive_with_heartbeats(
    activities: NotificationActivities, recorder: Recorder
) -> None:
    """The receiver answers only after the activity heartbeats while waiting for it: no heartbeat, no answer."""
    gate = asyncio.Event()
    recorder.gates["/slow"] = gate
    attempts = Attempts(activities, heartbeat_timeout=timedelta(milliseconds=300), on_heartbeat=gate.set)

    result = await asyncio.wait_for(attempts.run(notify_input([webhook(recorder.url("/slow"))])), timeout=5)

    assert result.ok and result.deliveries[0].attempts == 1  # answered, not timed out and tried again
    first = NotifyProgress.model_validate(attempts.heartbeats[0][0])
    assert first.done == {} and first.tries == {"0:webhook": 1}  # a keep-alive sent while the send was in flight


async def test_an_empty_idempotency_key_is_refused(activities: NotificationActivities, recorder: Recorder) -> None:
    with pytest.raises(ApplicationError) as refused:
        await Attempts(activities).run(notify_input([webhook(recorder.url("/x"))], idempotency_key=" "))
    assert refused.value.non_retryable and "idempotency_key" in str(refused.value)
    assert recorder.received == []


def test_the_documented_routes_are_a_valid_policy_section() -> None:
    """The configuration example in docs/notifications.md parses as the policy's `notifications` and routes every
    channel type."""
    doc = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "notifications:" in b]
    assert blocks, "docs/notifications.md lost its routes example"
    section = Notifications.model_validate(yaml.safe_load(blocks[0])["notifications"])
    types = {spec.type for specs in section.routes.values() for spec in specs}
    assert types == {"pagerduty", "slack", "status_page", "email", "cloudevents", "webhook"}
    assert set(section.routes) == set(NotificationAudience)
