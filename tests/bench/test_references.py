"""The gateway benchmark's reference configs (bench/references.py): generated text only, nothing timed or installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.harness import BODY, STREAM_BODY, free_port, process, wait_http
from bench.references import (
    haproxy_conf,
    hono_versions,
    litellm_config,
    nginx_conf,
    portkey_headers,
    start_haproxy,
    start_nginx,
)

HAS_NGINX = bool(shutil.which("nginx")) or os.access("/usr/sbin/nginx", os.X_OK)
HAS_HAPROXY = bool(shutil.which("haproxy")) or os.access("/usr/sbin/haproxy", os.X_OK)


def test_nginx_conf_is_one_worker_with_upstream_keepalive_and_every_path_under_the_prefix(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, 18080, 19101)
    for line in (
        "worker_processes 1;",
        "daemon off;",
        "server 127.0.0.1:19101;",
        "keepalive 64;",
        "listen 127.0.0.1:18080;",
        "proxy_pass http://bench_upstream;",
        "proxy_buffering off;",
        "backup;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert line in conf
    locations = {"/", "/sse/", "/fall/"}
    paths = [w.rstrip(";") for w in conf.split() if w.startswith("/") and w not in locations]
    assert paths and all(p.startswith(str(tmp_path)) for p in paths), paths
    assert "user " not in conf
    assert nginx_conf(tmp_path, 1, 2, user="bench").startswith("user bench;")


@pytest.mark.skipif(not HAS_NGINX, reason="no nginx (scripts/install-system-deps.sh installs it)")
def test_nginx_accepts_the_generated_conf(tmp_path: Path) -> None:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    user = None
    if os.geteuid() == 0:
        import getpass

        user = getpass.getuser()
    (tmp_path / "nginx.conf").write_text(nginx_conf(tmp_path, 18080, 19101, user=user))
    cmd = [exe, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "syntax is ok" in out.stderr


def test_litellm_config_has_the_pass_through_and_the_anthropic_translation_models() -> None:
    cfg = yaml.safe_load(litellm_config("http://127.0.0.1:1", "http://127.0.0.1:2", "sk-master"))
    models = {m["model_name"]: m["litellm_params"] for m in cfg["model_list"]}
    assert models["fake"] == {
        "model": "openai/fake",
        "api_base": "http://127.0.0.1:1/v1",
        "api_key": "sk-fake-upstream",
    }
    assert models["claude"]["model"].startswith("anthropic/")
    assert models["claude"]["api_base"] == "http://127.0.0.1:2/v1/messages"
    assert cfg["general_settings"]["master_key"] == "sk-master"


def test_portkey_forwards_to_the_fake_as_an_openai_compatible_custom_host() -> None:
    h = portkey_headers("http://127.0.0.1:9101")
    assert h["x-portkey-provider"] == "openai"
    assert h["x-portkey-custom-host"] == "http://127.0.0.1:9101/v1"


def test_hono_versions_sees_a_nested_copy_the_top_level_pin_does_not_cover(tmp_path: Path) -> None:
    top = tmp_path / "node_modules" / "@hono" / "node-server"
    nested = tmp_path / "node_modules" / "@portkey-ai" / "gateway" / "node_modules" / "@hono" / "node-server"
    for d, v in ((top, "1.13.8"), (nested, "1.19.19")):
        d.mkdir(parents=True)
        (d / "package.json").write_text(json.dumps({"name": "@hono/node-server", "version": v}))
    assert hono_versions(tmp_path) == {"1.13", "1.19"}
    (nested / "package.json").unlink()
    assert hono_versions(tmp_path) == {"1.13"}


def test_haproxy_conf_is_one_thread_with_server_keepalive_and_a_backup_for_the_fall_through(tmp_path: Path) -> None:
    conf = haproxy_conf(tmp_path, 18080, 19101, 19999)
    for line in (
        "nbthread 1",
        "http-reuse always",
        "option http-keep-alive",
        "bind 127.0.0.1:18080",
        "server upstream 127.0.0.1:19101",
        "server primary 127.0.0.1:19999 check",
        "server secondary 127.0.0.1:19101 backup",
        f"pidfile {tmp_path}/haproxy.pid",
    ):
        assert line in conf
    assert " log " not in conf


@pytest.mark.skipif(not HAS_HAPROXY, reason="no haproxy (scripts/install-system-deps.sh installs it)")
def test_haproxy_accepts_the_generated_conf(tmp_path: Path) -> None:
    (tmp_path / "haproxy.cfg").write_text(haproxy_conf(tmp_path, 18080, 19101, 19999))
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    out = subprocess.run([exe, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def _post(url: str, body: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(
            start_nginx,
            marks=pytest.mark.skipif(not HAS_NGINX, reason="no nginx (scripts/install-system-deps.sh installs it)"),
        ),
        pytest.param(
            start_haproxy,
            marks=pytest.mark.skipif(not HAS_HAPROXY, reason="no haproxy (scripts/install-system-deps.sh installs it)"),
        ),
    ],
    ids=["nginx", "haproxy"],
)
def test_each_reference_proxies_the_fake_streams_and_falls_through_to_its_backup(start: Any) -> None:
    """The rows the gateway is compared with answer what the gateway's rows answer: a completion on `/`, a stream
    on `/sse/`, and on `/fall/` (the primary's port closed) the fake's answer from the backup, every time."""
    port, dead = free_port(), free_port()
    cmd = [sys.executable, "-m", "demo.upstream", "--name", "refcheck", "--port", str(port)]
    with process(cmd) as up:
        wait_http(f"http://127.0.0.1:{port}/health", proc=up)
        with start(port, dead) as (base, pid):
            assert pid > 0
            status, data = _post(f"{base}/v1/chat/completions", BODY)
            assert status == 200 and b"[refcheck]" in data
            status, data = _post(f"{base}/sse/v1/chat/completions", STREAM_BODY)
            assert status == 200 and data.count(b"data: ") >= 3 and b"[DONE]" in data
            answers = [_post(f"{base}/fall/v1/chat/completions", BODY) for _ in range(20)]
            assert all(s == 200 and b"[refcheck]" in d for s, d in answers), answers[:3]
