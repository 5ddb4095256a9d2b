"""ASGI plumbing shared by the data plane and the admin API: types, JSON answers, bounded body reads."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_CT = b"application/json"
SSE_CT = b"text/event-stream"


class BadInput(Exception):
    """A request the gateway refuses: the field it got wrong, a message naming it, the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        if field not in message:
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status

    @property
    def kind(self) -> str:
        """The error type a client reads: a missing tier or deployment is not a too-large body."""
        return {413: "request_too_large", 404: "not_found", 400: "bad_request"}.get(self.status, "invalid_request")


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON_CT,
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def error(
    send: Send,
    status: int,
    kind: str,
    message: str,
    field: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    err: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        err["field"] = field
    await respond(send, status, json_bytes({"error": err}), headers)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused early (413) when its content-length or its bytes exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadInput("content-length", "content-length is not a number", 400) from None
            if declared > limit:
                raise BadInput("body", f"body of {declared} bytes exceeds the {limit}-byte limit", 413)
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise BadInput("body", f"body exceeds the {limit}-byte limit", 413)
        return body
    parts = [body]
    size = len(body)
    while True:
        if size > limit:  # checked before waiting for more: a first piece past the limit is refused at once
            raise BadInput("body", f"body exceeds the {limit}-byte limit", 413)
        if not message.get("more_body"):
            return b"".join(parts)
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        parts.append(chunk)


def completion_as_sse(completion: dict[str, Any]) -> bytes:
    """A canned chat completion replayed as server-sent events, for clients that asked for a stream."""
    choices = completion.get("choices") or [{}]
    message = (choices[0] or {}).get("message") or {}
    base: dict[str, Any] = {k: completion.get(k) for k in ("id", "model", "created") if k in completion}
    base["object"] = "chat.completion.chunk"
    events = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": message.get("content", "")},
                    "finish_reason": None,
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + json_bytes(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
