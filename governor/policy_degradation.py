"""The policy's degradation section: tier -> level, and level -> which features are preserved, reduced or disabled.

The seed's DEGRADATION_RULES are the defaults. Split from governor/policy.py, which re-exports `Degradation`.
"""

from __future__ import annotations

from pydantic import Field

from governor.enums import DegradationLevel, FallbackTier, FeatureFlag
from governor.policy_types import Name, _Strict


def _seed_tier_levels() -> dict[FallbackTier, DegradationLevel]:
    return {
        FallbackTier.TIER_0_PRIMARY: DegradationLevel.NORMAL,
        FallbackTier.TIER_1_SECONDARY: DegradationLevel.DEGRADED_L1,
        FallbackTier.TIER_2_CACHE: DegradationLevel.DEGRADED_L2,
        FallbackTier.TIER_3_DEGRADED: DegradationLevel.MINIMAL,
        FallbackTier.TIER_4_STATIC: DegradationLevel.EMERGENCY,
        FallbackTier.TIER_5_ERROR: DegradationLevel.OFFLINE,
    }


class DegradationRule(_Strict):
    preserve: list[Name] = Field(default_factory=list)
    reduce: list[Name] = Field(default_factory=list)
    disable: list[Name] = Field(default_factory=list)


def _seed_rules() -> dict[DegradationLevel, DegradationRule]:
    """The seed's DEGRADATION_RULES; emergency keeps the minimal rules, offline disables all."""
    minimal = DegradationRule(preserve=["authentication"], disable=["all_except_auth"])
    return {
        DegradationLevel.NORMAL: DegradationRule(preserve=["all"]),
        DegradationLevel.DEGRADED_L1: DegradationRule(
            preserve=["authentication", "core_read", "core_write"],
            reduce=["response_quality", "feature_richness"],
            disable=["analytics", "recommendations"],
        ),
        DegradationLevel.DEGRADED_L2: DegradationRule(
            preserve=["authentication", "core_read"],
            reduce=["core_write"],
            disable=["analytics", "recommendations", "search", "notifications"],
        ),
        DegradationLevel.MINIMAL: minimal,
        DegradationLevel.EMERGENCY: minimal,
        DegradationLevel.OFFLINE: DegradationRule(disable=["all"]),
    }


SEED_FEATURES = [
    "authentication",
    "core_read",
    "core_write",
    "response_quality",
    "feature_richness",
    "analytics",
    "recommendations",
    "search",
    "notifications",
]


class Degradation(_Strict):
    features: list[Name] = Field(default_factory=lambda: list(SEED_FEATURES))
    tier_levels: dict[FallbackTier, DegradationLevel] = Field(default_factory=_seed_tier_levels)
    rules: dict[DegradationLevel, DegradationRule] = Field(default_factory=_seed_rules)
    critical_floor: DegradationLevel | None = DegradationLevel.DEGRADED_L2
    """The seed's `handle_failure` rule: a CRITICAL failure served from a fallback degrades the service to at least
    this level; null relaxes it (the tier's own level applies)."""

    def level_for(self, tier: FallbackTier, critical: bool = False) -> DegradationLevel:
        """The level a tier serves at; a CRITICAL failure served from a fallback tier takes at least the floor."""
        level = self.tier_levels.get(tier, _seed_tier_levels()[tier])
        floor = self.critical_floor
        if critical and floor is not None and tier is not FallbackTier.TIER_0_PRIMARY and floor.rank > level.rank:
            return floor
        return level

    def flags_for(self, level: DegradationLevel) -> dict[str, FeatureFlag]:
        """Every feature's flag at this level: preserve -> enabled, reduce -> degraded, disable -> disabled."""
        rule = self.rules.get(level) or _seed_rules()[level]
        flags: dict[str, FeatureFlag] = {}
        for feature in self.features:
            if "all" in rule.disable or ("all_except_auth" in rule.disable and feature != "authentication"):
                flags[feature] = FeatureFlag.DISABLED
            elif feature in rule.disable:
                flags[feature] = FeatureFlag.DISABLED
            elif feature in rule.reduce:
                flags[feature] = FeatureFlag.DEGRADED
            else:
                flags[feature] = FeatureFlag.ENABLED
        return flags
