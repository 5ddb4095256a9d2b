"""Per-tier providers: what the chain does to a request before it goes to a tier, and to the answer after.

`openai` tiers (and any OpenAI-compatible server) get the request unchanged, except the model name when the tier
sets `model` (one JSON rewrite; without `model` the body is not even parsed: pass-through stays the fast path).
`anthropic` tiers get chat completions requests translated to the Messages API (gateway/providers/anthropic.py);
other paths go to them unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.providers.anthropic import MESSAGES_PATH, StreamTranslator, TranslationError, translate_request

__all__ = ["Prepared", "TranslationError", "prepare"]


class Prepared:
    """The request as the tier gets it; `translate` set when the answer must come back from the Messages API."""

    __slots__ = ("body", "path", "translate")

    def __init__(self, path: str, body: bytes, translate: bool) -> None:
        self.path = path
        self.body = body
        self.translate = translate


def _load(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise TranslationError("body: not valid JSON") from None
    if not isinstance(parsed, dict):
        raise TranslationError("body: must be a JSON object")
    return parsed


def prepare(anthropic: bool, model: str | None, chat: bool, path: str, body: bytes) -> Prepared:
    """Raises TranslationError (naming the field) when the request cannot go to this tier."""
    if anthropic and chat:
        out = translate_request(_load(body), model)
        return Prepared(MESSAGES_PATH, json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode(), True)
    if model is not None and body:
        parsed = _load(body)
        parsed["model"] = model
        return Prepared(path, json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode(), False)
    return Prepared(path, body, False)


def stream_translator(body: bytes) -> StreamTranslator:
    """A translator for one stream; usage goes out as a last chunk when the client asked (`stream_options`)."""
    try:
        opts = json.loads(body).get("stream_options") or {}
    except (ValueError, AttributeError):
        opts = {}
    return StreamTranslator(bool(isinstance(opts, dict) and opts.get("include_usage")))
