"""The orchestrator engine: durable jobs over the store protocol.

How a job moves (every arrow is one :meth:`Store.apply`, written before anything acts on it):

- ``create_job``: put the job record, enqueue a *step* on the ``engine:steps`` queue, append history.
- The executor takes steps (at most ``EXECUTOR_MAX_CONCURRENT_JOBS`` at once; the rest wait in the
  store), runs the state's handler, and commits its decision together with the step's ack:
  ``go_to`` enqueues the next step; ``dispatch_task``/``dispatch_parallel`` put task records and enqueue
  them on ``task:<type>`` queues; ``await_human_approval`` and ``run_blueprint`` park the job (the child
  job is created in the same write); an end state finishes the job and archives it.
- Workers (in-process now, remote through the server next) call :meth:`take_task`,
  :meth:`report_progress` and :meth:`complete_task`. A completion records the task's result, moves the
  job and enqueues its next step in one write, guarded by the versions of both records, so a duplicate or
  late result is recorded and ignored.
- Dispatch and result timeouts live in one :class:`~podium.engine.timers.TimerQueue` on the store's clock;
  after a restart they are re-armed from the open task records.

Everything is guarded by record versions and lease tokens (claim/record/complete, never get-then-set), so a
crash at any point leaves either the old or the new state, and another instance can carry on.

:class:`OrchestratorEngine` is a facade: it builds the components with explicit arguments and delegates its
public API to them. They share one :class:`~podium.engine.core.EngineCore` (plan type, commit, caches,
events): :mod:`~podium.engine.registry` (definitions), :mod:`~podium.engine.transitions` and
:mod:`~podium.engine.planner` (decisions as plan ops), :mod:`~podium.engine.retries` (the retry policy),
:mod:`~podium.engine.jobs`, :mod:`~podium.engine.tasks`, :mod:`~podium.engine.executor`,
:mod:`~podium.engine.dispatch` (local workers, registry) and :mod:`~podium.engine.recovery`. Store names
live in :mod:`~podium.engine.keys`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from podium.clock import Clock
from podium.engine.chain import CHAIN_PREFIX, build_chain
from podium.engine.config import Config
from podium.engine.context import ClientConfig
from podium.engine.core import EngineCore, Listener
from podium.engine.definition import JobDefinition
from podium.engine.dispatch import Dispatch, HeartbeatAnswer, WorkerState
from podium.engine.executor import Executor
from podium.engine.files import JOB_END_EVENTS, JobFiles
from podium.engine.history import StoreHistoryStorage
from podium.engine.jobs import Jobs
from podium.engine.keys import (
    JOB,
    RECOVERY_LOCK,
    SCHEDULE_TIMER,
    STEPS_QUEUE,
    TASK,
    WORKER,
    job_end,
    task_queue,
)
from podium.engine.models import JobView, Task, TaskView, WorkerView
from podium.engine.planner import ActionPlanner
from podium.engine.recovery import Recovery
from podium.engine.registry import Registry
from podium.engine.retries import RetryPolicy
from podium.engine.scheduler import ScheduleRunner, load_scheduler
from podium.engine.tasks import Tasks
from podium.engine.transitions import Transitions
from podium.engine.workers import InProcessWorker
from podium.errors import ConfigError
from podium.ids import new_ulid_str
from podium.store.base import HistoryEntry, Op, Store

__all__ = [
    "JOB",
    "RECOVERY_LOCK",
    "SCHEDULE_TIMER",
    "STEPS_QUEUE",
    "TASK",
    "WORKER",
    "Listener",
    "OrchestratorEngine",
    "job_end",
    "task_queue",
]

HttpServe = Callable[["OrchestratorEngine"], Awaitable[Any]]


def load_entry_point(setting: str, spec: str) -> Any:
    """The object a ``module:attr`` entry point names; :class:`ConfigError` naming ``setting`` if it cannot."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{setting}={spec!r}: expected an entry point of the form 'module:attr'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{setting}={spec!r}: cannot load the entry point: {exc}") from exc


