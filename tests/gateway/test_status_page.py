"""The public status page: incident history built from the admin writes the recovery workflow makes, in `/status`
and `/status.json`, and WCAG AA contrast for the banner on every status colour (computed from the page's CSS)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from governor.gateway_api import StatusComponent
from tests.gateway.conftest import Stack
from tests.gateway.contrast import AA_NORMAL_TEXT, contrast_ratio

INCIDENT = {"X-Governor-Incident": "recovery-chat"}
BACKUP = "Running in backup mode, full functionality"


def test_the_wcag_formula_matches_known_ratios() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the lightest AA grey on white
    assert contrast_ratio("#ffffff", "#f1c40f") == pytest.approx(1.66, abs=0.01)  # the old white-on-yellow banner
    assert contrast_ratio("rgb(27, 27, 27)", "#1b1b1b") == pytest.approx(1.0)


async def page_css(st: Stack) -> str:
    async with st.http.get(f"{st.url}/status") as r:
        html = await r.text()
    [css] = re.findall(r"<style>(.*?)</style>", html, re.S)
    return css


def rules(css: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        props = dict(p.split(":", 1) for p in body.split(";") if ":" in p)
        for one in selector.split(","):
            found.setdefault(one.strip(), {}).update({k.strip(): v.strip() for k, v in props.items()})
    return found


async def test_banner_text_meets_wcag_aa_on_every_status_colour(st: Stack) -> None:
    css = rules(await page_css(st))
    for status in StatusComponent:
        banner = css[f".banner.s-{status.value}"]
        ratio = contrast_ratio(banner["color"], banner["background"])
        assert ratio >= AA_NORMAL_TEXT, f"{status.value}: {banner} is {ratio:.2f}:1"
    # and the page's other text on its white background
    page = css["body"]["background"]
    for selector in ("body", "small", ".when", ".none"):
        ratio = contrast_ratio(css[selector]["color"], page)
        assert ratio >= AA_NORMAL_TEXT, f"{selector} {css[selector]['color']} is {ratio:.2f}:1"


async def status_json(st: Stack) -> dict[str, Any]:
    async with st.http.get(f"{st.url}/status.json") as r:
        return await r.json()  # type: ignore[no-any-return]


async def play_an_incident(st: Stack, incident: dict[str, str] = INCIDENT) -> None:
    """The admin writes of one recovery, in the order the workflow makes them (route, degradation, status)."""
    await st.admin(
        "PUT", "/services/chat/route", json={"pinned_tier": "tier_1_secondary", "primary_weight": 0}, headers=incident
    )
    await st.admin("PUT", "/services/chat/degradation", json={"level": "degraded_l1"}, headers=incident)
    await st.admin(
        "PUT", "/services/chat/status", json={"component": "degraded_performance", "message": BACKUP}, headers=incident
    )
    # the status_page notification channel sets the same again: no new update
    await st.admin(
        "PUT", "/services/chat/status", json={"component": "degraded_performance", "message": BACKUP}, headers=incident
    )
    await st.admin("PUT", "/services/chat/route", json={"primary_weight": 10}, headers=incident)
    await st.admin("PUT", "/services/chat/route", json={"primary_weight": 25}, headers=incident)  # still monitoring
    await st.admin("PUT", "/services/chat/route", json={"primary_weight": 0}, headers=incident)  # rolled back
    await st.admin("PUT", "/services/chat/route", json={"primary_weight": 10}, headers=incident)
    await st.admin("PUT", "/services/chat/route", json={"pinned_tier": None, "primary_weight": 100}, headers=incident)
    await st.admin("PUT", "/services/chat/status", json={"component": "operational", "message": ""}, headers=incident)


async def test_an_incident_is_told_from_the_workflows_admin_writes(st: Stack) -> None:
    assert (await status_json(st))["incidents"] == []

    await play_an_incident(st)

    [incident] = (await status_json(st))["incidents"]
    assert incident["name"] == "chat: Degraded performance" and incident["components"] == ["chat"]
    assert incident["workflow_id"] == "recovery-chat"
    assert (incident["status"], incident["impact"]) == ("resolved", "minor")
    assert incident["resolved_at"] and incident["created_at"] <= incident["resolved_at"]
    told = [(u["status"], u["body"]) for u in reversed(incident["incident_updates"])]  # oldest first
    assert told == [
        ("identified", BACKUP),
        ("monitoring", "A fix is in place and normal service is being restored gradually; we are monitoring it."),
        ("identified", "Restoring normal service is paused: the backup service keeps answering while we look into it."),
        ("monitoring", "A fix is in place and normal service is being restored gradually; we are monitoring it."),
        ("resolved", "This incident has been resolved: chat is operating normally."),
    ]

    async with st.http.get(f"{st.url}/status") as r:
        page = await r.text()
    assert "Recent incidents" in page and "chat: Degraded performance" in page
    assert page.index("<strong>Resolved</strong>") < page.index("<strong>Identified</strong> - Running in backup")


async def test_the_next_occurrence_is_a_new_incident_listed_first_while_open(st: Stack) -> None:
    await play_an_incident(st)
    await st.admin(
        "PUT", "/services/chat/status", json={"component": "partial_outage", "message": "<b>Slow</b>"}, headers=INCIDENT
    )
    await st.admin(
        "PUT", "/services/chat/status", json={"component": "major_outage", "message": "Models down"}, headers=INCIDENT
    )

    second, first = (await status_json(st))["incidents"]
    assert second["id"] != first["id"] and second["workflow_id"] == first["workflow_id"]
    assert (second["status"], second["impact"], second["resolved_at"]) == ("identified", "critical", None)
    assert second["name"] == "chat: Partial outage"  # named by how it started; impact is the worst it got
    assert [u["body"] for u in second["incident_updates"]] == ["Models down", "<b>Slow</b>"]
    async with st.http.get(f"{st.url}/status") as r:
        page = await r.text()
    assert "&lt;b&gt;Slow&lt;/b&gt;" in page and "<b>Slow</b>" not in page


async def test_a_manual_status_change_without_an_incident_header_is_still_history(st: Stack) -> None:
    await st.admin("PUT", "/services/chat/status", json={"component": "under_maintenance", "message": "Planned"})
    [incident] = (await status_json(st))["incidents"]
    assert incident["workflow_id"] is None and incident["impact"] == "maintenance"
    assert incident["incident_updates"][0]["body"] == "Planned"
    # a route change outside an incident tells nothing
    await st.admin("PUT", "/services/chat/status", json={"component": "operational"})
    await st.admin("PUT", "/services/chat/route", json={"primary_weight": 50})
    assert [i["status"] for i in (await status_json(st))["incidents"]] == ["resolved"]
