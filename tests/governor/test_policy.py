"""governor.policy: the seed's defaults, the cross-field rules, strict types and ranges, and loader errors.

The mutation test takes a valid policy that sets every field and changes one field at a time to something a typo or an
attacker would write (negative, zero, a boolean, a string, blank, a NUL byte, a path where a URL goes, ...): every
such mutation must be refused with an error naming the file, the field path and the bad value, and the sensible
variations (an int where a float goes, a rate of exactly 0 or 1, an https URL) must still be accepted.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from governor.enums import DegradationLevel, FallbackTier, FeatureFlag
from governor.policy import (
    PolicyError,
    RecoveryChecks,
    ServicePolicy,
    Thresholds,
    find_policy,
    load_policy,
    load_policy_dir,
    load_policy_source,
    parse_gate,
    parse_policy,
)
from tests.governor import seed

ROOT = Path(__file__).resolve().parents[2]

VALID: dict[str, Any] = {
    "service": "chat",
    "gateways": ["http://127.0.0.1:8080", "https://gw.internal:8443"],
    "dependencies": [
        {
            "name": "primary-llm",
            "type": "model",
            "tier": "tier_0_primary",
            "health_url": "http://127.0.0.1:9101/health",
            "timeout_ms": 2000,
            "retries": 3,
            "sla_target": 99.9,
        },
        {"name": "secondary-llm", "type": "model", "tier": "tier_1_secondary"},
    ],
    "chain": [
        {"tier": "tier_0_primary", "upstream": "http://127.0.0.1:9101", "timeout_ms": 5000},
        {"tier": "tier_1_secondary", "upstream": "https://backup.example:443/v1", "timeout_ms": 5000},
        {"tier": "tier_2_cache", "ttl_s": 300, "max_entries": 10000},
        {"tier": "tier_3_degraded", "upstream": "http://127.0.0.1:9103", "max_tokens": 128},
        {"tier": "tier_4_static", "status": 200, "body": {"text": "limited"}, "content_type": "application/json"},
    ],
    "thresholds": {
        "latency_warning_ms": 500,
        "latency_critical_ms": 2000,
        "error_rate_warning": 0.01,
        "error_rate_critical": 0.05,
        "queue_depth_warning": 100,
        "queue_depth_critical": 500,
        "rate_limited_share": 0.2,
    },
    "recovery_checks": {
        "health_passes": 3,
        "p99_ms": 500,
        "error_rate": 0.01,
        "min_rps": 100,
        "normal_rps": 5,
        "min_samples": 20,
        "probe_interval_s": 1.0,
    },
    "ramp": {
        "steps": [{"percent": 10, "soak_s": 300}, {"percent": 50, "soak_s": 600}, {"percent": 100, "soak_s": 0}],
        "sample_interval_s": 10,
        "stats_window_s": 30,
    },
    "rollback": {"error_rate": 0.05, "p99_ms": 1500, "max_attempts": 3},
    "approvals": {
        "approvers": ["alice", "bob"],
        "gates": ["ramp:10", "exit:tier_3_degraded"],
        "gate_approvers": {"ramp:10": ["alice"]},
        "timeout_s": 900,
        "four_eyes": False,
    },
    "degradation": {"features": ["authentication", "search"]},
    "notifications": {
        "routes": {
            "oncall": [{"type": "webhook", "url": "http://127.0.0.1:9105/pager", "secret_env": "PAGER_SECRET"}],
            "internal": [{"type": "slack", "url": "https://hooks.slack.example/T0"}],
            "leadership": [{"type": "email", "url": "smtp://127.0.0.1:2525", "to": ["vp@example.com"]}],
            "customers": [{"type": "status_page"}],
        },
    },
    "remediation": {"escalate_after_s": 60},
    "auto_failover": True,
    "deadline_ms": 30000,
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


POSITIVE_INTS = [
    "dependencies.0.timeout_ms",
    "chain.0.timeout_ms",
    "chain.2.ttl_s",
    "chain.2.max_entries",
    "chain.3.max_tokens",
    "thresholds.queue_depth_warning",
    "thresholds.queue_depth_critical",
    "recovery_checks.health_passes",
    "recovery_checks.min_samples",
    "ramp.stats_window_s",
    "rollback.max_attempts",
    "deadline_ms",
]
POSITIVE_FLOATS = [
    "thresholds.latency_warning_ms",
    "thresholds.latency_critical_ms",
    "recovery_checks.p99_ms",
    "recovery_checks.min_rps",
    "recovery_checks.normal_rps",
    "recovery_checks.probe_interval_s",
    "ramp.sample_interval_s",
    "rollback.p99_ms",
    "approvals.timeout_s",
    "remediation.escalate_after_s",
    "dependencies.0.sla_target",
]
RATES = [
    "thresholds.error_rate_warning",
    "thresholds.error_rate_critical",
    "thresholds.rate_limited_share",
    "recovery_checks.error_rate",
    "rollback.error_rate",
]
NAMES = [
    "service",
    "dependencies.0.name",
    "dependencies.0.type",
    "approvals.approvers.0",
    "approvals.gate_approvers.ramp:10.0",
    "degradation.features.0",
    "chain.4.content_type",
    "notifications.routes.oncall.0.secret_env",
    "notifications.routes.leadership.0.to.0",
]
HTTP_URLS = [
    "gateways.0",
    "dependencies.0.health_url",
    "chain.0.upstream",
    "chain.1.upstream",
    "chain.3.upstream",
    "notifications.routes.oncall.0.url",
    "notifications.routes.internal.0.url",
]
BOOLS = ["auto_failover", "approvals.four_eyes"]
BAD_URLS = [
    "../../etc/passwd",
    "/etc/passwd",
    "file:///etc/passwd",
    "ftp://127.0.0.1/x",
    "http://",
    "http:///path",
    "127.0.0.1:9101",
    "http://127.0.0.1:99999",
    "http://exa mple.com",
    "http://127.0.0.1/\x00",
    "",
    " ",
    True,
    5,
]


def nonsense() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = []
    for path in POSITIVE_INTS:
        cases += [(path, v) for v in (-1, 0, True, False, 1.5, "5", [5])]
    for path in POSITIVE_FLOATS:
        cases += [(path, v) for v in (-1, -0.5, 0, True, "500", float("nan"))]
    for path in RATES:
        cases += [(path, v) for v in (-0.01, 1.01, 5, True, "0.05")]
    for path in NAMES:
        cases += [(path, v) for v in ("", " ", "\t", "a\x00b", 7)]
    for path in HTTP_URLS:
        cases += [(path, v) for v in BAD_URLS]
    for path in BOOLS:
        cases += [(path, v) for v in ("yes", 1, 0, "true", None)]
    cases += [
        ("ramp.steps.0.percent", True),
        ("ramp.steps.0.percent", 0),
        ("ramp.steps.0.percent", 10.5),
        ("ramp.steps.0.soak_s", -1),
        ("ramp.steps.0.soak_s", True),
        ("chain.4.status", True),
        ("chain.4.status", 99),
        ("dependencies.0.retries", -1),
        ("dependencies.0.retries", True),
        ("notifications.routes.leadership.0.url", "http://127.0.0.1:2525"),  # email needs smtp://
        ("notifications.routes.leadership.0.url", "smtp://"),
        ("approvals.approvers", []),
        ("approvals.gates.0", "ramp:\x0010"),
        ("approvals.gate_approvers.ramp:10", []),
        ("gateways", []),
        ("chain.4.body", {"text": "a\x00b"}),
        ("dependencies.0.health_expect_json", {"sta\x00tus": "ok"}),
        ("thresholds.latency_warning_ms", 3000),  # warning above critical
        ("thresholds.error_rate_warning", 0.5),
        ("thresholds.queue_depth_warning", 900),
    ]
    return cases


SENSIBLE = [
    ("thresholds.latency_warning_ms", 250),  # an int where a float goes
    ("thresholds.latency_warning_ms", 499.5),
    ("recovery_checks.error_rate", 0),
    ("recovery_checks.error_rate", 1),
    ("rollback.error_rate", 0.0),
    ("recovery_checks.normal_rps", None),
    ("rollback.p99_ms", None),
    ("ramp.steps.0.soak_s", 0),
    ("chain.0.upstream", "https://api.openai.example/v1"),
    ("chain.0.upstream", "http://[::1]:9101"),
    ("dependencies.0.health_url", "http://localhost/health?deep=1"),
    ("gateways.0", "http://gateway-1.svc.cluster.local:8080"),
    ("notifications.routes.leadership.0.url", "smtps://mail.example:465"),
    ("approvals.four_eyes", True),
    ("auto_failover", False),
    ("approvals.approvers.0", "alice@example.com"),
    ("service", "chat-2"),
]


def shown(value: Any) -> str:
    return repr(value)[:40]


def test_the_base_policy_is_valid() -> None:
    policy = parse_policy(copy.deepcopy(VALID), "base.yaml")
    assert policy.service == "chat" and len(policy.chain) == 5


def test_there_are_at_least_150_nonsense_mutations() -> None:
    assert len(nonsense()) >= 150


@pytest.mark.parametrize(("path", "value"), nonsense(), ids=lambda x: shown(x) if not isinstance(x, str) else x)
def test_every_nonsense_mutation_is_refused_naming_file_and_field(path: str, value: Any) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value(path, value), "mutated.yaml")
    message = str(refused.value)
    assert message.startswith("mutated.yaml: ")
    leaf = path.split(".")[-1]
    assert leaf in message or path.split(".")[0] in message, message


@pytest.mark.parametrize(("path", "value"), SENSIBLE, ids=lambda x: shown(x) if not isinstance(x, str) else x)
def test_sensible_variations_are_accepted(path: str, value: Any) -> None:
    parse_policy(with_value(path, value), "variant.yaml")


def test_an_error_names_the_file_the_field_path_and_the_bad_value() -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("chain.0.upstream", "../../etc/passwd"), "chat.yaml")
    assert "chat.yaml: invalid policy" in str(refused.value)
    assert "chain.0.upstream" in str(refused.value) and "'../../etc/passwd'" in str(refused.value)
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("rollback.error_rate", True), "chat.yaml")
    assert "rollback.error_rate" in str(refused.value) and "(got True)" in str(refused.value)
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("approvals.approvers.0", " "), "chat.yaml")
    assert "approvals.approvers.0: Value error, must not be blank (got ' ')" in str(refused.value)
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("chain.4.body", {"text": "a\x00b"}), "chat.yaml")
    assert "chain.4.body.text: a NUL byte is not allowed" in str(refused.value)


def test_the_shipped_policies_are_valid() -> None:
    for folder in (ROOT / "policies", ROOT / "demo" / "policies"):
        assert load_policy_dir(folder), folder


def test_defaults_are_the_seeds() -> None:
    policy = parse_policy({"service": "s", "dependencies": [{"name": "d"}], "chain": [VALID["chain"][0]]})
    assert Thresholds().model_dump(exclude={"rate_limited_share"}) == seed.THRESHOLDS
    checks = {c["name"]: c["threshold"] for c in seed.RECOVERY_CHECKS}
    rc = RecoveryChecks()
    assert (rc.health_passes, rc.p99_ms, rc.error_rate, rc.min_rps) == (
        checks["health_endpoint"],
        checks["latency"],
        checks["error_rate"],
        checks["throughput"],
    )
    assert [(s.percent, s.soak_s) for s in policy.ramp.steps] == [
        (r["traffic_percent"], r["duration_minutes"] * 60) for r in seed.RESTORATION_RAMP
    ]
    assert policy.rollback.error_rate == seed.ROLLBACK_ERROR_RATE
    exits = [f"exit:{t.value}" for t in FallbackTier if t.requires_approval_to_exit]
    assert policy.approvals.gates == exits == ["exit:tier_3_degraded", "exit:tier_4_static"]


@pytest.mark.parametrize("level", list(seed.DEGRADATION_RULES))
def test_degradation_flags_follow_the_seeds_rules(level: str) -> None:
    policy = parse_policy({"service": "s", "dependencies": [{"name": "d"}], "chain": [VALID["chain"][0]]})
    rule = seed.DEGRADATION_RULES[level]
    flags = policy.degradation.flags_for(DegradationLevel(level))
    for feature, flag in flags.items():
        if "all" in rule["preserve"] or feature in rule["preserve"]:
            assert flag is FeatureFlag.ENABLED, (level, feature)
        elif feature in rule["reduce"]:
            assert flag is FeatureFlag.DEGRADED, (level, feature)
        elif feature in rule["disable"] or "all_except_auth" in rule["disable"]:
            assert flag is FeatureFlag.DISABLED, (level, feature)


def test_offline_disables_everything_and_emergency_keeps_only_auth() -> None:
    policy = parse_policy({"service": "s", "dependencies": [{"name": "d"}], "chain": [VALID["chain"][0]]})
    assert set(policy.degradation.flags_for(DegradationLevel.OFFLINE).values()) == {FeatureFlag.DISABLED}
    emergency = policy.degradation.flags_for(DegradationLevel.EMERGENCY)
    assert [f for f, v in emergency.items() if v is FeatureFlag.ENABLED] == ["authentication"]


@pytest.mark.parametrize(
    ("gate", "ok"),
    [
        ("enter:tier_1_secondary", True),
        ("exit:tier_4_static", True),
        ("ramp:10", True),
        ("ramp:100", True),
        ("promote", True),
        ("ramp:0", False),
        ("ramp:101", False),
        ("ramp:ten", False),
        ("exit:tier_9", False),
        ("open:sesame", False),
        ("", False),
    ],
)
def test_gate_names(gate: str, ok: bool) -> None:
    if ok:
        assert parse_gate(gate)[0] == gate.partition(":")[0]
    else:
        with pytest.raises(ValueError, match="gate"):
            parse_gate(gate)


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        ("chain", [VALID["chain"][1]], "must start with tier_0_primary"),
        ("chain", [VALID["chain"][0], VALID["chain"][2], VALID["chain"][1]], "in tier order"),
        ("ramp.steps", [{"percent": 50, "soak_s": 1}, {"percent": 10, "soak_s": 1}], "rise strictly"),
        ("ramp.steps", [{"percent": 50, "soak_s": 1}], "must be 100"),
        ("ramp.steps", [], "at least one step"),
        ("approvals.gates", ["ramp:25"], "names no ramp step"),
        ("dependencies.1.name", "primary-llm", "must be unique"),
        ("dependencies.1.tier", "tier_5_error", "not in the chain"),
        ("chain.0", {"tier": "tier_0_primary"}, "needs an upstream URL"),
        ("chain.4", {"tier": "tier_4_static"}, "needs a body"),
        ("notifications.routes.oncall.0", {"type": "pagerduty"}, "needs a url"),
        ("notifications.routes.leadership.0", {"type": "email", "url": "smtp://127.0.0.1:25"}, "address"),
    ],
)
def test_cross_field_rules(path: str, value: Any, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        parse_policy(with_value(path, value), "x.yaml")


def test_policy_helpers() -> None:
    policy = parse_policy(copy.deepcopy(VALID))
    assert policy.failed_tier("secondary-llm") is FallbackTier.TIER_1_SECONDARY
    assert policy.tier_spec(FallbackTier.TIER_5_ERROR) is None
    assert policy.approvals.approvers_for("ramp:10") == ["alice"]
    assert policy.approvals.approvers_for("exit:tier_3_degraded") == ["alice", "bob"]
    assert policy.dependencies[0].effective_timeout_ms(5) == 30_000  # the seed's backoff, capped at 30 s
    assert policy.dependencies[0].should_retry(2) and not policy.dependencies[0].should_retry(3)
    assert RecoveryChecks(normal_rps=5).throughput_bar == 5
    with pytest.raises(KeyError, match="no dependency 'nope'"):
        policy.dependency("nope")


def write(tmp: Path, name: str, data: Any) -> Path:
    path = tmp / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / ("a" * 300 + ".yaml"), "file name too long"),
        (lambda tmp: tmp / "missing.yaml", "No such file or directory"),
        (lambda tmp: write(tmp, "list.yaml", "- 1\n- 2\n"), "must be a YAML mapping, got list"),
        (lambda tmp: write(tmp, "bad.yaml", "service: [\n"), "not valid YAML"),
        (lambda tmp: write(tmp, "bin.yaml", "\udcff"), "not UTF-8"),
        (lambda tmp: tmp / ("d" * 300) / "chat.yaml", "file name too long"),
    ],
)
def test_unusable_files_are_clear_errors(tmp_path: Path, make: Any, says: str) -> None:
    try:
        path = make(tmp_path)
    except UnicodeEncodeError:
        path = tmp_path / "bin.yaml"
        path.write_bytes(b"service: \xff\xfe\n")
    with pytest.raises(PolicyError, match=says) as refused:
        load_policy_source(path)
    assert len(str(refused.value)) < 400  # a 300-character name is shortened, not echoed whole


def test_duplicate_services_in_a_folder_name_the_second_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID)
    with pytest.raises(PolicyError, match=r"b\.yaml: service 'chat' is already defined"):
        load_policy_dir(tmp_path)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy_dir(tmp_path / "nope")


def test_find_policy_by_file_name_or_by_scanning(tmp_path: Path) -> None:
    write(tmp_path, "whatever.yaml", VALID)
    assert find_policy(tmp_path, "chat").service == "chat"
    with pytest.raises(PolicyError, match="no policy for service 'x"):
        find_policy(tmp_path, "x" * 300)


def test_governor_validate_with_a_long_or_missing_file_exits_1_without_a_traceback(tmp_path: Path) -> None:
    for path in (tmp_path / ("a" * 300 + ".yaml"), tmp_path / "missing.yaml"):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "governor"), "validate", str(path)],  # the installed entry point
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and "cannot read policy" in done.stderr


def test_loaded_policies_are_frozen() -> None:
    policy = load_policy(ROOT / "policies" / "chat.yaml")
    assert isinstance(policy, ServicePolicy)
    with pytest.raises(ValueError, match="frozen"):
        policy.service = "other"  # type: ignore[misc]


def test_drills_default_to_the_status_page_untouched_and_name_known_dependencies_only() -> None:
    plain = parse_policy(with_value("drills", {"duration_s": 30}), "chat.yaml")
    assert plain.drills.status_page is False and plain.drills.duration_s == 30 and plain.drills.faults == {}
    fault = {"url": "http://127.0.0.1:9101/control", "inject": {"outage": True}, "clear": {"outage": False}}
    parse_policy(with_value("drills", {"faults": {"primary-llm": fault}}), "chat.yaml")
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("drills", {"faults": {"nope": fault}}), "chat.yaml")
    assert "drills.faults names no dependency 'nope'" in str(refused.value)
    with pytest.raises(PolicyError) as refused:
        parse_policy(with_value("drills", {"status_page": "yes"}), "chat.yaml")
    assert "drills.status_page" in str(refused.value)
