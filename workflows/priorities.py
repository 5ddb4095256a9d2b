"""Task queue priorities (Temporal's PriorityKey, 1 highest to 5 lowest, 3 when unset): in an alert storm the
fallback path goes ahead of other incidents' soak samples and notifications on the shared task queue."""

from __future__ import annotations

from temporalio.common import Priority

FALLBACK_PATH = Priority(priority_key=1)
"""Pin first's one activity, and every pin: a rollback, a forced tier, a tier re-check's move."""
BACKGROUND = Priority(priority_key=5)
"""Soak samples and notifications: they may wait behind every other incident's pin."""
DEFAULT = Priority.default
