"""The demo pager: a local webhook receiver standing in for PagerDuty and Slack."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from demo.narration import Narrator
from demo.settings import DEMO_POLICY_DIR, DemoFailed
from governor.policy import ServicePolicy


def pager_ports(policy: ServicePolicy) -> list[int]:
    """The local ports of the policy's webhook routes: the demo pager listens there."""
    ports = []
    for channels in policy.notifications.routes.values():
        for channel in channels:
            if channel.type != "webhook" or not channel.url:
                continue
            parts = urlsplit(channel.url)
            if parts.hostname in {"127.0.0.1", "localhost"} and parts.port and parts.port not in ports:
                ports.append(parts.port)
    return ports


class Pager:
    """A local webhook receiver standing in for PagerDuty and Slack: prints and keeps what it is sent."""

    def __init__(self, narrator: Narrator) -> None:
        self.narrator = narrator
        self.pages: list[dict[str, Any]] = []
        self.runners: list[web.AppRunner] = []

    async def start(self, ports: list[int]) -> None:
        app = web.Application()
        app.router.add_post("/pager/{audience}", self.receive)
        for port in ports:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            except OSError as err:
                await runner.cleanup()
                raise DemoFailed(
                    f"the demo pager cannot listen on 127.0.0.1:{port} ({err.strerror}): stop what uses it, or "
                    f"move the webhook routes in {DEMO_POLICY_DIR}/chat.yaml"
                ) from None
            self.runners.append(runner)

    async def receive(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        audience = request.match_info["audience"]
        key = body.get("idempotency_key")
        if not any(p.get("idempotency_key") == key for p in self.pages):
            self.pages.append(body)
            self.narrator.say(f"Pager ({audience}) got: {body.get('title')}", str(body.get("message", ""))[:200])
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
