"""The timeline's narrator: each audit entry told as one sentence.

One narrator for every reader of an incident: the demo's live narration, `governor show`, the Temporal UI's current
details and the post-mortem all tell an entry the same way. Pure (no Temporal import).
"""

from __future__ import annotations

from governor.audit import AuditEntry

PHASE_SENTENCES = {
    "detection": "confirming the report by probing the primary again",
    "isolation": "opening the primary's circuit breaker in the gateway",
    "fallback_active": "falling back to the highest healthy tier and degrading features as policy says",
    "diagnosis": "gathering evidence (probes, gateway stats and state)",
    "remediation": "waiting until the primary is healthy again (probing it every second)",
    "validation": "running the recovery checks against the primary before it gets traffic",
    "gradual_restore": "giving the primary its traffic back step by step, watching its error rate",
    "full_restore": "primary pinned, breaker closed, degradation back to normal, status operational",
    "post_mortem": "writing the post-mortem",
}


def describe(entry: AuditEntry) -> str:
    """One audit entry as one sentence: what happened, in the words on-call reads.

    Never raises: an entry from an older history, or with details of an unexpected shape, is told plainly.
    """
    try:
        return " ".join(_sentence(entry).split())  # one line, whatever the details hold
    except (TypeError, ValueError, AttributeError, IndexError):
        return f"{entry.action} ({entry.actor})"


def _sentence(entry: AuditEntry) -> str:
    action, actor, d = str(entry.action), entry.actor, entry.details
    previous, new = entry.previous_state, entry.new_state
    if action == "phase":
        return f"Phase {new}: {PHASE_SENTENCES.get(new, '')}"
    if action == "reported":
        return f"{actor} reported {d.get('failure_type') or 'a failure'}: {d.get('message') or ''}".rstrip(": ")
    if action == "report_joined":
        return f"another report from {actor} ({d.get('failure_type')}) joined the open incident (no twin incident)"
    if action == "failure_confirmed" and d.get("joined"):
        return f"{d.get('dependency')} failed too ({d.get('failure_type')}, {d.get('tier')}): {d.get('reason')}"
    if action == "failure_confirmed":
        return f"Failure confirmed: {d.get('failure_type')} ({d.get('severity')}): {d.get('reason')}"
    if action == "false_alarm" and d.get("dependency"):
        return f"The report on {d.get('dependency')} did not reproduce: ignored ({d.get('reason')})"
    if action == "false_alarm":
        return f"The failure did not reproduce: closed as a false alarm ({d.get('reason')})"
    if action == "drill_started":
        return f"DRILL by {actor}: {d.get('injection')} for {d.get('duration_s')} s (restores on its own)"
    if action == "drill_restored":
        return f"Drill over: {d.get('cleared')}; the workflow now validates and ramps as in a real incident"
    if action == "drill_findings":
        return f"Drill findings: {d.get('client_errors')} client errors; requests by tier {d.get('requests')}"
    if action == "flapping":
        return f"Flapping: {d.get('flaps')} failures after recovering ({d.get('reason')}); waiting for a human"
    if action == "dependency_restored":
        return f"{d.get('dependency')} is back ({d.get('tier')}); still failed: {d.get('still_failed') or 'nothing'}"
    if action == "blast_radius":
        raised = f"; severity raised {d['severity_raised']} ({d.get('why')})" if d.get("severity_raised") else ""
        return f"Blast radius: {d.get('summary')}{raised}"
    if action == "breaker_opened":
        return f"The gateway's breaker for {d.get('tier')} is forced open: no request goes there"
    if action == "tier" and d.get("mode"):
        by = f" by {d.get('by')}" if d.get("human") else ""
        return f"Traffic is now served by {new} (was {previous}; {d['mode']}{by}): {d.get('reason', '')}"
    if action == "tier":
        return f"Traffic is now served by {new} (was {previous}): {d.get('reason', '')}"
    if action == "evidence_gathered":
        # The summary's first line is its title; the second says which dependencies answer.
        lines = [line.strip(" -") for line in str(d.get("summary", "")).strip().splitlines()]
        return f"Evidence gathered: {lines[1] if len(lines) > 1 else ''}".rstrip(": ")
    if action == "primary_healthy":
        return f"The primary passed {d.get('consecutive_passes')} health checks in a row"
    if action == "remediation_declared":
        return f"{actor} declared the primary remediated"
    if action == "validation":
        return f"Validation {d.get('verdict')}: {d.get('reason')}"
    if action == "approval_requested":
        return f"Approval needed for {d.get('gate')}: {d.get('context')}"
    if action in {"approved", "rejected"}:
        return f"{actor} {action} {d.get('gate')}: {d.get('reason')}"
    if action == "ramp_step":
        return f"Ramp: {d.get('percent')} % of traffic to the primary (attempt {d.get('attempt')})"
    if action == "ramp_step_passed":
        rate = d.get("error_rate")
        rate_text = f"{rate:.1%}" if isinstance(rate, int | float) else "?"
        return f"Ramp step {d.get('percent'):g} % passed: primary error rate {rate_text}, {d.get('requests', 0):g} requests"
    if action == "rolled_back":
        return f"ROLLBACK at {d.get('percent')} %: {d.get('reason')}; traffic goes back to the fallback tier"
    if action == "restored":
        return "Fully restored: the primary serves all traffic again"
    if action == "closed":
        return f"Incident closed: {d.get('outcome')}"
    if action == "escalated":
        return f"Escalated: {d.get('reason')}"
    if action in {"notification_failed", "activity_failed"}:
        return f"{action.replace('_', ' ')}: {d.get('error')}"
    if action == "refused":
        return f"Refused {d.get('control')} from {actor}: {d.get('reason')}"
    if action == "tiers_checked":
        down = d.get("down") or {}
        listed = "; ".join(f"{t} ({why})" for t, why in down.items()) if isinstance(down, dict) else str(down)
        return f"Tier health checked: down {listed}" if down else "Tier health checked: every tier answers"
    if action == "tier_served":
        if d.get("refused"):
            return f"{d['refused']} refused: the gateway keeps answering from {d.get('served')} to stay available"
        if d.get("served") == d.get("pinned"):
            return f"Clients are served by the pinned {d.get('pinned')} again"
        return f"Clients get {d.get('served')} though {d.get('pinned')} is pinned ({d.get('answers')})"
    if action == "claim":
        before = d.get("previous_owner")
        return (
            f"{actor} took ownership of the recovery"
            + (f" from {before}" if before else "")
            + (f": {d['reason']}" if d.get("reason") else "")
        )
    if action == "note":
        return f"Note from {actor}: {d.get('text')}"
    if action in {"pause", "resume", "abort", "promote", "force_tier", "declare_remediated", "promoted", "tier_forced"}:
        return f"{actor}: {action.replace('_', ' ')} {d.get('reason') or d.get('tier') or ''}".rstrip()
    return f"{action} ({actor})"
