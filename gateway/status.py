"""The public status page (`/status`, `/status.json`, Statuspage's component values and incident history) and the
state gauges."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.incidents import LABEL, recent_incidents
from gateway.service import ServiceRuntime, utcnow
from governor.enums import CircuitState, DegradationLevel
from governor.gateway_api import BREAKER_MODES, StatusComponent
from governor.status_api import IncidentStatus, StatusIncident

C = StatusComponent
# Statuspage's page indicator for the worst component status, each status's rank, label and colour.
_INDICATOR: dict[str, tuple[str, str]] = {
    C.OPERATIONAL: ("none", "All Systems Operational"),
    C.UNDER_MAINTENANCE: ("maintenance", "Service Under Maintenance"),
    C.DEGRADED_PERFORMANCE: ("minor", "Partially Degraded Service"),
    C.PARTIAL_OUTAGE: ("major", "Partial System Outage"),
    C.MAJOR_OUTAGE: ("critical", "Major System Outage"),
}
_SEVERITY: dict[str, int] = {
    C.OPERATIONAL: 0,
    C.UNDER_MAINTENANCE: 1,
    C.DEGRADED_PERFORMANCE: 2,
    C.PARTIAL_OUTAGE: 3,
    C.MAJOR_OUTAGE: 4,
}
_COLOUR: dict[str, str] = {
    C.OPERATIONAL: "#2fcc66",
    C.DEGRADED_PERFORMANCE: "#f1c40f",
    C.PARTIAL_OUTAGE: "#e67e22",
    C.MAJOR_OUTAGE: "#c0392b",
    C.UNDER_MAINTENANCE: "#3498db",
}
"""Each status's colour: the banner's background and the component's dot."""
_TEXT: dict[str, str] = {
    C.OPERATIONAL: "#1b1b1b",
    C.DEGRADED_PERFORMANCE: "#1b1b1b",
    C.PARTIAL_OUTAGE: "#1b1b1b",
    C.MAJOR_OUTAGE: "#ffffff",
    C.UNDER_MAINTENANCE: "#1b1b1b",
}
"""The banner's text on each colour: at least WCAG AA's 4.5:1 (tests/gateway/test_status_page.py computes it)."""
_UPDATE_LABEL = {
    IncidentStatus.INVESTIGATING: "Investigating",
    IncidentStatus.IDENTIFIED: "Identified",
    IncidentStatus.MONITORING: "Monitoring",
    IncidentStatus.RESOLVED: "Resolved",
}


def _component(svc: ServiceRuntime) -> dict[str, Any]:
    """A service's component. Its degradation shows only once the status page is told (the component is not
    `operational`): a level set without a status change (a drill, which leaves the page alone) stays internal."""
    told = svc.component != "operational"
    return {
        "id": svc.name,
        "name": svc.name,
        "status": svc.component,
        "description": svc.message or (svc.level.user_message if told else ""),
        "updated_at": svc.status_updated_at,
        "degradation_level": svc.level.value if told else DegradationLevel.NORMAL.value,
    }


def status_json(services: dict[str, ServiceRuntime]) -> dict[str, Any]:
    """Shaped like Statuspage's `/api/v2/summary.json`: page, status indicator, components, and the recent
    incidents (open ones first) with their updates, newest first."""
    components = [_component(svc) for svc in services.values()]
    worst = max((c["status"] for c in components), key=_SEVERITY.__getitem__, default="operational")
    indicator, description = _INDICATOR[worst]
    incidents = recent_incidents([svc.history for svc in services.values()])
    return {
        "page": {"name": "Fallback Governor", "updated_at": utcnow()},
        "status": {"indicator": indicator, "description": description},
        "components": components,
        "incidents": [i.model_dump(mode="json") for i in incidents],
    }


def _styles() -> str:
    """The page's CSS; one banner rule per status, so the contrast of each is checkable from the CSS alone."""
    banners = "".join(f".banner.s-{status.value}{{background:{_COLOUR[status]};color:{_TEXT[status]}}}" for status in C)
    return (
        "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222;"
        "background:#ffffff}"
        ".banner{padding:1rem;border-radius:.4rem;font-weight:600}" + banners + "ul,ol{list-style:none;padding:0}"
        ".component{border-bottom:1px solid #ddd;padding:.8rem 0}"
        ".dot{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.5rem}"
        ".state{float:right}.message{margin:.3rem 0}small,.when{color:#595959}"
        ".incident{border-left:.3rem solid #ddd;padding:.2rem 0 .2rem .8rem;margin:1rem 0}"
        ".incident h3{margin:.2rem 0;font-size:1.05rem}.update{margin:.4rem 0}.none{color:#595959}"
    )


def _when(at: str) -> str:
    """`2026-11-30T04:30:28Z` as `<time>` reading `2026-11-30 04:30:28 UTC`."""
    shown = at.replace("T", " ").replace("Z", " UTC") if at.endswith("Z") else at
    return f'<time datetime="{html.escape(at)}">{html.escape(shown)}</time>'


