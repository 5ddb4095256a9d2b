"""The search attributes every incident carries (DESIGN.md's pinned names); registered on every server we start."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

SERVICE = SearchAttributeKey.for_keyword("GovernorService")
DEPENDENCY = SearchAttributeKey.for_keyword("GovernorDependency")
FAILURE_TYPE = SearchAttributeKey.for_keyword("FailureType")
SEVERITY = SearchAttributeKey.for_keyword("Severity")
PHASE = SearchAttributeKey.for_keyword("RecoveryPhase")
TIER = SearchAttributeKey.for_keyword("FallbackTier")
DEGRADATION = SearchAttributeKey.for_keyword("DegradationLevel")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AwaitingApproval")
RAMP_PERCENT = SearchAttributeKey.for_int("RampPercent")
DRILL = SearchAttributeKey.for_bool("GovernorDrill")
"""Set (true) only on drills (`governor simulate --drill`); other incidents never upsert it."""

ALL: list[SearchAttributeKey[Any]] = [
    SERVICE,
    DEPENDENCY,
    FAILURE_TYPE,
    SEVERITY,
    PHASE,
    TIER,
    DEGRADATION,
    AWAITING_APPROVAL,
    RAMP_PERCENT,
    DRILL,
]


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "BOOL": "Bool", "INT": "Int"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
