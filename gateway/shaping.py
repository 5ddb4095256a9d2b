"""What a client's request becomes for one upstream deployment, and whether a 2xx answer is what it promises.

Shared by the chain walk (gateway/chain.py) and the validation probes (gateway/probe.py), so both treat a request
and judge an answer the same way.
"""

from __future__ import annotations

import json

import orjson

from gateway.deployments import Deployment, azure_path
from gateway.http import JSON_CT, SSE_CT, json_bytes
from gateway.providers import prepare
from gateway.service import EXPECT_OFF, EXPECT_SET, Link

__all__ = ["CHAT_KEYS", "CHAT_SUFFIX", "body_problem", "cap_tokens", "for_upstream"]

CHAT_KEYS = ("choices",)
CHAT_SUFFIX = "/chat/completions"


def body_problem(link: Link, data: bytes, ctype: bytes, chat: bool) -> str | None:
    """Why a 2xx body is not what the endpoint promises (None: it is). A full JSON parse, never first/last byte.

    Strict (the tier's `expect`, or a chat completion path by default): a JSON object with the expected keys, not
    an event stream the client did not ask for. Otherwise only a body that says it is JSON must parse. Never an
    error object (`{"error": ...}`) either way."""
    mode = link.expect_mode
    keys: tuple[str, ...]
    if mode == EXPECT_OFF:
        return None
    if mode == EXPECT_SET:
        keys, strict = link.expect_keys, True
    elif chat:
        keys, strict = CHAT_KEYS, True
    else:
        keys, strict = (), False
    if strict and ctype.startswith(SSE_CT):
        return "event_stream_not_asked_for"
    if not strict and not (ctype.startswith(JSON_CT) or b"+json" in ctype):
        return None
    try:
        parsed = _parse(data)
    except (ValueError, UnicodeDecodeError):
        return "not_json"
    if isinstance(parsed, dict):
        if parsed.get("error") is not None:
            return "error_object"
        for key in keys:
            if key not in parsed:
                return f"no_{key}"
        return None
    return "not_a_json_object" if strict else None


def _parse(data: bytes) -> object:
    """orjson's parse (several times the standard library's on an answer); what it refuses and the standard library
    takes (an integer beyond 64 bits, NaN) goes to json.loads, so no answer is judged `not_json` for the parser."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def for_upstream(dep: Deployment, chat: bool, path: str, body: bytes) -> tuple[str, bytes, bool]:
    """(path, body, whether the answer needs translating) as this deployment's upstream takes them: its provider's
    API, its model, Azure's deployment path (the client's request as is when it has none of them). Raises
    TranslationError naming the field."""
    if not dep.rewrites:
        return path, body, False
    prepared = prepare(dep.anthropic, dep.model, chat, path, body)
    if dep.azure_prefix is not None:
        return azure_path(dep, prepared.path), prepared.body, prepared.translate
    return prepared.path, prepared.body, prepared.translate


def cap_tokens(body: bytes, cap: int) -> bytes:
    """The degraded tier's request cap: `max_tokens` (and `max_completion_tokens`) at most `cap`."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if not isinstance(parsed, dict):
        return body
    capped = False
    for key in ("max_tokens", "max_completion_tokens"):
        value = parsed.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            parsed[key] = min(value, cap)
            capped = True
    if not capped:
        parsed["max_tokens"] = cap
    return json_bytes(parsed)
