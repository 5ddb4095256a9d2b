"""One request on a tier with `deployments`: its deployments in weighted order until one answers.

A failed attempt (connect error, timeout, 5xx, 429, 529, a bad body) moves the request to the tier's next
deployment at once, within the request's deadline; each deployment's breaker and window see its own attempts. The
tier's breaker and window see one outcome per request: a success when a deployment answered, a failure only when
every deployment tried failed (or every one rests, breaker open), so the tier falls through, and reports down, only
when all its deployments are. The tier's `retry` policy then retries the whole tier as for a single deployment.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gateway.breaker import DENY, PROBE
from gateway.deployments import Deployment, try_order
from gateway.retry import Walk
from gateway.service import Link
from governor.models import OPERATOR_CAUSE

if TYPE_CHECKING:
    from gateway.chain import ChainWalk

RESTING = "deployments_resting"


def note(tried: list[dict[str, str]], link: Link, dep: Deployment | None, reason: str) -> None:
    """One entry of `X-Governor-Reason` / `tiers_tried`; a named deployment's carries its name."""
    if dep is None or dep.name is None:
        tried.append({"tier": link.name, "reason": reason})
    else:
        tried.append({"tier": link.name, "deployment": dep.name, "reason": reason})


def resting_cause(deployments: tuple[Deployment, ...]) -> str:
    """Why a tier whose deployments all rest is down: the commonest cause that opened their breakers."""
    causes = [d.breaker.open_cause or (OPERATOR_CAUSE if d.breaker.mode == "open" else "unknown") for d in deployments]
    return max(sorted(set(causes)), key=causes.count)


async def try_deployments(chain: ChainWalk, link: Link, walk: Walk) -> bool:
    """True once a deployment answered the client."""
    svc, tried = walk.svc, walk.tried
    breaker = link.breaker
    assert breaker is not None
    ticket = breaker.allow()
    if ticket == DENY:
        if breaker.mode == "open":
            chain._skipped(link, None, walk, "breaker_forced_open", OPERATOR_CAUSE)
        else:
            chain._skipped(link, None, walk, "breaker_open", breaker.open_cause or "unknown")
        return False
    order = try_order(link.deployments)
    if not order:  # every deployment rests: the tier is down, and its breaker hears so
        cause = resting_cause(link.deployments)
        link.window.skip(RESTING, cause)
        chain.metrics.count_skipped(svc.name, link.name, RESTING, cause)
        breaker.record(False, ticket == PROBE, cause)
        walk.cause = cause
        tried.append({"tier": link.name, "reason": RESTING})
        return False
    floor = walk.context_floor
    walk.attempted = walk.served_ok = False
    window = link.window
    window.in_flight += 1
    p0 = time.perf_counter()
    done = False
    try:
        for dep in order:
            walk.delay = None
            bulkhead = dep.bulkhead
            if bulkhead is None:
                done = await chain._try_upstream(link, dep, walk)
            else:
                refused = await bulkhead.enter(walk.deadline)
                if refused is not None:
                    chain._skipped(link, dep, walk, refused, refused)
                    continue
                try:
                    done = await chain._try_upstream(link, dep, walk)
                finally:
                    bulkhead.leave()
            if done or walk.context_floor != floor:
                break
    finally:
        window.in_flight -= 1
    elapsed = time.perf_counter() - p0
    if done:
        ok = walk.served_ok
        why = None if ok else walk.cause
        window.record(walk.answered_at - p0, error=not ok, cause=why)  # to the answer (a stream's first event)
        breaker.record(ok, ticket == PROBE, why)
        return True
    if walk.context_floor != floor:  # too long for this model, not a failure of the tier
        window.record(elapsed)
        breaker.record(True, ticket == PROBE)
        return False
    if not walk.attempted:  # every deployment skipped it (bulkheads full, deadline spent): a skip of the tier
        if ticket == PROBE:
            breaker.probes = max(0, breaker.probes - 1)
        cause = walk.cause or "unknown"
        window.skip(walk.skipped or RESTING, cause)
        chain.metrics.count_skipped(svc.name, link.name, walk.skipped or RESTING, cause)
        return False
    cause = walk.cause or "unknown"
    window.record(elapsed, error=True, rate_limited=cause == "rate_limited", cause=cause)
    breaker.record(False, ticket == PROBE, cause)
    return False
