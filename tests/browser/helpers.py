"""What the browser test needs around the stack: free ports, its policy, client traffic, Chromium, screenshots."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import string
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from playwright.async_api import Page

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCREENSHOTS = Path(os.environ.get("GOVERNOR_SCREENSHOTS", ROOT / "artifacts" / "screenshots"))
CHROMIUM = os.environ.get("GOVERNOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHAT = {"model": "demo", "messages": [{"role": "user", "content": "is the assistant up?"}]}

T = TypeVar("T")


def write_policy(folder: Path, gateway: int, primary: int, secondary: int, degraded: int) -> Path:
    """The test policy (`policy.yaml.in`) on these ports, as `<folder>/chat.yaml`; returns the folder."""
    template = string.Template((HERE / "policy.yaml.in").read_text())
    text = template.substitute(
        gateway_port=gateway, primary_port=primary, secondary_port=secondary, degraded_port=degraded
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chat.yaml").write_text(text)
    return folder


def chromium_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return (
            f"no Chromium at {CHROMIUM}: run `make system-deps` (Debian's chromium package) "
            "or point GOVERNOR_CHROMIUM at a Chromium binary"
        )
    return None


class Shots:
    """Numbered full-page screenshots, one per step: `01-status-during-incident.png`, ..."""

    def __init__(self, folder: Path = SCREENSHOTS) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("[0-9][0-9]-*.png"):
            old.unlink()
        self.count = 0
        self.taken: list[Path] = []

    async def take(self, page: Page, step: str) -> Path:
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{slug}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@dataclass
class Traffic:
    """Steady client traffic through the gateway: what served each request, and every failure a client saw."""

    url: str
    rps: float = 20.0
    tiers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        interval = 1.0 / self.rps
        async with httpx.AsyncClient(timeout=15) as http:
            in_flight: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while not stop.is_set():
                task = asyncio.create_task(self._one(http))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                next_at += interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _one(self, http: httpx.AsyncClient) -> None:
        self.sent += 1
        try:
            answer = await http.post(self.url, json=CHAT)
        except httpx.HTTPError as err:
            self.failures.append(f"{type(err).__name__}: {err}")
            return
        if answer.status_code != 200:
            self.failures.append(f"HTTP {answer.status_code}: {answer.text[:200]}")
            return
        self.tiers[answer.headers.get("x-governor-tier", "?")] += 1


@contextlib.asynccontextmanager
async def running(traffic: Traffic) -> AsyncIterator[Traffic]:
    stop = asyncio.Event()
    task = asyncio.create_task(traffic.run(stop))
    try:
        yield traffic
    finally:
        stop.set()
        await task


async def eventually(
    check: Callable[[], Awaitable[T | None]], what: str, within: float = 60.0, interval: float = 0.25
) -> T:
    """Poll `check` until it returns something truthy (for state we can only read, not await); say what timed out."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while True:
        try:
            value = await check()
        except Exception as err:  # not there yet (a query before the worker answers): keep it for the message
            last, value = err, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not seen within {within:.0f} s" + (f" (last error: {last!r})" if last else "")
            )
        await asyncio.sleep(interval)
