"""A short load under every fault at once: each answer is a 2xx naming its tier, or the explicit 503. Nothing else."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

from gateway.breaker import BreakerConfig
from tests.gateway.conftest import CHAT, stack

REQUESTS = 1200
CONCURRENCY = 20


def judge(status: int, headers: object, body: bytes, stream: bool) -> str:
    """'tier_x' for a good answer, 'explicit_503', or a description of a silent failure."""
    tier = headers.get("X-Governor-Tier")  # type: ignore[attr-defined]
    if 200 <= status < 300 and tier:
        if not stream or headers.get("content-type") != "text/event-stream":  # type: ignore[attr-defined]
            json.loads(body)
            return tier
        text = body.decode()
        if text.rstrip().endswith("data: [DONE]"):
            return tier
        if "event: error\ndata: " in text and "upstream_stream_failed" in text:
            return "stream_error_event"
        return f"silent: truncated stream from {tier}"
    if status == 503 and tier == "tier_5_error":
        err = json.loads(body)["error"]
        if err["type"] == "no_tier_available" and headers.get("Retry-After") and err["tiers_tried"]:  # type: ignore[attr-defined]
            return "explicit_503"
    return f"silent: {status} tier={tier} body={body[:80]!r}"


async def test_zero_silent_failures_under_faults() -> None:
    rng = random.Random(7)
    # No static tier, so the explicit 503 shows up too; short open periods, so half-open probes run during the load.
    breakers = BreakerConfig(open_s=0.2)
    async with stack(breaker=breakers, deadline_ms=600, drop_tiers=("tier_4_static",)) as s:
        s.primary.set(error_rate=0.3, stream_cut_after=2)
        s.secondary.set(latency_ms=0)
        outcomes: Counter[str] = Counter()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(REQUESTS):
            queue.put_nowait(i)

        # Faults flip while the load runs: outages, 429s, garbage, slow answers, dropped connections.
        phases = [
            lambda: s.secondary.set(rate_limit=True),
            lambda: s.primary.set(outage=True),
            lambda: s.degraded.set(garbage=True),
            lambda: s.secondary.set(rate_limit=False, latency_ms=700),
            lambda: s.primary.set(outage=False, latency_ms=450),
            lambda: s.degraded.set(garbage=False, outage=True, outage_mode="503"),
            lambda: s.primary.set(latency_ms=0),
        ]
        at = {(n + 1) * REQUESTS // (len(phases) + 1): phase for n, phase in enumerate(phases)}

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if i in at:
                    at[i]()
                stream = i % 7 == 0
                body: dict[str, object] = {**CHAT, "messages": [{"role": "user", "content": f"q{rng.randrange(300)}"}]}
                if stream:
                    body["stream"] = True
                try:
                    async with s.http.post(f"{s.url}/chat/v1/chat/completions", json=body) as r:
                        raw = await r.read()
                        outcomes[judge(r.status, r.headers, raw, stream)] += 1
                except Exception as err:  # a reset, a hang cut by the client timeout: silent failures
                    outcomes[f"silent: {type(err).__name__}"] += 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CONCURRENCY))), timeout=60)

    silent = {k: v for k, v in outcomes.items() if k.startswith("silent")}
    assert sum(outcomes.values()) == REQUESTS
    assert silent == {}, outcomes
    served_by = {k for k in outcomes if k.startswith("tier_")}
    assert {"tier_0_primary", "tier_1_secondary"} <= served_by, outcomes
    assert len(served_by) >= 3, outcomes
    assert outcomes["explicit_503"] > 0, outcomes
    print(dict(outcomes))
