"""`--watch` for `governor show` and `governor list`: redraw every `--interval` seconds until Ctrl-C, the incident
closes (`show`), or `--watch-count` redraws were made.

On a terminal each redraw clears the screen first (as `watch` and `kubectl get -w` users expect); into a pipe or a
file the redraws follow each other, each under its own header line. With `--json`, each redraw is one JSON document
on one line (a stream of them, as `kubectl get -w -o json` prints).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from cli.common import EXIT_OK

CLEAR = "\x1b[H\x1b[2J"

Draw = Callable[[], Awaitable[tuple[Any, Callable[[], str], bool]]]
"""One redraw: (the data for --json, the text, whether watching should stop after this one)."""


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_plain(d) for d in data]
    return data


async def watch(args: argparse.Namespace, what: str, draw: Draw) -> int:
    interval: float = args.interval
    drawn = 0
    while True:
        data, text, done = await draw()
        drawn += 1
        if getattr(args, "json", False):
            print(json.dumps(_plain(data), default=str, separators=(",", ":")), flush=True)
        else:
            now = datetime.now(UTC).strftime("%H:%M:%S UTC")
            why = "  (closed: watching stops)" if done else "  (Ctrl-C stops)"
            header = f"Every {interval:g} s: governor {what}    {now}{why}"
            prefix = CLEAR if sys.stdout.isatty() else ("" if drawn == 1 else "\n")
            print(f"{prefix}{header}\n\n{text()}", flush=True)
        if done or (args.watch_count is not None and drawn >= args.watch_count):
            return EXIT_OK
        await asyncio.sleep(interval)
