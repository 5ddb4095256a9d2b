"""OpenAI chat completions <-> Anthropic Messages, for `provider: anthropic` tiers (hot path: plain dicts, no pydantic).

Request: system/developer messages -> `system`; user/assistant text and image parts -> content blocks; assistant
`tool_calls` -> `tool_use` blocks; `tool` messages -> `tool_result` blocks in a user turn; `max_tokens` (or
`max_completion_tokens`, else DEFAULT_MAX_TOKENS, Anthropic requires one); temperature, top_p, `stop` ->
`stop_sequences`; tools and tool_choice; `user` -> `metadata.user_id`. Answer: text and `tool_use` blocks -> message
content and `tool_calls`; `stop_reason` -> `finish_reason`; usage. Errors: `{"type": "error", "error": {...}}` ->
`{"error": {"message", "type", "param", "code"}}`. Streams: Anthropic events -> `chat.completion.chunk` events, ending
with `data: [DONE]` (StreamTranslator).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.client import Disconnected, ProtocolError, UpstreamError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MESSAGES_PATH",
    "StreamErrorEvent",
    "StreamTranslator",
    "translate_error",
    "translate_request",
    "translate_response",
]

MESSAGES_PATH = "/v1/messages"
DEFAULT_MAX_TOKENS = 4096
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class TranslationError(ValueError):
    """The client's request cannot be expressed in the Messages API; the message names the field."""


