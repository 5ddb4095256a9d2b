"""`python -m gateway --policy-dir policies --port 8080`; the admin token comes from GOVERNOR_GATEWAY_TOKEN, client keys
from `--keys-file` / GOVERNOR_GATEWAY_KEYS_FILE. `python -m gateway keys create|list|revoke` manages that file."""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import sys

import structlog

from gateway.app import HTTP_SERVERS, GatewayApp, GatewaySettings, create_app, default_http, uvicorn_config
from gateway.keys_cli import keys_main
from gateway.workers import Supervisor, parse_workers, reserve_port, serve_worker
from governor.client_keys import KeyFileError
from governor.logging import configure_logging
from governor.policy import PolicyError, load_policy_dir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Fallback gateway (data plane + admin API)")
    parser.add_argument("--policy-dir", default=os.environ.get("GOVERNOR_POLICY_DIR", "policies"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-format", default=os.environ.get("GOVERNOR_LOG_FORMAT", "auto"))
    parser.add_argument("--log-level", default=os.environ.get("GOVERNOR_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--keys-file",
        default=os.environ.get("GOVERNOR_GATEWAY_KEYS_FILE") or None,
        help="client key file: every data-plane request then needs a valid key (python -m gateway keys create)",
    )
    parser.add_argument(
        "--open-data-plane",
        action="store_true",
        default=os.environ.get("GOVERNOR_GATEWAY_OPEN_DATA_PLANE") == "1",
        help="serve the data plane without client keys beyond loopback (an open proxy to your upstreams)",
    )
    parser.add_argument(
        "--http",
        choices=HTTP_SERVERS,
        default=None,
        help="HTTP server: fast (the gateway's own HTTP/1.1 protocol, gateway/server.py; default) or asgi (uvicorn); "
        "env GOVERNOR_GATEWAY_HTTP",
    )
    parser.add_argument(
        "--workers",
        default=os.environ.get("GOVERNOR_GATEWAY_WORKERS", "1"),
        help="worker processes sharing the port (SO_REUSEPORT), each on its own core; admin changes reach every "
        "worker, stats and /metrics are merged across them (docs/gateway.md, 'Workers'); env GOVERNOR_GATEWAY_WORKERS",
    )
    args = parser.parse_args(argv)
    try:
        http = args.http or default_http()
        workers = parse_workers(args.workers)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if workers > 1 and http != "fast":
        print(f"--workers {workers} needs --http fast (the default): the workers' private admin listeners are "
              "gateway/server.py's; run one uvicorn process per port, or replicas, for --http asgi", file=sys.stderr)  # fmt: skip
        return 2
    configure_logging(args.log_format, args.log_level)
    log = structlog.get_logger("gateway")
    try:
        policies = load_policy_dir(args.policy_dir)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 2
    token = os.environ.get("GOVERNOR_GATEWAY_TOKEN", "")
    if not token:
        if not _is_loopback(args.host):
            print("GOVERNOR_GATEWAY_TOKEN must be set when the gateway listens beyond loopback", file=sys.stderr)
            return 2
        # No well-known token: an unset token locks the admin API (a random one nobody knows), the data plane serves.
        log.warning("gateway_admin_locked", detail="GOVERNOR_GATEWAY_TOKEN unset: every admin call is refused (401)")
        token = secrets.token_urlsafe(32)
    if args.keys_file is None:
        if not _is_loopback(args.host) and not args.open_data_plane:
            print(
                "the gateway needs client keys when it listens beyond loopback: --keys-file (or "
                "GOVERNOR_GATEWAY_KEYS_FILE; make keys with `python -m gateway keys create`), or --open-data-plane "
                "to serve anyone who can reach it",
                file=sys.stderr,
            )
            return 2
        log.warning("gateway_data_plane_open", detail="no client key file: every data-plane request is served")
    try:
        app = create_app(policies, token, GatewaySettings(keys_file=args.keys_file))
    except KeyFileError as err:
        print(err, file=sys.stderr)
        return 2
    log.info("gateway_starting", host=args.host, port=args.port, services=sorted(policies), http=http, workers=workers)
    if workers > 1:
        return _serve_workers(app, args.host, args.port, workers, token)
    if http == "fast":
        import uvloop

        uvloop.run(_serve_fast(app, args.host, args.port))
        return 0
    import uvicorn

    server = uvicorn.Server(
        uvicorn_config(app, host=args.host, port=args.port, loop="uvloop", log_level=args.log_level.lower())
    )
    server.run()
    return 0


async def _serve_fast(app: GatewayApp, host: str, port: int) -> None:
    """gateway/server.py until SIGINT or SIGTERM, then a graceful stop (requests in flight get 2 s)."""
    import asyncio
    import signal

    from gateway.app import listening_socket, serve_fast

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sock = listening_socket(host, port)
    try:
        async with serve_fast(app, sock):
            structlog.get_logger("gateway").info("gateway_serving", url=f"http://{host}:{sock.getsockname()[1]}")
            await stop.wait()
            structlog.get_logger("gateway").info("gateway_stopping")
    finally:
        sock.close()


def _serve_workers(app: GatewayApp, host: str, port: int, workers: int, token: str) -> int:
    """The supervisor (gateway/workers.py): the app built here is each forked worker's starting point."""
    try:
        reserved = reserve_port(host, port)
    except OSError as err:
        print(f"cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        return 2
    bound = reserved.getsockname()[1]

    def run_worker(index: int, count: int, rundir: str) -> int:
        import uvloop

        reserved.close()  # the supervisor's; this worker listens with its own socket
        uvloop.run(serve_worker(app, host, bound, index, count, rundir, token))
        return 0

    try:
        return Supervisor(workers, run_worker).run()
    finally:
        reserved.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
