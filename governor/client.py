"""The client SDK: report a failure, steer an incident, read its state, find incidents by search attribute.

Services call `report_failure`; on-call tools (the `governor` CLI, scripts, tests) use the controls. Every control
goes through a Temporal update, so a request the workflow refuses (unknown approver, gate not pending, tier not in
the chain) raises `ControlRefused` with the workflow's reason and leaves no trace in history.

    async with await GovernorClient.connect() as governor:  # settings from GOVERNOR_TEMPORAL_* env
        incident = await governor.report_failure(IncidentReport(service="chat", dependency="primary-llm"))
        await governor.approve(incident.incident_id, gate="ramp:10", approver="alice", reason="error rate flat")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    TLSConfig,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from governor import search_attributes as sa
from governor.enums import DegradationLevel, FailureType, FallbackTier, RecoveryPhase, Severity
from governor.incident import (
    WORKFLOW_NAME,
    ApprovalInput,
    ControlInput,
    ControlResult,
    ForceTierInput,
    IncidentReport,
    IncidentState,
    Names,
    NoteInput,
    RecoveryInput,
    incident_id,
)
from governor.settings import TemporalSettings

DEFAULT_RPC_TIMEOUT = timedelta(seconds=15)


class GovernorError(Exception):
    """Base of every error the SDK raises on purpose; the message is meant for a human."""


class GovernorConfigError(GovernorError):
    """The connection settings cannot work (a TLS file that does not exist, a malformed address)."""


class GovernorUnavailable(GovernorError):
    """Temporal cannot be reached, or no worker answered in time."""


class IncidentNotFound(GovernorError):
    """No workflow with this incident id exists in the namespace."""

    def __init__(self, incident: str, namespace: str = "default") -> None:
        super().__init__(f"no incident {incident!r} in namespace {namespace!r} (see `governor list --all`)")
        self.incident_id = incident


class ControlRefused(GovernorError):
    """The workflow refused a control; `reason` is the workflow's own explanation."""

    def __init__(self, control: str, incident: str, reason: str) -> None:
        super().__init__(f"{control} refused by {incident}: {reason}")
        self.control = control
        self.incident_id = incident
        self.reason = reason


class IncidentClosed(ControlRefused):
    """A control sent to an incident whose workflow has already finished."""


class Reported(BaseModel):
    """What `report_failure` answers: the incident the report went to, and whether it opened it or joined it."""

    incident_id: str
    run_id: str | None = None
    started: bool | None = None
    """True: this report opened the incident; False: it joined an open one; None: the server did not say."""


class IncidentSummary(BaseModel):
    """One incident as visibility (the search attributes) sees it: cheap to list, no worker needed."""

    incident_id: str
    run_id: str | None = None
    service: str | None = None
    dependency: str | None = None
    failure_type: FailureType | None = None
    severity: Severity | None = None
    phase: RecoveryPhase | None = None
    tier: FallbackTier | None = None
    degradation_level: DegradationLevel | None = None
    awaiting_approval: bool = False
    ramp_percent: int | None = None
    drill: bool = False
    """A drill (`governor simulate --drill`), from the GovernorDrill search attribute."""
    status: str
    """The workflow's execution status in lower case, as the CLI prints it in text and JSON alike: `running`,
    `completed`, `failed`, `canceled`, `terminated`, `timed_out` (`unknown` when the server does not say)."""
    started_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status == WorkflowExecutionStatus.RUNNING.name.lower()


def _enum_or_none(kind: type[Any], value: Any) -> Any:
    try:
        return kind(value) if value is not None else None
    except ValueError:
        return None  # a value this version does not know: show nothing rather than fail the whole listing


