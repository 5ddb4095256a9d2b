from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def children_of(pid: int) -> list[int]:
    """Live child processes of `pid`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def stray_children() -> Iterator[Callable[[], list[int]]]:
    """`stray_children()` lists our children that were not there when the test began (a session-scoped
    Temporal server started by another test's fixture is not a leak of this one)."""
    before = set(children_of(os.getpid()))
    yield lambda: [pid for pid in children_of(os.getpid()) if pid not in before]
