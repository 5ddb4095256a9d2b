"""The seed's TransitionMode of a tier change (governor/transitions.py) and how incidents show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governor.enums import FallbackTier, NotificationAudience, TransitionMode
from governor.impact_report import transition_rows
from governor.incident import IncidentState, TierSpan
from governor.transitions import transition_actor, transition_audiences, transition_mode

T = FallbackTier


@pytest.mark.parametrize(
    ("tier", "kwargs", "mode"),
    [
        (T.TIER_1_SECONDARY, {}, TransitionMode.AUTOMATIC),
        (T.TIER_2_CACHE, {"approved_by": "alice"}, TransitionMode.APPROVAL_REQUIRED),
        (T.TIER_1_SECONDARY, {"forced_by": "bob"}, TransitionMode.MANUAL),
        (T.TIER_4_STATIC, {}, TransitionMode.EMERGENCY),
        (T.TIER_5_ERROR, {"previous": T.TIER_4_STATIC}, TransitionMode.EMERGENCY),
        (T.TIER_4_STATIC, {"approved_by": "alice"}, TransitionMode.EMERGENCY),
        (T.TIER_4_STATIC, {"forced_by": "bob"}, TransitionMode.MANUAL),
        (T.TIER_4_STATIC, {"previous": T.TIER_5_ERROR}, TransitionMode.AUTOMATIC),  # moving up off the error tier
        (T.TIER_0_PRIMARY, {"scheduled": True, "forced_by": "bob"}, TransitionMode.SCHEDULED),
        (T.TIER_0_PRIMARY, {"approved_by": "alice, bob"}, TransitionMode.APPROVAL_REQUIRED),
    ],
)
def test_each_change_gets_the_first_mode_whose_rule_holds(tier, kwargs, mode) -> None:
    kwargs.setdefault("previous", T.TIER_0_PRIMARY)
    assert transition_mode(tier, **kwargs) is mode


def test_human_transitions_name_the_human_and_the_governor_otherwise() -> None:
    assert transition_actor(TransitionMode.MANUAL, "bob", None) == "bob"
    assert transition_actor(TransitionMode.APPROVAL_REQUIRED, None, "alice") == "alice"
    assert transition_actor(TransitionMode.AUTOMATIC, None, None) == "system"
    assert TransitionMode.MANUAL.requires_human and not TransitionMode.EMERGENCY.requires_human


def test_each_mode_is_told_on_its_seed_channel() -> None:
    assert transition_audiences(TransitionMode.MANUAL) == [NotificationAudience.ONCALL]
    assert transition_audiences(TransitionMode.APPROVAL_REQUIRED) == [NotificationAudience.LEADERSHIP]
    assert transition_audiences(TransitionMode.AUTOMATIC) == [NotificationAudience.INTERNAL]
    emergency = transition_audiences(TransitionMode.EMERGENCY)
    assert NotificationAudience.ONCALL in emergency and NotificationAudience.LEADERSHIP in emergency
    for mode in TransitionMode:  # never customers or the public: they hear through the degradation level
        assert not {NotificationAudience.PUBLIC, NotificationAudience.CUSTOMERS} & set(transition_audiences(mode))


def test_the_transition_table_shows_mode_actor_human_and_channel_and_old_spans_plainly() -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    state = IncidentState(incident_id="i", service="chat", dependency="primary-llm")
    state.tiers = [
        TierSpan(tier=T.TIER_1_SECONDARY, entered_at=at, reason="old history"),
        TierSpan(
            tier=T.TIER_2_CACHE,
            entered_at=at + timedelta(seconds=5),
            reason="forced by on-call",
            mode=TransitionMode.MANUAL,
            actor="bob",
        ),
    ]
    rows = transition_rows(state)
    assert rows[0][1:] == ["tier_1_secondary", "tier_0_primary", "-", "-", "-", "-", "old history"]
    assert rows[1][1:] == ["tier_2_cache", "tier_1_secondary", "manual", "bob", "yes", "oncall", "forced by on-call"]
