"""Waiting in a workflow: for a condition or a deadline, and "wait, escalate at the deadline, wait again".

Like samples-python's updatable_timer_lib.py: the deadline is state the caller can read (a pending gate shows it),
and each time it passes the caller's `overdue` runs and the deadline moves one period on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow


async def wait_until(done: Callable[[], bool], deadline: datetime) -> bool:
    """Wait for `done` or the deadline; False when the deadline passed first."""
    remaining = (deadline - workflow.now()).total_seconds()
    if remaining <= 0:
        return done()
    try:
        await workflow.wait_condition(done, timeout=remaining)
    except TimeoutError:
        return done()
    return True


class EscalatingWait:
    """Wait for a condition; each time the deadline passes first, call `overdue` and wait one more period."""

    def __init__(self, period: timedelta, overdue: Callable[[], None], deadline: datetime | None = None) -> None:
        self.period = period
        self.overdue = overdue
        self.deadline = deadline if deadline is not None else workflow.now() + period
        self.escalations = 0

    async def until(self, done: Callable[[], bool]) -> None:
        """Return once `done()` holds; the deadline carries over between calls (it is not reset by a return)."""
        while not await wait_until(done, self.deadline):
            self.deadline = workflow.now() + self.period
            self.escalations += 1
            self.overdue()
