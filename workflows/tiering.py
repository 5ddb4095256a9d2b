"""The recovery workflow's tier choice: serve the highest tier healthy now, never one known to be down.

A mixin of IncidentRecoveryWorkflow. Fallback asks `assess_tiers` (every dependency probed, every tier's gateway
window judged) and pins the best tier it finds, through that tier's `enter:` gate where the policy gates it (or asks
for every tier when `auto_failover` is off). While the failed tier is down the check repeats every
`recovery_checks.reassess_s`: the service moves down off a tier that failed, and up to a better one that has been
healthy for `recovery_checks.stable_s` (a flapping tier is never moved up to in an up-window).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from governor.actions import Activity, AssessTiersInput
    from governor.audit import AuditAction
    from governor.enums import FallbackTier, RecoveryPhase
    from governor.pin_first import waits_for_oncall
    from governor.tier_health import TierAssessment, best_tier, track_healthy_since

from workflows.runbook import Runbook

TIER_HEALTH_PATCH = "tier-health"
"""workflow.patched id: histories recorded before the tier check replay without it."""
SERVED_TRUTH_PATCH = "served-truth"
"""workflow.patched id: the re-check shows the tier clients are served (recorded histories never did)."""


class Tiering(Runbook):
    """Fallback's tier choice and the periodic re-check while the failed tier is down."""

    def _tier_health_on(self) -> bool:
        return workflow.patched(TIER_HEALTH_PATCH)

    def _gated(self, gate: str) -> bool:
        """Whether `gate` waits for on-call: the policy gates it, or `auto_failover: false` gates every fallback."""
        assert self.policy
        return waits_for_oncall(self.policy, gate)

    async def _assess(self) -> TierAssessment:
        assert self.policy
        assessment = self._prefetched_assessment() or await self._act(  # pin first checked them already
            Activity.ASSESS_TIERS,
            AssessTiersInput(policy=self.policy),
            TierAssessment,
            "check every tier's health",
        )
        self.s.healthy_since = track_healthy_since(self.s.healthy_since, assessment, workflow.now())
        down = {str(t): h.reason for t, h in assessment.tiers.items() if not h.status.allows_traffic}
        if down != self.s.tiers_down:
            self._audit(AuditAction.TIERS_CHECKED, details={"down": down})
        self.s.tiers_down = down
        return assessment

    async def _choose_tier(self, context: str) -> FallbackTier:
        """The highest tier healthy now (never the failed one), through its enter gate; a refused tier is skipped."""
        assert self.policy
        assessment = await self._assess()
        unavailable = self._unavailable()
        while True:
            tier = best_tier(self.policy.tiers, assessment, unavailable)
            gate = f"enter:{tier}"
            if not self._gated(gate):
                return tier
            if await self._await_gate(gate, f"{context}: fall back to {tier}"):
                self._note_approval(tier, gate)
                return tier
            unavailable.add(tier)  # on-call refused this tier: take the next one down

    async def _recheck_tiers(self) -> None:
        """While the failed tier is down: leave a tier that failed, or move up to a better one that is stable; then
        show what clients are served (under SERVED_TRUTH_PATCH)."""
        if self.s.tier_forced:
            return  # on-call chose the tier; only on-call changes it
        assessment = await self._assess()
        if not await self._move_tier(assessment) and workflow.patched(SERVED_TRUTH_PATCH):
            await self._show_served(assessment)

    async def _move_tier(self, assessment: TierAssessment) -> bool:
        """Pin a better or a working tier when the assessment says so; False when the pinned tier stays."""
        assert self.policy
        current, checks = self.s.tier, self.policy.recovery_checks
        unavailable = self._unavailable()
        while True:
            target = best_tier(
                self.policy.tiers,
                assessment,
                unavailable,
                current=current,
                healthy_since=self.s.healthy_since,
                now=workflow.now(),
                stable_s=checks.stable_s,
            )
            if target is current:
                return False
            if target.rank > current.rank:  # the tier serving is down: move down, through the new tier's gate
                gate, why = f"enter:{target}", f"{current} is down ({self.s.tiers_down.get(str(current), '')})"
            else:  # a better tier has been healthy for stable_s: move up, through the current tier's exit gate
                since = self.s.healthy_since[target]
                gate = f"exit:{current}"
                why = f"{target} healthy for {(workflow.now() - since).total_seconds():.0f} s"
            if not self._gated(gate):
                break
            if await self._await_gate(gate, f"{why}: serve from {target}"):
                self._note_approval(target, gate)
                break
            if target.rank < current.rank:
                self.s.healthy_since.pop(target, None)  # refused: ask again only after another stable window
                return False
            unavailable.add(target)
        ramping = self.s.phase is RecoveryPhase.GRADUAL_RESTORE  # the fallback under a ramp changed: keep the share
        await self._pin(target, reason=why, primary_weight=self.s.ramp_percent if ramping else 0)
        back = [d for d in self.s.failed_dependencies if self.policy.failed_tier(d) is target]
        if back and target is not self.s.failed_tier:  # a failed tier stable for stable_s serves again: restored
            await self._restore_dependencies(back)
        self._notify_level(f"fallback_active:{len(self.s.tiers)}", f"{self.s.service} is served by {target}")
        return True

    async def _show_served(self, assessment: TierAssessment) -> None:
        """Make the state shown the state served: when most answers in the gateways' window come from a tier worse
        than the pin (the gateway falling through on its own, to stay available), the degradation level, flags,
        status page and notifications follow that tier, and its `enter:` gate is asked where the policy gates it;
        when the pin serves again, they follow the pin. The route is left alone: the pin still answers what it can."""
        assert self.policy
        ramping = self.s.phase is RecoveryPhase.GRADUAL_RESTORE or self.s.ramp_percent > 0
        # Pin first pins ~3 s sooner, so the first re-checks' window still holds what the failed tiers answered before
        # they failed; outside a ramp (where the restored tier serves its share again) those answers are left out.
        stale = self._unavailable() if self._pin_first and not ramping else set()
        served = assessment.serving(self.policy.recovery_checks.min_samples, ignore=stale)
        if served is None:
            return  # too little traffic to say
        shown = served if served.rank > self.s.tier.rank else None
        if shown == self.s.served_tier:
            return
        tier = shown or self.s.tier
        degradation = self._degradation_for(tier)
        await self._gateway(
            f"show {tier} as served",
            degradation=degradation,
            status=self._status_for(degradation.level),
        )
        self.s.served_tier, self.s.degradation_level = shown, degradation.level
        answers = {str(t): n for t, n in sorted(assessment.served.items(), key=lambda kv: kv[0].rank)}
        self._audit(
            AuditAction.TIER_SERVED, details={"pinned": str(self.s.tier), "served": str(tier), "answers": answers}
        )
        if shown is None:
            self._notify_level(f"served:{tier}", f"{self.s.service}: clients are served by the pinned {tier} again")
            return
        total = sum(assessment.served.values())
        why = f"the gateway answers {assessment.served.get(shown, 0)} of {total} requests from {shown} on its own"
        self._notify_level(f"served:{shown}", f"{self.s.service}: clients get {shown} though {self.s.tier} is pinned")
        gate = f"enter:{shown}"
        if self._gated(gate) and not any(d.gate == gate and d.approved for d in self.s.decisions):
            if await self._await_gate(gate, f"{why}: {self.s.tier} cannot answer them"):
                self._note_approval(shown, gate)
            else:  # availability first: the gateway keeps answering; the refusal is on the record for on-call
                self._audit(AuditAction.TIER_SERVED, details={"refused": gate, "served": str(shown)})

    def _unavailable(self) -> set[FallbackTier]:
        """Tiers never chosen: the one being restored (it comes back through validation and the ramp), and any
        other failed tier until it has been healthy for `stable_s`."""
        assert self.policy
        out, now = {self.s.failed_tier}, workflow.now()
        for dependency in self.s.failed_dependencies[1:]:
            tier = self.policy.failed_tier(dependency)
            since = self.s.healthy_since.get(tier)
            if since is None or (now - since).total_seconds() < self.policy.recovery_checks.stable_s:
                out.add(tier)
        return out

    def _recheck_due(self) -> timedelta:
        assert self.policy
        return timedelta(seconds=self.policy.recovery_checks.reassess_s)
