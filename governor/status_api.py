"""The public status page's incidents, as `/status.json` carries them: Statuspage's incident shape
(`/api/v2/incidents.json`: name, status, impact, incident_updates newest first), written once for the gateway that
builds them and for whoever reads them."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from governor.gateway_api import StatusComponent


class IncidentStatus(StrEnum):
    """Statuspage's incident statuses (the governor never needs `investigating`: it knows what failed)."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


Impact = Literal["none", "maintenance", "minor", "major", "critical"]


class IncidentUpdate(BaseModel):
    """One message of an incident's timeline, as the public reads it."""

    status: IncidentStatus
    body: str
    created_at: str
    component: StatusComponent
    """The service's status component when the update was posted."""


class StatusIncident(BaseModel):
    """One incident of one service on the status page: opened by the first non-operational status the recovery
    workflow writes, resolved when it writes `operational` again."""

    id: str
    name: str
    status: IncidentStatus
    impact: Impact
    """The worst the service got during the incident (Statuspage's indicator values)."""
    created_at: str
    updated_at: str
    resolved_at: str | None = None
    components: list[str] = Field(default_factory=list)
    workflow_id: str | None = None
    """The governor's incident (`X-Governor-Incident` of the admin writes), when the change named one."""
    incident_updates: list[IncidentUpdate] = Field(default_factory=list)
    """Newest first, as Statuspage lists them."""