class OrchestratorEngine:
    """Runs jobs of registered definitions on a :class:`~podium.store.Store`. See the module docstring."""

    def __init__(
        self,
        storage: Store,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        instance_id: str | None = None,
        serve_http: bool | None = None,
    ) -> None:
        self.storage = storage
        self.config = config if config is not None else Config()
        self.serve_http = self.config.SERVE_HTTP if serve_http is None else serve_http
        """Whether :meth:`start` serves the HTTP API (``Config.SERVE_HTTP``, Avtomatika's behaviour)."""
        self._http: Any = None  # the server start() runs, when it serves
        if clock is not None:
            storage.clock = clock
        self.clock: Clock = storage.clock
        self.instance_id = instance_id or f"{self.config.INSTANCE_ID}:{new_ulid_str()[-8:]}"
        self.core = core = EngineCore(storage, self.config, self.clock, self.instance_id)
        self.registry = Registry()
        self.registry.register_definition_factory(CHAIN_PREFIX, build_chain)
        self.transitions = Transitions(core)
        self.planner = ActionPlanner(core, self.registry, self.transitions)
        self.jobs = Jobs(core, self.registry, self.transitions, self.planner)
        self.tasks = Tasks(core, self.jobs, self.transitions, self.planner, RetryPolicy(self.config))
        self.executor = Executor(core, self.registry, self.transitions, self.planner)
        self.files = JobFiles(core)
        """A job's files on S3 (``task_files``), when ``Config.S3_*`` is set."""
        self.executor.files = self.files
        self.dispatch = Dispatch(core)
        self.dispatch.tasks = self.tasks
        self.recovery = Recovery(core, self.tasks, self.planner, self.executor)
        core.wire(
            spawn_step=self.executor.spawn,
            dispatch=self.dispatch,
            cancel_job=self._cancel_child,
            on_timer=self.recovery.on_timer,
        )
        self.blueprints: dict[str, JobDefinition] = self.registry.blueprints
        self.timers = core.timers
        self.event_counts: dict[str, int] = core.event_counts
        """How many events of each type this instance has emitted (whether or not anyone listens): for
        metrics, at the cost of one dict update per event instead of a subscription to every type."""
        self.commit_stats = core.commit_stats
        """Latency of this instance's store writes (every engine decision is one), for metrics."""
        self.scheduler: ScheduleRunner | None = None
        """The native scheduler (:mod:`podium.ops`), started and stopped with the engine: the one a server
        gives it (``podium serve --schedules``), else the one of ``Config.SCHEDULES_CONFIG_PATH``."""
        self._started = False
        self._unsubscribe_files: Callable[[], None] | None = None

    async def _cancel_child(self, job_id: str, reason: str) -> None:
        await self.jobs.cancel_job(job_id, reason=reason)

    # --- definitions ------------------------------------------------------------------------------

    def register_blueprint(self, blueprint: JobDefinition) -> None:
        """Register a blueprint (validated now; errors name the problem)."""
        self.registry.register_definition(blueprint)

    def register_definition(self, definition: JobDefinition) -> None:
        """Register any job definition (a blueprint, or one built in code)."""
        self.registry.register_definition(definition)

    def register_definition_factory(self, prefix: str, factory: Callable[[str], JobDefinition]) -> None:
        """Build definitions on first use: a job whose definition name starts with ``prefix`` runs the one
        ``factory(name)`` returns (built once per name, validated, cached). For definitions generated from
        data (the workcell's compiled workflows): every instance on a store resolves them, also for jobs
        another instance created. They are not API blueprints (not listed, no endpoint)."""
        self.registry.register_definition_factory(prefix, factory)

    def get_definition(self, name_or_endpoint: str) -> JobDefinition:
        """The definition registered under a name or an API endpoint (``/jobs/my_flow``)."""
        return self.registry.get_definition(name_or_endpoint)

    def load_blueprints(self, directory: str | Path) -> list[str]:
        """Import every ``.py`` file in ``directory`` and register each Blueprint/definition it defines."""
        return self.registry.load_blueprints(directory)

    def setup(self) -> None:
        """Load the blueprints of ``Config.BLUEPRINTS_DIR`` now (``start()`` does it too; Avtomatika's name)."""
        if self.config.BLUEPRINTS_DIR:
            self.load_blueprints(self.config.BLUEPRINTS_DIR)

    @property
    def history_storage(self) -> StoreHistoryStorage:
        """Avtomatika's history reading calls, answered from this engine's store (see ``podium.engine.history``)."""
        return StoreHistoryStorage(self)

    @property
    def blueprint_contracts(self) -> dict[str, dict[str, Any]]:
        """Name -> public contract (``get_contract()``) of every registered blueprint."""
        return {name: d.get_contract() for name, d in self.blueprints.items()}

    def blueprint_graph(self, name: str) -> str:
        """The definition's state graph as Mermaid text."""
        return self.registry.blueprint_graph(name)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, serve_http: bool | None = None) -> None:
        """Open the store, re-arm timers of open tasks, start the executor and in-process workers; then,
        like Avtomatika's ``start()``, serve the HTTP API (client and worker routes, :mod:`podium.server`)
        on ``API_HOST``:``API_PORT`` unless ``serve_http`` (default: the engine's :attr:`serve_http`) is
        false. The server is loaded by name from ``Config.HTTP_SERVER`` (``module:attr``), only when it
        serves. The server app starts its engine with ``serve_http=False``. Idempotent."""
        if self._started:
            return
        core = self.core
        core.stopping = False
        if self.config.BLUEPRINTS_DIR:
            self.load_blueprints(self.config.BLUEPRINTS_DIR)
        if self.scheduler is None:  # a bad schedules.toml fails start() before anything runs
            self.scheduler = load_scheduler(self)
        await self.storage.open()
        serve: HttpServe | None = None
        if self.serve_http if serve_http is None else serve_http:
            serve = load_entry_point("HTTP_SERVER", self.config.HTTP_SERVER)
        await self.recovery.start()
        self.timers.start()
        self.executor.start()
        self._started = core.started = True
        if self.files.enabled and self.config.S3_AUTO_CLEANUP:
            self._unsubscribe_files = core.subscribe(self.files.on_event, types=JOB_END_EVENTS)
        for worker in list(self.dispatch.workers.values()):
            await worker.start()
        if self.scheduler is not None:
            await self.scheduler.start()
        if serve is not None:
            try:
                self._http = await serve(self)
            except BaseException:
                await self.stop()
                raise

    @property
    def http_url(self) -> str | None:
        """Where :meth:`start` serves the HTTP API (``None`` when it does not)."""
        return self._http.url if self._http is not None else None

    async def stop(self) -> None:
        """Graceful stop: stop serving HTTP (if :meth:`start` did), take no new work, let running handlers and
        in-process tasks finish (up to ``STOP_GRACE_S``), give back leases. Idempotent."""
        if not self._started:
            return
        http, self._http = self._http, None
        if http is not None:
            await http.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        self.core.stopping = True
        await self.executor.stop()
        await self.recovery.stop(release=False)
        grace = self.config.STOP_GRACE_S
        await asyncio.gather(
            *(worker.stop(grace_s=grace) for worker in list(self.dispatch.workers.values())),
            self.executor.drain(grace),
        )
        await self.timers.stop()
        await self.recovery.release()
        if self._unsubscribe_files is not None:
            self._unsubscribe_files()
            self._unsubscribe_files = None
        await self.files.drain()
        self._started = self.core.started = False

    @property
    def is_recovery_owner(self) -> bool:
        """Whether this instance holds the store lock that makes it run recovery."""
        return self.recovery.is_owner

    async def __aenter__(self) -> OrchestratorEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run(self) -> None:
        """Blocking: start, serve until interrupted, stop (for scripts; use start/stop inside asyncio)."""

        async def main() -> None:
            await self.start()
            try:
                await asyncio.Event().wait()
            finally:
                await self.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    def route_timers(self, prefix: str, callback: Callable[[str, Any], Awaitable[None]]) -> None:
        """Send the engine timers whose key starts with ``prefix`` (two characters, see
        :mod:`podium.engine.keys`) to ``callback(key, payload)``: components beside the engine (the
        scheduler) arm their deadlines on :attr:`timers`, the engine's one timer structure."""
        if len(prefix) != 2:
            raise ValueError(f"a timer prefix is two characters, got {prefix!r}")
        self.core.timer_routes[prefix] = callback

    # --- events -----------------------------------------------------------------------------------

    def subscribe(self, listener: Listener, *, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``listener(event)`` (sync or async) after every committed engine event, or only those whose
        type is in ``types``; returns an unsubscribe function. Listeners should be quick (queue slow work such
        as webhooks). Events nobody subscribed to are never built."""
        return self.core.subscribe(listener, types=types)

    # --- jobs -------------------------------------------------------------------------------------

    async def create_job(
        self,
        blueprint: str,
        initial_data: Mapping[str, Any] | None = None,
        *,
        webhook_url: str | None = None,
        dispatch_timeout: float | None = None,
        result_timeout: float | None = None,
        client: ClientConfig | Mapping[str, Any] | None = None,
        job_id: str | None = None,
        extra_ops: Sequence[Op] = (),
        policy: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a job of a blueprint (by name or API endpoint) and return its id.

        ``initial_data`` is validated against the blueprint's ``input_schema``: a mismatch raises
        :class:`~podium.engine.errors.InputValidationError` naming the field, and nothing is written.
        ``extra_ops`` (the caller's own records of the job, see :meth:`complete_task`) join its first write.
        ``policy`` (Avtomatika's job policy): ``allowed_skills`` limits the task types its handlers (and its
        child jobs') may dispatch; handlers see it as ``policy``.
        """
        return await self.jobs.create_job(
            blueprint,
            initial_data,
            webhook_url=webhook_url,
            dispatch_timeout=dispatch_timeout,
            result_timeout=result_timeout,
            client=client,
            job_id=job_id,
            extra_ops=extra_ops,
            policy=policy,
        )

    async def get_job(self, job_id: str) -> JobView:
        """The job's current status, state, progress, result and error."""
        return await self.jobs.get_job(job_id)

    async def list_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        blueprint: str | None = None,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> list[JobView]:
        """Jobs filtered by status and blueprint, in creation order, paged by ``after`` (a job id)."""
        return await self.jobs.list_jobs(
            status=status, blueprint=blueprint, after=after, limit=limit, descending=descending
        )

    async def count_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        blueprint: str | None = None,
        client: str | None = None,
    ) -> int:
        """How many jobs match; ``client``: only those created for that API client (by name; this reads the
        matching records, where the other filters are one count)."""
        return await self.jobs.count_jobs(status=status, blueprint=blueprint, client=client)

    async def job_history(self, job_id: str, *, limit: int = 1000) -> list[HistoryEntry]:
        """Every history entry of the job (transitions, tasks, results), oldest first."""
        return await self.jobs.job_history(job_id, limit=limit)

    async def list_tasks(self, job_id: str) -> list[TaskView]:
        """The tasks a job dispatched."""
        return await self.jobs.list_tasks(job_id)

    async def get_task(self, task_id: str) -> TaskView:
        """One task."""
        return await self.jobs.get_task(task_id)

    async def wait_for_job(self, job_id: str, *, timeout_s: float | None = None) -> JobView:
        """Wait until the job is terminal and return it; :class:`TimeoutError` after ``timeout_s``. Woken by
        the commit that ends it, on this instance or (Redis, PostgreSQL) another (see
        :meth:`JobService.wait_for_job <podium.engine.jobs.JobService.wait_for_job>`)."""
        return await self.jobs.wait_for_job(job_id, timeout_s=timeout_s)

    async def get_archived_job(self, job_id: str) -> dict[str, Any]:
        """The archived snapshot of a finished job plus its events."""
        return await self.jobs.get_archived_job(job_id)

    async def list_archived_jobs(
        self,
        *,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        after_seq: int = 0,
    ) -> list[dict[str, Any]]:
        """Archived job snapshots filtered by final status and archive time (``since`` <= ts < ``until``)."""
        return await self.jobs.list_archived_jobs(
            status=status, since=since, until=until, limit=limit, after_seq=after_seq
        )

    async def cancel_job(
        self, job_id: str, *, reason: str | None = None, extra_ops: Sequence[Op] = ()
    ) -> JobView:
        """Cancel a job: open tasks are withdrawn (their workers are told), children cancelled too.

        A result that arrives afterwards is recorded and ignored. Cancelling a terminal job raises
        :class:`~podium.engine.errors.JobStateError`.
        """
        return await self.jobs.cancel_job(job_id, reason=reason, extra_ops=extra_ops)

    async def approve(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Approve a job waiting for approval (``decision="approved"``)."""
        return await self.jobs.approve(job_id, data)

    async def reject(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Reject a job waiting for approval (``decision="rejected"``)."""
        return await self.jobs.reject(job_id, data)

    async def resolve_approval(
        self, job_id: str, decision: str, data: Mapping[str, Any] | None = None, *, token: str | None = None
    ) -> JobView:
        """Resume a job waiting for approval with ``decision`` (a key of its transitions); ``data`` is merged
        into ``state_history``. Raises JobStateError if the job is not waiting or the decision is unknown."""
        return await self.jobs.resolve_approval(job_id, decision, data, token=token)

    async def pause_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Pause: a job between steps stops before its next handler; a waiting job pauses when its wait ends."""
        return await self.jobs.pause_job(job_id, extra_ops=extra_ops)

    async def resume_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Resume a paused job (its pending step runs) or withdraw a pause request."""
        return await self.jobs.resume_job(job_id, extra_ops=extra_ops)

    async def retry_job(
        self,
        job_id: str,
        *,
        state: str | None = None,
        allow_finished: bool = False,
        extra_ops: Sequence[Op] = (),
    ) -> JobView:
        """Run a failed, quarantined or cancelled job again from ``state`` (default: where it stopped);
        with ``allow_finished`` a finished job too (a workcell workflow run again from a step)."""
        return await self.jobs.retry_job(
            job_id, state=state, allow_finished=allow_finished, extra_ops=extra_ops
        )

    # --- workers: take / progress / complete ------------------------------------------------------

    async def take_task(
        self, worker_id: str, skills: Sequence[str], *, wait_s: float = 0.0, lease_s: float | None = None
    ) -> Task | None:
        """Lease the next task of one of ``skills`` for ``worker_id``, waiting up to ``wait_s`` (long poll)."""
        return await self.tasks.take_task(worker_id, skills, wait_s=wait_s, lease_s=lease_s)

    async def take_tasks(
        self,
        worker_id: str,
        skills: Sequence[str],
        *,
        limit: int = 1,
        wait_s: float = 0.0,
        lease_s: float | None = None,
        steal: bool = True,
    ) -> list[Task]:
        """Lease up to ``limit`` tasks (see :meth:`take_task`); each is recorded as running before return.
        ``steal=False``: not from loaded workers' queues first (a caller that has just looked there)."""
        return await self.tasks.take_tasks(
            worker_id, skills, limit=limit, wait_s=wait_s, lease_s=lease_s, steal=steal
        )

    async def report_progress(self, task_id: str, progress: float, message: str | None = None) -> bool:
        """Record a running task's progress (0-100) and message on its job. Returns ``False`` when the task
        is no longer open (cancelled, timed out, done): the worker should stop."""
        return await self.tasks.report_progress(task_id, progress, message)

    async def extend_task(
        self, task_id: str, token: int | None, lease_s: float | None = None, *, worker_id: str | None = None
    ) -> bool:
        """Keep a running task from being offered again: push its lease to now + ``lease_s`` (default
        ``TASK_LEASE_S``). Workers call it from their heartbeat for tasks that may outlast the lease.

        ``token`` is the delivery's (``Task.token``); ``None`` with ``worker_id`` fences on the holder the
        task's record names (an instance that did not hand the task out). Returns ``False`` when the lease is
        no longer held (it lapsed, or the task was withdrawn or leased to another worker): the task may run
        elsewhere, and this worker's result counts only if nobody took it meanwhile (see
        :meth:`complete_task`).
        """
        return await self.tasks.extend_task(task_id, token, lease_s, worker_id=worker_id)

    async def release_task(self, task_id: str, token: int) -> bool:
        """Hand a leased task back at once (a nack): it is queued again for any worker, as if its lease had
        expired now. For a worker that took a task it will not run (a long poll whose caller hung up just as
        the task was leased, a worker stopping). Returns ``False`` if ``token`` no longer holds it."""
        return await self.tasks.release_task(task_id, token)

    async def is_task_cancelled(self, task_id: str) -> bool:
        """Whether the task was withdrawn (cancelled or timed out); remote workers ask this on heartbeat."""
        return await self.tasks.is_task_cancelled(task_id)

    async def complete_task(
        self,
        task_id: str,
        status: str = "success",
        data: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | str | None = None,
        *,
        token: int | None = None,
        worker_id: str | None = None,
        extra_ops: Sequence[Op] = (),
        durable: bool = True,
    ) -> str:
        """Submit a task's result. Returns what happened: ``"applied"``, ``"retry"`` (a retryable error, the
        task is queued again), or ``"ignored"`` (duplicate or late: recorded in history, changes nothing).

        ``status`` picks the transition; ``error.code`` drives retries/quarantine (see the docs).
        ``extra_ops`` are the executor's own records of the outcome (the workcell's workflow view, its action
        journal, datapoints): written in the same transaction as whatever the result leads to, also when it
        is ignored. A conflict on one of them raises :class:`~podium.errors.ConflictError` and writes nothing.
        ``durable=False``: the applied result's write need not wait for the disk (the store's ``apply``); the
        caller makes a durable write soon after, which brings it to disk (the workcell's next step's journal).
        """
        return await self.tasks.complete_task(
            task_id,
            status,
            data,
            error,
            token=token,
            worker_id=worker_id,
            extra_ops=extra_ops,
            durable=durable,
        )

    # --- worker registry --------------------------------------------------------------------------

    async def register_worker_record(
        self,
        worker_id: str,
        skills: Sequence[str],
        *,
        capacity: int = 1,
        kind: str = "in_process",
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an executor in the registry (in-process workers call this; the server will for remote ones)."""
        return await self.dispatch.register_worker_record(
            worker_id, skills, capacity=capacity, kind=kind, info=info
        )

    async def heartbeat_worker(
        self,
        worker_id: str,
        *,
        status: str = "online",
        load: int | None = None,
        hot_skills: Sequence[str] | None = None,
    ) -> HeartbeatAnswer:
        """Refresh a worker's ``last_seen`` (and status); a remote worker's ``load`` and ``hot_skills`` feed
        the dispatch strategies (``dispatch_task(dispatch_strategy=..., max_cost=...)``). Returns the commands
        queued for the worker by any instance (``engine.dispatch.command_worker``) and when it registered."""
        return await self.dispatch.heartbeat_worker(
            worker_id, status=status, load=load, hot_skills=hot_skills
        )

    async def score_worker(self, worker_id: str, outcome: str | None) -> float | None:
        """A remote worker's result: it no longer counts against the worker's load, and it is scored
        (``success``, ``failure``: a permanent error, ``contract_violation``; ``None``: not scored) with
        ``Config.REPUTATION_*``, in the store (every instance sees it); its reputation (``None`` for a worker
        never registered). Below ``REPUTATION_MIN_THRESHOLD`` the dispatch strategies pass it over."""
        return await self.dispatch.fleet.score(worker_id, outcome)

    async def worker_state(self, worker_id: str) -> WorkerState | None:
        """A remote worker as the store holds it for every instance: its skills and their contracts, costs,
        capacity, last heartbeat (status, load, hot skills) and reputation; ``None`` if it never registered."""
        return await self.dispatch.fleet.get(worker_id)

    async def list_workers(self) -> list[WorkerView]:
        """Registered executors with their skills, capacity, status and (for local ones) running count."""
        return await self.dispatch.list_workers()

    def add_worker(self, worker: InProcessWorker) -> None:
        """Attach an in-process worker (started with the engine, or now if the engine is running)."""
        self.dispatch.workers[worker.worker_id] = worker
        worker.attach(self)
        if self._started:
            asyncio.get_running_loop().create_task(worker.start())
