"""The status page's incident history: what each service's incidents told the public, and when.

The gateway learns of incidents only from the admin API: the recovery workflow (and the status_page notification
channel) PUT the service's status component and message, and the route during the ramp, with
`X-Governor-Incident: <workflow id>`. A non-operational status opens an incident; each new component or message
adds an update; a ramp that gives the primary traffic back means `monitoring`, a rollback to weight 0 goes back to
`identified`; `operational` resolves it. Kept in memory per replica (every replica receives the same writes), the
last `keep` incidents per service.
"""

from __future__ import annotations

from collections import deque

from governor.enums import FallbackTier
from governor.gateway_api import StatusComponent
from governor.status_api import Impact, IncidentStatus, IncidentUpdate, StatusIncident

C = StatusComponent
LABEL: dict[str, str] = {
    C.OPERATIONAL: "Operational",
    C.DEGRADED_PERFORMANCE: "Degraded performance",
    C.PARTIAL_OUTAGE: "Partial outage",
    C.MAJOR_OUTAGE: "Major outage",
    C.UNDER_MAINTENANCE: "Under maintenance",
}
IMPACT: dict[str, Impact] = {
    C.OPERATIONAL: "none",
    C.UNDER_MAINTENANCE: "maintenance",
    C.DEGRADED_PERFORMANCE: "minor",
    C.PARTIAL_OUTAGE: "major",
    C.MAJOR_OUTAGE: "critical",
}
_IMPACT_RANK: dict[str, int] = {"none": 0, "maintenance": 1, "minor": 2, "major": 3, "critical": 4}

MONITORING_BODY = "A fix is in place and normal service is being restored gradually; we are monitoring it."
PAUSED_BODY = "Restoring normal service is paused: the backup service keeps answering while we look into it."


def resolved_body(service: str) -> str:
    return f"This incident has been resolved: {service} is operating normally."


class IncidentHistory:
    """One service's recent incidents, newest last; `observe` is called after every admin change that changed state."""

    def __init__(self, service: str, keep: int = 20) -> None:
        self.service = service
        self.incidents: deque[StatusIncident] = deque(maxlen=keep)
        self.opened = 0

    @property
    def open(self) -> StatusIncident | None:
        last = self.incidents[-1] if self.incidents else None
        return last if last is not None and last.status is not IncidentStatus.RESOLVED else None

    def status_changed(self, component: StatusComponent, message: str, workflow_id: str | None, at: str) -> None:
        current = self.open
        if component is C.OPERATIONAL:
            if current is not None:
                self._post(current, IncidentStatus.RESOLVED, message or resolved_body(self.service), component, at)
                current.resolved_at = at
            return
        if current is None:
            self.opened += 1
            current = StatusIncident(
                id=f"{workflow_id or self.service}@{at}#{self.opened}",
                name=f"{self.service}: {LABEL[component]}",
                status=IncidentStatus.IDENTIFIED,
                impact=IMPACT[component],
                created_at=at,
                updated_at=at,
                components=[self.service],
                workflow_id=workflow_id,
            )
            self.incidents.append(current)
        elif _IMPACT_RANK[IMPACT[component]] > _IMPACT_RANK[current.impact]:
            current.impact = IMPACT[component]
        self._post(current, current.status, message or LABEL[component], component, at)

    def route_changed(
        self, pinned_tier: FallbackTier | None, primary_weight: float, component: StatusComponent, at: str
    ) -> None:
        current = self.open
        if current is None:
            return
        if 0 < primary_weight < 100 and current.status is not IncidentStatus.MONITORING:
            self._post(current, IncidentStatus.MONITORING, MONITORING_BODY, component, at)
        elif primary_weight == 0 and pinned_tier not in (None, FallbackTier.TIER_0_PRIMARY):
            if current.status is IncidentStatus.MONITORING:
                self._post(current, IncidentStatus.IDENTIFIED, PAUSED_BODY, component, at)

    @staticmethod
    def _post(incident: StatusIncident, status: IncidentStatus, body: str, component: StatusComponent, at: str) -> None:
        incident.status = status
        incident.updated_at = at
        incident.incident_updates.insert(
            0, IncidentUpdate(status=status, body=body, created_at=at, component=component)
        )


def recent_incidents(histories: list[IncidentHistory], limit: int = 10) -> list[StatusIncident]:
    """Every service's incidents, open ones first, then the most recently updated."""
    every = [i for h in histories for i in h.incidents]
    every.sort(key=lambda i: (i.resolved_at is None, i.updated_at), reverse=True)
    return every[:limit]
