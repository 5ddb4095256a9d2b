"""On-call's walk through a real incident in a real browser: the status page, the Temporal UI, an approval.

The whole embedded stack runs (`run_stack`: Temporal dev server with its Web UI, worker, gateway, demo upstreams) on
free ports with `policy.yaml.in`. Client traffic flows through the gateway the whole time. The primary goes down and
a service reports it; the status page shows the degraded component and the user message; the primary comes back and
the recovery stops at the `ramp:10` gate; in the Temporal UI we find the incident by its search attributes, read its
summary and current details, and approve the gate as alice through More Actions > Send a Signal; the ramp runs, the
incident closes, and the status page is operational again. Screenshots of every step go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from governor.client import GovernorClient, incidents_query, static_summary
from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import IncidentReport, IncidentState, Names
from tests.browser.helpers import Shots, Traffic, eventually, running, write_policy
from tests.ports import free_ports
from workers.stack import StackError, StackInfo, StackOptions, run_stack

pytestmark = [pytest.mark.browser, pytest.mark.integration]

UI_TIMEOUT_MS = 30_000
"""For each UI action and expectation: generous, since two cores also run Temporal, the worker, the gateway and
Chromium. A step that passes takes a fraction of it."""
expect.set_options(timeout=UI_TIMEOUT_MS)
GATE = "ramp:10"
APPROVAL = {"gate": GATE, "approver": "alice", "reason": "primary validated, approved from the Temporal UI"}
REPORT = IncidentReport(
    service="chat",
    dependency="primary-llm",
    failure_type=FailureType.MODEL_UNAVAILABLE,
    severity=Severity.CRITICAL,
    source="browser-test",
    message="the primary model stopped answering",
)


async def test_oncall_approves_a_gate_in_the_temporal_ui_and_sees_the_status_page(
    browser: Browser, tmp_path: Path
) -> None:
    temporal, ui, gateway, primary, secondary, degraded, metrics, intake = free_ports(8)
    options = StackOptions(
        state_dir=tmp_path / "state",
        policy_dir=write_policy(tmp_path / "policies", gateway, primary, secondary, degraded),
        temporal_port=temporal,
        ui_port=ui,
        metrics_port=metrics,
        intake_port=intake,
        demo=True,
        stop_after_scenario=True,
        echo=False,
    )
    failures: list[BaseException] = []

    async def scenario(info: StackInfo) -> None:
        try:
            await walk_through_the_incident(info, browser)
        except BaseException as err:  # keep the test's own assertion, not the launcher's summary of it
            failures.append(err)
            raise

    try:
        await run_stack(options, scenario)
    except StackError:
        if failures:
            raise failures[0] from None
        raise


async def walk_through_the_incident(info: StackInfo, browser: Browser) -> None:
    assert info.gateway_url and info.status_url
    governor = GovernorClient(info.client, task_queue=info.task_queue)
    shots = Shots()
    traffic = Traffic(f"{info.gateway_url}/chat/v1/chat/completions", rps=20)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        async with running(traffic), httpx.AsyncClient(timeout=10) as http, screenshot_on_failure(page, shots):
            # The primary model goes down; the service that noticed reports it.
            await set_faults(http, info.upstreams["primary"], outage=True)
            incident = (await governor.report_failure(REPORT)).incident_id
            during = await governor.wait_for(incident, falls_back, timeout=60)

            # 1. The public status page names the degraded component and tells users what to expect.
            await status_page_shows_the_incident(page, shots, info.status_url, during)

            # The primary comes back; the recovery validates it and waits for on-call at the first ramp step.
            await set_faults(http, info.upstreams["primary"], outage=False)
            waiting = await governor.wait_for(incident, lambda s: s.pending(GATE) is not None, timeout=90)
            gate_id = waiting.pending(GATE).gate_id  # type: ignore[union-attr]
            await eventually(
                lambda: governor.list_incidents(service="chat", awaiting_approval=True),
                "the incident in visibility with AwaitingApproval = true",
            )

            # 2-5. In the Temporal UI: find it by its search attributes, read it, approve the gate as alice.
            await find_the_incident_by_its_search_attributes(page, shots, info, incident)
            await list_open_incidents_with_phase_and_tier_columns(page, shots, info, incident)
            await read_its_summary_and_current_details(page, shots)
            await approve_the_gate_through_send_a_signal(page, shots, gate_id)

            # The workflow records alice's approval and moves on: the ramp runs and the incident closes.
            moved_on = await governor.wait_for(incident, lambda s: approved_by_alice(s) and left_the_gate(s))
            assert moved_on.pending(GATE) is None and not moved_on.rollbacks, moved_on.rollbacks
            handle = info.client.get_workflow_handle(incident, result_type=IncidentState)
            final = await asyncio.wait_for(handle.result(), 60)
            assert not final.rollbacks, f"the ramp rolled back: {final.rollbacks[-1].reason}"
            assert final.outcome == "recovered" and final.tier is FallbackTier.TIER_0_PRIMARY, final.outcome
            assert final.ramp_percent == 100 and final.degradation_level is DegradationLevel.NORMAL
            assert [e.actor for e in final.audit if e.action == "approved"] == ["alice"]

            # 6-7. The UI shows the closed incident and its new search attributes; 8. the status page is operational.
            await the_ui_shows_the_incident_moved_on(page, shots, info, incident)
            await status_page_is_operational(page, shots, info.status_url)

        assert traffic.failures == [], f"{len(traffic.failures)} failed client requests, first: {traffic.failures[0]}"
        assert traffic.tiers[FallbackTier.TIER_1_SECONDARY] > 0 and traffic.tiers[FallbackTier.TIER_0_PRIMARY] > 0
    finally:
        await context.close()


# ---------------------------------------------------------------------------------------------------- the steps


async def status_page_shows_the_incident(page: Page, shots: Shots, status_url: str, state: IncidentState) -> None:
    level = state.degradation_level
    assert level is DegradationLevel.DEGRADED_L1 and level.user_message, level
    await page.goto(status_url)
    await expect(page.locator("#indicator")).to_have_attribute("data-indicator", "minor")
    await expect(page.locator("#indicator")).to_contain_text("Partially Degraded Service")
    chat = page.locator("li.component").filter(has=page.get_by_text("chat", exact=True))
    await expect(chat.locator(".state")).to_have_text("Degraded performance")
    await expect(chat.locator(".message")).to_have_text(level.user_message)
    await shots.take(page, "status page during the incident")


async def find_the_incident_by_its_search_attributes(page: Page, shots: Shots, info: StackInfo, incident: str) -> None:
    """Type a visibility query into the workflow list's raw query box, as on-call would."""
    await page.goto(f"{info.ui_url}/namespaces/{info.namespace}/workflows")
    table = page.get_by_role("table", name="Workflows")
    rows = table.get_by_role("row").filter(has_text=incident)
    # The filter really filters: nothing for the chat service is running without a pending approval ...
    await search(page, 'GovernorService="chat" AND AwaitingApproval=false AND ExecutionStatus="Running"')
    await expect(rows).to_have_count(0)
    # ... and the incident is there once we ask for the ones awaiting approval.
    await search(page, 'GovernorService="chat" AND AwaitingApproval=true')
    await expect(page.get_by_role("button", name="AwaitingApproval = true")).to_be_visible()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Running")
    await shots.take(page, "temporal ui incident found by search attributes")
    await rows.first.get_by_role("link", name=incident).first.click()
    await expect(page.get_by_role("heading", level=1, name=incident)).to_be_visible()


