"""Worker processes on one port (`--workers N`, gateway/workers.py) answer the admin API as one gateway.

Each worker serves the public port (SO_REUSEPORT: the kernel spreads connections) and a private unix socket in the
supervisor's 0700 runtime directory. A request on the private socket is a sibling's and is answered locally only;
the listener, not a header, says so (a header would be forgeable from the public port). On the public port:
- a write (PUT) takes the workers' shared lock (flock on a file in the runtime directory, so writes from different
  workers apply in one order everywhere), applies locally, then the identical request goes to every sibling; the answer
  is 200 only when every running sibling answered 2xx with the same operator settings, else 503 naming the worker
  (the governor's activities retry; every change is idempotent). A sibling that is not running (its socket refuses)
  is skipped: a worker copies the live state under the same lock before it serves (`copy_state`).
- stats windows and /metrics are gathered from every running sibling and merged.
Everything else (state, audit, probe, OFREP, status pages) is answered by the worker that got the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from gateway.http import BadInput, Receive, Scope, Send, error, respond
from governor.enums import FallbackTier
from governor.gateway_api import AuditLog, ServiceState
from governor.models import StatsWindow, TierStats
from governor.status_api import StatusIncident

log = structlog.get_logger("gateway")

PRIVATE = "governor.sibling"
"""Scope key the private listener sets: the request came from a sibling worker over its unix socket."""
FROM_HEADER = b"x-governor-worker-from"
"""Names the worker that forwarded a change (for the sibling's log); it grants nothing."""
FORWARDED = (b"authorization", b"content-type", b"x-governor-incident")
SIBLING_TIMEOUT_S = 2.0
LOCK_WAIT_S = 3.0
SUMMED_GAUGES = frozenset(
    {"governor_gateway_in_flight", "governor_gateway_deployment_in_flight", "governor_gateway_cache_entries"}
)
WORST_GAUGES = frozenset({"governor_gateway_breaker_state", "governor_gateway_deployment_breaker_state"})
"""Breakers in `auto` count each worker's own traffic: the merged gauge shows the worst worker's state."""


def socket_path(rundir: str, index: int) -> str:
    return os.path.join(rundir, f"worker-{index}.sock")


class SiblingDown(Exception):
    """A sibling answered wrongly or not in time (a sibling that is not running is skipped, not this)."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Capture:
    """An ASGI `send` that keeps the answer instead of writing it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status, self.headers = message["status"], list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            self.parts.append(message.get("body", b""))

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.parts))


def _replay(body: bytes) -> Receive:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _refuse(bad: BadInput) -> Receive:
    async def receive() -> dict[str, Any]:
        raise bad

    return receive


