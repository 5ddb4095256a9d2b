"""Steady client traffic through the gateway: what the demo's users see, request by request and second by second.

Sends chat completions at a fixed rate (open loop, at most `max_in_flight` at once, so a slow gateway cannot pile up
requests), records each answer (time, status, `X-Governor-Tier`, `X-Governor-Reason`, latency) and counts the failed
ones: a non-2xx answer (the gateway's explicit 503 included) or no answer at all (connection error, timeout).

In-process: `async with TrafficGenerator(url) as traffic: ...; traffic.timeline()`.
As a process of the stack: `python -m demo.traffic --url http://127.0.0.1:8080/chat/v1/chat/completions
--out state/demo/traffic.jsonl`; it writes one JSON line per second (and one per failed request) and prints a
summary every few seconds; SIGTERM stops it cleanly. A gateway with client keys gets the key from GOVERNOR_CLIENT_KEY
(`governor up --demo` sets it). `read_traffic(path)` reads that file back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

__all__ = ["RequestRecord", "SecondStats", "TrafficGenerator", "TrafficReport", "read_traffic"]

READY_EVENT = "traffic_started"


@dataclass
class RequestRecord:
    """One client request and what it got back."""

    at: float
    """Wall-clock time (epoch seconds) the request was sent."""
    status: int | None
    """HTTP status; None when no answer came (connection error, timeout)."""
    tier: str | None
    reason: str | None
    latency_ms: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or not 200 <= self.status < 300


@dataclass
class SecondStats:
    """Every request sent during one wall-clock second."""

    second: int
    requests: int = 0
    failed: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    p50_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, record: RequestRecord) -> None:
        self.requests += 1
        self.failed += record.failed
        tier = record.tier or ("no answer" if record.status is None else f"http {record.status}")
        self.tiers[tier] = self.tiers.get(tier, 0) + 1
        if record.reason:
            self.reasons[record.reason] = self.reasons.get(record.reason, 0) + 1
        self.latencies_ms.append(record.latency_ms)

    def close(self) -> None:
        ordered = sorted(self.latencies_ms)
        if ordered:
            self.p50_ms = round(ordered[len(ordered) // 2], 2)
            self.max_ms = round(ordered[-1], 2)

    @property
    def main_tier(self) -> str | None:
        """The tier that served most of this second's requests."""
        return max(self.tiers, key=lambda t: self.tiers[t]) if self.tiers else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_ms")
        return data


@dataclass
class TrafficReport:
    """The traffic as a timeline: one entry per second, the failed requests in full, and the totals."""

    seconds: list[SecondStats]
    failures: list[RequestRecord]
    requests: int
    failed: int

    def tiers_between(self, start: float, end: float) -> Counter[str]:
        """Requests per tier sent in [start, end) (epoch seconds)."""
        total: Counter[str] = Counter()
        for s in self.seconds:
            if start <= s.second < end:
                total.update(s.tiers)
        return total

    def tier_runs(self) -> list[tuple[str, int, int]]:
        """The timeline compressed: (main tier, first second, last second) for each run of equal main tiers."""
        runs: list[tuple[str, int, int]] = []
        for s in self.seconds:
            tier = s.main_tier
            if tier is None:
                continue
            if runs and runs[-1][0] == tier:
                runs[-1] = (tier, runs[-1][1], s.second)
            else:
                runs.append((tier, s.second, s.second))
        return runs

    def render(self, bucket_s: int = 1, since: float | None = None) -> list[str]:
        """The timeline as table rows, `bucket_s` seconds a row: time, requests, failed, each tier's share."""
        tiers = sorted({t for s in self.seconds for t in s.tiers}, key=lambda t: (t.startswith("http"), t))
        rows = [f"{'TIME':<9} {'REQ':>5} {'FAILED':>6}  " + "  ".join(f"{t:>16}" for t in tiers)]
        buckets: dict[int, list[SecondStats]] = {}
        for s in self.seconds:
            if since is None or s.second >= since:
                buckets.setdefault(s.second - (s.second - int(since or 0)) % bucket_s, []).append(s)
        for start, group in sorted(buckets.items()):
            total = sum(s.requests for s in group)
            counts: Counter[str] = Counter()
            for s in group:
                counts.update(s.tiers)
            clock = time.strftime("%H:%M:%S", time.localtime(start))
            cells = "  ".join(f"{counts[t] / total:>16.0%}" if total else f"{'-':>16}" for t in tiers)
            rows.append(f"{clock:<9} {total:>5} {sum(s.failed for s in group):>6}  {cells}")
        return rows


