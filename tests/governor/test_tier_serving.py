"""TierAssessment.serving: the tier that gave most of the window's answers, never better than served, and without
the answers of tiers isolated since (what they gave is from before their failure)."""

from __future__ import annotations

from governor.enums import FallbackTier
from governor.tier_health import TierAssessment

T0, T2, T3 = FallbackTier.TIER_0_PRIMARY, FallbackTier.TIER_2_CACHE, FallbackTier.TIER_3_DEGRADED


def assessed(**served: int) -> TierAssessment:
    return TierAssessment(tiers={}, served={FallbackTier(t): n for t, n in served.items()})


def test_most_answers_win_and_a_tie_goes_to_the_worse_tier() -> None:
    assert assessed(tier_0_primary=150, tier_3_degraded=100).serving() is T0
    assert assessed(tier_2_cache=50, tier_3_degraded=50).serving() is T3


def test_answers_of_ignored_tiers_are_left_out_of_the_majority_and_the_count() -> None:
    window = assessed(tier_0_primary=150, tier_3_degraded=100)
    assert window.serving(ignore={T0}) is T3
    assert window.serving(min_answers=101, ignore={T0}) is None  # 100 answers left: too few to say
    assert assessed(tier_0_primary=40).serving(ignore={T0}) is None
    assert assessed(tier_2_cache=0, tier_3_degraded=1).serving(ignore={T0}) is T3


def test_too_few_answers_say_nothing() -> None:
    assert assessed().serving() is None
    assert assessed(tier_2_cache=4).serving(min_answers=5) is None
