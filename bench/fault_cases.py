"""The fault matrix's cases (issue 10's "tests on the real stack"): each injects its faults through the fake models'
`/control`, waits for what a user would wait for, and says what the design promises (`judge`).

Every case promises 0 failed client requests: the gateway falls through to the next tier on any failure.
"""

from __future__ import annotations

import asyncio
import time

from bench.fault_matrix import RAMPING, Case, CaseResult, Matrix, served_during, shares
from governor.enums import FallbackTier, RecoveryPhase
from governor.incident import IncidentState

PRIMARY, SECONDARY = "primary-llm", "secondary-llm"
T0, T1 = FallbackTier.TIER_0_PRIMARY, FallbackTier.TIER_1_SECONDARY


def _available(r: CaseResult) -> None:
    r.expect(r.failed == 0, f"{r.failed} failed client requests (first: {r.failures[:2]})")


def _one_recovered(r: CaseResult) -> None:
    _available(r)
    r.expect(r.incidents == 1, f"{r.incidents} incidents opened, expected 1")
    r.expect(r.outcome.startswith("recovered"), f"outcome {r.outcome}, expected recovered")


def _confirmed(s: IncidentState) -> bool:
    return PRIMARY in s.failed_dependencies and s.failure_type is not None


# --- two dependencies


async def _both_primary_first(m: Matrix, r: CaseResult) -> None:
    since = time.time()
    await m.fault("primary", outage=True)
    await m.fault("secondary", outage=True)
    both = await m.wait(
        "both failures in one incident, served below the secondary",
        since,
        lambda s: {PRIMARY, SECONDARY} <= set(s.failed_dependencies) and s.tier.rank > T1.rank,
        90,
    )
    r.facts["tier while both down"] = both.tier.value
    r.facts["served while both down"] = shares(await served_during(m, 3))
    low = await gateway_served(m, 5)
    most = max(low, key=lambda t: low[t]) if low else ""
    try:  # the state shown follows what clients get (re-checked every recovery_checks.reassess_s)
        shown = await m.wait(
            "the incident shows the tier clients get", since, lambda s: (s.served_tier or s.tier).value == most, 45
        )
        r.facts["shown while both down"] = f"{(shown.served_tier or shown.tier).value} at {shown.degradation_level}"
    except AssertionError as err:
        r.facts["shown while both down"] = str(err)
    r.facts["most served while both down (gateway)"] = most
    await m.fault("primary", reset=True)
    await m.wait(
        "the primary restored while the secondary is still down",
        since,
        lambda s: PRIMARY in s.restored_dependencies and s.tier is T0 and s.phase not in RAMPING,
        150,
    )
    served = await served_during(m, 3)
    r.facts["served after the primary's restore, secondary down"] = shares(served)
    r.facts["primary share then"] = served[T0.value] / max(1, sum(served.values()))
    still = await m.open_state(since)
    r.facts["incident open while the secondary is down"] = still is not None and SECONDARY in still.failed_dependencies


async def gateway_served(m: Matrix, window_s: int) -> dict[str, int]:
    """The client answers per tier in the gateway's last `window_s` (its stats' `served`)."""
    url = f"{m.info.gateway_url}/admin/services/chat/stats?window={window_s}"
    stats = (await m.http.get(url, headers={"Authorization": f"Bearer {m.info.gateway_token}"})).json()
    return {tier: t["served"] for tier, t in stats["tiers"].items() if t.get("served")}


def _judge_both(r: CaseResult) -> None:
    _one_recovered(r)
    low = r.facts.get("served while both down", "")
    r.expect(low != "" and "primary" not in low and "secondary" not in low, f"served while both down: {low}")
    r.expect(r.facts.get("primary share then", 0) >= 0.9, "the primary did not serve once restored first")
    r.expect(r.facts.get("incident open while the secondary is down") is True, "closed with the secondary down")
    most, shown = (
        r.facts.get("most served while both down (gateway)", ""),
        str(r.facts.get("shown while both down", "")),
    )
    r.expect(bool(most) and shown.startswith(f"{most} "), f"shown {shown or 'nothing'}, clients mostly got {most}")


async def _secondary_mid_ramp(m: Matrix, r: CaseResult) -> None:
    since = time.time()
    await m.fault("primary", outage=True)
    await m.wait("fallback to the secondary", since, lambda s: _confirmed(s) and s.tier is T1, 60)
    await m.fault("primary", reset=True)
    ramp = await m.wait("the ramp back to the primary", since, lambda s: s.ramp_percent > 0, 90)
    r.facts["ramp % when the secondary failed"] = ramp.ramp_percent
    await m.fault("secondary", outage=True)
    joined = await m.wait(
        "the secondary's failure joins the incident", since, lambda s: SECONDARY in s.failed_dependencies, 60
    )
    r.facts["tier after the secondary failed"] = joined.tier.value
    r.facts["served after the secondary failed"] = shares(await served_during(m, 4))


def _judge_mid_ramp(r: CaseResult) -> None:
    _one_recovered(r)
    r.expect("tier after the secondary failed" in r.facts, "the secondary's failure never joined the incident")


# --- 429 storms


