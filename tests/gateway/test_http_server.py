"""The gateway's own HTTP/1.1 server (gateway/server.py, `--http fast`) as raw clients meet it: pipelining in order,
chunked and Content-Length bodies, 413, Expect: 100-continue, HEAD, Connection: close, bad requests, and a client
that leaves cancelling its upstream request (a stream's too)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httptools
import pytest

from tests.gateway.conftest import CHAT, Stack, stack

pytestmark = pytest.mark.skipif(
    os.environ.get("GOVERNOR_GATEWAY_HTTP", "fast") != "fast", reason="gateway/server.py's behaviour (--http fast)"
)

CHAT_BYTES = json.dumps(CHAT).encode()
STREAM_BYTES = json.dumps({**CHAT, "stream": True}).encode()


class Answers:
    """Responses parsed off one connection, in the order they arrived."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[dict[str, Any]] = []
        self._cur: dict[str, Any] = {}

    def on_message_begin(self) -> None:
        self._cur = {"headers": {}, "body": b""}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._cur["headers"][name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self._cur["status"] = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._cur["body"] += body

    def on_message_complete(self) -> None:
        self.done.append(self._cur)


async def converse(port: int, data: bytes, count: int) -> tuple[list[dict[str, Any]], bool]:
    """Send `data`, read `count` answers; also whether the server then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = Answers()
    writer.write(data)
    closed = False
    try:
        while len(answers.done) < count:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                closed = True
                break
            answers.parser.feed_data(chunk)
        if not closed:
            try:
                closed = await asyncio.wait_for(reader.read(1), 0.2) == b""
            except TimeoutError:
                closed = False
    finally:
        writer.close()
    return answers.done, closed


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        path.encode(),
        len(body),
        extra,
        body,
    )


async def test_pipelined_requests_are_answered_in_order(st: Stack) -> None:
    data = (
        post("/chat/v1/chat/completions", CHAT_BYTES)
        + b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
        + b"GET /nope/x HTTP/1.1\r\nhost: gw\r\n\r\n"
        + post("/chat/v1/chat/completions", CHAT_BYTES)
    )
    answers, closed = await converse(st.gw.port, data, 4)
    assert [a["status"] for a in answers] == [200, 200, 404, 200]
    assert answers[0]["headers"]["x-governor-tier"] == "tier_0_primary"
    assert json.loads(answers[1]["body"])["status"] == "ok"
    assert all(int(a["headers"]["content-length"]) == len(a["body"]) for a in answers)
    assert "date" in answers[0]["headers"] and not closed  # kept alive


async def test_chunked_request_body_is_served(st: Stack) -> None:
    half = len(CHAT_BYTES) // 2
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, CHAT_BYTES[:half], len(CHAT_BYTES) - half, CHAT_BYTES[half:])
    data = b"POST /chat/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n" + body
    answers, _ = await converse(st.gw.port, data, 1)
    assert answers[0]["status"] == 200 and json.loads(answers[0]["body"])["choices"]
    assert st.primary.counters.completions == 1


async def test_oversized_bodies_are_413_and_close(st: Stack) -> None:
    declared = b"POST /chat/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 999999999\r\n\r\n"
    answers, closed = await converse(st.gw.port, declared, 1)
    assert answers[0]["status"] == 413 and answers[0]["headers"]["x-governor-tier"] == "tier_5_error"
    assert closed  # the unread body leaves the connection out of step
    big = b"x" * (70 * 1024)  # the stack's limit is 64 KiB
    chunked = b"POST /chat/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%s\r\n" % (len(big), big)  # never ends: the server must answer without the rest
    answers, closed = await converse(st.gw.port, chunked, 1)
    assert answers[0]["status"] == 413 and closed
    assert st.primary.counters.completions == 0


async def test_expect_100_continue(st: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", st.gw.port)
    try:
        head = (
            b"POST /chat/v1/chat/completions HTTP/1.1\r\nhost: gw\r\nexpect: 100-continue\r\ncontent-length: %d\r\n\r\n"
        )
        writer.write(head % len(CHAT_BYTES))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(CHAT_BYTES)
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert final.startswith(b"HTTP/1.1 200 OK")
    finally:
        writer.close()


async def test_head_gets_headers_without_a_body(st: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", st.gw.port)
    try:
        writer.write(b"HEAD /healthz HTTP/1.1\r\nhost: gw\r\n\r\nGET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 200 OK") and b"content-length: " in first
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # no body bytes between the two answers
        assert second.startswith(b"HTTP/1.1 200 OK")
    finally:
        writer.close()


async def test_connection_close_and_http_1_0(st: Stack) -> None:
    answers, closed = await converse(
        st.gw.port, post("/chat/v1/chat/completions", CHAT_BYTES, b"connection: close\r\n"), 1
    )
    assert answers[0]["status"] == 200 and answers[0]["headers"]["connection"] == "close" and closed
    answers, closed = await converse(st.gw.port, b"GET /healthz HTTP/1.0\r\n\r\n", 1)
    assert answers[0]["status"] == 200 and closed


async def test_a_malformed_request_is_400(st: Stack) -> None:
    answers, closed = await converse(st.gw.port, b"NOT HTTP AT ALL\r\n\r\n", 1)
    assert answers[0]["status"] == 400 and closed


async def test_a_stream_is_chunked_and_kept_alive(st: Stack) -> None:
    data = post("/chat/v1/chat/completions", STREAM_BYTES) + b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
    answers, closed = await converse(st.gw.port, data, 2)
    assert answers[0]["headers"]["transfer-encoding"] == "chunked"
    assert answers[0]["body"].rstrip().endswith(b"data: [DONE]") and answers[1]["status"] == 200 and not closed


async def _upstream_connections_drop(st: Stack, within_s: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within_s
    while st.primary._connections:  # the fake's open connections: the gateway's pool to it
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_client_that_leaves_cancels_its_upstream_request() -> None:
    async with stack() as st:
        st.primary.set(latency_ms=3000)  # past the primary's 400 ms timeout: a request left alone falls through
        _reader, writer = await asyncio.open_connection("127.0.0.1", st.gw.port)
        writer.write(post("/chat/v1/chat/completions", CHAT_BYTES))
        await asyncio.sleep(0.15)
        assert st.primary._connections  # the attempt is on its way
        writer.close()
        assert await _upstream_connections_drop(st, 0.2), "the upstream request outlived its client"
        await asyncio.sleep(0.6)  # past the primary's timeout: an abandoned request would be on the secondary now
        assert st.secondary.counters.completions == 0 and st.degraded.counters.completions == 0
        tier = st.service().links[0]
        assert tier.window.in_flight == 0 and tier.breaker.probes == 0
        st.primary.set(latency_ms=0)
        status, headers, _ = await st.chat()
        assert (status, headers["X-Governor-Tier"]) == (200, "tier_0_primary")  # a failure nowhere: not counted


async def test_a_client_that_leaves_a_stream_cancels_the_upstream_stream() -> None:
    async with stack() as st:
        # 8 events 300 ms apart (under the tier's 400 ms idle timeout): a relay left alone runs ~2 s more
        st.primary.set(stream_interval_ms=300)
        reader, writer = await asyncio.open_connection("127.0.0.1", st.gw.port)
        writer.write(post("/chat/v1/chat/completions", STREAM_BYTES))
        first = await asyncio.wait_for(reader.readuntil(b"data: "), 5)  # the first event is relayed
        assert b"text/event-stream" in first
        writer.close()
        assert await _upstream_connections_drop(st, 0.6), "the upstream stream outlived its client"
        assert st.service().links[0].window.in_flight == 0
        st.primary.set(stream_interval_ms=0)
        status, headers, _ = await st.chat()
        assert (status, headers["X-Governor-Tier"]) == (200, "tier_0_primary")