def summarize(execution: WorkflowExecution) -> IncidentSummary:
    attrs = execution.typed_search_attributes
    return IncidentSummary(
        incident_id=execution.id,
        run_id=execution.run_id,
        service=attrs.get(sa.SERVICE),
        dependency=attrs.get(sa.DEPENDENCY),
        failure_type=_enum_or_none(FailureType, attrs.get(sa.FAILURE_TYPE)),
        severity=_enum_or_none(Severity, attrs.get(sa.SEVERITY)),
        phase=_enum_or_none(RecoveryPhase, attrs.get(sa.PHASE)),
        tier=_enum_or_none(FallbackTier, attrs.get(sa.TIER)),
        degradation_level=_enum_or_none(DegradationLevel, attrs.get(sa.DEGRADATION)),
        awaiting_approval=bool(attrs.get(sa.AWAITING_APPROVAL)),
        ramp_percent=attrs.get(sa.RAMP_PERCENT),
        drill=bool(attrs.get(sa.DRILL)),
        status=execution.status.name.lower() if execution.status else "unknown",
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


def _quote(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"a search value may not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def incidents_query(
    service: str | None = None,
    phase: RecoveryPhase | str | None = None,
    awaiting_approval: bool | None = None,
    open_only: bool = True,
    dependency: str | None = None,
) -> str:
    """The visibility query behind `list_incidents` (also pasteable into the Temporal UI's search box)."""
    clauses = [f"WorkflowType = {_quote(WORKFLOW_NAME)}"]
    if open_only:
        clauses.append("ExecutionStatus = 'Running'")
    else:
        clauses.append("ExecutionStatus != 'ContinuedAsNew'")
    if service is not None:
        clauses.append(f"{sa.SERVICE.name} = {_quote(service)}")
    if dependency is not None:
        clauses.append(f"{sa.DEPENDENCY.name} = {_quote(dependency)}")
    if phase is not None:
        clauses.append(f"{sa.PHASE.name} = {_quote(RecoveryPhase(phase).value)}")
    if awaiting_approval is not None:
        clauses.append(f"{sa.AWAITING_APPROVAL.name} = {'true' if awaiting_approval else 'false'}")
    return " AND ".join(clauses)


def static_summary(report: IncidentReport) -> str:
    """The one line the Temporal UI shows for the incident, e.g. `chat: error_spike on primary-llm (CRITICAL)`."""
    what = report.failure_type.value if report.failure_type else "failure reported"
    severity = f" ({report.severity.value})" if report.severity else ""
    drill = "DRILL " if report.drill else ""
    return f"{drill}{report.service}: {what} on {report.dependency}{severity}"


def tls_config(settings: TemporalSettings) -> bool | TLSConfig | None:
    """The one TLS rule: client certificate and/or CA files -> mTLS config; `tls` -> TLS with the system roots;
    else None, which lets the SDK decide (TLS on when an API key is set, as Temporal Cloud needs)."""
    files = {"tls_cert": settings.tls_cert, "tls_key": settings.tls_key, "tls_ca": settings.tls_ca}
    read: dict[str, bytes | None] = {}
    for name, path in files.items():
        if path is None:
            read[name] = None
            continue
        try:
            read[name] = Path(path).read_bytes()
        except OSError as err:
            env = f"GOVERNOR_TEMPORAL_{name.upper()}"
            raise GovernorConfigError(f"{name} ({env}) {str(path)!r}: cannot read ({err.strerror})") from None
    if (read["tls_cert"] is None) != (read["tls_key"] is None):
        raise GovernorConfigError("mTLS needs both tls_cert and tls_key (GOVERNOR_TEMPORAL_TLS_CERT / _TLS_KEY)")
    if any(v is not None for v in read.values()):
        return TLSConfig(
            server_root_ca_cert=read["tls_ca"],
            client_cert=read["tls_cert"],
            client_private_key=read["tls_key"],
        )
    # None lets the SDK decide: TLS on when an API key is set (Temporal Cloud), off otherwise.
    return True if settings.tls else None


async def connect(
    settings: TemporalSettings | None = None,
    *,
    rpc_timeout: timedelta | None = DEFAULT_RPC_TIMEOUT,
    runtime: Runtime | None = None,
) -> Client:
    """The one way the governor builds a Temporal client (the SDK, the worker, the launcher, the CLI, the benches and
    the tests): address, namespace, API key and TLS from the settings (GOVERNOR_TEMPORAL_* by default) and the pydantic
    data converter every workflow and activity payload needs. Raises GovernorConfigError or GovernorUnavailable."""
    settings = settings or TemporalSettings()
    tls = tls_config(settings)
    try:
        return await Client.connect(
            settings.address,
            namespace=settings.namespace,
            api_key=settings.api_key,
            tls=tls,
            data_converter=pydantic_data_converter,
            connect_timeout=rpc_timeout,
            runtime=runtime,
        )
    except RuntimeError as err:
        raise GovernorUnavailable(
            f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): {err}"
        ) from None