def _storm(retry_after_s: int) -> Case:
    async def play(m: Matrix, r: CaseResult) -> None:
        since = time.time()
        await m.fault("primary", rate_limit=True, retry_after_s=retry_after_s)
        s = await m.wait("an incident for the 429s", since, _confirmed, 60)
        r.facts["detected as"] = s.failure_type.value if s.failure_type else None
        r.facts["reports"] = [f"{x.source}: {x.failure_type} {x.message[:160]}" for x in s.reports[:3]]
        r.facts["reason"] = s.reason[:300]
        served = await served_during(m, 5)
        r.facts["served during the storm"] = shares(served)
        r.facts["primary answers during the storm"] = served[T0.value]

    def judge(r: CaseResult) -> None:
        _one_recovered(r)
        r.expect(r.failure_types == ["rate_limited"], f"failure type {r.failure_types}, expected rate_limited")

    kind = "shorter" if retry_after_s < 60 else "longer"
    return Case(
        f"429-retry-after-{retry_after_s}s",
        f"429 storm, Retry-After {retry_after_s} s ({kind} than the breaker's 60 s)",
        play,
        judge,
        close_limit_s=300,
    )


# --- 200s that are not completions


def _bad_body(kind: str, title: str) -> Case:
    async def play(m: Matrix, r: CaseResult) -> None:
        since = time.time()
        await m.fault("primary", garbage=True, garbage_kind=kind)
        start = time.time()
        s = await m.wait("an incident for the bad bodies", since, _confirmed, 60)
        r.facts["detected as"] = s.failure_type.value if s.failure_type else None
        r.facts["detected after s"] = round(time.time() - start, 1)
        served = await served_during(m, 4)
        r.facts["served during the fault"] = shares(served)
        r.facts["primary answers during the fault"] = served[T0.value]

    def judge(r: CaseResult) -> None:
        _one_recovered(r)
        r.expect(r.failure_types == ["data_corruption"], f"failure type {r.failure_types}, expected data_corruption")
        primary = r.facts.get("primary answers during the fault")
        r.expect(primary == 0, f"{primary} bad answers served as the primary's")

    return Case(f"bad-200-{kind}", title, play, judge)


# --- a primary that looks healthy


def _hold_faulty(seconds: float, key: str, **faults: object) -> Case:
    """Keep the primary faulty for `seconds`; record the ramp and the phases meanwhile."""

    async def play(m: Matrix, r: CaseResult) -> None:
        since = time.time()
        first = len(m.samples)
        await m.fault("primary", **faults)
        await m.wait("an incident", since, _confirmed, 60)
        await asyncio.sleep(seconds)
        window = [x.state for x in m.samples[first:] if x.state is not None and x.state.outcome == "open"]
        r.facts["max ramp % while faulty"] = max((s.ramp_percent for s in window), default=0)
        r.facts["phases while faulty"] = sorted({s.phase.value for s in window})
        r.facts["flaps while faulty"] = max((s.flaps for s in window), default=0)
        r.facts["flapping shown"] = any(s.flapping for s in window)
        r.facts["served while faulty"] = shares(m.traffic.report().tiers_between(since, time.time()))

    def judge(r: CaseResult) -> None:
        _available(r)
        r.expect(r.facts.get("max ramp % while faulty") == 0, f"ramped to {r.facts.get('max ramp % while faulty')} %")
        phases = r.facts.get("phases while faulty", [])
        r.expect(RecoveryPhase.GRADUAL_RESTORE.value not in phases, f"restore began while faulty: {phases}")
        r.expect(r.outcome.startswith("recovered"), f"outcome {r.outcome}, expected recovered once the fault cleared")

    return Case(key, "", play, judge)


def _noisy(seconds: float) -> Case:
    async def play(m: Matrix, r: CaseResult) -> None:
        await m.fault("primary", slow_rate=0.03, slow_ms=300, error_rate=0.005)
        served = await served_during(m, seconds)
        r.facts["served while noisy"] = shares(served)

    def judge(r: CaseResult) -> None:
        _available(r)
        r.expect(r.incidents == 0, f"{r.incidents} incidents opened for a healthy primary")

    return Case(
        "noisy-healthy",
        f"noisy but healthy primary ({seconds:.0f} s: 3 % answers 300 ms late, 0.5 % errors)",
        play,
        judge,
        close_limit_s=60,
    )


def cases(hold_s: float = 40.0, noisy_s: float = 30.0) -> dict[str, Case]:
    """Every case by name, in the order the matrix runs them."""
    flapping = _hold_faulty(hold_s, "flapping", flap_period_s=10, flap_down_s=2)
    flapping.title = f"flapping primary (down 2 s of every 10, for {hold_s:.0f} s)"
    errors = _hold_faulty(hold_s, "errors-30pct", error_rate=0.3)
    errors.title = f"30 % completion errors behind a healthy /health ({hold_s:.0f} s)"
    listed = [
        _noisy(noisy_s),
        Case(
            "both-down-primary-first",
            "primary + secondary down, the primary back first",
            _both_primary_first,
            _judge_both,
        ),
        Case(
            "secondary-mid-ramp",
            "the secondary fails while the primary ramps back",
            _secondary_mid_ramp,
            _judge_mid_ramp,
        ),
        _storm(5),
        _storm(90),
        _bad_body("html", "200 with an HTML page"),
        _bad_body("json_error", '200 with {"error": {"type": "insufficient_quota"}}'),
        _bad_body("broken_json", "200 with {<html>...}"),
        _bad_body("sse", "200 with an SSE stream to a non-stream request"),
        flapping,
        errors,
    ]
    return {c.name: c for c in listed}
