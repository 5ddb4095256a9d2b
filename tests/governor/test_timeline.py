"""The one timeline narrator: every audit action told as a sentence, odd details never break it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from governor.audit import AuditAction, AuditEntry
from governor.timeline import describe

AT = datetime(2026, 1, 1, tzinfo=UTC)


def entry(action: AuditAction, details: dict | None = None, previous: str = "", new: str = "") -> AuditEntry:
    return AuditEntry(
        seq=1, at=AT, action=action, actor="alice", details=details or {}, previous_state=previous, new_state=new
    )


@pytest.mark.parametrize("action", list(AuditAction))
def test_every_action_has_a_sentence_of_its_own(action: AuditAction) -> None:
    text = describe(entry(action, {"gate": "ramp:10", "percent": 25, "reason": "r", "tier": "tier_1_secondary"}))
    assert text and text != f"{action} (alice)" and "\n" not in text


@pytest.mark.parametrize(
    "details",
    [{}, {"percent": None, "requests": "many", "error_rate": "x"}, {"summary": 42}, {"message": "a\nb\n\nc"}],
)
def test_odd_details_are_told_plainly_never_raise(details: dict) -> None:
    for action in AuditAction:
        text = describe(entry(action, details))
        assert text and "\n" not in text


def test_the_demo_cli_ui_and_postmortem_use_the_same_sentence() -> None:
    from cli.render import timeline_rows
    from governor.details import details_markdown
    from governor.incident import IncidentState
    from governor.policy import load_policy
    from governor.postmortem import render_postmortem

    rolled = entry(AuditAction.ROLLED_BACK, {"percent": 25, "reason": "error rate 12% > 5%"})
    sentence = describe(rolled)
    assert sentence == "ROLLBACK at 25 %: error rate 12% > 5%; traffic goes back to the fallback tier"
    state = IncidentState(incident_id="recovery-chat", service="chat", dependency="primary-llm", audit=[rolled])
    assert timeline_rows(state)[0][-1] == sentence
    assert sentence in details_markdown(state)
    assert sentence in render_postmortem(state, load_policy(Path(__file__).parents[2] / "demo/policies/chat.yaml"))


def test_the_tier_served_below_the_pin_is_told_with_its_answers_and_a_refused_gate_says_what_clients_get() -> None:
    below = {"pinned": "tier_2_cache", "served": "tier_3_degraded", "answers": {"tier_3_degraded": 9}}
    assert describe(entry(AuditAction.TIER_SERVED, below)).startswith("Clients get tier_3_degraded though tier_2_cache")
    back = {"pinned": "tier_2_cache", "served": "tier_2_cache"}
    assert describe(entry(AuditAction.TIER_SERVED, back)) == "Clients are served by the pinned tier_2_cache again"
    refused = {"refused": "enter:tier_4_static", "served": "tier_4_static"}
    assert "keeps answering from tier_4_static" in describe(entry(AuditAction.TIER_SERVED, refused))
