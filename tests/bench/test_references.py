"""The gateway benchmark's reference configs (bench/references.py): generated text only, nothing timed or installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.references import hono_versions, litellm_config, nginx_conf, portkey_headers


def test_nginx_conf_is_one_worker_with_upstream_keepalive_and_every_path_under_the_prefix(tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, 18080, 19101)
    for line in (
        "worker_processes 1;",
        "daemon off;",
        "server 127.0.0.1:19101;",
        "keepalive 64;",
        "listen 127.0.0.1:18080;",
        "proxy_pass http://bench_upstream;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
    ):
        assert line in conf
    paths = [w.rstrip(";") for w in conf.split() if w.startswith("/") and w != "/"]
    assert paths and all(p.startswith(str(tmp_path)) for p in paths), paths
    assert "user " not in conf
    assert nginx_conf(tmp_path, 1, 2, user="bench").startswith("user bench;")


@pytest.mark.skipif(not shutil.which("nginx") and not os.access("/usr/sbin/nginx", os.X_OK), reason="no nginx")
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
