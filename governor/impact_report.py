"""The tier transitions (with their TransitionMode), the blast radius and the impact, as rows and lines that
`governor show`, the UI's current details and the post-mortem share."""

from __future__ import annotations

from datetime import datetime

from governor.blast_radius import BlastRadius
from governor.enums import FallbackTier
from governor.incident import IncidentState

TRANSITION_HEADERS = ["entered", "tier", "from", "mode", "by", "human", "channel", "why"]
BLAST_HEADERS = ["service", "why", "tiers hit", "traffic", "req/s at risk", "features at risk"]


def _hms(at: datetime | None) -> str:
    return f"{at:%H:%M:%S}" if at else "-"


def transition_rows(state: IncidentState) -> list[list[str]]:
    """One row per tier span: when, which tier, from which, its mode, who made it, whether a human did, the mode's
    notification channel, and why."""
    rows: list[list[str]] = []
    previous = FallbackTier.TIER_0_PRIMARY.value  # every incident starts on the normal chain
    for span in state.tiers:
        mode = span.mode
        rows.append(
            [
                _hms(span.entered_at),
                span.tier.value,
                previous,
                mode.value if mode else "-",
                span.actor or "-",
                ("yes" if span.human else "no") if mode else "-",
                mode.notification_channel if mode else "-",
                span.reason,
            ]
        )
        previous = span.tier.value
    return rows


def blast_rows(radius: BlastRadius) -> list[list[str]]:
    return [
        [
            s.service,
            s.why,
            ", ".join(t.value for t in s.tiers) or "-",
            f"{s.traffic_share:.0%}" if s.traffic_share is not None else f"unknown ({s.stats_error})",
            f"{s.rps_at_risk:.2f}" if s.rps_at_risk is not None else "-",
            ", ".join(s.features) or "-",
        ]
        for s in radius.services
    ]


def impact_lines(state: IncidentState) -> list[str]:
    """`key: value` facts: the impact line, affected features, the estimated recovery, the blast radius."""
    out: list[str] = []
    if state.impact is not None:
        i = state.impact
        out.append(f"impact: {i.description}")
        out.append(f"affected features: {', '.join(i.affected_features) or 'none'}")
        if i.estimated_recovery_minutes is not None:
            at = f" (by {i.estimated_recovery_at:%H:%M:%S} UTC)" if i.estimated_recovery_at else ""
            out.append(f"estimated recovery: {i.estimated_recovery_minutes} min{at}, the failure type's typical time")
    if state.blast_radius is not None:
        out.append(f"blast radius: {state.blast_radius.summary()}")
        out += [f"blast radius partial: {e}" for e in state.blast_radius.errors]
    return out


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def cell(v: str) -> str:
        return " ".join(str(v).split()).replace("|", "\\|")[:160]

    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows),
    ]


def postmortem_sections(state: IncidentState) -> list[str]:
    """The post-mortem's "Impact and blast radius" and "Tier transitions" sections."""
    out = ["## Impact and blast radius", ""]
    facts = impact_lines(state)
    out += [f"- {line[0].upper()}{line[1:]}" for line in facts] or ["Not assessed (an incident from before it was)."]
    if state.recovered_at and state.detected_at and state.impact and state.impact.estimated_recovery_minutes:
        took = (state.recovered_at - state.detected_at).total_seconds() / 60
        out.append(f"- Recovered in {took:.1f} min (estimated {state.impact.estimated_recovery_minutes} min)")
    if state.blast_radius is not None and state.blast_radius.services:
        out += ["", *markdown_table(BLAST_HEADERS, blast_rows(state.blast_radius))]
    out += ["", "## Tier transitions", ""]
    rows = transition_rows(state)
    out += markdown_table(TRANSITION_HEADERS, rows) if rows else ["No tier change."]
    out.append("")
    return out
