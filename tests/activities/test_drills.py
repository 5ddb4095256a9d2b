"""The drill activity against a real fake-model upstream's control API (demo/upstream.py)."""

from __future__ import annotations

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.drills import DrillActivities
from demo.upstream import run_upstream
from governor.actions import DrillFaultInput


async def test_drill_fault_injects_and_clears_through_the_control_api() -> None:
    async with run_upstream(name="primary") as up, httpx.AsyncClient() as http:
        act = DrillActivities(http)
        url = f"{up.url}/control"
        fault = DrillFaultInput(url=url, body={"outage": True, "outage_mode": "503"})
        injected = await ActivityEnvironment().run(act.drill_fault, fault)
        assert injected.status_code == 200 and up.faults.outage is True
        assert (await http.get(f"{up.url}/health")).status_code == 503
        await ActivityEnvironment().run(act.drill_fault, DrillFaultInput(url=url, body={"outage": False}))
        assert up.faults.outage is False and (await http.get(f"{up.url}/health")).status_code == 200


async def test_a_refused_fault_is_a_non_retryable_error_naming_the_url_and_the_answer() -> None:
    async with run_upstream(name="primary") as up, httpx.AsyncClient() as http:
        url = f"{up.url}/control"
        with pytest.raises(ApplicationError) as err:
            await ActivityEnvironment().run(
                DrillActivities(http).drill_fault, DrillFaultInput(url=url, body={"meltdown": True})
            )
        assert err.value.non_retryable and url in str(err.value) and "422" in str(err.value)
        assert "meltdown: unknown fault" in str(err.value)
