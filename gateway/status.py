"""The public status page (`/status`, `/status.json`, Statuspage's component values) and the state gauges."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.service import ServiceRuntime, utcnow
from governor.enums import CircuitState
from governor.gateway_api import BREAKER_MODES, StatusComponent

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
_LABEL: dict[str, str] = {
    C.OPERATIONAL: "Operational",
    C.DEGRADED_PERFORMANCE: "Degraded performance",
    C.PARTIAL_OUTAGE: "Partial outage",
    C.MAJOR_OUTAGE: "Major outage",
    C.UNDER_MAINTENANCE: "Under maintenance",
}
_COLOUR: dict[str, str] = {
    C.OPERATIONAL: "#2fcc66",
    C.DEGRADED_PERFORMANCE: "#f1c40f",
    C.PARTIAL_OUTAGE: "#e67e22",
    C.MAJOR_OUTAGE: "#e74c3c",
    C.UNDER_MAINTENANCE: "#3498db",
}


def status_json(services: dict[str, ServiceRuntime]) -> dict[str, Any]:
    """Shaped like Statuspage's `/api/v2/summary.json`: page, status indicator, components."""
    components = [
        {
            "id": svc.name,
            "name": svc.name,
            "status": svc.component,
            "description": svc.message or svc.level.user_message,
            "updated_at": svc.status_updated_at,
            "degradation_level": svc.level.value,
        }
        for svc in services.values()
    ]
    worst = max((c["status"] for c in components), key=_SEVERITY.__getitem__, default="operational")
    indicator, description = _INDICATOR[worst]
    return {
        "page": {"name": "Fallback Governor", "updated_at": utcnow()},
        "status": {"indicator": indicator, "description": description},
        "components": components,
    }


def render_status_html(services: dict[str, ServiceRuntime]) -> str:
    summary = status_json(services)
    rows = []
    for c in summary["components"]:
        colour = _COLOUR[c["status"]]
        rows.append(
            f'<li class="component"><span class="dot" style="background:{colour}"></span>'
            f'<strong>{html.escape(c["name"])}</strong> <span class="state" data-status="{c["status"]}">'
            f"{_LABEL[c['status']]}</span>"
            + (f'<p class="message">{html.escape(c["description"])}</p>' if c["description"] else "")
            + f"<small>updated {html.escape(c['updated_at'])}</small></li>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="15"><title>Status: {html.escape(summary["status"]["description"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222}}
.banner{{padding:1rem;border-radius:.4rem;color:#fff;background:{_COLOUR[_worst(summary)]}}}
ul{{list-style:none;padding:0}}.component{{border-bottom:1px solid #ddd;padding:.8rem 0}}
.dot{{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin-right:.5rem}}
.state{{float:right}}.message{{margin:.3rem 0}}small{{color:#777}}</style></head>
<body><h1>Service status</h1>
<div class="banner" id="indicator" data-indicator="{summary["status"]["indicator"]}">
{html.escape(summary["status"]["description"])}</div>
<ul>{"".join(rows)}</ul>
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
            if svc.cache is not None:
                cache.add_metric([svc.name], len(svc.cache))
        yield from (breaker, breaker_mode, weight, pinned, level, component, in_flight, cache)
