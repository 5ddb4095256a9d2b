"""The drill activity: inject or clear a drill's fault through an upstream's own control API (governor/drill.py).

The demo's fake models take `PUT /control` with the faults to set; any upstream with such an API can be named in
the policy's `drills.faults`. A 4xx answer is a policy problem (wrong URL or body): non-retryable, said plainly.
"""

from __future__ import annotations

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from governor.actions import Activity, DrillFaultInput, DrillFaultResult


class DrillActivities:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @activity.defn(name=Activity.DRILL_FAULT)
    async def drill_fault(self, request: DrillFaultInput) -> DrillFaultResult:
        """PUT the fault (or its clearing) to the control API; retried on transport errors and 5xx."""
        response = await self.http.put(request.url, json=request.body, timeout=10)
        answer = response.text[:500]
        if 400 <= response.status_code < 500:
            raise ApplicationError(
                f"drill fault: PUT {request.url} answered {response.status_code}: {answer}",
                type="DrillFaultRefused",
                non_retryable=True,
            )
        if response.status_code >= 500:
            raise RuntimeError(f"drill fault: PUT {request.url} answered {response.status_code}: {answer}")
        return DrillFaultResult(status_code=response.status_code, answer=answer)
