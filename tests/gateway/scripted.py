"""A scripted upstream on 127.0.0.1 (aiohttp): answers each request with the next scripted reply (status, headers,
body, delay), a valid chat completion once the script is spent, and records what it received (headers, body)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def completion(text: str = "ok") -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "model": "scripted",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class Scripted:
    def __init__(self, name: str) -> None:
        self.name = name
        self.script: deque[Reply] = deque()
        self.received: list[Received] = []
        self.default = Reply(body=completion(f"[{name}]"))
        self.url = ""
        self.in_flight = 0
        self.max_in_flight = 0

    def then(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def handle(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        self.received.append(Received(dict(request.headers), await request.read(), loop.time()))
        reply = self.script.popleft() if self.script else self.default
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
        finally:
            self.in_flight -= 1
        body = reply.body if reply.body is not None else completion(f"[{self.name}]")
        return web.Response(
            status=reply.status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **reply.headers},
        )


@contextlib.asynccontextmanager
async def run_scripted(name: str) -> AsyncIterator[Scripted]:
    up = Scripted(name)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", up.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    up.url = f"http://127.0.0.1:{port}"
    try:
        yield up
    finally:
        await runner.cleanup()
