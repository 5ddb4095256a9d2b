"""A fake OpenAI-compatible chat model with fault injection, fast enough to benchmark a gateway against.

Endpoints: `GET /health`, `POST /v1/chat/completions` (JSON, or server-sent events with `"stream": true`),
and `GET|PUT /control` to read or change the faults:

    {"error_rate": 0..1, "latency_ms": 0, "outage": false, "outage_mode": "close" | "503",
     "rate_limit": false, "retry_after_s": 1, "garbage": false, "garbage_kind": "binary",
     "stream_cut_after": null, "stream_interval_ms": 0,
     "flap_period_s": 0, "flap_down_s": 0, "slow_rate": 0, "slow_ms": 0}

`outage` makes health and completions fail (by default the connection is closed without an answer, like a crashed
process behind a load balancer; `outage_mode: "503"` answers 503 instead); `/control` always answers. `rate_limit`
answers 429 with `Retry-After`; `garbage` answers completions with a 200 that is not a completion, of `garbage_kind`:
`binary` (HTML and binary bytes labelled JSON), `html` (an HTML error page), `json_error` (`{"error": {"type":
"insufficient_quota"}}`), `broken_json` (`{<html>...}`) or `sse` (an event stream to a non-stream request); `error_rate` answers that share of
completions with 500; `latency_ms` delays every answer; `stream_cut_after: N` drops a stream's connection after N
chunks; `flap_period_s`/`flap_down_s` make it down for the first `flap_down_s` of every `flap_period_s` seconds;
`slow_rate`/`slow_ms` answer that share of completions `slow_ms` late (demo/faults.py). The reply is `[<name>] <the last user message>`, cut to `max_tokens` words.

Raw asyncio + httptools (no framework) so that the upstream is never the bottleneck of a benchmark.
In tests: `async with run_upstream(name="primary") as up: up.url`.
CLI: `python -m demo.upstream --name primary --port 9101`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

import httptools

from demo.faults import GARBAGE, Faults

__all__ = ["Faults", "Upstream", "run_upstream"]


STREAM_PATHS = ("/chat/completions", "/v1/messages")


@dataclass
class Counters:
    completions: int = 0
    streams: int = 0
    health: int = 0
    injected_errors: int = 0
    rate_limited: int = 0
    garbage: int = 0
    dropped: int = 0
    last_max_tokens: int | None = None
    last_model: str | None = None
    last_auth: dict[str, str] = field(default_factory=dict)
    """The credential headers of the last completion request (authorization, x-api-key, anthropic-version)."""
    by_path: dict[str, int] = field(default_factory=dict)


_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    422: b"Unprocessable Entity",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


def _response(
    status: int, body: bytes, content_type: bytes = b"application/json", extra: bytes = b"", keep_alive: bool = True
) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
            b"content-type: ",
            content_type,
            b"\r\ncontent-length: %d\r\n" % len(body),
            b"" if keep_alive else b"connection: close\r\n",
            extra,
            b"\r\n",
            body,
        )
    )


def _json(status: int, payload: Any, extra: bytes = b"", keep_alive: bool = True) -> bytes:
    return _response(status, json.dumps(payload, separators=(",", ":")).encode(), extra=extra, keep_alive=keep_alive)


def _error(status: int, message: str, kind: str) -> bytes:
    return _json(status, {"error": {"message": message, "type": kind}})


AUTH_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key", b"anthropic-version"})


class _Request:
    __slots__ = ("body", "headers", "keep_alive", "method", "path", "query")

    def __init__(self) -> None:
        self.path = self.query = ""
        self.method = ""
        self.body: list[bytes] = []
        self.keep_alive = True
        self.headers: dict[str, str] = {}


class _Connection(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer them in order."""

    def __init__(self, upstream: Upstream) -> None:
        self.up = upstream
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.current = _Request()
        self.url = b""
        self.queue: deque[_Request] = deque()
        self.busy = False
        self.closed = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.up._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.up._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_error(400, "malformed HTTP request", "invalid_request_error"))
            self._abort()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.current = _Request()
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key in AUTH_HEADERS:
            self.current.headers[key.decode()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.current.body.append(body)

    def on_message_complete(self) -> None:
        req = self.current
        req.method = self.parser.get_method().decode()
        req.path, _, query = self.url.decode("latin-1").partition("?")
        req.query = query
        req.keep_alive = self.parser.should_keep_alive()
        self.queue.append(req)
        if not self.busy:
            self._drain()

    # answering
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _drain(self) -> None:
        while self.queue and not self.closed:
            req = self.queue.popleft()
            delay = 0.0 if req.path == "/control" else self.up.faults.delay_s()
            if delay > 0 or self._is_stream(req):
                self.busy = True
                task = asyncio.get_running_loop().create_task(self._answer_later(req, delay))
                self.up._tasks.add(task)
                task.add_done_callback(self.up._tasks.discard)
                return
            self._finish(req, self.up.answer(req))

    def _finish(self, req: _Request, answer: bytes | None) -> None:
        if answer is None:
            self.up.counters.dropped += 1
            self._abort()
            return
        self._write(answer)
        if not req.keep_alive and self.transport is not None:
            self.transport.close()
            self.closed = True

    @staticmethod
    def _is_stream(req: _Request) -> bool:
        return req.method == "POST" and req.path.endswith(STREAM_PATHS) and b'"stream"' in b"".join(req.body)

    async def _answer_later(self, req: _Request, delay_s: float) -> None:
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if self.closed:
                return
            plan = self.up.stream_plan(req) if self._is_stream(req) else self.up.answer(req)
            if plan is None or isinstance(plan, bytes):
                self._finish(req, plan)
            else:
                await self._stream(req, *plan)
        finally:
            self.busy = False
            if not self.closed:
                self._drain()

    async def _stream(self, req: _Request, head: bytes, events: list[bytes], cut_after: int | None) -> None:
        self._write(head)
        interval = self.up.faults.stream_interval_ms / 1000
        for i, event in enumerate(events):
            if cut_after is not None and i >= cut_after:
                self.up.counters.dropped += 1
                self._abort()
                return
            if interval and i:
                await asyncio.sleep(interval)
                if self.closed:
                    return
            self._write(b"%x\r\n%s\r\n" % (len(event), event))
        self._write(b"0\r\n\r\n")
        if not req.keep_alive and self.transport is not None:
            self.transport.close()


class Upstream:
    """One fake model server; `faults` may be changed directly in-process or over `PUT /control`."""

    def __init__(
        self, name: str = "primary", model: str | None = None, faults: Faults | None = None, api_key: str | None = None
    ) -> None:
        self.name = name
        self.api_key = api_key
        """When set, completions need `Authorization: Bearer <api_key>` (401 otherwise)."""
        self.model = model or f"{name}-model"
        self.faults = faults or Faults()
        self.counters = Counters()
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set(self, **changes: Any) -> None:
        """Change faults in-process (same checks as `PUT /control`)."""
        self.faults.update(changes)

    def reset(self) -> None:
        self.faults = Faults()
        self.counters = Counters()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True, backlog=2048)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn._abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- request handling (synchronous: builds the whole answer, or None to drop the connection)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, **asdict(self.faults), "counters": asdict(self.counters)}

    def answer(self, req: _Request) -> bytes | None:
        path = req.path
        counters = self.counters
        counters.by_path[path] = counters.by_path.get(path, 0) + 1
        if path == "/control":
            return self._control(req)
        faults = self.faults
        if faults.down():
            if faults.outage_mode == "close":
                return None
            return _error(503, f"{self.name} is down (injected outage)", "service_unavailable")
        if path == "/health":
            counters.health += 1
            if req.method not in {"GET", "HEAD"}:
                return _error(405, "use GET /health", "invalid_request_error")
            return _json(200, {"status": "ok", "model": self.model, "name": self.name})
        if path.endswith("/chat/completions"):
            if req.method != "POST":
                return _error(405, "use POST /v1/chat/completions", "invalid_request_error")
            counters.completions += 1
            denied = self._check_key(req)
            if denied is not None:
                return denied
            injected = self._injected_fault()
            if injected is not None:
                return injected
            parsed = self._parse_chat(req)
            if isinstance(parsed, bytes):
                return parsed
            return _json(200, self._completion(parsed))
        return _error(404, f"no route {req.method} {path}", "not_found")

    def _check_key(self, req: _Request) -> bytes | None:
        self.counters.last_auth = dict(req.headers)
        if self.api_key is not None and req.headers.get("authorization") != f"Bearer {self.api_key}":
            return _json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        return None

    def _injected_fault(self) -> bytes | None:
        faults = self.faults
        if faults.rate_limit:
            self.counters.rate_limited += 1
            return _json(
                429,
                {"error": {"message": "rate limited (injected)", "type": "rate_limit_exceeded"}},
                extra=b"retry-after: %d\r\n" % faults.retry_after_s,
            )
        if faults.error_rate and random.random() < faults.error_rate:
            self.counters.injected_errors += 1
            return _error(500, "internal error (injected)", "server_error")
        if faults.garbage:
            self.counters.garbage += 1
            body, content_type = GARBAGE[faults.garbage_kind]
            return _response(200, body, content_type)
        return None

    def _parse_chat(self, req: _Request) -> dict[str, Any] | bytes:
        try:
            body = json.loads(b"".join(req.body) or b"null")
        except ValueError:
            return _error(400, "body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "messages: a non-empty list is required", "invalid_request_error")
        return body

    def _reply_text(self, body: dict[str, Any]) -> tuple[list[str], int]:
        last = next((m.get("content") for m in reversed(body["messages"]) if isinstance(m, dict)), "") or ""
        words = [f"[{self.name}]", *str(last).split()]
        max_tokens = body.get("max_tokens")
        self.counters.last_max_tokens = max_tokens if isinstance(max_tokens, int) else None
        self.counters.last_model = body.get("model") if isinstance(body.get("model"), str) else None
        if isinstance(max_tokens, int) and max_tokens > 0:
            words = words[:max_tokens]
        return words, sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))

    def _next_id(self) -> str:
        self._seq += 1
        return f"chatcmpl-{self.name}-{self._seq}"

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        words, prompt_tokens = self._reply_text(body)
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " ".join(words)}}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            },
        }

    def stream_plan(self, req: _Request) -> tuple[bytes, list[bytes], int | None] | bytes | None:
        """Headers and SSE events for a streaming request; or a whole answer (an error, garbage), or None to drop."""
        faults = self.faults
        self.counters.by_path[req.path] = self.counters.by_path.get(req.path, 0) + 1
        if faults.down():
            if faults.outage_mode == "close":
                return None
            return _error(503, f"{self.name} is down (injected outage)", "service_unavailable")
        self.counters.completions += 1
        denied = self._check_key(req)
        if denied is not None:
            return denied
        injected = self._injected_fault()
        if injected is not None:
            return injected
        parsed = self._parse_chat(req)
        if isinstance(parsed, bytes):
            return parsed
        self.counters.streams += 1
        words, _ = self._reply_text(parsed)
        cid, created = self._next_id(), int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": (" " if i else "") + w}) for i, w in enumerate(words)]
        events += [chunk({}, "stop"), b"data: [DONE]\n\n"]
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        return head, events, faults.stream_cut_after

    def _control(self, req: _Request) -> bytes:
        if req.method == "GET":
            return _json(200, self.state())
        if req.method not in {"PUT", "POST"}:
            return _error(405, "use GET or PUT /control", "invalid_request_error")
        try:
            changes = json.loads(b"".join(req.body) or b"{}")
        except ValueError:
            return _error(422, "body is not valid JSON", "invalid_request_error")
        if not isinstance(changes, dict):
            return _error(422, "body must be a JSON object of faults", "invalid_request_error")
        if changes.pop("reset", False) is True:
            self.reset()
        try:
            self.faults.update(changes)
        except ValueError as err:
            return _error(422, str(err), "invalid_request_error")
        return _json(200, self.state())