def read_traffic(path: Path) -> TrafficReport:
    """Read the JSON lines `python -m demo.traffic --out` writes (a missing file is an empty report)."""
    seconds: list[SecondStats] = []
    failures: list[RequestRecord] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if "failure" in data:
            failures.append(RequestRecord(**data["failure"]))
        elif "second" in data:
            seconds.append(SecondStats(**data))
    return TrafficReport(
        seconds=seconds,
        failures=failures,
        requests=sum(s.requests for s in seconds),
        failed=sum(s.failed for s in seconds),
    )


def chat_request(n: int) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": f"demo question {n}: what is the status?"}]}


class TrafficGenerator:
    """Send `rps` chat completions a second to `url` until stopped; keep per-request records and per-second stats."""

    def __init__(
        self,
        url: str,
        rps: float = 40.0,
        *,
        max_in_flight: int = 100,
        timeout_s: float = 10.0,
        keep: int = 100_000,
        on_second: Callable[[SecondStats], None] | None = None,
        on_failure: Callable[[RequestRecord], None] | None = None,
        api_key: str | None = None,
    ) -> None:
        if rps <= 0:
            raise ValueError(f"rps must be positive, got {rps}")
        self.url = url
        self.rps = rps
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        """The gateway's client key, when it asks for one (never printed)."""
        self.timeout_s = timeout_s
        self.records: deque[RequestRecord] = deque(maxlen=keep)
        """The most recent requests (bounded)."""
        self.requests = 0
        self.failed = 0
        self.on_second = on_second
        self.on_failure = on_failure
        self._slots = asyncio.Semaphore(max_in_flight)
        self._seconds: dict[int, SecondStats] = {}
        self._pending: Counter[int] = Counter()
        self._closed: list[SecondStats] = []
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        self.started = asyncio.Event()
        self._answered = asyncio.Event()

    # --- lifecycle

    async def __aenter__(self) -> Self:
        self.start()
        await self.started.wait()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self.run(), name="traffic")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop sending, give requests in flight `drain_s` to finish, and close every second."""
        self._stop.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    async def run(self, duration_s: float | None = None, drain_s: float = 5.0) -> None:
        """Send until `stop()` (or for `duration_s`); then wait for the requests in flight and flush the seconds."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        self._http = httpx.AsyncClient(timeout=self.timeout_s, limits=limits, trust_env=False, headers=self.headers)
        flusher = asyncio.create_task(self._flush_loop(), name="traffic-flush")
        try:
            interval = 1.0 / self.rps
            start = time.monotonic()
            self.started.set()
            n = 0
            while not self._stop.is_set():
                if duration_s is not None and time.monotonic() - start >= duration_s:
                    break
                await self._slots.acquire()
                n += 1
                task = asyncio.create_task(self._one(n))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                # Open loop on a fixed schedule: a slow answer does not slow the next request down.
                next_at = start + n * interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=drain_s)
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            self._flush(final=True)
            await self._http.aclose()
            self.started.set()

    # --- one request

    async def _one(self, n: int) -> None:
        assert self._http is not None
        at = time.time()
        second = int(at)
        self._pending[second] += 1
        t0 = time.perf_counter()
        record: RequestRecord
        try:
            response = await self._http.post(self.url, json=chat_request(n))
            record = RequestRecord(
                at=at,
                status=response.status_code,
                tier=response.headers.get("x-governor-tier"),
                reason=response.headers.get("x-governor-reason"),
                latency_ms=round((time.perf_counter() - t0) * 1000, 2),
                error=None if response.is_success else response.text[:300],
            )
        except httpx.HTTPError as err:
            record = RequestRecord(
                at=at,
                status=None,
                tier=None,
                reason=None,
                latency_ms=round((time.perf_counter() - t0) * 1000, 2),
                error=f"{type(err).__name__}: {err}"[:300],
            )
        finally:
            self._slots.release()
        self._pending[second] -= 1
        self.records.append(record)
        self.requests += 1
        if record.failed:
            self.failed += 1
            if self.on_failure is not None:
                self.on_failure(record)
        self._seconds.setdefault(second, SecondStats(second=second)).add(record)
        self._answered.set()

    async def wait_for_requests(self, n: int, timeout_s: float = 30.0) -> None:
        """Until `n` requests have answered (or failed); TimeoutError after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while self.requests < n:
                self._answered.clear()
                await self._answered.wait()

    async def closed_through(self, second: int, timeout_s: float = 30.0) -> None:
        """Until every second before `second` (epoch) has closed: all its requests answered (or failed)."""
        async with asyncio.timeout(timeout_s):
            while (
                int(time.time()) < second
                or any(s < second for s in self._seconds)
                or any(s < second and n > 0 for s, n in self._pending.items())
            ):
                self._answered.clear()  # set by every answer; the clock moves on by itself, hence the short wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), 0.25)

    # --- seconds

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._flush()

    def _flush(self, final: bool = False) -> None:
        """Close every past second whose requests have all answered, oldest first."""
        now = int(time.time())
        for second in sorted(self._seconds):
            if not final and (second >= now or self._pending[second] > 0):
                break
            stats = self._seconds.pop(second)
            self._pending.pop(second, None)
            stats.close()
            self._closed.append(stats)
            if self.on_second is not None:
                self.on_second(stats)

    def timeline(self) -> list[SecondStats]:
        """The closed seconds so far."""
        return list(self._closed)

    def report(self) -> TrafficReport:
        failures = [r for r in self.records if r.failed]
        return TrafficReport(self.timeline(), failures, self.requests, self.failed)


# --------------------------------------------------------------------------------------------------- process


class _Recorder:
    """Writes seconds and failures as JSON lines, and prints a short summary every `every_s` seconds."""

    def __init__(self, out: IO[str], every_s: float) -> None:
        self.out = out
        self.every_s = every_s
        self.batch: list[SecondStats] = []
        self.total = 0
        self.failed = 0

    def second(self, stats: SecondStats) -> None:
        self.out.write(json.dumps(stats.as_json(), separators=(",", ":")) + "\n")
        self.out.flush()
        self.batch.append(stats)
        self.total += stats.requests
        self.failed += stats.failed
        if len(self.batch) >= self.every_s:
            self.print_summary()

    def failure(self, record: RequestRecord) -> None:
        self.out.write(json.dumps({"failure": asdict(record)}, separators=(",", ":")) + "\n")
        self.out.flush()
        print(f"FAILED request: status {record.status}, {record.error}", flush=True)

    def print_summary(self) -> None:
        if not self.batch:
            return
        tiers: Counter[str] = Counter()
        for s in self.batch:
            tiers.update(s.tiers)
        requests = sum(s.requests for s in self.batch)
        span = len(self.batch)
        served = ", ".join(f"{t} {n}" for t, n in tiers.most_common())
        print(
            f"{requests / span:.0f} req/s over {span} s: {served}; failed {sum(s.failed for s in self.batch)} "
            f"(total {self.total} requests, {self.failed} failed)",
            flush=True,
        )
        self.batch = []


async def _main(args: argparse.Namespace) -> int:
    out_path: Path = args.out
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w") as out:
        recorder = _Recorder(out, args.print_every)
        traffic = TrafficGenerator(
            args.url,
            args.rps,
            max_in_flight=args.max_in_flight,
            timeout_s=args.timeout,
            keep=1000,
            on_second=recorder.second,
            on_failure=recorder.failure,
            api_key=os.environ.get("GOVERNOR_CLIENT_KEY") or None,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, traffic._stop.set)
        print(
            json.dumps({"event": READY_EVENT, "url": args.url, "rps": args.rps, "out": str(out_path)}),
            flush=True,
        )
        await traffic.run(duration_s=args.duration)
        recorder.print_summary()
        print(f"traffic stopped: {traffic.requests} requests, {traffic.failed} failed", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.traffic", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway's chat completions URL")
    parser.add_argument("--rps", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines: one per second, one per failure")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: never)")
    parser.add_argument("--max-in-flight", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--print-every", type=int, default=5, help="print a summary every N seconds")
    args = parser.parse_args(argv)
    if args.rps <= 0:
        parser.error(f"--rps must be positive, got {args.rps}")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
