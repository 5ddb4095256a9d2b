"""The seed's TransitionMode of a tier change: who or what moved the service, and whom that is told.

Pure: the recovery workflow records the mode on each `TierSpan` and notifies the audiences `transition_audiences`
names, where the policy routes them (docs/transitions.md).
"""

from __future__ import annotations

from governor.enums import FallbackTier, NotificationAudience, TransitionMode

EMERGENCY_TIERS = frozenset({FallbackTier.TIER_4_STATIC, FallbackTier.TIER_5_ERROR})
"""Landing here means no tier above static was healthy (or allowed): the seed's emergency transition."""

CHANNEL_AUDIENCES: dict[str, tuple[NotificationAudience, ...]] = {
    "monitoring": (NotificationAudience.INTERNAL,),
    "oncall": (NotificationAudience.ONCALL,),
    "management": (NotificationAudience.LEADERSHIP,),
    "all_channels": (NotificationAudience.ONCALL, NotificationAudience.INTERNAL, NotificationAudience.LEADERSHIP),
    "calendar": (NotificationAudience.INTERNAL,),
}
"""The seed's `notification_channel` of each mode, as the audiences a policy routes. `all_channels` is every internal
audience: users, customers and the public hear of an emergency through the degradation level's own notification."""


def transition_mode(
    tier: FallbackTier,
    *,
    previous: FallbackTier | None = None,
    forced_by: str | None = None,
    approved_by: str | None = None,
    scheduled: bool = False,
) -> TransitionMode:
    """The mode of a change to `tier`, first rule that holds: a drill or maintenance window is scheduled; a human's
    force_tier / failover is manual; landing on static or the error tier (from a better one) is an emergency; a
    move a gate held until on-call approved it is approval_required; anything else is the governor's automatic one."""
    if scheduled:
        return TransitionMode.SCHEDULED
    if forced_by:
        return TransitionMode.MANUAL
    if tier in EMERGENCY_TIERS and (previous is None or previous.rank < tier.rank):
        return TransitionMode.EMERGENCY
    if approved_by:
        return TransitionMode.APPROVAL_REQUIRED
    return TransitionMode.AUTOMATIC


def transition_audiences(mode: TransitionMode) -> list[NotificationAudience]:
    """Who hears of a transition in this mode (before the policy's routes filter it)."""
    return list(CHANNEL_AUDIENCES[mode.notification_channel])


def transition_actor(mode: TransitionMode, forced_by: str | None, approved_by: str | None) -> str:
    """Who made the change: the human who forced or approved it, else `system` (the governor, as the audit names it)."""
    if mode is TransitionMode.MANUAL and forced_by:
        return forced_by
    if approved_by and mode in (TransitionMode.APPROVAL_REQUIRED, TransitionMode.EMERGENCY):
        return approved_by
    return "system"
