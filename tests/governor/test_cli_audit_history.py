"""Issue 11.6: `governor audit verify` caught edits, deletions and reordering, but not a truncated tail, an empty
trail or a chain rewritten with recomputed hashes. With an INCIDENT it now replays the workflow's own history from
the server and compares: each of those is caught, and an honest trail (open or closed incident) matches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import common
from governor.audit import GENESIS, AuditEntry
from governor.enums import FailureType
from governor.incident import IncidentReport
from tests.governor.test_cli_devserver import STUCK, Governed, governed  # noqa: F401  (the module-scoped fixture)

pytestmark = pytest.mark.integration


def recomputed(trail: list[AuditEntry], at: int, reason: str) -> list[AuditEntry]:
    """The forger's trail: entry `at` says something else, and every hash from there on is recomputed."""
    forged = [e.model_copy(deep=True) for e in trail]
    forged[at].details = {**forged[at].details, "reason": reason}
    prev = forged[at - 1].hash if at else GENESIS
    for entry in forged[at:]:
        entry.prev_hash = prev
        entry.hash = entry.compute_hash()
        prev = entry.hash
    return forged


def save(path: Path, trail: list[AuditEntry]) -> str:
    path.write_text(json.dumps([e.model_dump(mode="json") for e in trail]))
    return str(path)


async def test_audit_verify_checks_the_trail_against_the_workflow_history(governed: Governed, tmp_path: Path) -> None:  # noqa: F811
    g = governed
    reported = await g.sdk.report_failure(
        IncidentReport(service=g.service, dependency="primary-llm", failure_type=FailureType.ERROR_SPIKE, source="t")
    )
    incident = reported.incident_id
    await g.sdk.wait_for(incident, lambda s: s.pending("ramp:10") is not None, timeout=30)

    code, out, err = await g.governor("audit", "verify", incident)  # open incident, waiting for a human
    assert code == 0, err
    assert "matches the workflow's history" in out

    code, _, err = await g.governor("approve", incident, "--gate", "ramp:10", "--reason", "flat", "--as", "alice")
    assert code == 0, err
    final = await g.sdk.wait_for(incident, lambda s: s.closed_at is not None, timeout=30)
    trail = final.audit
    assert len(trail) > 5

    code, out, _ = await g.governor("audit", "verify", incident, "--json")
    verdict = json.loads(out)
    assert code == 0 and verdict["intact"] and verdict["against_history"] and verdict["matches_history"]
    assert verdict["entries"] == verdict["history_entries"] == len(trail)

    honest = save(tmp_path / "honest.json", trail)
    code, out, _ = await g.governor("audit", "verify", incident, "--file", honest)
    assert code == 0 and "matches the workflow's history" in out

    truncated = save(tmp_path / "truncated.json", trail[:-2])
    code, out, _ = await g.governor("audit", "verify", "--file", truncated)
    assert code == 0 and "chain only" in out  # a chain alone cannot know its tail is gone ...
    code, out, _ = await g.governor("audit", "verify", incident, "--file", truncated)
    assert code == common.EXIT_CHAIN_BROKEN  # ... the history does
    assert "does NOT match the workflow's history" in out
    assert f"truncated after entry {len(trail) - 3}" in out and f"history has {len(trail)} entries" in out
    assert f"first missing: {trail[-2].seq} {trail[-2].action}" in out

    code, out, _ = await g.governor("audit", "verify", incident, "--file", save(tmp_path / "empty.json", []))
    assert code == common.EXIT_CHAIN_BROKEN and "the trail is empty" in out

    approval = next(i for i, e in enumerate(trail) if e.action == "approved")
    forged = recomputed(trail, approval, "nobody looked")
    forged_file = save(tmp_path / "forged.json", forged)
    code, out, _ = await g.governor("audit", "verify", "--file", forged_file)
    assert code == 0  # the recomputed chain is self-consistent ...
    code, out, _ = await g.governor("audit", "verify", incident, "--file", forged_file)
    assert code == common.EXIT_CHAIN_BROKEN  # ... but not the history's
    assert f"entry {approval} (approved by alice) is not the history's" in out and "recomputed" in out

    extra = [*trail, *recomputed([*trail, trail[-1].model_copy(update={"seq": len(trail)})], len(trail), "x")[-1:]]
    code, out, _ = await g.governor("audit", "verify", incident, "--file", save(tmp_path / "extra.json", extra))
    assert code == common.EXIT_CHAIN_BROKEN and "1 entries the history does not" in out

    code, _, err = await g.governor("audit", "verify", f"recovery-{g.service}-{STUCK}-nothing")
    assert code == common.EXIT_UNKNOWN_INCIDENT, err
