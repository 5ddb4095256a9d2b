"""Issue 14.2: approving from Slack. A gate's Slack message carries Approve / Reject buttons naming the gate's request;
the intake's interactivity endpoint checks Slack's v0 signature and timestamp, maps the Slack user to an approver of
the policy, sends the CLI's update, and tells Slack the outcome on `response_url`.

Requests are signed the way Slack signs them, and each signature is checked with slack_sdk's own SignatureVerifier
before it is sent, so the endpoint is tested against Slack's scheme, not against a copy of our own code. The incident
is a real recovery workflow on the Temporal dev server (the activities are the CLI tests' fakes); the response URL is
a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from aiohttp import web
from slack_sdk.signature import Clock, SignatureVerifier
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.notify.slack import APPROVE_ACTION, GATE_BLOCK_ID, REJECT_ACTION, slack_message
from governor.actions import NotifyInput
from governor.client import GovernorClient, Reported
from governor.enums import FallbackTier, NotificationAudience, RecoveryPhase
from governor.incident import ControlResult, IncidentReport
from governor.policy import ChannelSpec, PolicyError, parse_policy
from governor.settings import TemporalSettings
from tests.governor.test_cli_devserver import FakeActivities, cli_policy
from workers.intake import RunningIntake, run_intake
from workers.slack_actions import SLACK_PATH, SlackActions

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALICE, BOB, MALLORY = "U0ALICE01", "U0BOB0002", "U0MALLORY"


def signed(body: bytes, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """Slack's headers for `body`: v0=HMAC-SHA256(secret, "v0:{ts}:{body}"), confirmed by Slack's own SDK."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    verifier = SignatureVerifier(secret, clock=_Clock(int(ts)))
    assert verifier.is_valid(body, ts, signature), "the test must sign exactly as Slack does"
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


class _Clock(Clock):
    """slack_sdk's verifier checks the timestamp against its clock; ours is pinned to the timestamp signed."""

    def __init__(self, at: int) -> None:
        self.at = at

    def now(self) -> float:
        return float(self.at)


def click(message: dict[str, Any], action_id: str, user: str, response_url: str, value: str | None = None) -> bytes:
    """The form body Slack POSTs when `user` presses the button `action_id` of `message` (a block_actions payload)."""
    block = next(b for b in message["blocks"] if b.get("block_id") == GATE_BLOCK_ID)
    button = next(e for e in block["elements"] if e.get("action_id") == action_id)
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0ONCALL"},
        "trigger_id": "1.2.3",
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": "C0ONCALL", "name": "oncall"},
        "message": {"type": "message", "text": message["text"], "blocks": message["blocks"]},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": GATE_BLOCK_ID,
                "text": button["text"],
                "value": value if value is not None else button["value"],
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


# ---- the message ------------------------------------------------------------------------------------------------


def gate_notice(**details: Any) -> NotifyInput:
    return NotifyInput(
        incident_id="recovery-chat",
        event="approval_requested",
        audience=NotificationAudience.ONCALL,
        channels=[ChannelSpec(type="slack", url="https://hooks.slack.com/services/T/B/X")],
        title="chat: approval needed for ramp:10",
        message="ramp to 10 %",
        details={"service": "chat", "url": "http://127.0.0.1:8233/x", **details},
        idempotency_key="k",
    )


def test_a_gate_message_carries_approve_and_reject_naming_the_request() -> None:
    message = slack_message(gate_notice(gate="ramp:10", gate_id="3f9a2c1d7b60"))
    (block,) = [b for b in message["blocks"] if b["type"] == "actions"]
    approve, reject, link = block["elements"]
    assert (approve["action_id"], approve["style"], reject["action_id"], reject["style"]) == (
        APPROVE_ACTION,
        "primary",
        REJECT_ACTION,
        "danger",
    )
    want = {"incident_id": "recovery-chat", "gate": "ramp:10", "gate_id": "3f9a2c1d7b60"}
    assert json.loads(approve["value"]) == json.loads(reject["value"]) == want
    assert link["url"] == "http://127.0.0.1:8233/x" and "action_id" not in link
    # no gate, no buttons: other notifications keep only their link
    other = slack_message(gate_notice().model_copy(update={"event": "fallback_activated"}))
    assert [e.get("action_id") for b in other["blocks"] if b["type"] == "actions" for e in b["elements"]] == [None]


