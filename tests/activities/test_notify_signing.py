"""Webhook signing per Standard Webhooks, checked by the standard's own Python library (PyPI `standardwebhooks`) in a
real HTTP receiver on 127.0.0.1: what the notify activity sends verifies, and a replayed, stale, tampered or
re-addressed message does not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from activities.notify import CloudEventsChannel, NotificationActivities, WebhookChannel
from governor.policy import ChannelSpec
from tests.activities.test_notify import Attempts, notify_input

KEY = secrets.token_bytes(32)
WHSEC = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Verified:
    headers: dict[str, str]
    body: bytes
    payload: object


@dataclass
class VerifyingReceiver:
    """A webhook endpoint that does what the Standard Webhooks docs tell receivers to do: verify, else answer 400."""

    secret: str | bytes
    base: str = ""
    accepted: list[Verified] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def verify(self, body: bytes, headers: dict[str, str]) -> object:
        return Webhook(self.secret).verify(body, headers)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        try:
            payload = self.verify(body, headers)
        except WebhookVerificationError as err:
            self.refused.append(str(err))
            return web.Response(status=400, text=f"signature check failed: {err}")
        self.accepted.append(Verified(headers, body, payload))
        return web.Response(status=204)


async def serve(receiver: VerifyingReceiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[VerifyingReceiver]:
    got = VerifyingReceiver(WHSEC)
    runner = await serve(got)
    try:
        yield got
    finally:
        await runner.cleanup()


@pytest.fixture
async def notify_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        yield client


def acts(http: httpx.AsyncClient, clock_offset_s: float = 0.0) -> NotificationActivities:
    """The notify activities; `clock_offset_s` moves the senders' clock (a message sent that long ago)."""

    def clock() -> float:
        return time.time() + clock_offset_s

    return NotificationActivities(
        http,
        backoff_s=0.01,
        max_backoff_s=0.05,
        channels={"webhook": WebhookChannel(http, clock=clock), "cloudevents": CloudEventsChannel(http, clock=clock)},
    )


def signed_webhook(receiver: VerifyingReceiver) -> ChannelSpec:
    return ChannelSpec(type="webhook", url=receiver.base + "/hooks/governor", secret_env="TEST_WEBHOOK_SECRET")


async def test_a_signed_webhook_verifies_with_the_standard_webhooks_library(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", WHSEC)
    input = notify_input([signed_webhook(receiver)])

    result = await Attempts(acts(notify_http)).run(input)

    assert result.ok, (result, receiver.refused)
    [got] = receiver.accepted
    assert got.headers["webhook-id"] == input.idempotency_key == got.headers["Idempotency-Key"]
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert isinstance(got.payload, dict) and got.payload["idempotency_key"] == input.idempotency_key
    assert got.headers["webhook-signature"].startswith("v1,")
    # The deprecated body-only signature is still there for one release, keyed by the secret as configured.
    legacy = "sha256=" + hmac.new(WHSEC.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Governor-Signature"] == legacy


async def test_a_replayed_or_altered_message_is_refused(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", WHSEC)
    assert (await Attempts(acts(notify_http)).run(notify_input([signed_webhook(receiver)]))).ok
    [genuine] = receiver.accepted
    headers = {k: v for k, v in genuine.headers.items() if k.lower().startswith("webhook-")}

    def refused(body: bytes, **changed: str) -> str:
        with pytest.raises(WebhookVerificationError) as err:
            receiver.verify(body, {**headers, **changed})
        return str(err.value)

    receiver.verify(genuine.body, headers)  # the captured message as sent still verifies ...
    # ... but an attacker cannot refresh its timestamp (it is signed), move it to another id, or change the body.
    assert refused(genuine.body, **{"webhook-timestamp": str(int(time.time()) + 1)}) == "No matching signature found"
    assert refused(genuine.body, **{"webhook-id": "recovery-chat-other:fallback_active:oncall"}).startswith("No match")
    assert refused(genuine.body.replace(b"CRITICAL", b"LOW"), **{}).startswith("No matching")
    # and the same bytes replayed later than the tolerance are stale (sent with a clock 10 minutes behind)
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", WHSEC)
    stale = await Attempts(acts(notify_http, clock_offset_s=-600)).run(notify_input([signed_webhook(receiver)]))
    assert not stale.ok
    [delivery] = stale.deliveries
    assert delivery.status_code == 400 and "Message timestamp too old" in (delivery.error or "")
    assert receiver.refused == ["Message timestamp too old"]
    assert len(receiver.accepted) == 1


async def test_a_secret_without_the_whsec_prefix_is_the_raw_key(
    notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets configured before Standard Webhooks keep working: the receiver verifies with their bytes."""
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", "s3cret-from-last-release")
    raw = VerifyingReceiver(b"s3cret-from-last-release")
    runner = await serve(raw)
    try:
        result = await Attempts(acts(notify_http)).run(notify_input([signed_webhook(raw)]))
    finally:
        await runner.cleanup()
    assert result.ok, raw.refused
    assert len(raw.accepted) == 1


async def test_a_wrong_secret_is_refused_and_not_retried(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())

    result = await Attempts(acts(notify_http)).run(notify_input([signed_webhook(receiver)]))

    assert not result.ok and result.deliveries[0].status_code == 400 and result.deliveries[0].attempts == 1
    assert receiver.refused == ["No matching signature found"]


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", "whsec_%%%%"])
async def test_a_malformed_whsec_secret_is_a_configuration_error_naming_the_variable(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", bad)

    result = await Attempts(acts(notify_http)).run(notify_input([signed_webhook(receiver)]))

    assert not result.ok
    error = result.deliveries[0].error or ""
    assert "TEST_WEBHOOK_SECRET" in error and "base64" in error
    assert bad.removeprefix("whsec_") not in error or bad == "whsec_"  # the secret itself is never echoed
    assert receiver.accepted == [] and receiver.refused == []  # nothing was sent


async def test_an_unsigned_webhook_still_carries_id_and_timestamp(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient
) -> None:
    spec = ChannelSpec(type="webhook", url=receiver.base + "/hooks/unsigned")

    result = await Attempts(acts(notify_http)).run(notify_input([spec]))

    # No secret: the receiver that insists on signatures refuses it, naming what is missing.
    assert not result.ok and receiver.refused == ["Missing required headers"]


async def test_cloudevents_are_signed_the_same_way(
    receiver: VerifyingReceiver, notify_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CE_SECRET", WHSEC)
    spec = ChannelSpec(type="cloudevents", url=receiver.base + "/events", secret_env="TEST_CE_SECRET")
    input = notify_input([spec])

    result = await Attempts(acts(notify_http)).run(input)

    assert result.ok, receiver.refused
    [got] = receiver.accepted
    assert isinstance(got.payload, dict) and got.payload["id"] == got.headers["webhook-id"] == input.idempotency_key