def _not_running(exc: BaseException) -> bool:
    """The sibling's socket refuses or is gone: the worker is not running (it copies the state when it starts)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError | FileNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def operator_settings(state: ServiceState) -> dict[str, Any]:
    """What every worker must agree on after a change: route, breaker modes, degradation, status, incident (breaker
    states and counters, cache and in-flight counts are each worker's own)."""
    return {
        "pinned_tier": state.pinned_tier,
        "primary_weight": state.primary_weight,
        "breakers": {tier: snap.mode for tier, snap in state.breakers.items()},
        "deployments": {tier: [(d.name, d.breaker.mode) for d in deps] for tier, deps in state.deployments.items()},
        "degradation": (state.degradation.level, state.degradation.flags, state.degradation.overrides),
        "status": (state.status.component, state.status.message),
        "incident": state.incident,
    }


class Siblings:
    """This worker's view of the others: their sockets, the shared write lock, and the merged answers."""

    def __init__(self, rundir: str, index: int, count: int) -> None:
        self.rundir = rundir
        self.index = index
        self.count = count
        self._lock_path = os.path.join(rundir, "admin.lock")
        self._local_lock = asyncio.Lock()
        self._clients: dict[int, httpx.AsyncClient] = {}

    @property
    def others(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    def _client(self, index: int) -> httpx.AsyncClient:
        client = self._clients.get(index)
        if client is None:
            transport = httpx.AsyncHTTPTransport(uds=socket_path(self.rundir, index))
            client = self._clients[index] = httpx.AsyncClient(
                transport=transport, base_url="http://worker", timeout=SIBLING_TIMEOUT_S
            )
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # --- the shared write lock

    @contextlib.asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Exclusive across every worker (flock; the kernel releases it when a holder dies). Polled without blocking
        (flock has no event to await): a thread blocked in flock outlived its timeout and held up the worker's exit
        while the holder was stopped, until the supervisor killed it."""
        async with self._local_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
                pause = 0.002
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if asyncio.get_running_loop().time() >= deadline:
                            raise TimeoutError from None
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, 0.02)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock

    # --- talking to siblings

    async def _ask(
        self, index: int, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> httpx.Response | None:
        """One sibling's answer; None when it is not running."""
        url = path + ("?" + query.decode("latin-1") if query else "")
        try:
            return await self._client(index).request(method, url, headers=headers, content=body or None)
        except httpx.TransportError as exc:
            if _not_running(exc):
                return None
            raise SiblingDown(f"worker {index} did not answer {method} {path}: {type(exc).__name__}: {exc}") from exc

    async def ask_all(
        self, method: str, path: str, scope: Scope, body: bytes = b""
    ) -> dict[int, httpx.Response | SiblingDown | None]:
        # The bytes that came in (httpx would encode str values as ASCII: a non-ASCII incident id failed the fan-out)
        headers = [(k, v) for k, v in scope["headers"] if k in FORWARDED]
        headers.append((FROM_HEADER, str(self.index).encode()))
        others = self.others
        results = await asyncio.gather(
            *(self._ask(i, method, path, scope["query_string"], headers, body) for i in others),
            return_exceptions=True,
        )
        out: dict[int, httpx.Response | SiblingDown | None] = {}
        for i, result in zip(others, results, strict=True):
            if isinstance(result, SiblingDown | httpx.Response) or result is None:
                out[i] = result
            elif isinstance(result, BaseException):
                out[i] = SiblingDown(f"worker {i} failed: {type(result).__name__}: {result}")
        return out

    # --- the public port's admin calls

    async def admin(self, local: Any, rest: str, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """`local(rest, scope, receive, send)` is the worker's own admin handler."""
        method = scope["method"]
        path = "/admin/" + rest
        if method == "PUT":
            await self._write(local, rest, scope, receive, send, limit)
        elif method == "GET" and rest.rstrip("/").endswith("/stats") and rest.startswith("services/"):
            mine = await _answer_of(local, rest, scope, _replay(b""))
            if mine.status != 200:
                await respond(send, mine.status, mine.body, _extra(mine.headers))
                return
            await self._merged_stats(mine, path, scope, send)
        else:
            await local(rest, scope, receive, send)

    async def _write(self, local: Any, rest: str, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        from gateway.http import read_body

        path = "/admin/" + rest
        try:
            body = await read_body(scope, receive, limit)
        except BadInput as bad:
            # Answered as one process answers it: the token, service and route are judged before the body's size.
            mine = await _answer_of(local, rest, scope, _refuse(bad))
            await respond(send, mine.status, mine.body, _extra(mine.headers))
            return
        try:
            async with self.write_lock():
                mine = await _answer_of(local, rest, scope, _replay(body))
                if not 200 <= mine.status < 300:  # refused here (token, body, route): refused everywhere, say so
                    await respond(send, mine.status, mine.body, _extra(mine.headers))
                    return
                answers = await self.ask_all("PUT", path, scope, body)
        except TimeoutError:
            await error(send, 503, "workers_busy", "another admin change holds the workers' lock; retry", None,
                        [(b"retry-after", b"1")])  # fmt: skip
            return
        problems = _disagreements(mine, answers)
        if problems:
            log.warning("admin_change_not_everywhere", path=path, worker=self.index, problems=problems)
            await error(send, 503, "worker_not_updated", "; ".join(problems), None, [(b"retry-after", b"1")])
            return
        await respond(send, mine.status, mine.body, _extra(mine.headers))

    async def _merged_stats(self, mine: Answer, path: str, scope: Scope, send: Send) -> None:
        windows = [StatsWindow.model_validate_json(mine.body)]
        for i, answer in (await self.ask_all("GET", path, scope)).items():
            if answer is None:
                continue
            if isinstance(answer, SiblingDown) or answer.status_code != 200:
                why = answer if isinstance(answer, SiblingDown) else f"worker {i} answered HTTP {answer.status_code}"
                await error(send, 503, "worker_stats_unavailable", f"stats incomplete: {why}", None,
                            [(b"retry-after", b"1")])  # fmt: skip
                return
            windows.append(StatsWindow.model_validate_json(answer.content))
        await respond(send, 200, merge_stats(windows).model_dump_json().encode())

    async def metrics(self, local_text: bytes) -> tuple[bytes, bytes]:
        """This worker's exposition merged with every running sibling's."""
        texts = [local_text.decode()]
        scope: Scope = {"headers": [], "query_string": b""}
        for i, answer in (await self.ask_all("GET", "/metrics", scope)).items():
            if answer is None:
                continue
            if isinstance(answer, SiblingDown) or answer.status_code != 200:
                # Scrapes fail loudly rather than drop a worker's counters (a counter that shrinks reads as a reset).
                raise SiblingDown(f"worker {i} has no metrics for this scrape: {answer}")
            texts.append(answer.text)
        return merge_expositions(texts), CONTENT_TYPE_LATEST.encode()


async def _answer_of(local: Any, rest: str, scope: Scope, receive: Receive) -> Answer:
    capture = _Capture()
    try:
        await local(rest, scope, receive, capture)
    except BadInput as bad:
        await error(capture, bad.status, bad.kind, bad.message, bad.field)
    return capture.answer()


def _extra(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]


def _disagreements(mine: Answer, answers: dict[int, httpx.Response | SiblingDown | None]) -> list[str]:
    expected = operator_settings(ServiceState.model_validate_json(mine.body))
    problems = []
    for i, answer in sorted(answers.items()):
        if answer is None:
            continue  # not running: it copies the state before it serves again
        if isinstance(answer, SiblingDown):
            problems.append(str(answer))
            continue
        if not 200 <= answer.status_code < 300:
            problems.append(f"worker {i} refused the change: HTTP {answer.status_code} {answer.text[:200]}")
            continue
        try:
            theirs = operator_settings(ServiceState.model_validate_json(answer.content))
        except ValidationError as exc:
            problems.append(f"worker {i} answered an unknown state: {exc}")
            continue
        if theirs != expected:
            differ = sorted(k for k in expected if expected[k] != theirs.get(k))
            problems.append(f"worker {i} shows a different {', '.join(differ)} after the change")
    return problems


def merge_stats(windows: list[StatsWindow]) -> StatsWindow:
    """Workers' windows of one service as one (TierStats.merge, the replicas' merge: sums, worst latency)."""
    first = windows[0]
    tiers = {t: TierStats.merge([w.tiers[t] for w in windows if t in w.tiers]) for t in _keys(w.tiers for w in windows)}
    deployments = {
        tier: {
            name: TierStats.merge([w.deployments[tier][name] for w in windows if name in w.deployments.get(tier, {})])
            for name in _keys(w.deployments.get(tier, {}) for w in windows)
        }
        for tier in _keys(w.deployments for w in windows)
    }
    return StatsWindow(service=first.service, window_s=first.window_s, tiers=tiers, deployments=deployments)


def _keys(maps: Any) -> list[str]:
    seen: dict[str, None] = {}
    for m in maps:
        seen.update(dict.fromkeys(m))
    return list(seen)


def merge_expositions(texts: list[str]) -> bytes:
    """Several workers' Prometheus texts as one: counters and histograms summed per label set, `_created` the
    earliest, in-flight and cache gauges summed, breaker state gauges the worst, other gauges (the operator settings,
    the same on every worker) the first text's."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                values[fam.name] = {}
            into = values[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key not in into:
                    into[key] = s.value
                else:
                    into[key] = _combine(fam.type, fam.name, s.name, into[key], s.value)
    for name, fam in families.items():
        for (sample, labels), value in values[name].items():
            fam.add_sample(sample, dict(labels), value)

    class _Merged:
        def collect(self) -> Any:
            return families.values()

    return generate_latest(_Merged())  # type: ignore[arg-type]


def _combine(kind: str, family: str, sample: str, have: float, new: float) -> float:
    if sample.endswith("_created"):
        return min(have, new)
    if kind in ("counter", "histogram", "summary") or family in SUMMED_GAUGES:
        return have + new
    if family in WORST_GAUGES:
        return max(have, new)
    return have


# --- a worker's start: the live state copied from a running sibling


async def copy_state(services: dict[str, Any], siblings: Siblings, token: str) -> int | None:
    """Take the first running sibling's operator settings and audit for every service (call under `write_lock`).
    Returns the sibling copied from, or None when no sibling runs (the first worker starts from the policies);
    SiblingDown when siblings run but none answered (wedged, or failing): the caller waits and tries again."""
    auth = {"Authorization": f"Bearer {token}"}
    unanswered = []
    for i in siblings.others:
        client = siblings._client(i)
        try:
            states = {}
            for name in services:
                r = await client.get(f"/admin/services/{name}", headers=auth)
                a = await client.get(f"/admin/services/{name}/audit", headers=auth)
                r.raise_for_status()
                a.raise_for_status()
                states[name] = (ServiceState.model_validate_json(r.content), AuditLog.model_validate_json(a.content))
            page = await client.get("/status.json")
            page.raise_for_status()
        except httpx.HTTPError as exc:
            if _not_running(exc):
                continue
            unanswered.append(f"worker {i}: {type(exc).__name__}: {exc}")  # the next sibling may answer
            continue
        for name, (state, audit) in states.items():
            apply_state(services[name], state, audit)
        copy_incidents(services, page.json().get("incidents", []))
        return i
    if unanswered:
        raise SiblingDown(f"no running sibling answered the state copy ({'; '.join(unanswered)})")
    return None


def copy_incidents(services: dict[str, Any], incidents: list[dict[str, Any]]) -> None:
    """The status page's recent incidents (as a sibling's /status.json lists them) into each service's history, so a
    restarted worker's status page tells what the others' tell."""
    for raw in sorted(incidents, key=lambda i: i.get("created_at", "")):
        incident = StatusIncident.model_validate(raw)
        svc = services.get(incident.components[0]) if incident.components else None
        if svc is not None:
            svc.history.incidents.append(incident)
            number = incident.id.rpartition("#")[2]
            svc.history.opened = max(svc.history.opened, int(number) if number.isdigit() else 0)


def apply_state(svc: Any, state: ServiceState, audit: AuditLog) -> None:
    """Make a fresh ServiceRuntime show a sibling's operator settings (not its counters, cache or breaker counts)."""
    svc.set_route({"pinned_tier": state.pinned_tier, "primary_weight": state.primary_weight})
    for tier, snap in state.breakers.items():
        if svc.link(FallbackTier(tier)) is not None:
            svc.set_breaker(FallbackTier(tier), snap.mode)
    for tier, deps in state.deployments.items():
        link = svc.link(FallbackTier(tier))
        named = {} if link is None else {str(d.name): d for d in link.deployments}
        for d in deps:
            if str(d.name) in named:
                named[str(d.name)].breaker.set_mode(d.breaker.mode)
    svc.set_degradation(state.degradation.level, dict(state.degradation.overrides))
    svc.set_status(state.status.component, state.status.message)
    svc.status_updated_at = state.status.updated_at or svc.status_updated_at
    svc.incident = state.incident
    svc.audit.extend(entry.model_dump(mode="json") for entry in audit.changes)
