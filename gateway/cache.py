"""The cache tier: exact match on (method, path, canonical JSON body), bounded LRU, TTL, successful answers only."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class CachedAnswer:
    status: int
    content_type: bytes
    body: bytes
    stored_at: float
    source_tier: str


def cache_key(method: str, path: str, body: bytes) -> tuple[str, str, bytes]:
    """The body in canonical JSON (sorted keys, no spaces), so key order and whitespace do not split entries."""
    if body:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            body = canonical.encode()
        except (ValueError, UnicodeDecodeError):
            pass
    return method, path, body


class ResponseCache:
    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str, bytes], CachedAnswer] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str, bytes]) -> tuple[CachedAnswer, float] | None:
        """The answer and its age in seconds, or None (expired entries are dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        age = self._clock() - entry.stored_at
        if age > self.ttl_s:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry, age

    def put(self, key: tuple[str, str, bytes], status: int, content_type: bytes, body: bytes, source_tier: str) -> None:
        entries = self._entries
        entries[key] = CachedAnswer(status, content_type, body, self._clock(), source_tier)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
