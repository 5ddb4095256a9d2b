"""What the recovery workflow's phase mixins (`ramping.py`, `tiering.py`) may call: the helpers that
IncidentRecoveryWorkflow defines (activities, gateway changes, gates, pauses, continue-as-new), declared here for the
type checker only, so each mixin reads like the rest of the runbook.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from governor.actions import DegradationChange, GatewayChangeResult, StatusChange
    from governor.blast_radius import BlastRadius
    from governor.enums import DegradationLevel, FallbackTier
    from governor.tier_health import TierAssessment

from workflows.notifying import Notifying

M = TypeVar("M", bound=BaseModel)


class Runbook(Notifying):
    """The base of the phase mixins; IncidentRecoveryWorkflow provides every method declared here."""

    if TYPE_CHECKING:  # provided by IncidentRecoveryWorkflow

        async def _act(
            self,
            name: str,
            arg: BaseModel,
            result_type: type[M],
            summary: str,
            within: timedelta = ...,
            heartbeat: timedelta | None = None,
            priority: Priority = ...,
        ) -> M: ...

        def _prefetched_radius(self) -> tuple[BlastRadius | None, str] | None: ...

        def _prefetched_assessment(self) -> TierAssessment | None: ...

        async def _gateway(self, summary: str, **change: Any) -> GatewayChangeResult: ...

        async def _pin(
            self, tier: FallbackTier, reason: str, primary_weight: int = 0, forced_by: str | None = None
        ) -> None: ...

        async def _take_suspects(self) -> None: ...

        def _degradation_for(self, tier: FallbackTier) -> DegradationChange: ...

        def _status_for(self, level: DegradationLevel) -> StatusChange: ...

        def _flap(self, why: str) -> None: ...

        async def _restore_dependencies(self, dependencies: list[str], route: bool = False) -> None: ...

        def _tier_health_on(self) -> bool: ...

        async def _recheck_tiers(self) -> None: ...

        async def _await_gate(self, gate: str, context: str, requested_by: str = "system") -> bool: ...

        async def _hold_while_paused(self) -> None: ...

        async def _apply_forced_tier(self) -> None: ...

        def _history_too_long(self) -> bool: ...

        async def _continue_as_new(self) -> NoReturn: ...
