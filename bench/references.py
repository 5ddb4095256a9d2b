"""The gateway benchmark's reference proxies: nginx, HAProxy, Portkey's gateway and LiteLLM's proxy, on the same fakes.

Each is optional: `start_*` raises `Skip` with a reason (no binary, failed install, did not start), and the benchmark
prints it and leaves the row out. Installs happen here only, on first use, into bench/.state (git-ignored); the
tests never download anything.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.harness import BODY, PY, STATE, Target, check_answer, free_port, process, wait_http

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = STATE / "litellm-venv"
PORTKEY_DIR = STATE / "portkey"
HONO_PIN = "1.13"
PORTKEY_PACKAGES = ["@portkey-ai/gateway", f"@hono/node-server@{HONO_PIN}.x"]
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
CLAUDE_BODY = BODY.replace('"model":"fake"', '"model":"claude"')


class Skip(Exception):
    """A reference that cannot run here; the message says why."""


def nginx_conf(prefix: Path, port: int, upstream_port: int, user: str | None = None, dead_port: int = 0) -> str:
    """nginx as a bare reverse proxy: one worker, upstream keepalive, every path it writes under `prefix`.

    `/` proxies to the upstream; `/sse/` the same with `proxy_buffering off` (how streams are proxied); `/fall/` to
    an upstream group whose primary (`dead_port`, nothing listening) fails and whose `backup` is the upstream: the
    fall-through case (the primary marked failed for 10 s after one error, as a breaker). `user` only when nginx
    starts as root (its workers would otherwise switch to `nobody`)."""
    p = str(prefix)
    proxy = 'proxy_http_version 1.1;\n            proxy_set_header Connection "";'
    return f"""{f"user {user};" if user else ""}
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    upstream bench_fall {{
        server 127.0.0.1:{dead_port or free_port()} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{upstream_port} backup;
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench_upstream;
            {proxy}
        }}
        location /sse/ {{
            proxy_pass http://bench_upstream/;
            {proxy}
            proxy_buffering off;
        }}
        location /fall/ {{
            proxy_pass http://bench_fall/;
            {proxy}
        }}
    }}
}}
"""


def haproxy_conf(prefix: Path, port: int, upstream_port: int, dead_port: int) -> str:
    """HAProxy as a bare reverse proxy: one thread, server-side keep-alive (`http-reuse always`), no logging.

    The same paths as nginx_conf: `/` and `/sse/` to the upstream (HAProxy does not buffer a stream), `/fall/` to a
    backend whose primary (`dead_port`) fails its connect health check and whose `backup` is the upstream."""
    return f"""global
    nbthread 1
    maxconn 4096
    pidfile {prefix}/haproxy.pid

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
    option http-keep-alive
    http-reuse always
    retries 1
    option redispatch

frontend bench
    bind 127.0.0.1:{port}
    use_backend fall if {{ path_beg /fall/ }}
    default_backend pass

backend pass
    http-request set-path %[path,regsub(^/sse/,/)]
    server upstream 127.0.0.1:{upstream_port}

backend fall
    http-request set-path %[path,regsub(^/fall/,/)]
    server primary 127.0.0.1:{dead_port} check inter 1s fall 1 rise 2
    server secondary 127.0.0.1:{upstream_port} backup
