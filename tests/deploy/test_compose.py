"""docker-compose.yml, the Dockerfile and deploy/: read by real parsers (docker-compose, promtool, the Temporal CLI)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from governor import search_attributes as sa
from governor.policy import load_policy_dir

pytestmark = pytest.mark.integration  # the Temporal dev server or a server in another process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "compose-test-token"
TOKENS = {
    "GOVERNOR_GATEWAY_TOKEN": TOKEN,
    "GOVERNOR_INTAKE_TOKEN": "intake-test-token",
    "GOVERNOR_ONCALL_WEBHOOK_URL": "https://pager.example/hooks/governor?team=sre&x=1",
}


def docker_compose() -> str:
    found = shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if Path("/usr/bin/docker-compose").exists() else None
    )
    if not found:
        pytest.fail("docker-compose (Debian's package) is not installed: run `make system-deps`")
    return found


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERNOR_", "COMPOSE_"))}
    return subprocess.run(
        [docker_compose(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The file as docker-compose resolves it (schema-validated, anchors merged, variables interpolated)."""
    result = compose("--profile", "demo", "config", env=TOKENS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def policies() -> dict[str, Any]:
    return load_policy_dir(ROOT / "deploy" / "policies")


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def host_ips(ports: list[Any]) -> list[str]:
    """Published ports in either form docker-compose prints: `ip:host:container/proto` or a mapping."""
    return [p["host_ip"] if isinstance(p, dict) else p.split(":")[0] for p in ports]


def mounts(volumes: list[Any]) -> dict[str, str]:
    """target -> source, from `source:target[:mode]` strings or mappings."""
    found = {}
    for v in volumes:
        if isinstance(v, dict):
            found[v["target"]] = v.get("source", "")
        else:
            source, target = v.split(":")[:2]
            found[target] = source
    return found


def test_the_file_is_valid_and_the_token_is_required(config: dict[str, Any]) -> None:
    for required in TOKENS:
        result = compose("config", "-q", env={k: v for k, v in TOKENS.items() if k != required})
        assert result.returncode != 0
        assert f"set {required}" in result.stderr
    services = compose("config", "--services", env=TOKENS)
    assert services.returncode == 0, services.stderr
    names = set(services.stdout.split())
    assert {"postgresql", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "worker"} <= names
    assert {"gateway-1", "gateway-2", "intake", "prometheus", "alertmanager"} <= names
    profiled = {name for name, svc in config["services"].items() if svc.get("profiles")}
    assert profiled == {n for n in names if n.startswith("upstream-")}, "only the demo upstreams are optional"


def test_temporal_runs_on_postgres_with_admin_tools_setup(config: dict[str, Any]) -> None:
    s = config["services"]
    images = {name: svc.get("image", "") for name, svc in s.items()}
    assert not any("auto-setup" in image for image in images.values()), "temporalio/auto-setup is deprecated"
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-setup"].startswith("temporalio/admin-tools:")
    assert images["postgresql"].startswith("postgres:")
    assert s["temporal"]["environment"]["DB"] == "postgres12"
    assert s["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert s["temporal-schema"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert s["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert s["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert s["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    for app in ("worker", "gateway-1", "gateway-2", "intake"):
        assert s[app]["depends_on"]["temporal-setup"]["condition"] == "service_completed_successfully", app
    dynamic = s["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert (ROOT / "deploy" / "temporal" / "dynamicconfig" / Path(dynamic).name).is_file()
    for script in ("setup-schema.sh", "setup-namespace.sh"):
        check = subprocess.run(["sh", "-n", str(ROOT / "deploy" / "temporal" / script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_setup_registers_exactly_the_governor_search_attributes(config: dict[str, Any]) -> None:
    declared = config["services"]["temporal-setup"]["environment"]["SEARCH_ATTRIBUTES"].split()
    assert declared == [value for value in sa.cli_flags() if value != "--search-attribute"]


def test_workers_scale_and_both_gateways_are_in_the_policy(config: dict[str, Any], policies: dict[str, Any]) -> None:
    s = config["services"]
    worker = s["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker and "ports" not in worker, "a scaled service cannot pin a name or port"
    assert worker["environment"]["GOVERNOR_POLICY_DIR"] == "/app/deploy/policies"
    gateways = sorted(name for name in s if name.startswith("gateway-"))
    assert len(gateways) == 2
    for name in gateways:
        command = s[name]["command"]
        assert command[:3] == ["python", "-m", "gateway"] and flag(command, "--host") == "0.0.0.0"
        assert s[name]["environment"]["GOVERNOR_GATEWAY_TOKEN"] == TOKEN
        assert "healthcheck" in s[name]
    listed = {f"http://{name}:8080" for name in gateways}
    for policy in policies.values():
        assert set(policy.gateways) == listed, f"{policy.service}: every replica must be listed in `gateways`"
    published = host_ips([p for svc in s.values() for p in svc.get("ports", [])])
    assert published and set(published) == {"127.0.0.1"}, "published on loopback unless asked otherwise"


def test_demo_upstreams_are_the_ones_the_compose_policy_names(config: dict[str, Any], policies: dict[str, Any]) -> None:
    s = config["services"]
    upstreams = {name: svc for name, svc in s.items() if name.startswith("upstream-")}
    assert set(upstreams) == {"upstream-primary", "upstream-secondary", "upstream-degraded"}
    served = set()
    for name, svc in upstreams.items():
        assert svc["profiles"] == ["demo"]
        assert svc["command"][:3] == ["python", "-m", "demo.upstream"]
        assert flag(svc["command"], "--name") == name.removeprefix("upstream-")
        served.add((name, int(flag(svc["command"], "--port"))))
    for policy in policies.values():
        urls = [t.upstream for t in policy.chain if t.upstream] + [d.health_url for d in policy.dependencies]
        for url in filter(None, urls):
            parts = urlsplit(url)
            assert (parts.hostname, parts.port) in served, f"{policy.service}: {url} is no demo upstream"


def test_compose_policy_is_the_embedded_one_with_compose_hosts(policies: dict[str, Any]) -> None:
    embedded = load_policy_dir(ROOT / "policies")
    hosts = {"gateway-1:8080": "127.0.0.1:8080", "upstream-primary:9101": "127.0.0.1:9101"}
    hosts |= {"upstream-secondary:9102": "127.0.0.1:9102", "upstream-degraded:9103": "127.0.0.1:9103"}
    for service, policy in policies.items():
        data = policy.model_dump(mode="json")
        data["gateways"] = data["gateways"][:1]
        text = yaml.safe_dump(data)
        for compose_host, local in hosts.items():
            text = text.replace(compose_host, local)
        assert yaml.safe_load(text) == embedded[service].model_dump(mode="json"), (
            f"deploy/policies: {service} drifted from policies/: apply the same change to both"
        )


def test_prometheus_scrapes_every_gateway_and_worker_and_loads_the_alert_rules(
    config: dict[str, Any], tmp_path: Path
) -> None:
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    prom = yaml.safe_load(path.read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    targets = {t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]}
    s = config["services"]
    for name in (n for n in s if n.startswith("gateway-")):
        assert f"{name}:8080" in targets
    worker_env = s["worker"]["environment"]
    worker_port = int(worker_env["GOVERNOR_METRICS_PORT"])
    assert worker_env["GOVERNOR_METRICS_HOST"] == "0.0.0.0", (
        "the worker binds loopback unless told: Prometheus needs it"
    )
    dns = jobs["governor-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["worker"] and dns["port"] == worker_port
    mounted = mounts(s["prometheus"]["volumes"])
    assert Path(mounted["/etc/prometheus/prometheus.yml"]) == path
    assert [am["static_configs"][0]["targets"] for am in prom["alerting"]["alertmanagers"]] == [["alertmanager:9093"]]
    # promtool checks the file with the rule files the container sees, read from where compose mounts them from.
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert Path(mounted["/etc/prometheus/alerts.yml"]) == ROOT / "deploy" / "prometheus" / "alerts.yml"
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump({**prom, "rule_files": [mounted[f] for f in prom["rule_files"]]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian's prometheus package) is not installed: run `make system-deps`"
    check = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout


def test_alertmanager_gets_its_secrets_from_the_environment_never_from_a_file_in_the_repo(
    config: dict[str, Any],
) -> None:
    am = config["services"]["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:")
    assert am["depends_on"]["intake"]["condition"] == "service_healthy"
    assert am["environment"]["GOVERNOR_INTAKE_TOKEN"] == TOKENS["GOVERNOR_INTAKE_TOKEN"]
    assert am["tmpfs"] == ["/tmp/governor"], "the rendered config and the token live in memory only"
    source = Path(mounts(am["volumes"])["/etc/alertmanager/governor.yml"])
    assert source == ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    assert TOKENS["GOVERNOR_INTAKE_TOKEN"] not in source.read_text()


def test_the_image_holds_every_package_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.M))
    for pattern in packages["include"]:
        package = pattern.rstrip("*")
        assert package in copied, f"Dockerfile does not COPY {package}"
    assert "deploy/policies" in copied
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    ignore = (ROOT / "Dockerfile.dockerignore").read_text().split()
    for needed in copied - {"pyproject.toml", "README.md"}:
        assert f"!{needed}/" in ignore, f"Dockerfile.dockerignore leaves {needed} out of the build context"


async def test_namespace_setup_script_registers_attributes_idempotently() -> None:
    """deploy/temporal/setup-namespace.sh, run by the admin-tools one-shot, against a real Temporal server."""
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(BIN / "temporal"))
    try:
        address = env.client.service_client.config.target_host
        pairs = " ".join(v for v in sa.cli_flags() if v != "--search-attribute")
        script_env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "TEMPORAL_ADDRESS": address,
            "NAMESPACE": "governor-compose",
            "SEARCH_ATTRIBUTES": pairs,
            "TEMPORAL_WAIT_S": "20",
        }

        async def run_script(extra: dict[str, str] | None = None) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                "sh", str(ROOT / "deploy" / "temporal" / "setup-namespace.sh"),
                env={**script_env, **(extra or {})},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode()

        code, out = await run_script()
        assert code == 0, out
        client = await Client.connect(address, namespace="governor-compose")
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="governor-compose")
        )
        kinds = {"Keyword": "KEYWORD", "Bool": "BOOL", "Int": "INT"}
        assert {name: IndexedValueType.Name(kind) for name, kind in resp.custom_attributes.items()} == {
            pair.split("=")[0]: f"INDEXED_VALUE_TYPE_{kinds[pair.split('=')[1]]}" for pair in pairs.split()
        }

        code, out = await run_script()
        assert code == 0, out
        assert "namespace governor-compose exists" in out

        code, out = await run_script({"SEARCH_ATTRIBUTES": "GovernorService=Int"})
        assert code == 1
        assert "GovernorService" in out and "different type" in out
    finally:
        await env.shutdown()
