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


_CANONICAL: dict[bytes, bytes] = {}
_CANONICAL_MAX = 4096


def canonical_json(body: bytes) -> bytes:
    """The body in canonical JSON (sorted keys, no spaces); bodies that are not JSON stay as they are.

    Memoized for recently seen raw bodies (a bounded map, cleared when full): the same prompt sent again, the very
    case the cache tier exists for, then costs a dict lookup instead of a parse and a re-encode (~7 us).
    """
    found = _CANONICAL.get(body)
    if found is not None:
        return found
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    if len(_CANONICAL) >= _CANONICAL_MAX:
        _CANONICAL.clear()
    _CANONICAL[body] = canonical
    return canonical


def cache_key(method: str, path: str, body: bytes) -> tuple[str, str, bytes]:
    """Exact match on method, path and canonical JSON body, so key order and whitespace do not split entries."""
    return method, path, canonical_json(body) if body else body


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
        now = self._clock()
        current = entries.get(key)
        if current is not None and current.body == body and now - current.stored_at < 1.0:
            entries.move_to_end(key)  # the same answer stored this second: keep it, skip the churn
            return
        entries[key] = CachedAnswer(status, content_type, body, now, source_tier)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
