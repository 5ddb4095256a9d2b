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
    if args.file is not None:
        incident, trail = _load_saved_trail(args.file)
    elif args.incident:
        gc = await connect(args)
        incident = resolve_incident(args.incident)
        trail = (await gc.state(incident)).audit
    else:
        raise UserError("audit verify needs an INCIDENT or --file STATE.json")
    verdict = verify_audit(incident, trail)
    if verdict.intact:
        text = f"{incident}: audit chain intact ({verdict.entries} entries, head {verdict.head[:12] or '-'})"
    else:
        text = f"{incident}: audit chain BROKEN at {verdict.problem}"
    emit(args, verdict, text)
    return EXIT_OK if verdict.intact else EXIT_CHAIN_BROKEN
