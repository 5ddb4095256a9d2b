"""The gateway's own HTTP/1.1 server (`--http fast`): an asyncio protocol parsed by httptools, one write per response.

Chosen by measurement (docs/benchmarks.md, "Gateway"): uvicorn writes a response's head and body in separate
`transport.write()` calls and runs a per-request cycle object; here the head and a whole body go out in one write, a
stream's head goes out with its first chunk, and the request's bytes are handed to the app without copies. It serves
the GatewayApp's ASGI interface through a lean adapter (scope, receive, send), so the admin API, OFREP, status and
metrics are unchanged. HTTP/1.1 as the tests check it: keep-alive and pipelining in order, Content-Length and chunked
request bodies, `Expect: 100-continue`, HEAD, `Connection: close`, and a client that disconnects cancels its request
(the chain's upstream attempt or stream with it). `--http asgi` keeps uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import httptools
import structlog

log = structlog.get_logger("gateway")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

STATUS_LINES = {
    s: b"HTTP/1.1 %d %s\r\n" % (s, http.HTTPStatus(s).phrase.encode())
    if s in http.HTTPStatus._value2member_map_
    # an upstream's unregistered status (e.g. 529) keeps its number with a blank phrase
    else b"HTTP/1.1 %d \r\n" % s
    for s in range(100, 600)
}
NO_BODY_STATUS = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 11\r\nconnection: close\r\n\r\nBad Request"
SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n"
    b"connection: close\r\n\r\nInternal Server Error"
)
MAX_QUEUED = 16  # pipelined requests parsed ahead of the one being served, before reading pauses
ASGI = {"version": "3.0", "spec_version": "2.3"}


class _DateHeader:
    """`date: ...\\r\\n`, rebuilt at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode() + b"\r\n"
        return self._line


DATE = _DateHeader()


