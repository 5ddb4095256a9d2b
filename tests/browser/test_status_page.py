"""The public status page in Debian's Chromium: the incident history as a user reads it, and the banner's contrast
on every status colour as the browser renders it (computed styles, not the CSS source), with screenshots.

A real gateway with real upstreams on 127.0.0.1 (tests/gateway/conftest.py), written to through its admin API as
the recovery workflow writes to it; no Temporal needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from governor.gateway_api import StatusComponent
from tests.gateway.conftest import stack
from tests.gateway.contrast import AA_NORMAL_TEXT, contrast_ratio

pytestmark = [pytest.mark.browser]

INCIDENT = {"X-Governor-Incident": "recovery-chat"}
BACKUP = "Running in backup mode, full functionality"


async def banner_contrast(page: Page) -> tuple[str, str, float]:
    colour, background = await page.locator("#indicator").evaluate(
        "el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]"
    )
    return colour, background, contrast_ratio(colour, background)


async def test_status_page_history_and_contrast_in_chromium(browser: Browser, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with stack() as st:
        page = await browser.new_page(viewport={"width": 900, "height": 900})
        try:
            await page.goto(f"{st.url}/status")
            await expect(page.get_by_role("heading", name="Recent incidents")).to_be_visible()
            await expect(page.locator("#incidents")).to_contain_text("No incidents reported recently.")

            # The workflow falls back: the incident opens on the page with the level's message.
            await st.admin(
                "PUT",
                "/services/chat/route",
                json={"pinned_tier": "tier_1_secondary", "primary_weight": 0},
                headers=INCIDENT,
            )
            await st.admin(
                "PUT",
                "/services/chat/status",
                json={"component": "degraded_performance", "message": BACKUP},
                headers=INCIDENT,
            )
            await st.admin("PUT", "/services/chat/route", json={"primary_weight": 10}, headers=INCIDENT)
            await page.reload()
            incident = page.locator("article.incident").first
            await expect(incident.get_by_role("heading", name="chat: Degraded performance")).to_be_visible()
            updates = incident.locator("li.update")
            await expect(updates).to_have_count(2)
            await expect(updates.nth(0)).to_contain_text("Monitoring - A fix is in place")
            await expect(updates.nth(1)).to_contain_text(f"Identified - {BACKUP}")
            await page.screenshot(path=str(shots / "01-incident-open.png"), full_page=True)

            # Every status colour, as Chromium paints it: banner text at least 4.5:1 (WCAG AA, normal text).
            seen: dict[str, float] = {}
            for status in StatusComponent:
                await st.admin(
                    "PUT",
                    "/services/chat/status",
                    json={"component": status.value, "message": f"now {status.value}"},
                    headers=INCIDENT,
                )
                await page.reload()
                await expect(page.locator("#indicator")).to_have_attribute("data-status", status.value)
                colour, background, ratio = await banner_contrast(page)
                seen[status.value] = ratio
                assert ratio >= AA_NORMAL_TEXT, f"{status.value}: {colour} on {background} is {ratio:.2f}:1"
                await page.screenshot(path=str(shots / f"02-banner-{status.value}.png"))
            assert set(seen) == {s.value for s in StatusComponent}

            # Resolved: the page is green again, and the history keeps the incident with its whole timeline.
            await st.admin(
                "PUT", "/services/chat/status", json={"component": "operational", "message": ""}, headers=INCIDENT
            )
            await page.reload()
            await expect(page.locator("#indicator")).to_contain_text("All Systems Operational")
            resolved = page.locator("article.incident[data-status=resolved]")
            await expect(resolved).to_have_count(2)  # `operational` in the loop resolved the first, this the second
            await expect(resolved.first.locator("li.update").first).to_contain_text(
                "Resolved - This incident has been resolved: chat is operating normally."
            )
            await page.screenshot(path=str(shots / "03-incident-resolved.png"), full_page=True)
        finally:
            await page.close()
    taken = sorted(p.name for p in shots.glob("*.png"))
    assert taken[0] == "01-incident-open.png" and taken[-1] == "03-incident-resolved.png" and len(taken) == 7
    assert all((shots / name).stat().st_size > 1000 for name in taken)
