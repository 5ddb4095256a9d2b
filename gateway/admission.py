"""Admission control per upstream tier: a bulkhead (concurrency limit) with a bounded queue and a queue timeout.

A request takes a slot at once when one is free; otherwise it waits in a FIFO queue of at most `max_queue`, for at
most `queue_timeout_ms` and never past its deadline. A freed slot is handed to the oldest waiter directly, so a
waiter cannot be overtaken. Never a hang: every wait is bounded, and the caller hears why it was refused
(`bulkhead_full`: the queue was full; `bulkhead_queue_timeout`: no slot came in time).
"""

from __future__ import annotations

import asyncio
from collections import deque

from governor.policy_gateway import Bulkhead as BulkheadSpec

FULL = "bulkhead_full"
QUEUE_TIMEOUT = "bulkhead_queue_timeout"


class Bulkhead:
    __slots__ = ("active", "limit", "max_queue", "queue_timeout_s", "shed", "waiters")

    def __init__(self, spec: BulkheadSpec) -> None:
        self.limit = spec.max_concurrent
        self.max_queue = spec.max_queue
        self.queue_timeout_s = spec.queue_timeout_ms / 1000
        self.shed = spec.when_full == "shed"
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(1 for w in self.waiters if not w.done())

    async def enter(self, deadline: float) -> str | None:
        """None once a slot is held (call `leave`), else why not (FULL or QUEUE_TIMEOUT)."""
        if self.active < self.limit and not self.waiters:
            self.active += 1
            return None
        if self.queued >= self.max_queue:
            return FULL
        loop = asyncio.get_running_loop()
        wait = min(self.queue_timeout_s, deadline - loop.time())
        if wait <= 0:
            return QUEUE_TIMEOUT
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return None  # the slot was handed over just as the wait ran out: it is ours
            fut.cancel()
            self._forget(fut)
            return QUEUE_TIMEOUT
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.leave()  # handed a slot while being cancelled: give it on
            else:
                fut.cancel()
                self._forget(fut)
            raise
        return None

    def _forget(self, fut: asyncio.Future[None]) -> None:
        try:
            self.waiters.remove(fut)
        except ValueError:
            pass

    def leave(self) -> None:
        """Free a slot: to the oldest waiter still waiting, else back to the pool."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes over: `active` stays
                return
        self.active -= 1
