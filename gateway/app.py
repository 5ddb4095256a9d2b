"""The fallback gateway: a raw ASGI app serving every service's tier chain, its admin API, metrics, flags and status.

This module is the router and the server; the chain walk is gateway/chain.py, the admin API gateway/admin.py,
the metrics gateway/metrics.py. `ANY /{service}/{path}` walks the chain primary > secondary > cache > degraded >
static > explicit 503; the governor steers it through `/admin` (bearer token). No Temporal here, by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.admin import AdminAPI
from gateway.auth import ClientAuth, Denied, without_authorization
from gateway.breaker import BreakerConfig
from gateway.chain import ChainWalk
from gateway.http import BadInput, Receive, Scope, Send, error, json_bytes, read_body, respond
from gateway.metrics import GatewayMetrics
from gateway.ofrep import OfrepHandler
from gateway.service import ServiceRuntime
from gateway.siblings import PRIVATE, SiblingDown, Siblings
from gateway.status import render_status_html, status_json
from governor.policy import ServicePolicy

log = structlog.get_logger("gateway")

RESERVED = frozenset({"admin", "metrics", "healthz", "status", "status.json", "ofrep"})


@dataclass
class GatewaySettings:
    max_body_bytes: int = 1 << 20
    breaker: BreakerConfig = BreakerConfig()  # noqa: RUF009 (frozen dataclass)
    keys_file: str | None = None
    """Client keys (governor/client_keys.py): with a file, every data-plane request needs a valid key; without
    one the data plane is open (loopback only unless `--open-data-plane`, gateway/__main__.py)."""


class GatewayApp:
    """The ASGI application. Build it with `create_app`."""

    def __init__(self, policies: dict[str, ServicePolicy], admin_token: str, settings: GatewaySettings) -> None:
        if not admin_token:
            raise ValueError("the gateway needs a non-empty admin token (GOVERNOR_GATEWAY_TOKEN)")
        for name in policies:
            if name in RESERVED:
                raise ValueError(f"service name {name!r} collides with a gateway route ({', '.join(sorted(RESERVED))})")
        self.settings = settings
        self.services = {name: ServiceRuntime(p, settings.breaker) for name, p in policies.items()}
        self.started = asyncio.Event()
        self.metrics = GatewayMetrics(self.services)
        self.registry = self.metrics.registry
        self.chain = ChainWalk(self.metrics, settings.max_body_bytes)
        self.admin = AdminAPI(self.services, admin_token, settings.max_body_bytes)
        self.ofrep = OfrepHandler(self.services)
        self.auth = ClientAuth(settings.keys_file, self.registry) if settings.keys_file else None
        self.siblings: Siblings | None = None
        """The other worker processes on this port (`--workers N`, gateway/siblings.py); None for one process."""

    # --- ASGI entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.started.set()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        for service in self.services.values():
            await service.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        head, _, rest = path[1:].partition("/")
        service = self.services.get(head)
        try:
            if service is not None:
                if self.auth is None:
                    await self.chain.serve(service, "/" + rest, scope, receive, send)
                else:
                    await self._serve_with_key(service, "/" + rest, scope, receive, send)
            elif head == "admin":
                if self.siblings is None or scope.get(PRIVATE):
                    await self.admin.handle(rest, scope, receive, send)
                else:
                    await self.siblings.admin(
                        self.admin.handle, rest, scope, receive, send, self.settings.max_body_bytes
                    )
            elif head == "healthz":
                health: dict[str, Any] = {"status": "ok", "services": sorted(self.services)}
                if self.siblings is not None:
                    health.update(worker=self.siblings.index, workers=self.siblings.count, pid=os.getpid())
                await respond(send, 200, json_bytes(health))
            elif head == "metrics":
                body, content_type = self.metrics.render()
                if self.siblings is not None and not scope.get(PRIVATE):
                    try:
                        body, content_type = await self.siblings.metrics(body)
                    except SiblingDown as down:
                        await error(send, 503, "worker_metrics_unavailable", str(down), None, [(b"retry-after", b"1")])
                        return
                await respond(send, 200, body, content_type=content_type)
            elif head == "status" and not rest:
                await respond(
                    send,
                    200,
                    render_status_html(self.services).encode(),
                    [(b"cache-control", b"no-cache")],
                    b"text/html; charset=utf-8",
                )
            elif head == "status.json":
                await respond(send, 200, json_bytes(status_json(self.services)), [(b"cache-control", b"no-cache")])
            elif head == "ofrep":
                body = await read_body(scope, receive, self.settings.max_body_bytes)
                status, payload, headers = self.ofrep.handle(scope["method"], rest, body, scope)
                if status == 304:
                    await send({"type": "http.response.start", "status": 304, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                else:
                    await respond(send, status, json_bytes(payload), headers)
            else:
                known = ", ".join(sorted(self.services)) or "none"
                await error(send, 404, "unknown_service", f"no service {head!r} (known: {known})", "service")
        except BadInput as bad:
            await error(send, bad.status, bad.kind, bad.message, bad.field)
        except Exception:
            # Never a bare 500: log it and answer explicitly (the data plane answers its own 503 before this).
            log.exception("gateway_internal_error", path=path)
            with contextlib.suppress(Exception):
                await error(send, 500, "gateway_error", "the gateway failed to handle this request; see its logs")

    async def _serve_with_key(
        self, service: ServiceRuntime, path: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        assert self.auth is not None
        try:
            key = self.auth.admit(service.name, scope["headers"])
        except Denied as denied:
            await self.auth.refuse(service.name, denied, send)
            return
        try:
            await self.chain.serve(service, path, without_authorization(scope), receive, send)
        finally:
            key.in_flight -= 1


# --- factory and runners


def create_app(
    policies: dict[str, ServicePolicy], admin_token: str, settings: GatewaySettings | None = None
) -> GatewayApp:
    """One ASGI app serving every service in `policies` (as `governor.policy.load_policy_dir` returns them)."""
    return GatewayApp(policies, admin_token, settings or GatewaySettings())


HTTP_SERVERS = ("fast", "asgi")
"""`fast`: gateway/server.py's own HTTP/1.1 protocol (one write per response); `asgi`: uvicorn's httptools protocol."""


def default_http() -> str:
    """The HTTP server to use when none is named: GOVERNOR_GATEWAY_HTTP, else `fast`."""
    chosen = os.environ.get("GOVERNOR_GATEWAY_HTTP", "fast")
    if chosen not in HTTP_SERVERS:
        raise ValueError(f"GOVERNOR_GATEWAY_HTTP={chosen!r}: expected one of {', '.join(HTTP_SERVERS)}")
    return chosen


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A TCP listener on host:port; `reuse_port` (SO_REUSEPORT) for `--workers N`, where every worker listens on the
    same port and the kernel spreads connections among them."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when it sees TCP (without it,
    # Nagle + delayed ACKs add ~40 ms to every kept-alive request); set it on the listener too, accepted sockets
    # inherit it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections queue here until the server serves them
    return sock


@contextlib.asynccontextmanager
async def serve_fast(app: GatewayApp, sock: socket.socket) -> AsyncIterator[None]:
    """gateway/server.py's HTTP/1.1 server for `app` on `sock`, with the app's start-up and shutdown around it."""
    from gateway.server import HttpServer

    server = HttpServer(app)
    await server.start(sock)
    app.started.set()
    try:
        yield
    finally:
        await server.close()
        await app.aclose()


@dataclass
class RunningGateway:
    app: GatewayApp
    url: str
    port: int


def uvicorn_config(app: GatewayApp, **kwargs: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the gateway forwards headers as they are; skips a middleware per request
        log_config=None,
        timeout_graceful_shutdown=2,
        **kwargs,
    )


def _embedded_server_class() -> Any:
    import uvicorn

    class EmbeddedServer(uvicorn.Server):
        """uvicorn without its signal handlers: the host process (pytest, the launcher) owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return EmbeddedServer


@contextlib.asynccontextmanager
async def run_gateway(
    policies: dict[str, ServicePolicy],
    admin_token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: GatewaySettings | None = None,
    http: str | None = None,
) -> AsyncIterator[RunningGateway]:
    """Serve the gateway in this event loop on an ephemeral port (tests, the embedded stack); `http` names the
    server (HTTP_SERVERS; default `default_http()`)."""
    app = create_app(policies, admin_token, settings)
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    running = RunningGateway(app=app, url=f"http://{host}:{bound}", port=bound)
    if (http or default_http()) == "fast":
        try:
            async with serve_fast(app, sock):
                yield running
        finally:
            sock.close()
        return
    _EmbeddedServer = _embedded_server_class()
    server = _EmbeddedServer(uvicorn_config(app, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    started = asyncio.ensure_future(app.started.wait())
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
        raise RuntimeError("the gateway stopped during start-up")
    try:
        yield running
    finally:
        server.should_exit = True
        await task
        sock.close()