async def list_open_incidents_with_phase_and_tier_columns(
    page: Page, shots: Shots, info: StackInfo, incident: str
) -> None:
    """docs/cli.md's incident list: the UI takes `governor list`'s query from the URL, and Configure Columns adds
    the search attributes on-call reads at a glance."""
    await page.goto(f"{info.ui_url}/namespaces/{info.namespace}/workflows?query={quote(incidents_query())}")
    table = page.get_by_role("table", name="Workflows")
    await expect(page.get_by_role("button", name='WorkflowType = "IncidentRecoveryWorkflow"')).to_be_visible()
    await page.get_by_role("button", name="Configure Columns").click()
    for attribute in ("RecoveryPhase", "FallbackTier"):
        await page.get_by_role("button", name=f"Add {attribute} column").click()
    await page.get_by_role("button", name="Close Workflows Table configuration").click()
    await expect(table.get_by_role("columnheader", name="RecoveryPhase")).to_be_visible()
    row = table.get_by_role("row").filter(has_text=incident)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(str(RecoveryPhase.GRADUAL_RESTORE))
    await expect(row).to_contain_text(str(FallbackTier.TIER_1_SECONDARY))
    await shots.take(page, "temporal ui open incidents with phase and tier columns")
    await row.get_by_role("link", name=incident).first.click()
    await expect(page.get_by_role("heading", level=1, name=incident)).to_be_visible()


async def read_its_summary_and_current_details(page: Page, shots: Shots) -> None:
    """User Metadata: the static summary from the report, the current details in Markdown with the pending gate."""
    await page.get_by_role("tab", name="User Metadata").click()
    summary = page.frame_locator("iframe#user-metadata-summary").locator("body")
    await expect(summary).to_contain_text(static_summary(REPORT))
    details = current_details(page)
    await expect(details.get_by_role("heading", name=f"Awaiting approval: {GATE}")).to_be_visible()
    await expect(details).to_contain_text("Approvers: alice, bob")
    await expect(details).to_contain_text("gradual_restore")
    await expect(details).to_contain_text(str(FallbackTier.TIER_1_SECONDARY))
    await shots.take(page, "incident summary and current details with the pending gate")