class _Request:
    """One parsed request: its head, its body as it arrives, and whether it ended."""

    __slots__ = ("complete", "continue_sent", "expect_continue", "head", "keep_alive", "parts", "scope", "waiter")

    def __init__(self, scope: dict[str, Any], keep_alive: bool, expect_continue: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.head = scope["method"] == "HEAD"
        self.parts: list[bytes] = []
        self.complete = False
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HttpProtocol(asyncio.Protocol):
    """One client connection: requests parsed as bytes arrive, served one at a time in arrival order."""

    __slots__ = (
        "_drain",
        "_headers",
        "_parsing",
        "_reading_paused",
        "_url",
        "_write_paused",
        "app",
        "closed",
        "idle_since",
        "loop",
        "parser",
        "queue",
        "server",
        "serving",
        "task",
        "transport",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[_Request] = deque()
        self.serving: _Request | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.idle_since = self.loop.time()
        self._parsing: _Request | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._reading_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # --- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for req in (self.serving, *self.queue):
            if req is not None:
                req.wake()
        self.queue.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client left: its upstream attempt or stream is cancelled with it
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse()
        except httptools.HttpParserError:
            self._refuse()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _refuse(self) -> None:
        """A request that does not parse: 400 once nothing else is being answered, then close."""
        if self.transport is None or self.closed:
            return
        if self.serving is None:
            self.transport.write(BAD_REQUEST)
        self.transport.close()
        self.closed = True

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        url = self._url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
        else:  # absolute form (`GET http://host/path`)
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        parser = self.parser
        headers = self._headers
        expect = False
        for name, value in headers:
            if name == b"expect" and value.lower() == b"100-continue":
                expect = True
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": parser.get_http_version(),
            "server": self.server.sockname,
            "client": None,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
        }
        req = _Request(scope, parser.should_keep_alive(), expect)
        self._parsing = req
        if self.serving is None:
            self._start(req)
        else:
            self.queue.append(req)
            if len(self.queue) >= MAX_QUEUED and not self._reading_paused and self.transport is not None:
                self._reading_paused = True
                self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        req = self._parsing
        if req is not None:
            req.parts.append(body)
            req.wake()

    def on_message_complete(self) -> None:
        req = self._parsing
        if req is not None:
            req.complete = True
            req.wake()
            self._parsing = None

    # --- serving

    def _start(self, req: _Request) -> None:
        self.serving = req
        self.task = self.loop.create_task(self._serve(req))

    async def _serve(self, req: _Request) -> None:
        response = _Response(self, req)
        try:
            await self.app(req.scope, response.receive, response.send)
        except asyncio.CancelledError:
            return  # the client disconnected (connection_lost cancels) or the server is stopping
        except Exception:
            log.exception("gateway_server_error", path=req.scope["path"])
            if not response.started and not self.closed and self.transport is not None:
                self.transport.write(SERVER_ERROR)
            response.close = True
        if self.closed or self.transport is None:
            return
        if not response.done:
            if response.started:
                response.close = True  # a body cut short cannot be framed; the client sees the connection end
            else:
                self.transport.write(SERVER_ERROR)
                response.close = True
        if response.close or not req.keep_alive or not req.complete:
            # An unread request body (a 413 before it arrived) leaves the connection out of step: close it.
            self.transport.close()
            self.closed = True
            return
        self.serving = None
        self.idle_since = self.loop.time()
        if self.queue:
            self._start(self.queue.popleft())
            if self._reading_paused and len(self.queue) < MAX_QUEUED:
                self._reading_paused = False
                self.transport.resume_reading()

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain


class _Response:
    """ASGI receive/send for one request, writing the HTTP/1.1 answer with one write per message."""

    __slots__ = ("chunked", "close", "done", "head_bytes", "proto", "req", "started", "status")

    def __init__(self, proto: HttpProtocol, req: _Request) -> None:
        self.proto = proto
        self.req = req
        self.started = False
        self.done = False
        self.close = False
        self.chunked = False
        self.status = 0
        self.head_bytes: list[bytes] | None = None

    async def receive(self) -> dict[str, Any]:
        req, proto = self.req, self.proto
        if req.expect_continue and not req.continue_sent and not req.complete:
            req.continue_sent = True
            if proto.transport is not None and not proto.closed:
                proto.transport.write(CONTINUE)
        while not req.parts and not req.complete:
            if proto.closed:
                return {"type": "http.disconnect"}
            req.waiter = proto.loop.create_future()
            await req.waiter
            req.waiter = None
        if proto.closed and not req.complete:
            return {"type": "http.disconnect"}
        parts = req.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        return {"type": "http.request", "body": body, "more_body": not req.complete}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        proto = self.proto
        if kind == "http.response.start":
            if self.head_bytes is not None or self.started:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            self.status = status
            line = STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
            head = [line, DATE.line()]
            length = False
            for name, value in message.get("headers", ()):
                lname = name.lower()
                if lname == b"content-length":
                    length = True
                elif lname == b"connection" and value.lower() == b"close":
                    self.close = True
                    continue
                elif lname == b"transfer-encoding":
                    continue  # the server frames the body itself
                head += (name, b": ", value, b"\r\n")
            if not self.req.keep_alive or self.close:
                head.append(b"connection: close\r\n")
            if not length and status not in NO_BODY_STATUS and status >= 200:
                head.append(b"")  # a placeholder: content-length or transfer-encoding, known at the first body
            self.head_bytes = head
            return
        if kind != "http.response.body":
            return
        if self.done:
            raise RuntimeError("http.response.body sent after the response ended")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        transport = proto.transport
        if proto.closed or transport is None:
            return
        if self.head_bytes is not None:  # the first body message: head and body in one write
            head = self.head_bytes
            self.head_bytes = None
            self.started = True
            if head[-1] == b"":
                if more:
                    self.chunked = True
                    head[-1] = b"transfer-encoding: chunked\r\n"
                else:
                    head[-1] = b"content-length: %d\r\n" % len(body)
            head.append(b"\r\n")
            if self.req.head or self.status in NO_BODY_STATUS:
                pass  # the head alone: the body (and a chunked stream's framing) is not sent
            elif self.chunked:
                if body:
                    head += (b"%x\r\n" % len(body), body, b"\r\n")
                if not more:
                    head.append(b"0\r\n\r\n")
            elif body:
                head.append(body)
            transport.write(b"".join(head))
        elif self.req.head or self.status in NO_BODY_STATUS:
            pass
        elif self.chunked:
            if body and not more:
                transport.writelines((b"%x\r\n" % len(body), body, b"\r\n0\r\n\r\n"))
            elif body:
                transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
            elif not more:
                transport.write(b"0\r\n\r\n")
        elif body:
            transport.write(body)
        if not more:
            self.done = True
        elif proto._write_paused:
            await proto.drain()


class HttpServer:
    """Accepts connections for `app` on a bound socket; `close()` stops accepting and ends idle connections."""

    def __init__(self, app: App, keep_alive_s: float = 5.0) -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.keep_alive_s = keep_alive_s
        self.connections: set[HttpProtocol] = set()
        self.sockname: tuple[str, int | None] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: Any) -> None:
        name = sock.getsockname()
        self.sockname = (name, None) if isinstance(name, str) else name[:2]  # a unix socket: (path, None), as ASGI
        self._server = await self.loop.create_server(lambda: HttpProtocol(self), sock=sock, backlog=2048)
        self._sweeper = self.loop.create_task(self._sweep_idle())

    async def _sweep_idle(self) -> None:
        """Close connections idle past the keep-alive timeout (one timer for all, not one per request)."""
        while True:
            await asyncio.sleep(1.0)
            cutoff = self.loop.time() - self.keep_alive_s
            for conn in list(self.connections):
                if conn.serving is None and conn.idle_since < cutoff and conn.transport is not None:
                    conn.transport.close()

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop accepting, let requests in flight finish for up to `grace_s`, then close every connection."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for conn in list(self.connections):
            if conn.serving is None and conn.transport is not None:
                conn.transport.close()
        in_flight = [c.task for c in self.connections if c.serving is not None and c.task is not None]
        if in_flight:
            await asyncio.wait(in_flight, timeout=grace_s)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