@contextlib.asynccontextmanager
async def run_upstream(
    name: str = "primary",
    host: str = "127.0.0.1",
    port: int = 0,
    model: str | None = None,
    api_key: str | None = None,
    api: str = "openai",
    **faults: Any,
) -> AsyncIterator[Upstream]:
    """Start a fake model on an ephemeral port in this event loop; stops it (and its connections) on exit.
    `api="anthropic"`: the Messages API fake (demo/anthropic_upstream.py)."""
    upstream = make_upstream(api, name=name, model=model, api_key=api_key)
    upstream.set(**faults)
    await upstream.start(host, port)
    try:
        yield upstream
    finally:
        await upstream.stop()


def make_upstream(api: str, **kwargs: Any) -> Upstream:
    if api == "openai":
        return Upstream(**kwargs)
    if api not in ("anthropic", "azure"):
        raise ValueError(f"api: must be openai, anthropic or azure, got {api!r}")
    from demo import anthropic_upstream, azure_upstream  # the other wire formats, each a subclass

    if api == "anthropic":
        return anthropic_upstream.AnthropicUpstream(**kwargs)
    return azure_upstream.AzureUpstream(**kwargs)


async def _serve(args: argparse.Namespace) -> None:
    key = os.environ.get(args.api_key_env, "").strip() or None if args.api_key_env else None
    upstream = make_upstream(args.api, name=args.name, model=args.model, api_key=key)
    await upstream.start(args.host, args.port)
    print(json.dumps({"event": "upstream_listening", "name": upstream.name, "url": upstream.url}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await upstream.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible chat model with fault injection")
    parser.add_argument("--name", default="primary")
    parser.add_argument("--model", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument(
        "--api", choices=["openai", "anthropic", "azure"], default="openai", help="the wire format it speaks"
    )
    parser.add_argument("--api-key-env", default=None, help="environment variable holding the key it requires")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(_serve(args))
    except ImportError:
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