class StreamErrorEvent(UpstreamError):
    """Anthropic sent `event: error` mid-stream (e.g. overloaded_error)."""

    kind = "stream_error_event"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content: a string or a list of parts, got {type(content).__name__}")
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                out.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise TranslationError(f"{where}.content: part type {kind!r} has no Messages API equivalent")
    return out


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Consecutive turns of one role merge (tool results of one assistant turn become one user turn)."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def translate_request(req: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat completions request; `model` (the tier's) wins over the client's."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    raw = req.get("messages")
    if not isinstance(raw, list):
        raise TranslationError("messages: a list is required")
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise TranslationError(f"{where}: must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.append(_text(msg.get("content")))
        elif role == "user":
            _append(messages, "user", _blocks(msg.get("content"), where))
        elif role == "assistant":
            blocks = _blocks(msg.get("content"), where)
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    raise TranslationError(f"{where}.tool_calls: arguments are not JSON") from None
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": args})
            _append(messages, "assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": msg.get("tool_call_id"),
                "content": _text(msg.get("content")),
            }
            _append(messages, "user", [result])
        else:
            raise TranslationError(f"{where}.role: {role!r} is not system, developer, user, assistant or tool")
    out: dict[str, Any] = {"model": model or req.get("model"), "messages": messages}
    if system:
        out["system"] = "\n\n".join(system)
    max_tokens = req.get("max_tokens") or req.get("max_completion_tokens")
    out["max_tokens"] = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else DEFAULT_MAX_TOKENS
    for key in ("temperature", "top_p", "stream"):
        if req.get(key) is not None:
            out[key] = req[key]
    stop = req.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = req.get("tools")
    if tools:
        out["tools"] = [
            {
                "name": (t.get("function") or {}).get("name"),
                "description": (t.get("function") or {}).get("description", ""),
                "input_schema": (t.get("function") or {}).get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if isinstance(t, dict)
        ]
    choice = req.get("tool_choice")
    if isinstance(choice, str) and choice in TOOL_CHOICE:
        out["tool_choice"] = dict(TOOL_CHOICE[choice])
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    if req.get("parallel_tool_calls") is False and "tool_choice" in out and out["tool_choice"]["type"] != "none":
        out["tool_choice"]["disable_parallel_tool_use"] = True
    elif req.get("parallel_tool_calls") is False and tools:
        out["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
    if isinstance(req.get("user"), str):
        out["metadata"] = {"user_id": req["user"]}
    return out


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = sum(
        int(usage.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def translate_response(data: bytes) -> bytes:
    """A Messages API answer as a chat completion (raises ValueError when it is not a message)."""
    msg = json.loads(data)
    if not isinstance(msg, dict) or msg.get("type") != "message":
        raise ValueError("not a Messages API message")
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return _dumps(
        {
            "id": msg.get("id"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": msg.get("model"),
            "choices": [
                {"index": 0, "message": message, "finish_reason": FINISH.get(str(msg.get("stop_reason")), "stop")}
            ],
            "usage": _usage(msg.get("usage") or {}),
        }
    )


def translate_error(data: bytes) -> bytes:
    """An Anthropic error body as an OpenAI-style one; a body that is not one keeps its text as the message."""
    try:
        parsed = json.loads(data)
        err = parsed.get("error") if isinstance(parsed, dict) else None
    except (ValueError, UnicodeDecodeError):
        err = None
    if not isinstance(err, dict):
        err = {"type": "upstream_error", "message": data[:500].decode("utf-8", "replace")}
    return _dumps({"error": {"message": err.get("message", ""), "type": err.get("type"), "param": None, "code": None}})


class StreamTranslator:
    """Feeds on the Anthropic SSE byte stream (any chunking), returns OpenAI chunk SSE bytes for each complete event."""

    __slots__ = ("_buf", "_created", "_id", "_include_usage", "_model", "_tools", "_usage", "done")

    def __init__(self, include_usage: bool) -> None:
        self._buf = b""
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._usage: dict[str, Any] = {}
        self._include_usage = include_usage
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return (
            b"data: "
            + _dumps(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )
            + b"\n\n"
        )

    def feed(self, data: bytes) -> bytes:
        self._buf += data.replace(b"\r\n", b"\n") if b"\r" in data else data
        out: list[bytes] = []
        while b"\n\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n\n", 1)
            payload = b"".join(line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:"))
            if payload:
                out.append(self._event(json.loads(payload)))
        return b"".join(out)

    def _event(self, ev: dict[str, Any]) -> bytes:
        kind = ev.get("type")
        if kind == "message_start":
            msg = ev.get("message") or {}
            self._id, self._model = msg.get("id", ""), msg.get("model", "")
            self._usage.update(msg.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = ev.get("content_block") or {}
            if block.get("type") == "tool_use":
                n = self._tools[ev.get("index", 0)] = len(self._tools)
                call = {"index": n, "id": block.get("id"), "type": "function"}
                call["function"] = {"name": block.get("name"), "arguments": ""}
                return self._chunk({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                n = self._tools.get(ev.get("index", 0), 0)
                return self._chunk(
                    {"tool_calls": [{"index": n, "function": {"arguments": delta.get("partial_json", "")}}]}
                )
            return b""  # thinking and signature deltas have no chat completions equivalent
        if kind == "message_delta":
            self._usage.update(ev.get("usage") or {})
            reason = (ev.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH.get(str(reason), "stop")) if reason else b""
        if kind == "message_stop":
            self.done = True
            tail = b""
            if self._include_usage:
                usage = {"id": self._id, "object": "chat.completion.chunk", "created": self._created}
                usage.update({"model": self._model, "choices": [], "usage": _usage(self._usage)})
                tail = b"data: " + _dumps(usage) + b"\n\n"
            return tail + b"data: [DONE]\n\n"
        if kind == "error":
            err = ev.get("error") or {}
            raise StreamErrorEvent(f"{err.get('type', 'error')}: {err.get('message', '')}")
        return b""  # ping, content_block_stop, unknown future events


async def translate_stream(chunks: AsyncIterator[bytes], translator: StreamTranslator) -> AsyncIterator[bytes]:
    """An Anthropic event stream as chat completion chunks; a stream that ends before `message_stop` failed."""
    try:
        async for chunk in chunks:
            try:
                out = translator.feed(chunk)
            except ValueError as err:
                raise ProtocolError(f"malformed Anthropic event: {err}") from None
            if out:
                yield out
        if not translator.done:
            raise Disconnected("the Anthropic stream ended before message_stop")
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
