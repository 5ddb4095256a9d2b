"""A hash-chained audit trail: each entry commits to the one before, so an edit anywhere breaks the chain."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

GENESIS = "0" * 64


class AuditAction(StrEnum):
    """What an audit entry records. Stored as its string value, so older trails (and their hashes) still verify."""

    PHASE = "phase"
    TIER = "tier"
    REPORTED = "reported"
    REPORT_JOINED = "report_joined"
    FAILURE_CONFIRMED = "failure_confirmed"
    FALSE_ALARM = "false_alarm"
    BREAKER_OPENED = "breaker_opened"
    EVIDENCE_GATHERED = "evidence_gathered"
    PRIMARY_HEALTHY = "primary_healthy"
    REMEDIATION_DECLARED = "remediation_declared"
    VALIDATION = "validation"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    RAMP_STEP = "ramp_step"
    RAMP_STEP_PASSED = "ramp_step_passed"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    RESTORED = "restored"
    CLOSED = "closed"
    ESCALATED = "escalated"
    NOTIFICATION_FAILED = "notification_failed"
    ACTIVITY_FAILED = "activity_failed"
    TIER_FORCED = "tier_forced"
    NOTE = "note"
    REFUSED = "refused"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"
    FORCE_TIER = "force_tier"
    DECLARE_REMEDIATED = "declare_remediated"
    TIERS_CHECKED = "tiers_checked"
    TIER_SERVED = "tier_served"
    CLAIM = "claim"
    FLAPPING = "flapping"
    DEPENDENCY_RESTORED = "dependency_restored"
    DRILL_STARTED = "drill_started"
    DRILL_RESTORED = "drill_restored"
    DRILL_FINDINGS = "drill_findings"
    BLAST_RADIUS = "blast_radius"


class AuditEntry(BaseModel):
    """One thing that happened to an incident, who did it, and the hash linking it to the previous entry."""

    seq: int
    at: datetime
    actor: str = "system"
    action: str
    details: dict[str, Any] = Field(default_factory=dict)
    previous_state: str = ""
    new_state: str = ""
    prev_hash: str = GENESIS
    hash: str = ""

    def compute_hash(self) -> str:
        body = self.model_dump(mode="json", exclude={"hash"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def checksum(self) -> str:
        """Short form shown in tables (the seed's 12-character checksum)."""
        return self.hash[:12]


def append_entry(
    trail: list[AuditEntry],
    *,
    at: datetime,
    action: str,
    actor: str = "system",
    details: dict[str, Any] | None = None,
    previous_state: str = "",
    new_state: str = "",
) -> AuditEntry:
    prev = trail[-1].hash if trail else GENESIS
    entry = AuditEntry(
        seq=len(trail),
        at=at,
        actor=actor,
        action=action,
        details=details or {},
        previous_state=previous_state,
        new_state=new_state,
        prev_hash=prev,
    )
    entry.hash = entry.compute_hash()
    trail.append(entry)
    return entry


def verify_chain(trail: list[AuditEntry]) -> int | None:
    """The sequence number of the first entry that does not verify, or None when the chain is intact."""
    prev = GENESIS
    for i, entry in enumerate(trail):
        if entry.seq != i or entry.prev_hash != prev or entry.compute_hash() != entry.hash:
            return i
        prev = entry.hash
    return None