"""


@contextlib.contextmanager
def _serving(name: str, cmd: list[str], port: int, log: str, why: Callable[[], str]) -> Iterator[tuple[str, int]]:
    """A reference proxy started in the foreground, up (its /health) and answering a completion; yields its base URL
    and pid. `why`: what to add to the Skip when it did not start (its error log)."""
    with process(cmd, log=STATE / log) as proc:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/health", timeout=20, proc=proc)
            check_answer(Target(f"{base}/v1/chat/completions"))
        except RuntimeError as err:
            raise Skip(f"{name} did not start: {err} {why()}") from err
        yield base, proc.pid


@contextlib.contextmanager
def start_nginx(upstream_port: int, dead_port: int = 0) -> Iterator[tuple[str, int]]:
    """nginx in the foreground as the current user, config, pid, logs and temp files in a temp dir; yields its base
    URL and pid."""
    exe = NGINX if os.access(NGINX, os.X_OK) else shutil.which("nginx")
    if not exe:
        raise Skip(f"nginx: no {NGINX} (Debian: apt-get install nginx)")
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        prefix, port = Path(tmp), free_port()
        conf, errors = prefix / "nginx.conf", prefix / "error.log"
        user = getpass.getuser() if os.geteuid() == 0 else None
        conf.write_text(nginx_conf(prefix, port, upstream_port, user, dead_port))
        cmd = [exe, "-p", str(prefix), "-c", str(conf), "-e", str(errors)]
        with _serving(
            "nginx", cmd, port, "nginx.log", lambda: errors.read_text()[-400:] if errors.exists() else ""
        ) as up:
            yield up


@contextlib.contextmanager
def start_haproxy(upstream_port: int, dead_port: int) -> Iterator[tuple[str, int]]:
    """HAProxy in the foreground (`-db`), its config and pid file in a temp dir; yields its base URL and pid."""
    exe = HAPROXY if os.access(HAPROXY, os.X_OK) else shutil.which("haproxy")
    if not exe:
        raise Skip(f"HAProxy: no {HAPROXY} (Debian: apt-get install haproxy)")
    with tempfile.TemporaryDirectory(prefix="bench-haproxy-") as tmp:
        prefix, port = Path(tmp), free_port()
        conf = prefix / "haproxy.cfg"
        conf.write_text(haproxy_conf(prefix, port, upstream_port, dead_port))
        cmd = [exe, "-db", "-f", str(conf)]
        with _serving("HAProxy", cmd, port, "haproxy.log", lambda: "(log: bench/.state/haproxy.log)") as up:
            yield up


def portkey_entry() -> Path:
    """Portkey's gateway's node entry point, installed into bench/.state/portkey on first use."""
    entry = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if entry.exists() and hono_versions(PORTKEY_DIR) == {HONO_PIN}:
        return entry
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Skip("Portkey: node and npm are needed (Debian: apt-get install nodejs npm)")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    # an override, not only the top-level pin: the gateway's own dependencies would nest a newer copy (whose
    # immutable headers make Portkey's streaming answer 500 "immutable")
    (PORTKEY_DIR / "package.json").write_text(
        json.dumps({"private": True, "overrides": {"@hono/node-server": "1.13.x"}})
    )
    print(f"installing {' '.join(PORTKEY_PACKAGES)} into {PORTKEY_DIR} ...", flush=True)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", *PORTKEY_PACKAGES], cwd=PORTKEY_DIR, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise Skip(f"Portkey could not be installed: {err}") from err
    if not entry.exists():
        raise Skip(f"Portkey: installed, but {entry} is missing (a new package layout?)")
    if (found := hono_versions(PORTKEY_DIR)) != {HONO_PIN}:
        raise Skip(f"Portkey: @hono/node-server {sorted(found)} installed, not {HONO_PIN} only")
    return entry


def hono_versions(root: Path) -> set[str]:
    """The major.minor of every @hono/node-server copy under `root`'s node_modules (nested ones included)."""
    found = set()
    for pkg in (root / "node_modules").glob("**/@hono/node-server/package.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            found.add(".".join(json.loads(pkg.read_text())["version"].split(".")[:2]))
    return found


def portkey_headers(upstream: str) -> dict[str, str]:
    """Forward to the fake as an OpenAI-compatible provider (Portkey's custom host; 127.0.0.1 is trusted by default)."""
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": f"{upstream}/v1",
        "Authorization": "Bearer sk-fake-upstream",
    }


@contextlib.contextmanager
def start_portkey(upstream: str) -> Iterator[tuple[Target, int]]:
    """`node build/start-server.js --headless --port=N` (the CLI reads `--port=`; the default is 8787)."""
    entry = portkey_entry()
    port = free_port()
    cmd = [shutil.which("node") or "node", str(entry), "--headless", f"--port={port}"]
    with process(cmd, env={"NODE_ENV": "production"}, log=STATE / "portkey.log") as proc:
        try:
            wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
            target = Target(f"http://127.0.0.1:{port}/v1/chat/completions", portkey_headers(upstream))
            check_answer(target)
        except RuntimeError as err:
            raise Skip(f"Portkey did not start: {err} (log: bench/.state/portkey.log)") from err
        yield target, proc.pid


def litellm_exe() -> Path:
    """The LiteLLM proxy's entry point, installing it in its own venv on first use."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    STATE.mkdir(parents=True, exist_ok=True)
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...", flush=True)
    try:
        subprocess.run([PY, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True
        )
    except (OSError, subprocess.CalledProcessError) as err:
        raise Skip(f"LiteLLM {LITELLM_VERSION} could not be installed: {err}") from err
    if not exe.exists():
        raise Skip(f"LiteLLM: installed, but {exe} is missing")
    return exe


def litellm_config(upstream: str, anthropic: str, master_key: str) -> str:
    """Model `fake`: the OpenAI fake as is; model `claude`: translated to the Anthropic Messages API fake."""
    return f"""model_list:
  - model_name: fake
    litellm_params:
      model: openai/fake
      api_base: {upstream}/v1
      api_key: sk-fake-upstream
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {anthropic}/v1/messages
      api_key: sk-ant-fake-upstream
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master_key}
"""


@contextlib.contextmanager
def start_litellm(upstream: str, anthropic: str, master_key: str) -> Iterator[tuple[str, dict[str, str], int]]:
    """LiteLLM's proxy, one worker; yields its chat completions URL, the auth header and its pid."""
    exe = litellm_exe()
    port = free_port()
    cfg = STATE / "litellm.yaml"
    cfg.write_text(litellm_config(upstream, anthropic, master_key))
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "NO_DOCS": "True",
        "DISABLE_ADMIN_UI": "True",
    }
    cmd = [str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    with process(cmd, env=env, log=STATE / "litellm.log") as proc:
        auth = {"Authorization": f"Bearer {master_key}"}
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180, proc=proc)
            check_answer(Target(url, auth))
        except RuntimeError as err:
            raise Skip(f"LiteLLM did not start: {err} (log: bench/.state/litellm.log)") from err
        yield url, auth, proc.pid