async def approve_the_gate_through_send_a_signal(page: Page, shots: Shots, gate_id: str) -> None:
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")
    await dialog.get_by_role("button", name="Select a signal").click()
    # The workflow describes its signals (JSON examples included); the UI lists them by name with that text.
    option = dialog.get_by_role("option", name=re.compile(rf"^{Names.APPROVE} Approve a pending gate"))
    await expect(option).to_contain_text('"gate": "ramp:10"')
    await option.click()
    data = dialog.get_by_role("textbox", name="Data")
    await data.click()
    # insert_text, not typing: the JSON editor would auto-close every bracket and quote typed after it.
    # Already indented as the editor formats it: it reformats on blur, and a taller editor moves Submit away.
    # The approval names the pending request's id (the current details show it with the gate).
    await page.keyboard.insert_text(json.dumps({**APPROVAL, "gate_id": gate_id}, indent=2))
    await data.blur()
    await expect(data).to_contain_text('"approver": "alice"')
    await shots.take(page, "send a signal approve ramp 10 as alice")
    async with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.split("?")[0].endswith(f"/signal/{Names.APPROVE}")
    ) as sent:
        await dialog.get_by_role("button", name="Submit").click()
    response = await sent.value
    assert response.ok, f"the UI's signal request failed: {response.status} {await response.text()}"
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_text("Workflow signaled.").first).to_be_visible()  # the toast (and its live region)
    # The timeline refreshes itself: the signal arrives, and the workflow gives the primary its 10 %.
    await page.get_by_role("tab", name="Timeline").click()
    await expect(page.get_by_role("button", name=f"Event {Names.APPROVE}: Signaled")).to_be_visible()
    events = page.get_by_role("button", name=re.compile(r"^Event apply_gateway_change"))
    await expect(events.filter(has_text="primary weight 10 %")).to_be_visible()
    await shots.take(page, "approve signal in the timeline")


async def the_ui_shows_the_incident_moved_on(page: Page, shots: Shots, info: StackInfo, incident: str) -> None:
    """The approve signal in the timeline, and the new state in the search attributes and current details."""
    await page.goto(info.incident_ui_url(incident))
    await expect(page.get_by_role("status").filter(has_text="Completed").first).to_be_visible()
    # (The approve signal was seen in the timeline right after it was sent; once the incident has run its whole
    # course the timeline is long and draws only part of its rows, so it is not looked for again here.)
    await page.get_by_role("tab", name="User Metadata").click()
    details = current_details(page)
    await expect(details).to_contain_text(str(RecoveryPhase.POST_MORTEM))
    await expect(details).to_contain_text(str(FallbackTier.TIER_0_PRIMARY))
    await expect(details).not_to_contain_text("Awaiting approval")
    await shots.take(page, "incident recovered current details")

    await page.goto(f"{info.ui_url}/namespaces/{info.namespace}/workflows")
    await search(page, 'GovernorService="chat" AND AwaitingApproval=false AND RampPercent=100')
    rows = page.get_by_role("table", name="Workflows").get_by_role("row").filter(has_text=incident)
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Completed")
    await shots.take(page, "temporal ui incident no longer awaiting approval")


async def status_page_is_operational(page: Page, shots: Shots, status_url: str) -> None:
    await page.goto(status_url)
    await expect(page.locator("#indicator")).to_have_attribute("data-indicator", "none")
    await expect(page.locator("#indicator")).to_contain_text("All Systems Operational")
    chat = page.locator("li.component").filter(has=page.get_by_text("chat", exact=True))
    await expect(chat.locator(".state")).to_have_text("Operational")
    await expect(chat.locator(".message")).to_have_count(0)
    await shots.take(page, "status page after the incident")


# ---------------------------------------------------------------------------------------------------- helpers


def falls_back(state: IncidentState) -> bool:
    """The fallback tier is pinned (the workflow sets the gateway's status page before it records the tier)."""
    return state.tier is not FallbackTier.TIER_0_PRIMARY and state.mitigated_at is not None


def approved_by_alice(state: IncidentState) -> bool:
    return any(d.gate == GATE and d.approved and d.approver == "alice" for d in state.decisions)


def left_the_gate(state: IncidentState) -> bool:
    """Past `ramp:10`: the primary has its share, or the ramp is over (or rolled back, which the test reports)."""
    return state.ramp_percent > 0 or state.phase is not RecoveryPhase.GRADUAL_RESTORE or bool(state.rollbacks)


def current_details(page: Page) -> Locator:
    """The 'Current Details' Markdown, which the UI renders in a sandboxed iframe."""
    return page.frame_locator("iframe#user-metadata-current-details").locator("body")


async def search(page: Page, query: str) -> None:
    """Open the raw query box of the workflow list (the `</>` toggle) and run a visibility query."""
    await expect(page.get_by_role("table", name="Workflows")).to_be_visible()
    box = page.get_by_role("searchbox", name="Enter a query")
    if not await box.is_visible():
        await page.get_by_test_id("toggle-manual-query").click()
    await box.fill(query)
    await box.press("Enter")
    await page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("query") == [query])


async def set_faults(http: httpx.AsyncClient, upstream: str, **faults: object) -> None:
    answer = await http.put(f"{upstream}/control", json=faults)
    answer.raise_for_status()


@contextlib.asynccontextmanager
async def screenshot_on_failure(page: Page, shots: Shots) -> AsyncIterator[None]:
    """A failing step leaves a picture of what the browser showed (CI keeps artifacts/screenshots/)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            await shots.take(page, "failed here")
        raise
