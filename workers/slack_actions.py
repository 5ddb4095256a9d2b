"""Slack interactivity: the Approve / Reject buttons of a gate's Slack message decide that gate.

    POST /v1/slack/interactions   the Slack app's Interactivity Request URL (served by the intake)

1. Slack's signature (the v0 scheme): `X-Slack-Signature` must be `v0=` + hex HMAC-SHA256 of
   `v0:{X-Slack-Request-Timestamp}:{raw body}` under the app's signing secret, the timestamp within 5 minutes of now,
   and each signature is accepted once (a replay inside the window is refused). Otherwise 401, nothing decided.
2. The clicking Slack user must be mapped to an approver in the incident's policy (`approvals.slack_users`).
3. The decision is the CLI's: `GovernorClient.approve` / `reject` with the gate and the gate request's id the button
   carries, so the workflow's update validator refuses a stale or replayed request with its own reason.
4. Slack is answered 200 at once (it gives up after 3 s); the outcome follows on the payload's `response_url`: the
   message is replaced with the decision on success, a refusal is told to the clicking user only (ephemeral).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx
import structlog
from aiohttp import web

from activities.notify.slack import APPROVE_ACTION, GATE_BLOCK_ID, REJECT_ACTION, escape
from governor.client import ControlRefused, GovernorError
from governor.incident import ControlResult, incident_id
from governor.policy import ServicePolicy

log = structlog.get_logger("governor.slack")

SLACK_PATH = "/v1/slack/interactions"
MAX_AGE_S = 300
"""Slack's documented window: a request whose timestamp is further from now than this is refused."""
MAX_SEEN = 100_000
"""Signatures remembered against replays (those of the last MAX_AGE_S seconds, at most this many)."""


