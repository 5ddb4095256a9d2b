"""The hot path's HTTP/1.1 client: pooled keep-alive connections on asyncio protocols, parsed by httptools.

Chosen by measurement (docs/benchmarks.md): a bare proxy forwarding through aiohttp.ClientSession does ~5,500 RPS on
this machine's one gateway core, through httpx ~600; this client avoids their per-request bookkeeping (cookie jars,
tracing, response objects, timeout contexts) and leaves more of the core to the breakers, stats and metrics.
It speaks only what an upstream model API needs: one request at a time per connection, Content-Length or chunked
responses, streaming bodies, a deadline per attempt. httpx stays the project's client for the control plane.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

__all__ = ["ConnectError", "Pool", "ProtocolError", "Response", "UpstreamError", "UpstreamTimeout"]


class UpstreamError(Exception):
    """The upstream did not produce a usable HTTP answer; `kind` is a short reason for headers and stats."""

    kind = "upstream_error"


class ConnectError(UpstreamError):
    kind = "connect_error"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class ProtocolError(UpstreamError):
    kind = "protocol_error"


class Disconnected(UpstreamError):
    kind = "disconnected"


class Response:
    """Status and headers as soon as they arrive; the body whole (`read`) or in chunks (`iter_chunks`)."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._conn = conn
        self.status = status
        self.headers = headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def read(self, deadline: float) -> bytes:
        return await self._conn.read_body(deadline)

    def iter_chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        return self._conn.iter_body(idle_timeout)

    def release(self) -> None:
        """Give the connection back (or close it when the body was not read to the end)."""
        self._conn.finish()


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body_done",
        "_body_waiter",
        "_chunks",
        "_head",
        "_headers",
        "_pool",
        "_resp_waiter",
        "_status",
        "_timer",
        "closed",
        "complete",
        "error",
        "got_bytes",
        "keep_alive",
        "parser",
        "transport",
        "used",
    )

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.used = False
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._chunks: deque[bytes] = deque()
        self._resp_waiter: asyncio.Future[Response] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._body_done = False
        self._timer: asyncio.TimerHandle | None = None
        self._head = False
        self.complete = False
        self.got_bytes = False
        self.keep_alive = True
        self.error: UpstreamError | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        if not self.complete:
            self._fail(Disconnected("upstream closed the connection" + (" mid-body" if self.got_bytes else "")))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("upstream tried to upgrade the connection"))
        except httptools.HttpParserError as err:
            self._fail(ProtocolError(f"malformed HTTP answer: {err}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self._head:
            # An answer to HEAD has no body, whatever its Content-Length says (RFC 9110 9.3.2); the parser does not
            # know the request's method, so the answer ends here and the connection is not reused (its parser would
            # wait for that body in the next answer).
            self.complete = self._body_done = True
            self.keep_alive = False
        waiter = self._resp_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self, self._status, self._headers))

    def on_body(self, body: bytes) -> None:
        if self._head:
            return
        self._chunks.append(body)
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        self.complete = True
        self._body_done = True
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # failure and timers
    def _fail(self, err: UpstreamError) -> None:
        if self.error is None:
            self.error = err
        for waiter in (self._resp_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(err)
        self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _arm(self, deadline: float, what: str) -> None:
        self._cancel_timer()
        loop = self._pool.loop
        self._timer = loop.call_at(deadline, self._time_out, what)  # the error is built only if it fires

    def _time_out(self, what: str) -> None:
        self._fail(UpstreamTimeout(f"no {what} in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # requests
    async def send(self, data: bytes, deadline: float, head: bool = False) -> Response:
        self.used = True
        self._head = head
        waiter: asyncio.Future[Response] = self._pool.loop.create_future()
        self._resp_waiter = waiter
        self._arm(deadline, "answer")
        assert self.transport is not None
        self.transport.write(data)
        try:
            return await waiter
        except asyncio.CancelledError:
            self.abort()  # the caller gave up (its client left): the answer would never be read
            raise
        finally:
            self._cancel_timer()

    async def read_body(self, deadline: float) -> bytes:
        if not self._body_done:
            self._arm(deadline, "complete body")
            try:
                while not self._body_done:
                    if self.error is not None:
                        raise self.error
                    self._body_waiter = self._pool.loop.create_future()
                    await self._body_waiter
            except asyncio.CancelledError:
                self.abort()
                raise
            finally:
                self._cancel_timer()
        body = b"".join(self._chunks)
        self._chunks.clear()
        self.finish()
        return body

    async def iter_body(self, idle_timeout: float) -> AsyncIterator[bytes]:
        loop = self._pool.loop
        try:
            while True:
                chunks = self._chunks
                while chunks:  # what arrived together goes on together: one write downstream, not one per chunk
                    data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                    chunks.clear()
                    yield data
                if self._body_done:
                    return
                if self.error is not None:
                    raise self.error
                self._arm(loop.time() + idle_timeout, "stream data")
                self._body_waiter = loop.create_future()
                try:
                    await self._body_waiter
                finally:
                    self._cancel_timer()
        finally:
            self.finish()

    def finish(self) -> None:
        if self.complete and self.keep_alive and not self.closed and self.error is None:
            self._reset()
            self._pool._release(self)
        elif not self.closed:
            self.abort()


class Pool:
    """Keep-alive connections to one upstream origin (scheme http, host, port)."""

    def __init__(self, base_url: str, max_idle: int = 512) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"upstream {base_url!r}: the hot path speaks http:// and https:// only")
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.ssl else 80)
        self.prefix = parts.path.rstrip("/")
        self.host_header = (parts.netloc or self.host).encode()
        self.max_idle = max_idle
        self.loop = asyncio.get_event_loop()
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()

    def _forget(self, conn: _Connection) -> None:
        self._all.discard(conn)
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _connect(self, deadline: float) -> _Connection:
        timeout = deadline - self.loop.time()
        if timeout <= 0:
            raise UpstreamTimeout("no time left to connect")
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as err:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {err.strerror or err}") from None
        self._all.add(conn)
        return conn

    def _encode(self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        lines = [
            b"%s %s%s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n"
            % (method.encode(), self.prefix.encode(), path.encode(), self.host_header, len(body))
        ]
        for name, value in headers:
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def request(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, deadline: float
    ) -> Response:
        """Send one request and return at the response's headers; `deadline` is on the loop's clock."""
        data = self._encode(method, path, headers, body)
        head = method == "HEAD"
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            try:
                return await conn.send(data, deadline, head)
            except Disconnected:
                # A kept-alive connection the upstream closed while idle: retry once on a fresh one,
                # only when not a byte of an answer came back.
                if conn.got_bytes:
                    raise
            break
        conn = await self._connect(deadline)
        return await conn.send(data, deadline, head)

    async def close(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._idle.clear()
        self._all.clear()
