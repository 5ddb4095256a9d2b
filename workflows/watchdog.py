"""The watchdog workflow: one per service dependency, watching it for as long as the policy lists it.

It runs the long-running probing activity (`watch_dependency`), which heartbeats every evaluation and returns when
the hysteresis confirms or clears a failure. A confirmed failure is reported by signal-with-start (through an
activity: a workflow cannot signal-with-start), then the watchdog continues as new with its state. A probing activity
that goes silent (missed heartbeats) counts as a bad evaluation classified `dependency_down`. `update_policy` swaps
the policy in without losing the hysteresis; `stop` ends the watchdog.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from governor.detection import (
        WATCHDOG_WORKFLOW_NAME,
        PolicyUpdate,
        ReportInput,
        ReportResult,
        StopInput,
        Transition,
        WatchActivity,
        WatchdogConfig,
        WatchdogInput,
        WatchdogNames,
        WatchdogState,
        WatchInput,
        WatchResult,
        adjust_severity,
        missed_heartbeat,
        report_of,
        step,
    )
    from governor.policy import ServicePolicy


@workflow.defn(name=WATCHDOG_WORKFLOW_NAME)
class WatchdogWorkflow:
    @workflow.init
    def __init__(self, inp: WatchdogInput) -> None:
        self.policy: ServicePolicy = inp.policy
        self.config: WatchdogConfig = inp.config
        self.state = inp.state or WatchdogState(service=inp.policy.service, dependency=inp.dependency)
        self.task_queue = inp.task_queue
        self._changed = False
        self._stop: StopInput | None = None
        self._missed: Transition | None = None

    @workflow.run
    async def run(self, inp: WatchdogInput) -> WatchdogState:
        self.task_queue = self.task_queue or workflow.info().task_queue
        while self._stop is None:
            if not self._watched():
                self._stop = StopInput(reason=f"the policy no longer lists {self.state.dependency}")
                break
            result = await self._watch_once()
            transition = None
            if result is not None:
                self.state.hysteresis = result.hysteresis
                if result.last is not None:
                    self.state.last = result.last
                transition = result.transition
            elif self._missed is not None:
                transition = self._missed
            if transition == "confirmed":
                await self._report()
                self._continue_as_new()
            elif transition == "cleared":
                workflow.logger.info(
                    "failure cleared", extra={"service": self.state.service, "dependency": self.state.dependency}
                )
            if workflow.info().is_continue_as_new_suggested():
                self._continue_as_new()
        self.state.stopped = True
        self.state.stop_reason = self._stop.reason if self._stop else ""
        return self.state

    def _watched(self) -> bool:
        return any(d.name == self.state.dependency for d in self.policy.dependencies)

    async def _watch_once(self) -> WatchResult | None:
        """Run the probing activity until it returns, a policy update arrives, or we are told to stop."""
        self.state.runs += 1
        self._missed = None
        dep = self.policy.dependency(self.state.dependency)
        heartbeat_s = self.config.heartbeat_timeout(dep.timeout_ms)
        self._changed = False
        handle = workflow.start_activity(
            WatchActivity.WATCH,
            WatchInput(
                policy=self.policy,
                dependency=self.state.dependency,
                config=self.config,
                hysteresis=self.state.hysteresis,
            ),
            result_type=WatchResult,
            # Long enough for a full run at the suspect cadence plus slow probes; heartbeats guard liveness.
            start_to_close_timeout=timedelta(
                seconds=self.config.evaluations_per_run * (self.config.interval_s + dep.timeout_ms / 1000) + 60
            ),
            heartbeat_timeout=timedelta(seconds=heartbeat_s),
            # One attempt: the workflow sees every missed heartbeat and counts it, then starts a new run.
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"watch {self.state.service}/{self.state.dependency}",
        )
        await workflow.wait_condition(lambda: handle.done() or self._changed or self._stop is not None)
        if not handle.done():
            handle.cancel()
        try:
            return await handle
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, TimeoutError) and cause.type is TimeoutType.HEARTBEAT:
                await self._missed_heartbeat(heartbeat_s)
            elif isinstance(cause, CancelledError):
                pass  # cancelled before it could hand its state back; keep ours
            else:
                workflow.logger.warning(
                    "probing activity failed; restarting after one interval",
                    extra={"dependency": self.state.dependency, "error": str(cause or err)},
                )
                await workflow.sleep(timedelta(seconds=self.config.interval_s))
            return None

    async def _missed_heartbeat(self, silent_s: float) -> None:
        self.state.missed_heartbeats += 1
        classification = adjust_severity(
            missed_heartbeat(self.state.dependency, silent_s), self.policy, self.state.dependency
        )
        self.state.hysteresis, transition = step(self.state.hysteresis, classification, workflow.now(), self.config)
        workflow.logger.warning(
            "probe heartbeat missed",
            extra={"dependency": self.state.dependency, "missed": self.state.missed_heartbeats},
        )
        self._missed = transition

    async def _report(self) -> None:
        suspect = self.state.hysteresis.suspect
        if suspect is None:  # cannot happen: a confirmation always has a classification
            return
        report = report_of(self.state, suspect, workflow.now())
        result = await workflow.execute_activity(
            WatchActivity.REPORT,
            ReportInput(report=report, task_queue=self.task_queue or workflow.info().task_queue),
            result_type=ReportResult,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5)
            ),
            summary=f"report {suspect.failure_type.value} ({suspect.severity.value})",
        )
        self.state.incidents_reported += 1
        self.state.last_report = report
        self.state.last_incident_id = result.incident_id
        workflow.logger.info(
            "failure confirmed and reported",
            extra={"incident_id": result.incident_id, "failure_type": suspect.failure_type.value},
        )

    def _continue_as_new(self) -> None:
        self.state.continued += 1
        workflow.continue_as_new(
            WatchdogInput(
                policy=self.policy,
                dependency=self.state.dependency,
                config=self.config,
                task_queue=self.task_queue,
                state=self.state,
            )
        )

    @workflow.signal(name=WatchdogNames.UPDATE_POLICY)
    def update_policy(self, update: PolicyUpdate) -> None:
        """A changed policy takes effect at once: the probing activity restarts with it, the hysteresis is kept."""
        if update.policy.service != self.state.service:
            workflow.logger.warning(
                "policy update for another service ignored",
                extra={"expected": self.state.service, "got": update.policy.service},
            )
            return
        config = update.config or self.config
        if update.policy == self.policy and config == self.config:
            return  # the same policy again (a start signal, `governor watch` re-run): nothing to restart
        self.policy = update.policy
        self.config = config
        self.state.policy_updates += 1
        self._changed = True

    @workflow.signal(name=WatchdogNames.STOP)
    def stop(self, inp: StopInput) -> None:
        self._stop = inp

    @workflow.query(name=WatchdogNames.STATE)
    def query_state(self) -> WatchdogState:
        return self.state
