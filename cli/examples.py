"""The Examples section of each command's help (`governor COMMAND --help`), kubectl/gh style."""

from __future__ import annotations

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "setup": [
        ("check chat's policy", "governor setup --service chat"),
        (
            "start a policy for search",
            "governor setup --service search --init --primary-url http://10.0.0.5:8000 --approver alice",
        ),
    ],
    "validate": [
        ("check every policy in a folder", "governor validate policies/"),
        ("errors as field/value objects", "governor validate --json policies/chat.yaml"),
    ],
    "scenarios": [("the ten failure types", "governor scenarios")],
    "chain": [("chat's chain and the tier served now", "governor chain chat")],
    "hierarchy": [("the same as chain", "governor hierarchy chat --policy-only")],
    "alert-rules": [("write Prometheus's rule file", "governor alert-rules --output deploy/prometheus/alerts.yml")],
    "policy": [("write the policy JSON Schema for editors", "governor policy schema --output policy.schema.json")],
    "status": [("the status report, live", "governor status")],
    "recovery": [("an incident's checks and ETA", "governor recovery chat/primary-llm")],
    "list": [
        ("open incidents", "governor list"),
        ("those waiting for an approval, as JSON", "governor list --awaiting --json"),
        ("redraw every 5 s until Ctrl-C", "governor list --watch --interval 5"),
    ],
    "show": [
        ("one incident", "governor show chat/primary-llm"),
        ("as JSON", "governor show chat/primary-llm --json"),
        ("follow it until it closes", "governor show chat/primary-llm --watch"),
    ],
    "simulate": [("report a rate limit", "governor simulate --service chat --type rate_limit --severity HIGH")],
    "failover": [("one tier down", "governor failover --service chat --reason 'provider degraded' --as alice")],
    "recover": [("declare remediated", "governor recover --service chat --reason 'provider fixed' --as alice")],
    "approve": [
        (
            "approve the pending ramp step",
            "governor approve chat/primary-llm --gate ramp:10 --gate-id GATE_ID --reason 'error rate ok' --as alice",
        )
    ],
    "reject": [("reject a gate", "governor reject chat/primary-llm --gate promote --reason 'too early' --as alice")],
    "pause": [("hold at the next safe point", "governor pause chat/primary-llm --reason 'investigating' --as alice")],
    "resume": [("continue", "governor resume chat/primary-llm --as alice")],
    "abort": [("abort the ramp", "governor abort chat/primary-llm --reason 'errors again' --as alice")],
    "promote": [("skip the remaining steps", "governor promote chat/primary-llm --as alice")],
    "claim": [("take ownership", "governor claim chat/primary-llm --as alice")],
    "force-tier": [("pin the cache tier", "governor force-tier chat/primary-llm --tier cache --as alice")],
    "note": [("add a note", "governor note chat/primary-llm provider confirmed the outage --as alice")],
    "audit": [("verify the audit chain", "governor audit verify chat/primary-llm")],
    "postmortem": [("write the post-mortem", "governor postmortem chat/primary-llm --output pm.md")],
    "watch": [("start the watchdogs", "governor watch --policy-dir demo/policies")],
    "up": [("the whole stack with the demo incident", "governor up --demo")],
    "completion": [
        ("bash, for this shell", 'eval "$(governor completion bash)"'),
        ("zsh, installed", "governor completion zsh > ~/.zfunc/_governor"),
    ],
}


def examples(command: str) -> str:
    """The epilog text for a command: `Examples:` then each description and command line."""
    lines = ["Examples:"]
    for text, line in EXAMPLES.get(command, []):
        lines += [f"  # {text}", f"  {line}", ""]
    lines.append("Connection options (--address, --namespace, --tls...): governor --help")
    return "\n".join(lines)