def _incident_html(incident: StatusIncident) -> str:
    updates = "".join(
        f'<li class="update" data-status="{u.status.value}"><strong>{_UPDATE_LABEL[u.status]}</strong> - '
        f'{html.escape(u.body)} <span class="when">{_when(u.created_at)}</span></li>'
        for u in incident.incident_updates
    )
    span = f"opened {_when(incident.created_at)}"
    if incident.resolved_at:
        span += f", resolved {_when(incident.resolved_at)}"
    return (
        f'<article class="incident" data-status="{incident.status.value}" data-impact="{incident.impact}">'
        f'<h3>{html.escape(incident.name)}</h3><ol class="updates">{updates}</ol><small>{span}</small></article>'
    )


def render_status_html(services: dict[str, ServiceRuntime]) -> str:
    summary = status_json(services)
    rows = []
    for c in summary["components"]:
        colour = _COLOUR[c["status"]]
        rows.append(
            f'<li class="component"><span class="dot" style="background:{colour}"></span>'
            f'<strong>{html.escape(c["name"])}</strong> <span class="state" data-status="{c["status"]}">'
            f"{LABEL[c['status']]}</span>"
            + (f'<p class="message">{html.escape(c["description"])}</p>' if c["description"] else "")
            + f"<small>updated {html.escape(c['updated_at'])}</small></li>"
        )
    incidents = recent_incidents([svc.history for svc in services.values()])
    history = "".join(_incident_html(i) for i in incidents) or '<p class="none">No incidents reported recently.</p>'
    worst = _worst(summary)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="15"><title>Status: {html.escape(summary["status"]["description"])}</title>
<style>{_styles()}</style></head>
<body><h1>Service status</h1>
<div class="banner s-{worst}" id="indicator" data-indicator="{summary["status"]["indicator"]}" data-status="{worst}">
{html.escape(summary["status"]["description"])}</div>
<ul>{"".join(rows)}</ul>
<section id="incidents" aria-labelledby="incidents-heading"><h2 id="incidents-heading">Recent incidents</h2>
{history}</section>
<p><small>Also as JSON: <a href="/status.json">/status.json</a>. Updated {summary["page"]["updated_at"]}.</small></p>
</body></html>"""


def _worst(summary: dict[str, Any]) -> str:
    return max((c["status"] for c in summary["components"]), key=_SEVERITY.__getitem__, default="operational")


_BREAKER_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class StateCollector(Collector):
    """Gauges read at scrape time, so the hot path pays nothing for them."""

    def __init__(self, services: dict[str, ServiceRuntime]) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        breaker = GaugeMetricFamily(
            "governor_gateway_breaker_state",
            "Breaker state as the chain applies it: 0 closed, 1 half-open, 2 open",
            labels=["service", "tier"],
        )
        breaker_mode = GaugeMetricFamily(
            "governor_gateway_breaker_mode",
            "1 for the breaker's mode (auto, or forced open/closed by the governor), 0 for the others",
            labels=["service", "tier", "mode"],
        )
        weight = GaugeMetricFamily(
            "governor_gateway_primary_weight_ratio", "Share of traffic sent to the primary (0 to 1)", labels=["service"]
        )
        pinned = GaugeMetricFamily("governor_gateway_pinned_tier", "1 for the pinned tier", labels=["service", "tier"])
        level = GaugeMetricFamily(
            "governor_gateway_degradation_rank", "Degradation level rank (0 = normal)", labels=["service", "level"]
        )
        component = GaugeMetricFamily(
            "governor_gateway_status_component", "1 for the component's current status", labels=["service", "status"]
        )
        in_flight = GaugeMetricFamily(
            "governor_gateway_in_flight", "Requests in flight per tier", labels=["service", "tier"]
        )
        cache = GaugeMetricFamily("governor_gateway_cache_entries", "Entries in the cache tier", labels=["service"])
        dep_breaker = GaugeMetricFamily(
            "governor_gateway_deployment_breaker_state",
            "A tier deployment's breaker (tiers with `deployments`): 0 closed, 1 half-open, 2 open",
            labels=["service", "tier", "deployment"],
        )
        dep_in_flight = GaugeMetricFamily(
            "governor_gateway_deployment_in_flight",
            "Requests in flight per tier deployment",
            labels=["service", "tier", "deployment"],
        )
        for svc in self.services.values():
            weight.add_metric([svc.name], svc.primary_weight / 100)
            if svc.pinned_tier is not None:
                pinned.add_metric([svc.name, svc.pinned_tier.value], 1)
            level.add_metric([svc.name, svc.level.value], svc.level.rank)
            for value in StatusComponent:
                component.add_metric([svc.name, value.value], 1 if svc.component is value else 0)
            for link in svc.links:
                in_flight.add_metric([svc.name, link.name], link.window.in_flight)
                if link.breaker is not None:
                    breaker.add_metric([svc.name, link.name], _BREAKER_VALUE[link.breaker.effective_state()])
                    for mode in BREAKER_MODES:
                        breaker_mode.add_metric([svc.name, link.name, mode], 1 if link.breaker.mode == mode else 0)
                if link.only is None:
                    for dep in link.deployments:
                        labels = [svc.name, link.name, str(dep.name)]
                        dep_breaker.add_metric(labels, _BREAKER_VALUE[dep.breaker.effective_state()])
                        dep_in_flight.add_metric(labels, dep.window.in_flight)
            if svc.cache is not None:
                cache.add_metric([svc.name], len(svc.cache))
        yield from (
            breaker,
            breaker_mode,
            weight,
            pinned,
            level,
            component,
            in_flight,
            cache,
            dep_breaker,
            dep_in_flight,
        )