class Decider(Protocol):
    """`GovernorClient` in production: the same calls the CLI's `governor approve` / `reject` make."""

    async def approve(
        self, incident: str, gate: str, approver: str, reason: str = "", gate_id: str | None = None
    ) -> ControlResult: ...

    async def reject(
        self, incident: str, gate: str, approver: str, reason: str = "", gate_id: str | None = None
    ) -> ControlResult: ...


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v0=<hex>` as Slack computes it."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Refused(Exception):
    """A request that is answered with `status` and `message` and decides nothing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def allowed_response_url(url: str) -> bool:
    """Slack's response URLs are https; plain http only to this machine (a local Slack stand-in, the tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class SlackActions:
    """Verifies, acknowledges and carries out button clicks; `policies` name who may decide from Slack."""

    def __init__(
        self,
        signing_secret: str,
        policies: dict[str, ServicePolicy],
        decider: Decider,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secret:
            raise ValueError(
                "Slack approvals need the Slack app's signing secret (GOVERNOR_INTAKE_SLACK_SIGNING_SECRET)"
            )
        self.secret = signing_secret
        self.policies = policies
        self.decider = decider
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"verified": 0, "refused": 0, "decided": 0, "decision_refused": 0}

    # ---- the request ------------------------------------------------------------------------------------------

    def verify(self, headers: Any, body: bytes) -> None:
        """Raise Refused(401) unless the request is Slack's, fresh and not seen before."""
        timestamp = headers.get("X-Slack-Request-Timestamp", "")
        signature = headers.get("X-Slack-Signature", "")
        if not timestamp or not signature:
            raise Refused(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
        try:
            age = abs(self.clock() - int(timestamp))
        except ValueError:
            raise Refused(401, f"X-Slack-Request-Timestamp {timestamp[:32]!r} is not a Unix time") from None
        if age > MAX_AGE_S:
            raise Refused(401, f"stale request: timestamp is {age:.0f} s from now (at most {MAX_AGE_S} s)")
        if not hmac.compare_digest(signature.encode(), slack_signature(self.secret, timestamp, body).encode()):
            raise Refused(401, "bad X-Slack-Signature (not signed with this app's signing secret)")
        now = self.clock()
        while self._seen and (next(iter(self._seen.values())) < now - MAX_AGE_S or len(self._seen) >= MAX_SEEN):
            self._seen.popitem(last=False)
        if signature in self._seen:
            raise Refused(401, "replayed request: this signature was already accepted")
        self._seen[signature] = now

    @staticmethod
    def payload(body: bytes) -> dict[str, Any]:
        try:
            form = parse_qs(body.decode(), strict_parsing=True)
            payload = json.loads(form["payload"][0])
        except (UnicodeDecodeError, ValueError, KeyError):
            raise Refused(400, "the body must be a form with a JSON `payload` field, as Slack sends it") from None
        if not isinstance(payload, dict):
            raise Refused(400, "payload must be a JSON object")
        return payload

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.verify(request.headers, body)
            payload = self.payload(body)
        except Refused as err:
            self.counts["refused"] += 1
            log.warning("slack_request_refused", status=err.status, error=err.message)
            return web.json_response({"error": {"field": None, "message": err.message}}, status=err.status)
        self.counts["verified"] += 1
        action = self._gate_action(payload)
        if action is not None:  # other interactions (the "Open incident" link) need only the acknowledgement
            task = asyncio.create_task(self._carry_out(payload, *action), name="slack-decision")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=200)  # Slack's 3 s: acknowledged now, the outcome follows on response_url

    @staticmethod
    def _gate_action(payload: dict[str, Any]) -> tuple[bool, dict[str, Any]] | None:
        if payload.get("type") != "block_actions":
            return None
        for action in payload.get("actions") or []:
            if isinstance(action, dict) and action.get("action_id") in (APPROVE_ACTION, REJECT_ACTION):
                try:
                    value = json.loads(action.get("value") or "")
                except ValueError:
                    value = None
                return action["action_id"] == APPROVE_ACTION, value if isinstance(value, dict) else {}
        return None

    async def drain(self) -> None:
        """Wait for decisions in flight (the intake stopping, the tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- the decision -----------------------------------------------------------------------------------------

    def approver_of(self, slack_user: str, incident: str) -> tuple[ServicePolicy, str]:
        policy = next((p for p in self.policies.values() if incident_id(p.service) == incident), None)
        if policy is None:
            raise Refused(404, f"incident {incident!r} belongs to no service this intake knows")
        name = policy.approvals.slack_users.get(slack_user)
        if name is None:
            raise Refused(
                403,
                f"Slack user {slack_user} is not an approver for {policy.service}: add them to "
                f"`approvals.slack_users` in its policy (`{slack_user}: <approver name>`), or decide with the CLI",
            )
        return policy, name

    async def _carry_out(self, payload: dict[str, Any], approve: bool, value: dict[str, Any]) -> None:
        response_url = payload.get("response_url")
        user = _object(payload.get("user"))
        slack_user = str(user.get("id") or "")
        incident, gate, gate_id = value.get("incident_id"), value.get("gate"), value.get("gate_id")
        verb = "approve" if approve else "reject"
        try:
            if not isinstance(incident, str) or not isinstance(gate, str):
                raise Refused(400, "the button carries no incident and gate (not a governor approval message)")
            _, approver = self.approver_of(slack_user, incident)
            who = user.get("username") or user.get("name") or slack_user
            reason = f"{verb}d in Slack by {who} ({slack_user})"
            decide = self.decider.approve if approve else self.decider.reject
            result = await decide(incident, gate, approver, reason, gate_id if isinstance(gate_id, str) else None)
        except (Refused, ControlRefused) as err:
            self.counts["decision_refused"] += 1
            why = err.message if isinstance(err, Refused) else err.reason
            log.info("slack_decision_refused", incident_id=incident, gate=gate, slack_user=slack_user, reason=why)
            reply = {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": f":no_entry: {verb} {gate or ''} refused: {why}",
            }
        except GovernorError as err:
            log.warning("slack_decision_failed", incident_id=incident, gate=gate, error=str(err))
            reply = {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": f":warning: {verb} {gate} not sent, the governor is unreachable: {err}. Try again or use the CLI.",
            }
        else:
            self.counts["decided"] += 1
            log.info("slack_decision", incident_id=incident, gate=gate, approver=approver, approved=approve)
            still_pending = gate in result.pending_gates and (not gate_id or gate_id in result.pending_gate_ids)
            reply = self._decided(payload, approve, result.message, slack_user, still_pending)
        await self._respond(response_url, reply)

    @staticmethod
    def _decided(
        payload: dict[str, Any], approve: bool, outcome: str, slack_user: str, still_pending: bool
    ) -> dict[str, Any]:
        """The original message plus who decided what; its buttons go, unless the gate still waits for another
        approver (the four-eyes rule's first approval)."""
        icon = ":white_check_mark:" if approve else ":x:"
        if still_pending:
            icon = ":hourglass_flowing_sand:"
        line = f"{icon} {escape(outcome)} (<@{slack_user}> in Slack)"
        message = _object(payload.get("message"))
        blocks = [
            b
            for b in message.get("blocks") or []
            if isinstance(b, dict) and (still_pending or b.get("block_id") != GATE_BLOCK_ID)
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line}})
        return {"replace_original": True, "text": outcome, "blocks": blocks[-50:]}

    async def _respond(self, response_url: Any, reply: dict[str, Any]) -> None:
        if not isinstance(response_url, str) or not allowed_response_url(response_url):
            log.warning("slack_no_response_url", reply=reply.get("text"))
            return
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(response_url, json=reply)
            if answer.status_code >= 300:
                log.warning("slack_response_url_refused", status=answer.status_code)
        except httpx.HTTPError as err:
            log.warning("slack_response_url_failed", error=str(err))
