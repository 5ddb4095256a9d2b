"""Policy commands: setup, validate, scenarios, chain, alert-rules. They read the policy files only, never Temporal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    UserError,
    emit,
    policy_dir,
    resolve_identity,
)
from cli.render import (
    chain_rows,
    render_chain,
    render_setup,
    render_table,
)
from governor.alert_rules import prometheus_rules, render_rules, rule_count
from governor.decisions import BASE_SEVERITY
from governor.enums import FailureType, FallbackTier
from governor.policy import (
    PolicyError,
    ServicePolicy,
    find_policy,
    is_policy_dir,
    load_policy,
    load_policy_dir,
    parse_policy,
)


def cmd_setup(args: argparse.Namespace) -> int:
    directory = policy_dir(args)
    policies = load_policy_dir(directory) if directory.is_dir() else {}
    policy = policies.get(args.service)
    if policy is None:
        if not args.init:
            known = ", ".join(sorted(policies)) or "none"
            raise UserError(
                f"{directory}: no policy for service {args.service!r} (known: {known})\n"
                f"  to start one: governor setup --service {args.service} --init --primary-url URL"
            )
        policy = _write_starter_policy(args, directory)
    elif args.init:
        print(
            f"governor: {directory} already has a policy for {args.service!r}; --init wrote nothing (shown below)",
            file=sys.stderr,
        )
    emit(args, policy, lambda: render_setup(policy))
    return EXIT_OK


def _write_starter_policy(args: argparse.Namespace, directory: Path) -> ServicePolicy:
    if not args.primary_url:
        raise UserError("--init needs --primary-url (the primary upstream's base URL)")
    approvers = args.approver or [resolve_identity(getattr(args, "actor", None))]
    chain: list[dict[str, Any]] = [{"tier": "tier_0_primary", "upstream": args.primary_url}]
    if args.secondary_url:
        chain.append({"tier": "tier_1_secondary", "upstream": args.secondary_url})
    chain += [
        {"tier": "tier_2_cache", "ttl_s": 300},
        {"tier": "tier_4_static", "body": {"error": "temporarily limited", "retry_after_s": 60}},
    ]
    tiers = {str(link["tier"]) for link in chain}
    data = {
        "service": args.service,
        "dependencies": [
            {"name": args.dependency, "tier": "tier_0_primary", "health_url": args.primary_url.rstrip("/") + "/health"}
        ],
        "chain": chain,
        # Gate the exits of the tiers this chain has (the default would gate tier_3_degraded, which it lacks).
        "approvals": {
            "approvers": approvers,
            "gates": [f"exit:{t.value}" for t in FallbackTier if t.requires_approval_to_exit and t.value in tiers],
        },
    }
    path = directory / f"{args.service}.yaml"
    policy = parse_policy(data, str(path))
    if path.exists():
        raise UserError(f"{path} exists but defines another service; not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    header = f"# Starter policy for {args.service}, written by `governor setup --init`. Every field: README.md.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {path}")
    return policy


def cmd_policy(args: argparse.Namespace) -> int:
    """`governor policy schema`: the JSON Schema of a policy file, from the same pydantic models that load it."""
    schema = ServicePolicy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "Fallback Governor service policy")
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    for path in args.paths:
        try:
            if is_policy_dir(path):  # an unusable path (too long, unreadable) is a PolicyError, not a traceback
                policies = load_policy_dir(path)
                for service, policy in policies.items():
                    results.append(
                        {
                            "file": str(path),
                            "ok": True,
                            "service": service,
                            "tiers": len(policy.chain),
                            "dependencies": len(policy.dependencies),
                        }
                    )
                if not policies:
                    error = f"{path}: no *.yaml policy files"
                    results.append(
                        {
                            "file": str(path),
                            "ok": False,
                            "error": error,
                            "errors": [{"path": None, "value": None, "message": error}],
                        }
                    )
            else:
                policy = load_policy(path)
                results.append(
                    {
                        "file": str(path),
                        "ok": True,
                        "service": policy.service,
                        "tiers": len(policy.chain),
                        "dependencies": len(policy.dependencies),
                    }
                )
        except PolicyError as err:
            results.append({"file": str(path), "ok": False, "error": str(err), "errors": err.errors})
    failed = [r for r in results if not r["ok"]]
    if args.json:
        emit(args, results, "")
    else:
        for r in results:
            if r["ok"]:
                print(f"ok  {r['file']}: service {r['service']}, {r['dependencies']} dependencies, {r['tiers']} tiers")
        for r in failed:
            print(r["error"], file=sys.stderr)
    return EXIT_USAGE if failed else EXIT_OK


def cmd_scenarios(args: argparse.Namespace) -> int:
    data = [
        {
            "failure_type": t.value,
            "detection_method": t.detection_method,
            "typical_recovery_minutes": t.typical_recovery_minutes,
            "requires_manual_intervention": t.requires_manual_intervention,
            "base_severity": BASE_SEVERITY[t].value,
        }
        for t in FailureType
    ]
    rows = [
        [
            d["failure_type"],
            d["detection_method"],
            d["typical_recovery_minutes"],
            d["requires_manual_intervention"],
            d["base_severity"],
        ]
        for d in data
    ]
    emit(
        args,
        data,
        lambda: render_table(
            ["failure type", "detection", "typical recovery (min)", "manual intervention", "base severity"], rows
        ),
    )
    return EXIT_OK


def cmd_chain(args: argparse.Namespace) -> int:
    policy = find_policy(policy_dir(args), args.service)
    emit(args, {"service": policy.service, "chain": chain_rows(policy)}, lambda: render_chain(policy))
    return EXIT_OK


def cmd_alert_rules(args: argparse.Namespace) -> int:
    """The Prometheus rule file for every policy in the folder; `promtool check rules` accepts what it writes."""
    rules = prometheus_rules(load_policy_dir(policy_dir(args)))
    text = render_rules(rules)
    if args.output is None:
        print(text, end="")
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"{args.output}: cannot write the rule file: {err.strerror or err}") from None
    print(f"wrote {args.output}: {rule_count(rules)} alert rules", file=sys.stderr)
    return EXIT_OK
