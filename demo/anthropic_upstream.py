"""A fake Anthropic Messages API model: demo/upstream.py's fake with the same faults and `/control`, other wire format.

`POST /v1/messages` (JSON, or Anthropic's server-sent events with `"stream": true`: message_start,
content_block_start/delta/stop, message_delta with the stop reason and usage, message_stop). Faults answer in
Anthropic's shapes (`{"type": "error", "error": {"type", "message"}}`): `outage_mode: "503"` answers 529
`overloaded_error`, `rate_limit` 429 `rate_limit_error` with `retry-after`, `error_rate` 500 `api_error`; with an
`api_key`, a missing or wrong `x-api-key` (or `Authorization: Bearer`) is 401 `authentication_error`; no `max_tokens` is 400
`invalid_request_error`, as the real API. With `tools` and a `tool_choice` of `any` or `tool`, it answers a `tool_use`
block (input `{"query": <last user text>}`, stop_reason `tool_use`); a reply cut by `max_tokens` stops with
`max_tokens`. CLI: `python -m demo.upstream --api anthropic --name secondary --port 9102`.
"""

from __future__ import annotations

import json
from typing import Any

from demo.upstream import Upstream, _json, _Request

__all__ = ["AnthropicUpstream"]

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _error(status: int, kind: str, message: str, extra: bytes = b"") -> bytes:
    return _json(status, {"type": "error", "error": {"type": kind, "message": message}}, extra=extra)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(payload, separators=(",", ":")).encode())


class AnthropicUpstream(Upstream):
    def answer(self, req: _Request) -> bytes | None:
        if req.path != "/v1/messages":
            if req.path.endswith("/chat/completions"):
                return _error(404, "not_found_error", f"{req.path}: this is the Messages API (POST /v1/messages)")
            return super().answer(req)
        result = self._message(req, stream=False)
        return result if result is None or isinstance(result, bytes) else _json(200, result)

    def stream_plan(self, req: _Request) -> tuple[bytes, list[bytes], int | None] | bytes | None:
        if b'"stream":true' not in b"".join(req.body).replace(b" ", b""):
            return self.answer(req)
        result = self._message(req, stream=True)
        if result is None or isinstance(result, bytes):
            return result
        self.counters.streams += 1
        return SSE_HEAD, self._events(result), self.faults.stream_cut_after

    def _message(self, req: _Request, stream: bool) -> dict[str, Any] | bytes | None:
        counters, faults = self.counters, self.faults
        counters.by_path[req.path] = counters.by_path.get(req.path, 0) + 1
        if faults.down():
            if faults.outage_mode == "close":
                return None
            return _error(529, "overloaded_error", f"{self.name} is overloaded (injected outage)")
        if req.method != "POST":
            return _error(405, "invalid_request_error", "use POST /v1/messages")
        counters.completions += 1
        counters.last_auth = dict(req.headers)
        given = req.headers.get("x-api-key") or req.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key is not None and given != self.api_key:  # the API takes either (anthropic SDK 2.x: Bearer)
            return _error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in req.headers:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if faults.rate_limit:
            counters.rate_limited += 1
            extra = b"retry-after: %d\r\n" % faults.retry_after_s
            return _error(429, "rate_limit_error", "rate limited (injected)", extra)
        injected = self._injected_fault()  # error_rate and garbage, in the base's shapes
        if injected is not None:
            if injected.startswith(b"HTTP/1.1 500"):
                return _error(500, "api_error", "internal error (injected)")
            return injected
        try:
            body = json.loads(b"".join(req.body) or b"null")
        except ValueError:
            return _error(400, "invalid_request_error", "body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "invalid_request_error", "messages: a non-empty list is required")
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        if "system" in body and not isinstance(body["system"], str | list):
            return _error(400, "invalid_request_error", "system: must be a string or a list of blocks")
        return self._reply(body)

    def _reply(self, body: dict[str, Any]) -> dict[str, Any]:
        counters = self.counters
        counters.last_model = body.get("model") if isinstance(body.get("model"), str) else None
        counters.last_max_tokens = body["max_tokens"]
        last = ""
        for msg in reversed(body["messages"]):
            content = msg.get("content") if isinstance(msg, dict) else None
            if msg.get("role") == "user" and content:
                if isinstance(content, str):
                    last = content
                else:
                    last = " ".join(
                        b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
                    )
                break
        prompt = sum(len(json.dumps(m).split()) for m in body["messages"])
        self._seq += 1
        msg_id = f"msg_{self.name}_{self._seq}"
        choice = body.get("tool_choice") or {}
        tools = body.get("tools") or []
        if tools and choice.get("type") in ("any", "tool"):
            name = choice.get("name") or tools[0].get("name")
            block = {"type": "tool_use", "id": f"toolu_{self._seq}", "name": name, "input": {"query": last}}
            content, stop, out_tokens = [block], "tool_use", 8
        else:
            words = [f"[{self.name}]", *last.split()]
            cut = len(words) > body["max_tokens"]
            words = words[: body["max_tokens"]]
            content = [{"type": "text", "text": " ".join(words)}]
            stop, out_tokens = ("max_tokens" if cut else "end_turn"), len(words)
        return {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or self.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": out_tokens},
        }

    @staticmethod
    def _events(msg: dict[str, Any]) -> list[bytes]:
        start = {
            **msg,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": msg["usage"]["input_tokens"], "output_tokens": 1},
        }
        events = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event("ping", {"type": "ping"}),
        ]
        for i, block in enumerate(msg["content"]):
            if block["type"] == "text":
                events.append(
                    _event(
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    )
                )
                for j, word in enumerate(block["text"].split(" ")):
                    delta = {"type": "text_delta", "text": (" " if j else "") + word}
                    events.append(
                        _event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
                    )
            else:
                events.append(
                    _event(
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}},
                    )
                )
                raw = json.dumps(block["input"])
                for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                    delta = {"type": "input_json_delta", "partial_json": part}
                    events.append(
                        _event("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
                    )
            events.append(_event("content_block_stop", {"type": "content_block_stop", "index": i}))
        final = {"type": "message_delta", "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None}}
        final["usage"] = {"output_tokens": msg["usage"]["output_tokens"]}
        events += [_event("message_delta", final), _event("message_stop", {"type": "message_stop"})]
        return events
