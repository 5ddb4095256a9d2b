"""`python -m gateway --workers N`: N worker processes on one port, supervised by the process that started them.

The supervisor reserves the port (a bound, never listening SO_REUSEPORT socket: a clear error when the port is taken,
and `--port 0` resolves once for all), makes a private runtime directory (0700) and forks the workers. Each worker
copies the live state from a running sibling under the workers' write lock, then listens on its private unix socket
and on the public port (SO_REUSEPORT; the kernel spreads connections) and tells the supervisor it serves
(a queued real-time signal). A worker that dies is started again; one that dies before serving MAX_START_FAILURES
times in a row stops the gateway (exit 1); one whose running siblings do not answer the state copy waits for them. SIGTERM/SIGINT stop every worker gracefully (SIGTERM; SIGKILL after
STOP_GRACE_S). How the workers answer the admin API as one: gateway/siblings.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("gateway")

MAX_WORKERS = 64
MAX_START_FAILURES = 5
STOP_GRACE_S = 10.0
MIN_UPTIME_S = 1.0
QUICK_DEATHS_FREE = 2
"""A worker that dies sooner than MIN_UPTIME_S after serving, more than QUICK_DEATHS_FREE times in a row, is restarted
with a backoff (0.2 s doubling to 2 s), not at once."""
COPY_RETRY_S = 1.0
READY = signal.SIGRTMIN  # real-time: queued, so two workers ready at once are two signals
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, READY}
PR_SET_PDEATHSIG = 1
_supervisor_pid = 0
"""In a worker: the supervisor that forked it (told when the worker serves)."""


def parse_workers(value: str | int) -> int:
    """A worker count from the command line or GOVERNOR_GATEWAY_WORKERS, refused with a reason when it makes no sense."""
    try:
        count = int(str(value).strip())
    except ValueError:
        raise ValueError(f"--workers must be a whole number from 1 to {max_workers()}, got {value!r}") from None
    if not 1 <= count <= max_workers():
        raise ValueError(
            f"--workers must be from 1 to {max_workers()} (4 per core on this machine, at most {MAX_WORKERS}), "
            f"got {count}"
        )
    return count


def max_workers() -> int:
    return min(MAX_WORKERS, 4 * (os.cpu_count() or 1))


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound SO_REUSEPORT socket that never listens (so it takes no connections): holds the port for the workers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Slot:
    index: int
    pid: int = 0
    ready: bool = False
    ready_at: float = 0.0
    quick_deaths: int = 0
    started_at: float = 0.0
    start_failures: int = 0
    restart_at: float | None = None
    restarts: int = 0
    last_exit: str = ""


@dataclass
class Supervisor:
    """Forks `count` workers running `run_worker(index, count, rundir)` (which returns an exit code) and keeps them."""

    count: int
    run_worker: Callable[[int, int, str], int]
    slots: list[_Slot] = field(default_factory=list)
    rundir: str = ""

    def run(self) -> int:
        self.rundir = tempfile.mkdtemp(prefix="governor-gateway-")  # 0700: only this user reaches the admin sockets
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            self.slots = [_Slot(i) for i in range(self.count)]
            for slot in self.slots:
                self._fork(slot, old_mask)
            return self._watch(old_mask)
        finally:
            self._stop_all()
            shutil.rmtree(self.rundir, ignore_errors=True)
            while signal.sigtimedwait(_SIGNALS, 0) is not None:
                pass  # a READY still queued would kill us once unblocked (SIGRTMIN's default action), a 2nd SIGTERM too
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _fork(self, slot: _Slot, old_mask: set[int | signal.Signals]) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            global _supervisor_pid
            _supervisor_pid = parent
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
                _die_with_parent()
                code = self.run_worker(slot.index, self.count, self.rundir)
            except BaseException:
                log.exception("gateway_worker_crashed", worker=slot.index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        slot.pid, slot.ready, slot.started_at, slot.restart_at = pid, False, time.monotonic(), None

    def _watch(self, old_mask: set[int | signal.Signals]) -> int:
        while True:
            due = [s.restart_at for s in self.slots if s.restart_at is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else 60.0
            info = signal.sigtimedwait(_SIGNALS, timeout)
            if info is None:
                pass
            elif info.si_signo in (signal.SIGTERM, signal.SIGINT):
                log.info("gateway_stopping", signal=signal.Signals(info.si_signo).name, workers=self.count)
                return 0
            elif info.si_signo == READY:
                self._ready(info.si_pid)
            elif info.si_signo == signal.SIGCHLD:
                # SIGCHLD is dequeued before a real-time READY: a worker that served and died at once has served.
                while (ready := signal.sigtimedwait({READY}, 0)) is not None:
                    self._ready(ready.si_pid)
                failed = self._reap()
                if failed is not None:
                    print(failed, file=sys.stderr)
                    return 1
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    slot.restarts += 1
                    self._fork(slot, old_mask)

    def _ready(self, pid: int) -> None:
        slot = next((s for s in self.slots if s.pid == pid), None)
        if slot is None or slot.ready:
            return
        slot.ready, slot.ready_at, slot.start_failures = True, time.monotonic(), 0
        log.info("gateway_worker_ready", worker=slot.index, pid=pid, restarts=slot.restarts)
        if slot.restarts == 0 and all(s.ready for s in self.slots):
            pids = [s.pid for s in self.slots]
            log.info("gateway_workers_ready", workers=self.count, pids=pids, rundir=self.rundir)

    def _reap(self) -> str | None:
        """Collect every exited worker and schedule its restart; a message when one keeps failing to start."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = 0
            slot.last_exit = _describe(status)
            if slot.ready:
                slot.start_failures = 0
                lived = time.monotonic() - slot.ready_at
                slot.quick_deaths = slot.quick_deaths + 1 if lived < MIN_UPTIME_S else 0
                # At once for a kill now and then (a sibling down meanwhile would lose the state: all workers
                # down start from the policies); a backoff from the third quick death in a row (a crash loop).
                quick = slot.quick_deaths - QUICK_DEATHS_FREE
                delay = min(2.0, 0.1 * 2**quick) if quick > 0 else 0.0
                slot.restart_at = time.monotonic() + delay
                log.warning("gateway_worker_died", worker=slot.index, pid=pid, exit=slot.last_exit, retry_in_s=delay)
                continue
            slot.start_failures += 1
            if slot.start_failures >= MAX_START_FAILURES:
                return (
                    f"gateway worker {slot.index} {slot.last_exit} before serving, {slot.start_failures} times in a "
                    "row: the gateway stops (the worker's log above says why)"
                )
            delay = min(2.0, 0.1 * 2**slot.start_failures)
            slot.restart_at = time.monotonic() + delay
            log.warning(
                "gateway_worker_start_failed", worker=slot.index, pid=pid, exit=slot.last_exit, retry_in_s=delay
            )

    def _stop_all(self) -> None:
        running = {s.pid for s in self.slots if s.pid}
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while running:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                running.discard(pid)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                for pid in running:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
                continue
            signal.sigtimedwait({signal.SIGCHLD}, min(left, 0.5))


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _die_with_parent() -> None:
    """A worker whose supervisor is killed (SIGKILL, no chance to stop us) gets SIGTERM instead of living on."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != _supervisor_pid:  # it died before prctl (reparented to init, or to a subreaper)
        os.kill(os.getpid(), signal.SIGTERM)


def tell_ready() -> None:
    """Tell the supervisor this worker serves (its public and private listeners are up); not a process that
    inherited us after the supervisor died."""
    if _supervisor_pid and os.getppid() == _supervisor_pid:
        os.kill(_supervisor_pid, READY)


async def serve_worker(app: object, host: str, port: int, index: int, count: int, rundir: str, token: str) -> None:
    """One worker: the live state copied from a sibling, then the private and the public listener, until SIGTERM."""
    import asyncio

    from gateway.app import GatewayApp, listening_socket
    from gateway.http import Receive, Scope, Send
    from gateway.server import HttpServer
    from gateway.siblings import PRIVATE, SiblingDown, Siblings, copy_state, socket_path

    assert isinstance(app, GatewayApp)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per sibling call
    siblings = Siblings(rundir, index, count)
    app.siblings = siblings
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def private_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRIVATE] = True
        await app(scope, receive, send)

    path = socket_path(rundir, index)
    while True:
        try:
            async with siblings.write_lock():  # no admin change lands between the copy and this worker's listeners
                source = await copy_state(app.services, siblings, token)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # a dead worker's socket
                private_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                private_sock.bind(path)
                private_sock.listen(256)
                private = HttpServer(private_app)
                await private.start(private_sock)
                public_sock = listening_socket(host, port, reuse_port=True)
                public = HttpServer(app)
                await public.start(public_sock)
            break
        except (SiblingDown, TimeoutError) as exc:
            # A sibling runs but does not answer (stopped, overloaded) or holds the lock: never serve without the
            # live state, and never count this as a failed start (that would stop the whole gateway).
            why = str(exc) or "another worker holds the workers' lock"
            log.warning("gateway_worker_waiting_for_siblings", worker=index, reason=why, retry_in_s=COPY_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), COPY_RETRY_S)
            if stop.is_set():
                await siblings.aclose()
                return
    app.started.set()
    log.info("gateway_serving", url=f"http://{host}:{port}", worker=index, pid=os.getpid(), state_from=source)
    tell_ready()
    try:
        await stop.wait()
        log.info("gateway_worker_stopping", worker=index)
    finally:
        await public.close()  # the public port first: siblings keep serving it while this one drains
        await private.close()
        public_sock.close()
        private_sock.close()
        await app.aclose()
        await siblings.aclose()
        if os.getppid() != _supervisor_pid:  # the supervisor was killed (SIGKILL) and left the directory to us
            leave_rundir(rundir, path)


def leave_rundir(rundir: str, mine: str) -> None:
    """An orphaned worker's last act: remove its socket, and the runtime directory when no sibling still listens
    (under the workers' lock, so of two workers stopping at once the second sees the first gone)."""
    import fcntl
    import glob

    with contextlib.suppress(OSError):
        fd = os.open(os.path.join(rundir, "admin.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(mine)
            for other in glob.glob(os.path.join(rundir, "worker-*.sock")):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(other)
                    return  # a sibling still serves: it removes the directory when it stops
                except OSError:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(other)  # a dead worker's
                finally:
                    probe.close()
            shutil.rmtree(rundir, ignore_errors=True)
        finally:
            os.close(fd)