def test_slack_users_are_validated_strictly() -> None:
    base = cli_policy("chat")
    ok = {**base, "approvals": {**base["approvals"], "slack_users": {ALICE: "alice"}}}
    assert parse_policy(ok, "ok").approvals.slack_users == {ALICE: "alice"}
    for users, expect in (
        ({"alice": "alice"}, "'alice' is not a Slack user id"),
        ({"u0alice01": "alice"}, "is not a Slack user id"),
        ({ALICE: "carol"}, f"slack_users: {ALICE} maps to 'carol', who is no approver (approvers: alice, bob)"),
        ({ALICE: " "}, "must not be blank"),
    ):
        bad = {**base, "approvals": {**base["approvals"], "slack_users": users}}
        with pytest.raises(PolicyError, match=expect.replace("(", r"\(").replace(")", r"\)")):
            parse_policy(bad, "bad")


# ---- the endpoint against a real incident --------------------------------------------------------------------------


@dataclass
class World:
    sdk: GovernorClient
    fake: FakeActivities
    intake: RunningIntake
    slack: SlackActions
    service: str
    answers: asyncio.Queue[dict[str, Any]]
    response_url: str

    @property
    def endpoint(self) -> str:
        return self.intake.url + SLACK_PATH

    async def answer(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.answers.get(), timeout=15)