class GovernorClient:
    """The governor's view of Temporal: one incident workflow per service (a failure of any of its dependencies joins it)."""

    def __init__(
        self,
        client: Client,
        task_queue: str | None = None,
        rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
    ) -> None:
        self.temporal = client
        self.task_queue = task_queue or TemporalSettings().task_queue
        self.rpc_timeout = rpc_timeout

    @classmethod
    async def connect(
        cls,
        settings: TemporalSettings | None = None,
        *,
        rpc_timeout: timedelta = DEFAULT_RPC_TIMEOUT,
    ) -> Self:
        """Connect (see `connect`); settings default to the GOVERNOR_TEMPORAL_* environment."""
        settings = settings or TemporalSettings()
        client = await connect(settings, rpc_timeout=rpc_timeout)
        return cls(client, task_queue=settings.task_queue, rpc_timeout=rpc_timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None  # the Temporal client holds no resources that need closing

    @property
    def namespace(self) -> str:
        return self.temporal.namespace

    # ---- reporting -------------------------------------------------------------------------------------------

    async def report_failure(self, report: IncidentReport) -> Reported:
        """Signal-with-start: open the service's incident, or join the one already open."""
        wid = incident_id(report.service)
        attrs = TypedSearchAttributes(
            [
                SearchAttributePair(sa.SERVICE, report.service),
                SearchAttributePair(sa.DEPENDENCY, report.dependency),
            ]
        )
        try:
            handle = await self.temporal.start_workflow(
                WORKFLOW_NAME,
                RecoveryInput(service=report.service, dependency=report.dependency),
                id=wid,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal=Names.REPORT,
                start_signal_args=[report],
                search_attributes=attrs,
                static_summary=static_summary(report),
                rpc_timeout=self.rpc_timeout,
            )
        except RPCError as err:
            raise self._unavailable(err, f"report for {wid}") from None
        # The server says whether signal-with-start opened a new run; the SDK keeps its answer on the handle.
        response = getattr(handle, "_start_workflow_response", None)
        started = getattr(response, "started", None)
        return Reported(incident_id=wid, run_id=handle.result_run_id, started=started)

    # ---- reading ---------------------------------------------------------------------------------------------

    async def state(self, incident: str) -> IncidentState:
        """The workflow's full state (the `state` query); needs a worker for the task queue to answer."""
        handle = self.temporal.get_workflow_handle(incident)
        try:
            return await handle.query(Names.STATE, result_type=IncidentState, rpc_timeout=self.rpc_timeout)
        except RPCError as err:
            raise self._translate(err, incident, "state query") from None
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
            raise GovernorError(f"{incident}: state query failed: {err}") from None

    async def list_incidents(
        self,
        service: str | None = None,
        phase: RecoveryPhase | str | None = None,
        awaiting_approval: bool | None = None,
        open_only: bool = True,
        dependency: str | None = None,
        limit: int | None = 200,
    ) -> list[IncidentSummary]:
        """Incidents found through the search attributes, newest first (visibility lags the workflow slightly)."""
        query = incidents_query(service, phase, awaiting_approval, open_only, dependency)
        found: list[IncidentSummary] = []
        try:
            async for execution in self.temporal.list_workflows(query, limit=limit, rpc_timeout=self.rpc_timeout):
                found.append(summarize(execution))
        except RPCError as err:
            raise self._unavailable(err, "incident listing") from None
        return found

    async def find_open(self, service: str, dependency: str | None = None) -> list[IncidentSummary]:
        return await self.list_incidents(service=service, dependency=dependency)

    async def wait_for(
        self,
        incident: str,
        predicate: Callable[[IncidentState], bool] | None = None,
        *,
        phase: RecoveryPhase | str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 (the brief names it; asyncio.timeout would hide the last phase)
        interval: float = 0.2,
    ) -> IncidentState:
        """Poll the state until `predicate` (or `phase` reached) holds; raises TimeoutError naming the last phase."""
        if predicate is None and phase is None:
            raise ValueError("wait_for needs a predicate or a phase")
        want = RecoveryPhase(phase) if phase is not None else None

        def done(state: IncidentState) -> bool:
            if want is not None and state.phase is not want:
                return False
            return predicate(state) if predicate is not None else True

        deadline = time.monotonic() + timeout
        last: IncidentState | None = None
        while True:
            try:
                last = await self.state(incident)
            except IncidentNotFound:
                last = None  # the start may not be visible yet; keep waiting until the deadline
            if last is not None and done(last):
                return last
            if time.monotonic() >= deadline:
                seen = f"phase {last.phase.value}, tier {last.tier.value}" if last else "no state yet"
                raise TimeoutError(f"{incident}: condition not met within {timeout:.0f}s ({seen})")
            await asyncio.sleep(interval)  # a query cannot be awaited for a change; poll gently

    # ---- controls (updates) ----------------------------------------------------------------------------------

    async def approve(
        self, incident: str, gate: str, approver: str, reason: str = "", gate_id: str | None = None
    ) -> ControlResult:
        """Approve the pending request `gate_id` of `gate`; without an id, the request pending now (see `gate_id_of`)."""
        return await self._decide(Names.APPROVE, incident, gate, approver, reason, gate_id)

    async def reject(
        self, incident: str, gate: str, approver: str, reason: str = "", gate_id: str | None = None
    ) -> ControlResult:
        return await self._decide(Names.REJECT, incident, gate, approver, reason, gate_id)

    async def gate_id_of(self, incident: str, gate: str) -> str | None:
        """The id of `gate`'s request pending now, or None when it is not pending.

        For a person deciding now (the CLI without `--gate-id`): the id is read at the moment of the decision, so it
        cannot be an old one. Programs that saw the gate earlier should pass the id they saw instead: a later request
        of the same gate (after a rollback) has another id, and their decision for the earlier one is then refused.
        """
        pending = (await self.state(incident)).pending(gate)
        return (pending.gate_id or None) if pending is not None else None

    async def _decide(
        self, name: str, incident: str, gate: str, approver: str, reason: str, gate_id: str | None
    ) -> ControlResult:
        if gate_id is None:
            gate_id = await self.gate_id_of(incident, gate)
        decision = ApprovalInput(gate=gate, approver=approver, reason=reason, gate_id=gate_id)
        return await self._control(incident, name, decision)

    async def pause(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        return await self._control(incident, Names.PAUSE, ControlInput(actor=actor, reason=reason))

    async def resume(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        return await self._control(incident, Names.RESUME, ControlInput(actor=actor, reason=reason))

    async def abort(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        """Abort the ramp: roll back to the fallback tier now."""
        return await self._control(incident, Names.ABORT, ControlInput(actor=actor, reason=reason))

    async def promote(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        """Skip the remaining ramp steps (gated like the last step)."""
        return await self._control(incident, Names.PROMOTE, ControlInput(actor=actor, reason=reason))

    async def force_tier(self, incident: str, tier: FallbackTier | str, actor: str, reason: str = "") -> ControlResult:
        return await self._control(
            incident, Names.FORCE_TIER, ForceTierInput(tier=FallbackTier(tier), actor=actor, reason=reason)
        )

    async def declare_remediated(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        return await self._control(incident, Names.DECLARE_REMEDIATED, ControlInput(actor=actor, reason=reason))

    async def claim(self, incident: str, actor: str, reason: str = "") -> ControlResult:
        """Take ownership of the incident: its recovery plan names `actor` as the owner."""
        return await self._control(incident, Names.CLAIM, ControlInput(actor=actor, reason=reason))

    async def note(self, incident: str, author: str, text: str) -> ControlResult:
        return await self._control(incident, Names.NOTE, NoteInput(author=author, text=text))

    async def _control(self, incident: str, name: str, arg: BaseModel) -> ControlResult:
        handle = self.temporal.get_workflow_handle(incident)
        try:
            result = await handle.execute_update(name, arg, result_type=ControlResult, rpc_timeout=self.rpc_timeout)
        except WorkflowUpdateFailedError as err:
            raise ControlRefused(name, incident, _reason(err.cause)) from None
        except RPCTimeoutOrCancelledError:
            raise GovernorUnavailable(
                f"{incident}: no answer to {name} within {self.rpc_timeout.total_seconds():.0f}s"
                f" (is a worker polling task queue {self.task_queue!r}?)"
            ) from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                await self._raise_if_closed(incident, name)
            raise self._translate(err, incident, name) from None
        if not result.accepted:
            raise ControlRefused(name, incident, result.message)
        return result

    async def _raise_if_closed(self, incident: str, control: str) -> None:
        try:
            desc = await self.temporal.get_workflow_handle(incident).describe(rpc_timeout=self.rpc_timeout)
        except RPCError:
            return  # really not there: the caller reports it as unknown
        if desc.status is not None and desc.status is not WorkflowExecutionStatus.RUNNING:
            raise IncidentClosed(control, incident, f"the incident is closed ({desc.status.name.lower()})")

    def _translate(self, err: RPCError, incident: str, what: str) -> GovernorError:
        if err.status == RPCStatusCode.NOT_FOUND:
            return IncidentNotFound(incident, self.namespace)
        return self._unavailable(err, f"{what} on {incident}")

    def _unavailable(self, err: RPCError, what: str) -> GovernorError:
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            return GovernorUnavailable(
                f"{what}: no answer within {self.rpc_timeout.total_seconds():.0f}s"
                f" (is a worker polling task queue {self.task_queue!r}?)"
            )
        if err.status == RPCStatusCode.UNAVAILABLE:
            return GovernorUnavailable(f"{what}: Temporal is unavailable ({err.message})")
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            return GovernorError(f"{what}: {err.message}")
        return GovernorUnavailable(f"{what}: {err.status.name if err.status else 'error'}: {err.message}")


def _reason(cause: BaseException) -> str:
    """The refusal text: the validator's ApplicationError message, without the SDK's wrapping."""
    if isinstance(cause, ApplicationError | FailureError):
        return cause.message or str(cause)
    return str(cause)


__all__ = [
    "ControlRefused",
    "GovernorClient",
    "GovernorConfigError",
    "GovernorError",
    "GovernorUnavailable",
    "IncidentClosed",
    "IncidentNotFound",
    "IncidentSummary",
    "Reported",
    "incidents_query",
    "static_summary",
]
