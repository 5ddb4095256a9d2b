"""`governor audit verify`: the incident's hash chain, checked on its own and against the workflow's history."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from cli.common import EXIT_CHAIN_BROKEN, EXIT_OK, UserError, connect, emit, resolve_incident
from governor.audit import AuditEntry, verify_chain
from governor.incident import IncidentState
from governor.timefmt import format_time


class ChainVerdict(BaseModel):
    incident_id: str
    entries: int
    intact: bool
    broken_at: int | None = None
    problem: str = ""
    head: str = ""
    against_history: bool = False
    """True when the trail was also compared with the one the workflow's history implies (see cli/audit_history.py)."""
    history_entries: int | None = None
    matches_history: bool | None = None
    """None when no history was checked (or the chain itself is broken)."""


def verify_audit(incident: str, trail: list[AuditEntry]) -> ChainVerdict:
    """verify_chain plus the why: which link of which entry fails."""
    broken = verify_chain(trail)
    if broken is None:
        return ChainVerdict(incident_id=incident, entries=len(trail), intact=True, head=trail[-1].hash if trail else "")
    entry = trail[broken]
    expected_prev = trail[broken - 1].hash if broken else "0" * 64
    if entry.seq != broken:
        why = f"entry at position {broken} carries seq {entry.seq} (an entry was removed, added or reordered)"
    elif entry.prev_hash != expected_prev:
        why = f"prev_hash {entry.prev_hash[:12]} does not match entry {broken - 1}'s hash {expected_prev[:12]}"
    else:
        why = f"its contents do not match its hash {entry.hash[:12]} (the entry was edited)"
    problem = f"entry {broken} ({entry.action} by {entry.actor} at {format_time(entry.at)}): {why}"
    return ChainVerdict(incident_id=incident, entries=len(trail), intact=False, broken_at=broken, problem=problem)


def _load_saved_trail(path: Path) -> tuple[str, list[AuditEntry]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read a saved state ({err})") from None
    try:
        if isinstance(data, list):
            return str(path), [AuditEntry.model_validate(e) for e in data]
        state = IncidentState.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: not an incident state or audit list ({where}: {first['msg']})") from None
    return state.incident_id, state.audit


async def cmd_audit(args: argparse.Namespace) -> int:
    """`audit verify INCIDENT`: the queried trail, checked as a chain and against the workflow's history on the server.
    `--file STATE.json`: a saved trail; with INCIDENT too, also against that incident's history, else the chain only."""
    if args.file is None and not args.incident:
        raise UserError("audit verify needs an INCIDENT or --file STATE.json")
    incident = resolve_incident(args.incident) if args.incident else None
    if args.file is not None:
        saved_id, trail = _load_saved_trail(args.file)
        incident = incident or saved_id
    replayed: list[AuditEntry] | None = None
    if args.incident and incident is not None:
        from cli.audit_history import trail_from_history

        gc = await connect(args)
        queried = (await gc.state(incident)).audit  # an unknown incident exits 3
        trail = queried if args.file is None else trail
        replayed = await trail_from_history(gc.temporal, incident)  # fetched after the query: never behind it
    assert incident is not None
    verdict = verify_audit(incident, trail)
    if replayed is not None:
        from cli.audit_history import compare_with_history

        verdict.against_history, verdict.history_entries = True, len(replayed)
        if verdict.intact:
            differs = compare_with_history(trail, replayed)
            verdict.matches_history = differs is None
            if differs is not None:
                verdict.intact, verdict.broken_at, verdict.problem = False, differs[0], differs[1]
    if verdict.intact:
        proof = ", matches the workflow's history" if verdict.against_history else " (chain only: no history checked)"
        text = f"{incident}: audit chain intact ({verdict.entries} entries, head {verdict.head[:12] or '-'}){proof}"
    elif verdict.matches_history is False:
        text = f"{incident}: audit trail does NOT match the workflow's history: {verdict.problem}"
    else:
        text = f"{incident}: audit chain BROKEN at {verdict.problem}"
    emit(args, verdict, text)
    return EXIT_OK if verdict.intact else EXIT_CHAIN_BROKEN