@contextlib.asynccontextmanager
async def response_server() -> AsyncIterator[tuple[str, asyncio.Queue[dict[str, Any]]]]:
    """Stands where Slack's response_url points: records what the governor posts there."""
    answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await answers.put(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/actions/T0TEAM/1/abc", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/actions/T0TEAM/1/abc", answers
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def make_world(dev_env: WorkflowEnvironment, four_eyes: bool = False) -> AsyncIterator[World]:
    from workers.worker import build_worker

    service = f"slack{uuid.uuid4().hex[:8]}"
    data = cli_policy(service)
    data["approvals"]["slack_users"] = {ALICE: "alice", BOB: "bob"} if four_eyes else {ALICE: "alice"}
    data["approvals"]["four_eyes"] = four_eyes
    data["notifications"] = {
        "routes": {"oncall": [{"type": "slack", "url": "https://hooks.slack.com/services/T/B/X"}]},
        "escalation": ["oncall"],
    }
    policy = parse_policy(yaml.safe_load(yaml.safe_dump(data)), "slack test policy")
    task_queue = f"slack-{uuid.uuid4().hex[:8]}"
    target = dev_env.client.service_client.config.target_host
    sdk = await GovernorClient.connect(TemporalSettings(address=target, task_queue=task_queue))
    fake = FakeActivities(policy)
    slack = SlackActions(SECRET, {service: policy}, sdk)
    async with (
        build_worker(dev_env.client, task_queue, fake.activities()),
        response_server() as (response_url, answers),
        run_intake(sdk.report_failure, policies={service: policy}, token="intake-token", slack=slack) as intake,
    ):
        try:
            yield World(sdk, fake, intake, slack, service, answers, response_url)
        finally:
            with contextlib.suppress(RPCError):
                await dev_env.client.get_workflow_handle(f"recovery-{service}").terminate("test over")


@pytest.fixture
async def world(dev_env: WorkflowEnvironment) -> AsyncIterator[World]:
    async with make_world(dev_env) as w:
        yield w


async def gate_message(w: World, gate: str = "ramp:10") -> tuple[str, dict[str, Any]]:
    """Open an incident and wait for its gate: (the gate's request id, the Slack message its page became)."""
    incident = f"recovery-{w.service}"
    await w.sdk.report_failure(IncidentReport(service=w.service, dependency="primary-llm", source="test"))
    state = await w.sdk.wait_for(incident, lambda s: s.pending(gate) is not None, timeout=30)
    gate_id = state.pending(gate).gate_id  # type: ignore[union-attr]
    for _ in range(100):  # the page goes out in the background
        asked = [n for n in w.fake.notifications if n.event == "approval_requested"]
        if asked:
            break
        await asyncio.sleep(0.1)
    assert asked and asked[0].details["gate"] == gate and asked[0].details["gate_id"] == gate_id
    return gate_id, slack_message(asked[0])  # the message exactly as the Slack channel sends it


@pytest.mark.integration
async def test_approve_from_slack_moves_the_incident_and_refuses_what_it_must(world: World) -> None:
    w = world
    incident = f"recovery-{w.service}"
    gate_id, message = await gate_message(w)

    async with httpx.AsyncClient(timeout=10) as http:

        async def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
            return await http.post(w.endpoint, content=body, headers=headers)

        # a bad signature, a stale timestamp: 401, nothing decided, nothing posted back
        body = click(message, APPROVE_ACTION, ALICE, w.response_url)
        r = await post(body, signed(body, secret="not-the-apps-secret"))
        assert r.status_code == 401 and "bad X-Slack-Signature" in r.json()["error"]["message"]
        r = await post(body, signed(body, timestamp=int(time.time()) - 301))
        assert r.status_code == 401 and "stale request" in r.json()["error"]["message"]
        r = await post(body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 401 and "missing X-Slack-Request-Timestamp" in r.text

        # a Slack user the policy does not map: acknowledged, then told why, only to them
        body = click(message, APPROVE_ACTION, MALLORY, w.response_url)
        assert (await post(body, signed(body))).status_code == 200
        reply = await w.answer()
        assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
        assert f"Slack user {MALLORY} is not an approver for {w.service}" in reply["text"]
        assert "approvals.slack_users" in reply["text"]

        # a button naming another request of the gate: the workflow's own refusal comes back
        stale = json.dumps({"incident_id": incident, "gate": "ramp:10", "gate_id": "000000000000"})
        body = click(message, APPROVE_ACTION, ALICE, w.response_url, value=stale)
        assert (await post(body, signed(body))).status_code == 200
        reply = await w.answer()
        assert "stale or replayed approve: gate id '000000000000' is not a request of ramp:10" in reply["text"]
        assert f"the pending request is {gate_id!r}" in reply["text"]
        assert (await w.sdk.state(incident)).pending("ramp:10") is not None

        # alice approves: acknowledged well within Slack's 3 s, the incident moves on, the message says who decided
        body = click(message, APPROVE_ACTION, ALICE, w.response_url)
        headers = signed(body)
        started = time.perf_counter()
        r = await post(body, headers)
        acked = time.perf_counter() - started
        assert r.status_code == 200 and acked < 3.0, acked
        reply = await w.answer()
        assert reply["replace_original"] is True and reply["text"] == "ramp:10 approved by alice"
        assert (
            reply["blocks"][-1]["text"]["text"] == f":white_check_mark: ramp:10 approved by alice (<@{ALICE}> in Slack)"
        )
        assert not [b for b in reply["blocks"] if b.get("block_id") == GATE_BLOCK_ID]  # the buttons are gone

        final = await w.sdk.wait_for(incident, lambda s: s.closed_at is not None, timeout=30)
        assert final.outcome == "recovered" and final.tier is FallbackTier.TIER_0_PRIMARY
        (decision,) = final.decisions
        assert (decision.approver, decision.approved, decision.gate_id) == ("alice", True, gate_id)
        assert decision.reason == f"approved in Slack by {ALICE.lower()} ({ALICE})"

        # the same signed request again, inside the 5 minutes: a replay, refused before anything is decided
        r = await post(body, headers)
        assert r.status_code == 401 and "replayed request" in r.json()["error"]["message"]
        assert w.answers.empty()

        # Slack's endpoint needs no bearer token (Slack cannot send one); the intake's other routes still do
        r = await http.post(w.intake.url + "/v1/reports", json={"service": w.service, "dependency": "primary-llm"})
        assert r.status_code == 401

    counts = {"verified": 3, "refused": 4, "decided": 1, "decision_refused": 2}
    assert w.slack.counts == counts
    async with httpx.AsyncClient() as http:
        assert (await http.get(w.intake.url + "/healthz")).json()["slack"] == counts


@pytest.mark.integration
async def test_four_eyes_from_slack_keeps_the_buttons_until_a_second_approver(dev_env: WorkflowEnvironment) -> None:
    async with make_world(dev_env, four_eyes=True) as w, httpx.AsyncClient(timeout=10) as http:
        incident = f"recovery-{w.service}"
        gate_id, message = await gate_message(w)

        async def press(user: str, on: dict[str, Any]) -> dict[str, Any]:
            body = click(on, APPROVE_ACTION, user, w.response_url)
            assert (await http.post(w.endpoint, content=body, headers=signed(body))).status_code == 200
            return await w.answer()

        first = await press(ALICE, message)  # the system opened the gate: two different approvers must agree
        assert first["replace_original"] is True
        assert first["text"] == "ramp:10 approved by alice (1 of 2: four-eyes needs another approver)"
        assert [b for b in first["blocks"] if b.get("block_id") == GATE_BLOCK_ID]  # the buttons stay for the second
        updated = {"text": first["text"], "blocks": first["blocks"]}  # what Slack shows (and sends) from now on

        again = await press(ALICE, updated)
        assert again["response_type"] == "ephemeral"
        assert "four-eyes rule: 'alice' already approved ramp:10; a second, different approver must" in again["text"]

        second = await press(BOB, updated)
        assert second["text"] == "ramp:10 approved by bob"
        assert not [b for b in second["blocks"] if b.get("block_id") == GATE_BLOCK_ID]
        texts = [b["text"]["text"] for b in second["blocks"] if b["type"] == "section" and "text" in b]
        assert texts[-2:] == [
            f":hourglass_flowing_sand: ramp:10 approved by alice (1 of 2: four-eyes needs another approver) (<@{ALICE}> in Slack)",
            f":white_check_mark: ramp:10 approved by bob (<@{BOB}> in Slack)",
        ]
        final = await w.sdk.wait_for(incident, lambda s: s.closed_at is not None, timeout=30)
        (decision,) = final.decisions
        assert (decision.approved_by, decision.gate_id) == (["alice", "bob"], gate_id)


class HeldDecider:
    """A governor that answers only when told: shows Slack is acknowledged before the decision, not after it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls: list[tuple[str, str, str, str | None]] = []

    async def approve(
        self, incident: str, gate: str, approver: str, reason: str = "", gate_id: str | None = None
    ) -> ControlResult:
        self.calls.append((incident, gate, approver, gate_id))
        await asyncio.wait_for(self.release.wait(), timeout=10)
        return ControlResult(
            accepted=True,
            message=f"{gate} approved by {approver}",
            phase=RecoveryPhase.GRADUAL_RESTORE,
            tier=FallbackTier.TIER_1_SECONDARY,
            ramp_percent=10,
        )

    reject = approve


async def no_reports(report: IncidentReport) -> Reported:
    raise AssertionError(f"no failure report expected here, got {report}")


async def test_slack_is_acknowledged_before_the_decision_completes() -> None:
    policy = parse_policy(
        {**cli_policy("chat"), "approvals": {**cli_policy("chat")["approvals"], "slack_users": {ALICE: "alice"}}},
        "held",
    )
    decider = HeldDecider()
    slack = SlackActions(SECRET, {"chat": policy}, decider)
    message = slack_message(gate_notice(gate="ramp:10", gate_id="3f9a2c1d7b60"))
    async with (
        response_server() as (response_url, answers),
        run_intake(no_reports, policies={"chat": policy}, slack=slack) as intake,
        httpx.AsyncClient(timeout=10) as http,
    ):
        body = click(message, APPROVE_ACTION, ALICE, response_url)
        r = await http.post(intake.url + SLACK_PATH, content=body, headers=signed(body))
        assert r.status_code == 200 and r.content == b""
        await asyncio.sleep(0.2)
        assert decider.calls == [("recovery-chat", "ramp:10", "alice", "3f9a2c1d7b60")] and answers.empty()
        decider.release.set()  # the decision completes after Slack had its answer; the outcome follows
        reply = await asyncio.wait_for(answers.get(), timeout=10)
        assert reply["text"] == "ramp:10 approved by alice"
