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
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import logging
import secrets
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from podium.clock import Clock, SystemClock
from podium.engine.chain import CHAIN_PREFIX, build_chain
from podium.engine.config import Config
from podium.engine.context import ActionFactory, ClientConfig, JobContext
from podium.engine.definition import CORE_PARAMS, HandlerSpec, JobDefinition
from podium.engine.errors import (
    ActionError,
    BlueprintError,
    BlueprintNotFoundError,
    EventValidationError,
    InputValidationError,
    JobNotFoundError,
    JobStateError,
    TaskNotFoundError,
)
from podium.engine.models import (
    OPEN_TASK,
    QUARANTINE_CODES,
    RETRYABLE_CODES,
    TERMINAL_STATUSES,
    EngineEvent,
    JobStatus,
    JobView,
    Task,
    TaskStatus,
    TaskView,
    WorkerView,
    check_transition,
)
from podium.engine.schema import SchemaError, validate_data
from podium.engine.timers import TimerQueue
from podium.engine.workers import InProcessWorker
from podium.errors import ConflictError, LeaseLostError
from podium.ids import new_ulid_str
from podium.log import bind_ids
from podium.store.base import (
    Ack,
    Append,
    Delete,
    Dequeue,
    Enqueue,
    HistoryEntry,
    Lease,
    Op,
    Put,
    Record,
    Store,
)

__all__ = ["STEPS_QUEUE", "OrchestratorEngine", "task_queue"]

log = logging.getLogger("podium.engine")

STEPS_QUEUE = "engine:steps"
RECOVERY_LOCK = "engine:recovery"
JOB, TASK, WORKER = "job", "task", "worker"
Listener = Callable[[EngineEvent], Awaitable[None] | None]

# Plain-string statuses for the hot paths (an enum member's ``.value`` is a descriptor call each time).
_J_PENDING, _J_RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
_T_QUEUED, _T_RUNNING = TaskStatus.QUEUED.value, TaskStatus.RUNNING.value
_T_CANCELLED, _T_TIMED_OUT = TaskStatus.CANCELLED.value, TaskStatus.TIMED_OUT.value
_OPEN_TASK_STR = tuple(s.value for s in OPEN_TASK)
# Status sets of plain strings: a record's status is a str, so these hash and compare without enum calls.
_RUNNABLE = frozenset({_J_PENDING, _J_RUNNING})
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
_OPEN = frozenset(_OPEN_TASK_STR)
_MAX_CONFLICT_RETRIES = 20
_MAX_INLINE = 8  # pure handlers folded into one write, at most (a loop of them still moves step by step)
_NO_CLIENT = ClientConfig("", "unknown", {})


def task_queue(task_type: str) -> str:
    """The store queue that holds tasks of ``task_type``."""
    return f"task:{task_type}"


class _MissingParam(Exception):
    pass


class _Plan:
    """The outcome of a decision: ops to apply, then events to emit and timers to arm after commit."""

    __slots__ = ("cascade", "events", "ops", "timers")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.events: list[EngineEvent] = []
        self.timers: list[tuple[str, float, Any]] = []
        self.cascade: list[str] = []  # child jobs to cancel after commit

    def mark(self) -> tuple[int, int, int, int]:
        """Where the plan stands now, for :meth:`rollback` (a decision tried inside the plan)."""
        return len(self.ops), len(self.events), len(self.timers), len(self.cascade)

    def rollback(self, mark: tuple[int, int, int, int]) -> None:
        """Drop everything added since ``mark``."""
        del self.ops[mark[0] :], self.events[mark[1] :], self.timers[mark[2] :], self.cascade[mark[3] :]


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
        self.blueprints: dict[str, JobDefinition] = {}
        self._factories: list[tuple[str, Callable[[str], JobDefinition]]] = []
        self._made: dict[str, JobDefinition] = {}  # definitions built by a factory (not API blueprints)
        self.register_definition_factory(CHAIN_PREFIX, build_chain)
        self._endpoints: dict[str, str] = {}
        self._jobs: dict[str, Record] = {}  # version-checked cache of job records this instance wrote
        self._tasks: dict[str, Record] = {}
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self._wanted: frozenset[str] | None = frozenset()  # event types someone listens to (None: all)
        self.event_counts: dict[str, int] = {}
        """How many events of each type this instance has emitted (whether or not anyone listens): for
        metrics, at the cost of one dict update per event instead of a subscription to every type."""
        self._job_waiters: dict[str, list[asyncio.Future[Record | None]]] = {}
        self._waiter_tick: asyncio.TimerHandle | None = None  # wakes every waiter to re-read (system clock)
        self._waiter_tick_loop: asyncio.AbstractEventLoop | None = None
        self.timers = TimerQueue(self.clock, self._on_timer)
        self._steps: set[asyncio.Task[None]] = set()
        self._reserved = 0  # executor slots promised to steps being committed or taken
        self._slot_freed = asyncio.Event()
        self._step_wake = asyncio.Event()  # a step this instance does not run at once is in the queue
        self._executor_task: asyncio.Task[None] | None = None
        self._owner_task: asyncio.Task[None] | None = None
        self._lock_token: int | None = None  # fencing token while this instance owns recovery
        self._held: dict[str, Lease] = {}  # step leases of running handlers (kept alive by the heartbeat)
        self._heartbeat_armed = False
        self._next_scan = 0.0
        self._workers: dict[str, InProcessWorker] = {}
        self._local: dict[str, list[InProcessWorker]] = {}  # task queue -> started in-process workers
        self._started = False
        self._stopping = False

    # --- definitions ------------------------------------------------------------------------------

    def register_blueprint(self, blueprint: JobDefinition) -> None:
        """Register a blueprint (validated now; errors name the problem)."""
        self.register_definition(blueprint)

    def register_definition(self, definition: JobDefinition) -> None:
        """Register any job definition (a blueprint, or one built in code)."""
        definition.validate()
        if definition.name in self.blueprints and self.blueprints[definition.name] is not definition:
            raise BlueprintError(f"a definition named {definition.name!r} is already registered")
        self.blueprints[definition.name] = definition
        if definition.api_endpoint:
            self._endpoints[self._endpoint_key(definition.api_endpoint)] = definition.name

    def register_definition_factory(self, prefix: str, factory: Callable[[str], JobDefinition]) -> None:
        """Build definitions on first use: a job whose definition name starts with ``prefix`` runs the one
        ``factory(name)`` returns (built once per name, validated, cached). For definitions generated from
        data (the workcell's compiled workflows): every instance on a store resolves them, also for jobs
        another instance created. They are not API blueprints (not listed, no endpoint)."""
        self._factories.append((prefix, factory))

    def _definition(self, name: str) -> JobDefinition | None:
        d = self.blueprints.get(name) or self._made.get(name)
        if d is None:
            for prefix, factory in self._factories:
                if name.startswith(prefix):
                    d = factory(name)
                    d.validate()
                    self._made[name] = d
                    break
        return d

    @staticmethod
    def _endpoint_key(endpoint: str) -> str:
        return "/" + endpoint.strip("/")

    def get_definition(self, name_or_endpoint: str) -> JobDefinition:
        """The definition registered under a name or an API endpoint (``/jobs/my_flow``)."""
        d = self._definition(name_or_endpoint)
        if d is None:
            name = self._endpoints.get(self._endpoint_key(name_or_endpoint))
            d = self.blueprints.get(name) if name else None
        if d is None:
            raise BlueprintNotFoundError(f"no blueprint named or served at {name_or_endpoint!r}")
        return d

    def load_blueprints(self, directory: str | Path) -> list[str]:
        """Import every ``.py`` file in ``directory`` and register each Blueprint/definition it defines."""
        found: list[str] = []
        for path in sorted(Path(directory).glob("*.py")):
            mod_name = f"podium_blueprints_{path.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise BlueprintError(f"{path}: failed to import: {exc}") from exc
            for value in vars(module).values():
                if isinstance(value, JobDefinition) and value.name not in self.blueprints:
                    self.register_definition(value)
                    found.append(value.name)
        return found

    def blueprint_graph(self, name: str) -> str:
        """The definition's state graph as Mermaid text."""
        return self.get_definition(name).mermaid()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, serve_http: bool | None = None) -> None:
        """Open the store, re-arm timers of open tasks, start the executor and in-process workers; then,
        like Avtomatika's ``start()``, serve the HTTP API (client and worker routes, :mod:`podium.server`)
        on ``API_HOST``:``API_PORT`` unless ``serve_http`` (default: the engine's :attr:`serve_http`) is
        false. The server app starts its engine with ``serve_http=False``. Idempotent."""
        if self._started:
            return
        self._stopping = False
        await self.storage.open()
        if self.config.BLUEPRINTS_DIR:
            self.load_blueprints(self.config.BLUEPRINTS_DIR)
        await self._take_ownership()
        self.timers.start()
        loop = asyncio.get_running_loop()
        self._executor_task = loop.create_task(self._executor_loop(), name="podium-executor")
        self._owner_task = loop.create_task(self._owner_loop(), name="podium-recovery-owner")
        self._started = True
        for worker in list(self._workers.values()):
            await worker.start()
        if self.serve_http if serve_http is None else serve_http:
            from podium.engine._http import serve  # the server is loaded only when asked to serve

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
        self._stopping = True
        for task in (self._executor_task, self._owner_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._executor_task = self._owner_task = None
        grace = self.config.STOP_GRACE_S
        await asyncio.gather(
            *(worker.stop(grace_s=grace) for worker in list(self._workers.values())),
            self._drain_steps(grace),
        )
        await self.timers.stop()
        if self._lock_token is not None:
            with contextlib.suppress(Exception):
                await self.storage.release_lock(RECOVERY_LOCK, self.instance_id, self._lock_token)
            self._lock_token = None
        self._started = False

    async def _drain_steps(self, grace_s: float) -> None:
        """Let running handlers finish for ``grace_s``; cancel the rest, which give their steps back."""
        if self._steps:
            _, pending = await asyncio.wait(set(self._steps), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # --- single-owner background work ---------------------------------------------------------------

    async def _take_ownership(self) -> None:
        """Become (or stay) the owner of recovery through a store lock with a fencing token; a new owner
        scans the store for open tasks at once. Several instances on one store thus scan once, not each."""
        ttl = self.config.RECOVERY_LOCK_TTL_S
        if self._lock_token is not None:
            if await self.storage.refresh_lock(RECOVERY_LOCK, self.instance_id, self._lock_token, ttl_s=ttl):
                return
            self._lock_token = None
            log.warning("lost the engine recovery lock", extra={"instance": self.instance_id})
        token = await self.storage.acquire_lock(RECOVERY_LOCK, self.instance_id, ttl_s=ttl)
        if token is not None:
            self._lock_token = token
            self._next_scan = self.clock.now() + self.config.RECOVERY_SCAN_S
            await self._recover()

    async def _owner_loop(self) -> None:
        """Refresh (or try to take) the recovery lock every third of its TTL; the owner re-scans open tasks
        every ``RECOVERY_SCAN_S`` so tasks of an instance that died get their timeouts armed."""
        while not self._stopping:
            await self.clock.sleep(self.config.RECOVERY_LOCK_TTL_S / 3)
            try:
                await self._take_ownership()
                if self._lock_token is not None and self.clock.now() >= self._next_scan:
                    self._next_scan = self.clock.now() + self.config.RECOVERY_SCAN_S
                    await self._recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine recovery loop failed", extra={"instance": self.instance_id})

    @property
    def is_recovery_owner(self) -> bool:
        """Whether this instance holds the store lock that makes it run recovery."""
        return self._lock_token is not None

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

    async def _recover(self) -> None:
        """Re-arm the timers of tasks left open in the store (after a restart)."""
        after: str | None = None
        while True:
            page = await self.storage.list(TASK, status=_OPEN_TASK_STR, after=after, limit=500)
            for rec in page:
                self._arm_task_timers(rec)
            if len(page) < 500:
                return
            after = page[-1].id

    def _arm_task_timers(self, rec: Record) -> None:
        d = rec.data
        if rec.status == TaskStatus.QUEUED and d.get("dispatch_deadline") is not None:
            self.timers.schedule(f"d:{rec.id}", d["dispatch_deadline"], (rec.id, d["attempt"], None))
        elif rec.status == TaskStatus.RUNNING and d.get("result_deadline") is not None:
            self.timers.schedule(f"r:{rec.id}", d["result_deadline"], (rec.id, d["attempt"], d.get("token")))

    # --- events -----------------------------------------------------------------------------------

    def subscribe(self, listener: Listener, *, types: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``listener(event)`` (sync or async) after every committed engine event, or only those whose
        type is in ``types``; returns an unsubscribe function. Listeners should be quick (queue slow work such
        as webhooks). Events nobody subscribed to are never built."""
        entry = (listener, frozenset(types) if types is not None else None)
        self._listeners.append(entry)
        self._update_wanted()

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(entry)
            self._update_wanted()

        return unsubscribe

    def _update_wanted(self) -> None:
        wanted: set[str] = set()
        for _, types in self._listeners:
            if types is None:
                self._wanted = None
                return
            wanted |= types
        self._wanted = frozenset(wanted)

    def _wants(self, type: str) -> bool:
        """Whether any listener takes events of ``type`` (so that building one is worth it)."""
        wanted = self._wanted
        return wanted is None or type in wanted

    async def _emit(self, events: Sequence[EngineEvent]) -> None:
        for ev in events:
            for listener, types in list(self._listeners):
                if types is not None and ev.type not in types:
                    continue
                try:
                    result = listener(ev)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("engine event listener failed", extra={"job_id": ev.job_id})

    def _ev(self, plan: _Plan, type: str, job_id: str | None, **kw: Any) -> None:
        """Count an event and add it to ``plan`` if anyone listens for its type."""
        counts = self.event_counts
        counts[type] = counts.get(type, 0) + 1
        wanted = self._wanted
        if wanted is None or type in wanted:
            plan.events.append(EngineEvent(type, job_id, self.clock.now(), **kw))

    def _count(self, type: str) -> None:
        counts = self.event_counts
        counts[type] = counts.get(type, 0) + 1

    # --- records ----------------------------------------------------------------------------------

    async def _load_job(self, job_id: str, *, fresh: bool = False) -> Record | None:
        rec = None if fresh else self._jobs.get(job_id)
        if rec is None:
            rec = await self.storage.get(JOB, job_id)
            if rec is not None and rec.status not in _TERMINAL:
                self._jobs[job_id] = rec
        return rec

    async def _load_task(self, task_id: str, *, fresh: bool = False) -> Record | None:
        rec = None if fresh else self._tasks.get(task_id)
        if rec is None:
            rec = await self.storage.get(TASK, task_id)
            if rec is not None and rec.status in _OPEN:
                self._tasks[task_id] = rec
        return rec

    def _forget(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._jobs.pop(i, None)
            self._tasks.pop(i, None)

    def _free_slots(self) -> int:
        return self.config.EXECUTOR_MAX_CONCURRENT_JOBS - len(self._steps) - self._reserved

    async def _commit(self, plan: _Plan, *, durable: bool = True) -> list[Any]:
        """Apply the plan; refresh the caches from the results; arm timers; emit events.

        Two shortcuts keep work off the store's queues without weakening anything: a step this instance
        has a free executor slot for is enqueued already leased to it, and a task an in-process worker of
        this instance has a free slot for is enqueued already leased to that worker (its record says
        ``running`` in the same write). Either starts only after the write has committed; if the process
        dies first, the lease expires and the item is taken from the store as usual.
        """
        ops = plan.ops
        inline = 0
        pushed: list[tuple[int, InProcessWorker]] = []
        wake = False
        if self._started and not self._stopping:
            free = self._free_slots()
            for i, op in enumerate(ops):
                if type(op) is not Enqueue or op.lease_owner is not None:  # ops are final named tuples
                    continue
                if op.queue == STEPS_QUEUE:
                    if inline < free:
                        ops[i] = Enqueue(
                            STEPS_QUEUE, op.id, op.payload, 0, 0.0, self.instance_id, self.config.JOB_LEASE_S
                        )
                        inline += 1
                    else:
                        wake = True
                elif self._local and op.delay_s <= 0:
                    worker = self._push_target(i, op, ops)
                    if worker is not None:
                        pushed.append((i, worker))
        else:
            wake = any(type(op) is Enqueue and op.queue == STEPS_QUEUE for op in ops)
        self._reserved += inline
        try:
            results = await self.storage.apply(*ops, durable=durable)
        except BaseException:
            self._reserved -= inline
            if inline:
                self._slot_freed.set()
            for _, worker in pushed:
                worker.unreserve()
            raise
        jobs, tasks = self._jobs, self._tasks
        for op, res in zip(ops, results, strict=True):
            if type(op) is Put:
                if op.kind == JOB:
                    if res.status in _TERMINAL:
                        jobs.pop(op.id, None)
                        for fut in self._job_waiters.pop(op.id, ()):
                            if not fut.done():
                                fut.set_result(res)
                    else:
                        jobs[op.id] = res
                elif op.kind == TASK:
                    if res.status in _OPEN:
                        tasks[op.id] = res
                    else:
                        tasks.pop(op.id, None)
            elif type(op) is Delete:
                self._forget([op.id])
            elif inline and type(op) is Enqueue and op.lease_owner == self.instance_id:
                self._reserved -= 1
                if isinstance(res, Lease):
                    self._spawn_step(res)
                else:
                    self._slot_freed.set()
        for i, worker in pushed:
            self._deliver_pushed(plan, worker, results[i])
        if wake:
            self._step_wake.set()
        for key, when, payload in plan.timers:
            self.timers.schedule(key, when, payload)
        if plan.events:
            await self._emit(plan.events)
        for child in plan.cascade:
            with contextlib.suppress(JobStateError, JobNotFoundError):
                await self.cancel_job(child, reason="parent job cancelled")
        return results

    def _push_target(self, i: int, op: Enqueue, ops: list[Op]) -> InProcessWorker | None:
        """Lease a new task straight to an in-process worker with a free slot (rewriting ``op`` and the
        task's record in ``ops``), or return None to leave it in the queue for whoever takes it first."""
        workers = self._local.get(op.queue)
        if not workers:
            return None
        worker = next((w for w in workers if w.free_slots() > 0), None)
        if worker is None:
            return None
        task_id = op.payload.get("task_id")
        j = next(
            (k for k, p in enumerate(ops) if isinstance(p, Put) and p.kind == TASK and p.id == task_id), None
        )
        if j is None:
            return None
        put = ops[j]
        assert isinstance(put, Put)
        now = self.clock.now()
        d = dict(put.data)
        d.update(worker_id=worker.worker_id, taken_at=now)
        d.pop("dispatch_deadline", None)
        rt = d.get("result_timeout")
        lease_s = worker.lease_s or self.config.TASK_LEASE_S
        if rt:
            d["result_deadline"] = now + rt
            lease_s = max(lease_s, rt + 1.0)
        ops[j] = Put(TASK, put.id, d, put.expected_version, _T_RUNNING, put.group)
        ops[i] = Enqueue(op.queue, op.id, op.payload, op.priority, 0.0, worker.worker_id, lease_s)
        worker.reserve()
        return worker

    def _deliver_pushed(self, plan: _Plan, worker: InProcessWorker, lease: Any) -> None:
        worker.unreserve()
        if not isinstance(lease, Lease):
            return
        task_id, attempt = lease.payload["task_id"], lease.payload["attempt"]
        rec = self._tasks.get(task_id)
        if rec is None:
            return
        d = rec.data
        self.timers.cancel(f"d:{task_id}")
        plan.timers = [t for t in plan.timers if t[0] != f"d:{task_id}"]
        deadline = d.get("result_deadline")
        if deadline is not None:
            plan.timers.append((f"r:{task_id}", deadline, (task_id, attempt, None)))
        if self._wants("task_taken"):
            self._ev(plan, "task_taken", d["job_id"], task_id=task_id, data={"worker_id": worker.worker_id})
        else:
            self._count("task_taken")
        worker.deliver(
            Task(
                task_id,
                d["job_id"],
                d["task_type"],
                d["params"],
                lease.token,
                attempt,
                lease.priority,
                worker.worker_id,
                deadline,
            ),
            lease,
        )

    # --- jobs: the public API ---------------------------------------------------------------------

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
    ) -> str:
        """Create a job of a blueprint (by name or API endpoint) and return its id.

        ``initial_data`` is validated against the blueprint's ``input_schema``: a mismatch raises
        :class:`~podium.engine.errors.InputValidationError` naming the field, and nothing is written.
        ``extra_ops`` (the caller's own records of the job, see :meth:`complete_task`) join its first write.
        """
        definition = self.get_definition(blueprint)
        data = self._validated_input(definition, initial_data or {})
        job_id = job_id or new_ulid_str()
        plan = _Plan()
        await self._new_job_ops(
            plan,
            definition,
            job_id,
            data,
            webhook_url=webhook_url,
            dispatch_timeout=dispatch_timeout,
            result_timeout=result_timeout,
            client=client,
            parent_job_id=None,
            depth=0,
        )
        plan.ops.extend(extra_ops)
        await self._commit(plan)
        return job_id

    def _validated_input(self, definition: JobDefinition, data: Mapping[str, Any]) -> dict[str, Any]:
        if definition.input_schema is None:
            return dict(data)  # nothing to validate: one copy, the job's own
        try:
            out = validate_data(definition.input_schema, dict(data))
        except SchemaError as exc:
            raise InputValidationError(str(exc).split(": ", 1)[-1], field=exc.field) from None
        return dict(out)

    async def _new_job_ops(
        self,
        plan: _Plan,
        definition: JobDefinition,
        job_id: str,
        initial_data: dict[str, Any],
        *,
        webhook_url: str | None,
        dispatch_timeout: float | None,
        result_timeout: float | None,
        client: ClientConfig | Mapping[str, Any] | None,
        parent_job_id: str | None,
        depth: int,
        inline: bool = True,
    ) -> None:
        """Plan a new job: its record, history and first step; when the start handler is a pure decision, the
        step runs now and the job is written as it stands after it (one write, see :meth:`_inline`)."""
        if isinstance(client, ClientConfig):
            client_dict: dict[str, Any] = client._asdict()
        else:
            client_dict = dict(client or {})
        state = definition.start_state
        assert state is not None
        # Only what is set is stored (readers use .get): every write copies and serialises the record.
        data: dict[str, Any] = {
            "blueprint": definition.name,
            "state": state,
            "step": 1,
            "initial_data": initial_data,
            "state_history": {},
        }
        if client_dict:
            data["client"] = client_dict
        if webhook_url:
            data["webhook_url"] = webhook_url
        if dispatch_timeout:
            data["dispatch_timeout"] = dispatch_timeout
        if result_timeout:
            data["result_timeout"] = result_timeout
        if parent_job_id:
            data["parent_job_id"] = parent_job_id
        if depth:
            data["depth"] = depth
        created = Append(job_id, "job_created", _J_PENDING, {"blueprint": definition.name, "state": state})
        if inline and definition.states[state].pure:
            now = self.clock.now()
            vrec = Record(JOB, job_id, 0, data, _J_PENDING, definition.name, now, now)
            mark = plan.mark()
            if await self._inline(plan, vrec, definition, 0):
                plan.ops.insert(mark[0], created)  # the job's first entry, before its decision's
                self._count("job_created")
                if self._wants("job_created"):
                    ev = EngineEvent("job_created", job_id, now, _J_PENDING, state)
                    plan.events.insert(mark[1], ev)
                return
        plan.ops += [
            Put(JOB, job_id, data, 0, _J_PENDING, definition.name),
            Enqueue(STEPS_QUEUE, f"{job_id}.1", {"job_id": job_id, "step": 1}),
            created,
        ]
        self._ev(plan, "job_created", job_id, status=_J_PENDING, state=state)

    async def get_job(self, job_id: str) -> JobView:
        """The job's current status, state, progress, result and error."""
        rec = await self.storage.get(JOB, job_id)
        if rec is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return self._view(rec)

    def _view(self, rec: Record) -> JobView:
        d = rec.data
        return JobView(
            job_id=rec.id,
            blueprint=d["blueprint"],
            status=rec.status or "",
            state=d["state"],
            initial_data=d["initial_data"],
            state_history=d["state_history"],
            progress=d.get("progress"),
            progress_message=d.get("progress_message"),
            result=d.get("result"),
            error=d.get("error"),
            parent_job_id=d.get("parent_job_id"),
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            finished_at=d.get("finished_at"),
            version=rec.version,
            webhook_url=d.get("webhook_url"),
            waiting=d.get("wait"),
            client=d.get("client"),
        )

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
        recs = await self.storage.list(
            JOB, status=status, group=blueprint, after=after, limit=limit, descending=descending
        )
        return [self._view(r) for r in recs]

    async def count_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        blueprint: str | None = None,
        client: str | None = None,
    ) -> int:
        """How many jobs match; ``client``: only those created for that API client (by name; this reads the
        matching records, where the other filters are one count)."""
        if client is None:
            return await self.storage.count(JOB, status=status, group=blueprint)
        n, after = 0, None
        while True:
            page = await self.storage.list(JOB, status=status, group=blueprint, after=after, limit=500)
            n += sum(1 for r in page if (r.data.get("client") or {}).get("token") == client)
            if len(page) < 500:
                return n
            after = page[-1].id

    async def job_history(self, job_id: str, *, limit: int = 1000) -> list[HistoryEntry]:
        """Every history entry of the job (transitions, tasks, results), oldest first."""
        return await self.storage.history(job_id, limit=limit)

    async def list_tasks(self, job_id: str) -> list[TaskView]:
        """The tasks a job dispatched."""
        recs = await self.storage.list(TASK, group=job_id, limit=10_000)
        return [self._task_view(r) for r in recs]

    async def get_task(self, task_id: str) -> TaskView:
        """One task."""
        rec = await self.storage.get(TASK, task_id)
        if rec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        return self._task_view(rec)

    @staticmethod
    def _task_view(rec: Record) -> TaskView:
        d = rec.data
        return TaskView(
            rec.id,
            d["job_id"],
            d["task_type"],
            rec.status or "",
            d["attempt"],
            d.get("worker_id"),
            d["params"],
            d.get("result"),
            rec.created_at,
            rec.updated_at,
        )

    async def wait_for_job(self, job_id: str, *, timeout_s: float | None = None) -> JobView:
        """Wait until the job is terminal and return it; :class:`TimeoutError` after ``timeout_s``.

        Woken by this instance's own commit of the terminal state; a job another instance moves is seen
        by re-reading the store every ``EXECUTOR_POLL_WAIT_S``. A job this instance is running (its record
        is in the cache) is not read first: nothing but that commit can end it sooner than the next re-read.
        On the system clock one engine-wide timer wakes all waiters without a deadline for that re-read
        (no timer of its own per waiter: a batch of jobs waited on at once is common).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Record | None] = loop.create_future()
        self._job_waiters.setdefault(job_id, []).append(fut)
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        read = job_id not in self._jobs
        on_loop_timer = type(self.clock) is SystemClock
        try:
            while True:
                if read:
                    view = await self.get_job(job_id)
                    if view.status in _TERMINAL:
                        return view
                wait = self.config.EXECUTOR_POLL_WAIT_S
                if deadline is not None:
                    left = deadline - self.clock.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"job {job_id} did not end within {timeout_s} s")
                    wait = min(wait, left)
                rec: Record | None
                if on_loop_timer and deadline is None:
                    self._arm_waiter_tick(loop)
                    rec = await fut
                elif on_loop_timer:
                    # The loop's own timer resolves the future with None (what asyncio.wait_for arms,
                    # without its extra future and callbacks per wait).
                    handle = loop.call_later(wait, _time_up, fut)
                    try:
                        rec = await fut
                    finally:
                        handle.cancel()
                else:
                    try:
                        rec = await self.clock.wait_for(fut, wait)
                    except TimeoutError:
                        rec = None  # wait_for cancelled the future
                if rec is None:
                    # Timed out: a fresh future takes this one's place before the store is read again.
                    read = True
                    mine = self._job_waiters.setdefault(job_id, [])
                    if fut in mine:
                        mine.remove(fut)
                    fut = loop.create_future()
                    mine.append(fut)
                    continue
                return self._view(rec)  # the terminal record this instance just committed
        finally:
            waiters = self._job_waiters.get(job_id)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._job_waiters[job_id]

    def _arm_waiter_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._waiter_tick is None or self._waiter_tick_loop is not loop:
            self._waiter_tick_loop = loop
            self._waiter_tick = loop.call_later(self.config.EXECUTOR_POLL_WAIT_S, self._wake_waiters)

    def _wake_waiters(self) -> None:
        """The poll interval is over: wake every job waiter with None (each re-reads the store)."""
        self._waiter_tick = None
        for futs in self._job_waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)

    async def get_archived_job(self, job_id: str) -> dict[str, Any]:
        """The archived snapshot of a finished job plus its events."""
        entries = await self.storage.history(job_id, event="job_archived")
        if not entries:
            raise JobNotFoundError(f"job {job_id!r} is not archived (not finished yet, or unknown)")
        snapshot = dict(entries[-1].data)
        snapshot["events"] = [
            {"seq": e.seq, "event": e.event, "status": e.status, "ts": e.ts, "data": e.data}
            for e in await self.storage.history(job_id)
        ]
        return snapshot

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
        entries = await self.storage.history(
            event="job_archived", status=status, since=since, until=until, limit=limit, after_seq=after_seq
        )
        return [{**e.data, "archived_at": e.ts, "seq": e.seq} for e in entries]

    # --- job operations ---------------------------------------------------------------------------

    async def _mutate_job(
        self, job_id: str, decide: Callable[[Record, _Plan], None], extra_ops: Sequence[Op] = ()
    ) -> Record:
        """Read-decide-apply with the job's version as guard, retried on conflict. ``extra_ops`` (a caller's
        own records, see :meth:`complete_task`) join the write when the decision writes anything."""
        for _ in range(_MAX_CONFLICT_RETRIES):
            rec = await self._load_job(job_id)
            if rec is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            plan = _Plan()
            decide(rec, plan)
            if not plan.ops:
                if extra_ops:
                    await self.storage.apply(*extra_ops)
                return rec
            plan.ops.extend(extra_ops)
            try:
                results = await self._commit(plan)
            except ConflictError as exc:
                if exc.kind != JOB or exc.id != job_id:
                    raise
                self._jobs.pop(job_id, None)
                continue
            for op, res in zip(plan.ops, results, strict=True):
                if isinstance(op, Put) and op.kind == JOB and op.id == job_id:
                    assert isinstance(res, Record)
                    return res
            return rec
        raise ConflictError(JOB, job_id, None, None)

    async def cancel_job(
        self, job_id: str, *, reason: str | None = None, extra_ops: Sequence[Op] = ()
    ) -> JobView:
        """Cancel a job: open tasks are withdrawn (their workers are told), children cancelled too.

        A result that arrives afterwards is recorded and ignored. Cancelling a terminal job raises
        :class:`~podium.engine.errors.JobStateError`.
        """
        open_tasks = {r.id: r for r in await self.storage.list(TASK, group=job_id, status=_OPEN_TASK_STR)}

        def decide(rec: Record, plan: _Plan) -> None:
            if rec.status in _TERMINAL:
                raise JobStateError(f"job {job_id} is already {rec.status}")
            data = dict(rec.data)
            data["error"] = {"code": "CANCELLED", "message": reason or "cancelled"}
            wait = data.get("wait") or {}
            if wait.get("kind") == "child":
                plan.cascade.append(wait["child_job_id"])
            self._cancel_tasks_ops(plan, job_id, open_tasks.values())
            self._terminal_ops(plan, rec, data, JobStatus.CANCELLED)
            plan.ops.append(Dequeue(STEPS_QUEUE, f"{job_id}.{data['step']}"))

        for _ in range(_MAX_CONFLICT_RETRIES):
            try:
                rec = await self._mutate_job(job_id, decide, extra_ops)
                return self._view(rec)
            except ConflictError as exc:
                if exc.kind == TASK:
                    self._forget(open_tasks)
                    open_tasks = {
                        r.id: r for r in await self.storage.list(TASK, group=job_id, status=_OPEN_TASK_STR)
                    }
                    continue
                raise
        raise ConflictError(JOB, job_id, None, None)

    def _cancel_tasks_ops(self, plan: _Plan, job_id: str, tasks: Iterable[Record]) -> None:
        now = self.clock.now()
        for t in tasks:
            td = dict(t.data)
            td["finished_at"] = now
            plan.ops.append(Put(TASK, t.id, td, t.version, _T_CANCELLED, job_id))
            plan.ops.append(Dequeue(td["queue"], f"{t.id}:{td['attempt']}"))
            self._ev(
                plan,
                "task_cancelled",
                job_id,
                task_id=t.id,
                data={"worker_id": td.get("worker_id"), "attempt": td["attempt"]},
            )
            self.timers.cancel(f"d:{t.id}")
            self.timers.cancel(f"r:{t.id}")

    async def approve(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Approve a job waiting for approval (``decision="approved"``)."""
        return await self.resolve_approval(job_id, "approved", data)

    async def reject(self, job_id: str, data: Mapping[str, Any] | None = None) -> JobView:
        """Reject a job waiting for approval (``decision="rejected"``)."""
        return await self.resolve_approval(job_id, "rejected", data)

    async def resolve_approval(
        self, job_id: str, decision: str, data: Mapping[str, Any] | None = None, *, token: str | None = None
    ) -> JobView:
        """Resume a job waiting for approval with ``decision`` (a key of its transitions); ``data`` is merged
        into ``state_history``. Raises JobStateError if the job is not waiting or the decision is unknown."""

        def decide(rec: Record, plan: _Plan) -> None:
            wait = rec.data.get("wait") or {}
            if rec.status != JobStatus.WAITING_FOR_APPROVAL or wait.get("kind") != "approval":
                raise JobStateError(f"job {job_id} is {rec.status}, not waiting for approval")
            expected = wait.get("token")
            if token is not None and (
                not isinstance(expected, str) or not secrets.compare_digest(str(token), expected)
            ):
                raise JobStateError(f"job {job_id}: wrong approval token")
            target = wait["transitions"].get(decision)
            if target is None:
                raise JobStateError(
                    f"job {job_id}: decision {decision!r} is not one of {sorted(wait['transitions'])}"
                )
            new = dict(rec.data)
            sh = dict(new["state_history"])
            sh.update(dict(data or {}))
            sh["approval"] = {"decision": decision, "data": dict(data or {})}
            new["state_history"] = sh
            self._goto_ops(plan, rec, new, target, event="approval", extra={"decision": decision})

        rec = await self._mutate_job(job_id, decide)
        return self._view(rec)

    async def pause_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Pause: a job between steps stops before its next handler; a waiting job pauses when its wait ends."""

        def decide(rec: Record, plan: _Plan) -> None:
            if rec.status in _TERMINAL:
                raise JobStateError(f"job {job_id} is already {rec.status}")
            new = dict(rec.data)
            if rec.status in _RUNNABLE:
                new["paused_from"] = rec.status
                plan.ops.append(Dequeue(STEPS_QUEUE, f"{job_id}.{new['step']}"))
                self._put_job(plan, rec, new, JobStatus.PAUSED, "job_paused")
            elif rec.status != JobStatus.PAUSED:
                new["pause_requested"] = True
                plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
                plan.ops.append(Append(job_id, "pause_requested", rec.status, {}))

        return self._view(await self._mutate_job(job_id, decide, extra_ops))

    async def resume_job(self, job_id: str, *, extra_ops: Sequence[Op] = ()) -> JobView:
        """Resume a paused job (its pending step runs) or withdraw a pause request."""

        def decide(rec: Record, plan: _Plan) -> None:
            new = dict(rec.data)
            if rec.status == JobStatus.PAUSED:
                new.pop("paused_from", None)
                new["pause_requested"] = False
                plan.ops.append(
                    Enqueue(STEPS_QUEUE, f"{job_id}.{new['step']}", {"job_id": job_id, "step": new["step"]})
                )
                self._put_job(plan, rec, new, JobStatus.RUNNING, "job_resumed")
            elif new.get("pause_requested"):
                new["pause_requested"] = False
                plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
            else:
                raise JobStateError(f"job {job_id} is {rec.status}, not paused")

        return self._view(await self._mutate_job(job_id, decide, extra_ops))

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
        allowed = {JobStatus.FAILED, JobStatus.QUARANTINED, JobStatus.CANCELLED}
        if allow_finished:
            allowed.add(JobStatus.FINISHED)

        def decide(rec: Record, plan: _Plan) -> None:
            if rec.status not in allowed:
                raise JobStateError(
                    f"job {job_id} is {rec.status}; only {'/'.join(sorted(allowed))} jobs retry"
                )
            definition = self.get_definition(rec.data["blueprint"])
            target = state or rec.data["state"]
            if target not in definition.states:
                raise JobStateError(f"job {job_id}: {target!r} is not a state of {definition.name}")
            new = dict(rec.data)
            new.update(error=None, result=None, finished_at=None, wait=None, aggregate=False)
            self._goto_ops(plan, rec, new, target, event="job_retried")

        return self._view(await self._mutate_job(job_id, decide, extra_ops))

    # --- plan helpers -----------------------------------------------------------------------------

    def _put_job(
        self,
        plan: _Plan,
        rec: Record,
        data: dict[str, Any],
        status: JobStatus,
        event: str,
        extra: dict[str, Any] | None = None,
        event_extra: dict[str, Any] | None = None,
    ) -> None:
        sv = str(status)  # a plain string (a StrEnum member's str() is its value)
        check_transition(rec.status or _J_PENDING, sv)
        state = data["state"]
        plan.ops.append(Put(JOB, rec.id, data, rec.version, sv, data["blueprint"]))
        info = {"state": state, **extra} if extra else {"state": state}
        plan.ops.append(Append(rec.id, event, sv, info))
        counts = self.event_counts
        counts[event] = counts.get(event, 0) + 1
        if self._wants(event):
            ev_data = {**info, **event_extra} if event_extra else info
            plan.events.append(EngineEvent(event, rec.id, self.clock.now(), sv, state, None, ev_data))

    def _goto_ops(
        self,
        plan: _Plan,
        rec: Record,
        data: dict[str, Any],
        target: str,
        *,
        event: str = "transition",
        extra: dict[str, Any] | None = None,
        aggregate: bool = False,
    ) -> None:
        """Move to ``target`` and enqueue its step (or park the job if a pause was requested)."""
        step = int(data["step"]) + 1
        info = {"from": data["state"], **(extra or {})}
        data["state"], data["step"] = target, step
        data.pop("wait", None)
        if aggregate:
            data["aggregate"] = True
        else:
            data.pop("aggregate", None)
        if data.get("pause_requested"):
            data["pause_requested"] = False
            self._put_job(plan, rec, data, JobStatus.PAUSED, "job_paused", info)
            return
        plan.ops.append(Enqueue(STEPS_QUEUE, f"{rec.id}.{step}", {"job_id": rec.id, "step": step}))
        self._put_job(plan, rec, data, JobStatus.RUNNING, event, info)

    def _terminal_ops(
        self, plan: _Plan, rec: Record, data: dict[str, Any], status: JobStatus, parent: Record | None = None
    ) -> None:
        """Finish the job as ``status``: record it, archive a snapshot, and resume a waiting parent."""
        now = self.clock.now()
        data["finished_at"] = now
        data.pop("wait", None)
        # The event (not the history entry) also carries what a webhook needs, so no listener reads the job.
        event_extra = {"result": data.get("result")}
        if data.get("webhook_url"):
            event_extra["webhook_url"] = data["webhook_url"]
        self._put_job(plan, rec, data, status, f"job_{status}", {"error": data.get("error")}, event_extra)
        snapshot = {
            "job_id": rec.id,
            "blueprint": data["blueprint"],
            "status": str(status),
            "state": data["state"],
            "initial_data": data["initial_data"],
            "state_history": data["state_history"],
            "result": data.get("result"),
            "error": data.get("error"),
            "parent_job_id": data.get("parent_job_id"),
            "created_at": rec.created_at,
            "finished_at": now,
        }
        plan.ops.append(Append(rec.id, "job_archived", str(status), snapshot))
        if parent is not None:
            self._resume_parent_ops(plan, parent, rec.id, status, data)

    def _resume_parent_ops(
        self, plan: _Plan, parent: Record, child_id: str, status: JobStatus, child: dict[str, Any]
    ) -> None:
        wait = parent.data.get("wait") or {}
        if parent.status != JobStatus.WAITING_FOR_CHILDREN or wait.get("child_job_id") != child_id:
            return
        outcome = "success" if status == JobStatus.FINISHED else "failure"
        transitions = wait["transitions"]
        target = transitions.get(str(status)) or transitions.get(outcome)
        new = dict(parent.data)
        sh = dict(new["state_history"])
        result = child.get("result")
        if outcome == "success":
            if isinstance(result, dict):
                sh.update(result)
            elif result is not None:
                sh[f"{wait['blueprint_name']}_result"] = result
        sh[f"sub_job_{child_id}_result"] = {
            "outcome": outcome,
            "status": str(status),
            "final_state": child["state"],
            "result": result,
            "error": child.get("error"),
        }
        new["state_history"] = sh
        if target is None:
            new["error"] = {
                "code": "CHILD_JOB_FAILED" if outcome == "failure" else "UNHANDLED_STATUS",
                "message": f"child job {child_id} ended {status} and transitions have no {outcome!r}",
            }
            self._terminal_ops(plan, parent, new, JobStatus.FAILED)
            return
        self._goto_ops(plan, parent, new, target, extra={"child_job_id": child_id, "outcome": outcome})

    async def _parent_of(self, data: Mapping[str, Any]) -> Record | None:
        pid = data.get("parent_job_id")
        return await self._load_job(pid) if pid else None

    # --- the executor -----------------------------------------------------------------------------

    async def _executor_loop(self) -> None:
        """Take steps nobody runs yet: those enqueued while every slot was busy, those of another instance
        that died (their leases expired), those given back. Wakes when this instance enqueues or gives back
        a step, at the next lease expiry, or every ``EXECUTOR_POLL_WAIT_S`` (other instances' steps)."""
        while not self._stopping:
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._step_wake.clear()
            self._reserved += free  # so that steps committed meanwhile do not also claim these slots
            try:
                try:
                    leases = await self.storage.take_now(
                        [STEPS_QUEUE], owner=self.instance_id, lease_s=self.config.JOB_LEASE_S, limit=free
                    )
                finally:
                    self._reserved -= free
                if not leases:
                    wait = self.config.EXECUTOR_POLL_WAIT_S
                    due = await self.storage.next_due([STEPS_QUEUE])
                    if due is not None:
                        wait = min(wait, max(0.0, due - self.clock.now()))
                    with contextlib.suppress(TimeoutError):
                        await self.clock.wait_for(self._step_wake.wait(), wait)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("taking job steps failed")
                await self.clock.sleep(0.5)
                continue
            for lease in leases:
                self._spawn_step(lease)

    def _spawn_step(self, lease: Lease) -> None:
        task = asyncio.get_running_loop().create_task(self._run_step(lease))
        self._steps.add(task)
        task.add_done_callback(self._step_done)

    def _step_done(self, task: asyncio.Task[None]) -> None:
        self._steps.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job step crashed", exc_info=task.exception())

    async def _release(self, lease: Lease) -> None:
        with contextlib.suppress(LeaseLostError):
            await self.storage.apply(Ack(lease))

    async def _run_step(self, lease: Lease) -> None:
        """Run one step holding ``lease``; a heartbeat extends the lease while the handler runs, and a
        step cancelled by ``stop()`` gives its lease back so another instance runs it at once."""
        self._held[lease.id] = lease
        if not self._heartbeat_armed:
            self._heartbeat_armed = True
            self.timers.schedule("hb", self.clock.now() + self.config.JOB_LEASE_S / 3)
        try:
            await self._run_step_body(lease)
        except asyncio.CancelledError:
            held = self._held.get(lease.id, lease)
            with contextlib.suppress(Exception):
                await self.storage.nack(held)
            raise
        finally:
            self._held.pop(lease.id, None)

    async def _heartbeat(self) -> None:
        """Extend the step leases of handlers that have used a third of ``JOB_LEASE_S``."""
        lease_s = self.config.JOB_LEASE_S
        now = self.clock.now()
        for lease_id, lease in list(self._held.items()):
            if lease.expires_at - now < lease_s * 2 / 3:
                try:
                    fresh = await self.storage.extend(lease, lease_s)
                except LeaseLostError:
                    log.warning("job step lease lost while its handler ran", extra={"job_id": lease_id})
                    continue
                if lease_id in self._held:
                    self._held[lease_id] = fresh
        if self._held and not self._stopping:
            self.timers.schedule("hb", self.clock.now() + lease_s / 3)
        else:
            self._heartbeat_armed = False

    async def _run_step_body(self, lease: Lease) -> None:
        job_id, step = lease.payload["job_id"], lease.payload["step"]
        rec = await self._load_job(job_id)
        if rec is not None and rec.data["step"] != step:
            rec = await self._load_job(job_id, fresh=True)
        if rec is None or rec.data["step"] != step or rec.status not in _RUNNABLE:
            await self._release(lease)  # a stale step (the job moved on, or was cancelled)
            return
        d = rec.data
        definition = self._definition(d["blueprint"])
        error: dict[str, Any] | None = None
        state = d["state"]
        if definition is None:
            actions, ctx = ActionFactory(job_id), None
            error = {
                "code": "BLUEPRINT_NOT_FOUND",
                "message": f"blueprint {d['blueprint']!r} is not registered",
            }
        else:
            actions, ctx = self._context(job_id, d, definition)
            if step > self.config.MAX_TRANSITIONS_PER_JOB:
                error = {
                    "code": "MAX_TRANSITIONS",
                    "message": f"more than {self.config.MAX_TRANSITIONS_PER_JOB} transitions: a loop in the blueprint?",
                }
            else:
                handler = definition.find_handler(state, ctx, aggregate=bool(d.get("aggregate")))
                if handler is None:
                    error = {
                        "code": "NO_HANDLER",
                        "message": f"no handler of {definition.name!r} fits state {state!r} (no condition matched)",
                    }
                else:
                    try:
                        with bind_ids(job_id=ctx.job_id):  # the handler's own log lines name the job
                            result = handler.fn(**self._inject(handler, ctx))
                            if inspect.isawaitable(result):
                                await result
                    except _MissingParam as exc:
                        error = {
                            "code": "MISSING_PARAMETER",
                            "message": f"state {state!r}: handler parameter {exc.args[0]!r} is not in "
                            f"state_history or initial_data and has no default",
                        }
                    except ActionError as exc:
                        error = {"code": "ACTION_ERROR", "message": str(exc)}
                    except Exception as exc:
                        error = {
                            "code": "HANDLER_ERROR",
                            "message": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc(limit=8),
                        }
        agg: dict[str, Any]
        if ctx is None:
            sh, initial, agg = dict(d["state_history"]), dict(d["initial_data"]), {}
        else:
            sh, initial, agg = ctx.state_history, ctx.initial_data, ctx.aggregation_results or {}
        if actions.context_updates:
            initial.update(actions.context_updates)
        await self._commit_step(lease, job_id, step, definition, state, sh, initial, agg, actions, error)

    def _context(
        self, job_id: str, d: Mapping[str, Any], definition: JobDefinition
    ) -> tuple[ActionFactory, JobContext]:
        """The actions and the context a handler of the job's current state sees (copies of its data)."""
        actions = ActionFactory(job_id, d.get("dispatch_timeout"), d.get("result_timeout"))
        client = d.get("client")
        agg = d.get("aggregation_results")
        ctx = JobContext(
            job_id=job_id,
            current_state=d["state"],
            initial_data=dict(d["initial_data"]),
            state_history=dict(d["state_history"]),
            client=ClientConfig(
                client.get("token", ""), client.get("plan", "unknown"), client.get("params", {})
            )
            if client
            else _NO_CLIENT,
            actions=actions,
            data_stores=SimpleNamespace(**definition.data_stores) if definition.data_stores else None,
            aggregation_results=dict(agg) if agg else {},
            webhook_url=d.get("webhook_url"),
        )
        return actions, ctx

    async def _inline(
        self, plan: _Plan, rec: Record, definition: JobDefinition, depth: int, *, throwaway: bool = False
    ) -> bool:
        """Run the handler of ``rec``'s state now, inside ``plan``'s write, when it is a pure decision
        (:mod:`podium.engine._purity`); True if its decision was added to ``plan``. ``rec`` may be a record
        not written yet (a job being created, a job being moved by this same write): a pure handler has no
        effect outside the job, so running it before that write (or again after a crash) changes nothing,
        and the write holds the transition and the decision together. Anything unusual (an exception, an
        event that fails validation, an invalid action) returns False: the ordinary step runs it again and
        records what happens. ``throwaway``: ``rec.data`` is the caller's scratch copy, the decision may
        write into it (the caller falls back on its own data if this returns False)."""
        d = rec.data
        if (
            depth >= _MAX_INLINE
            or not self._started
            or self._stopping
            or d["step"] > self.config.MAX_TRANSITIONS_PER_JOB
        ):
            return False
        # Both callers checked that the state is pure (every handler of it); the one found is checked again.
        actions, ctx = self._context(rec.id, d, definition)
        try:
            handler = definition.find_handler(d["state"], ctx, aggregate=bool(d.get("aggregate")))
            if handler is None or not handler.pure:
                return False
            result = handler.fn(**self._inject(handler, ctx))
            if inspect.isawaitable(result):
                await result
        except Exception:
            return False
        if actions.context_updates:
            ctx.initial_data.update(actions.context_updates)
        new = d if throwaway else dict(d)
        new["state_history"], new["initial_data"] = ctx.state_history, ctx.initial_data
        if ctx.aggregation_results or "aggregation_results" in new:
            new["aggregation_results"] = ctx.aggregation_results
        mark = plan.mark()
        try:
            if self._check_events(plan, definition, rec.id, new["state"], actions) is not None:
                plan.rollback(mark)
                return False
            await self._plan_action(plan, rec, new, definition, actions, depth + 1)
        except (_Fail, ValueError):
            plan.rollback(mark)
            return False
        return True

    async def _advance(
        self,
        plan: _Plan,
        rec: Record,
        data: dict[str, Any],
        target: str,
        *,
        event: str = "transition",
        extra: dict[str, Any] | None = None,
        depth: int = 0,
    ) -> None:
        """:meth:`_goto_ops`, except that a pure handler of ``target`` runs at once and its decision joins this
        write (one write instead of two; see :meth:`_inline`)."""
        definition = self._definition(data["blueprint"])
        if definition is not None and not data.get("pause_requested") and depth < _MAX_INLINE:
            spec = definition.states.get(target)
            if spec is not None and spec.pure:
                virtual = dict(data)
                virtual["state"], virtual["step"] = target, int(data["step"]) + 1
                virtual.pop("wait", None)
                virtual.pop("aggregate", None)
                check_transition(rec.status or _J_PENDING, _J_RUNNING)
                vrec = Record(JOB, rec.id, rec.version, virtual, _J_RUNNING, rec.group, rec.created_at)
                mark = plan.mark()
                if await self._inline(plan, vrec, definition, depth, throwaway=True):
                    info = (
                        {"state": target, "from": data["state"], **extra}
                        if extra
                        else {
                            "state": target,
                            "from": data["state"],
                        }
                    )
                    # The transition's entry goes before those of the decision taken in its new state.
                    plan.ops.insert(mark[0], Append(rec.id, event, _J_RUNNING, info))
                    self._count(event)
                    if self._wants(event):
                        ev = EngineEvent(event, rec.id, self.clock.now(), _J_RUNNING, target, None, info)
                        plan.events.insert(mark[1], ev)
                    return
        self._goto_ops(plan, rec, data, target, event=event, extra=extra)

    @staticmethod
    def _inject(handler: HandlerSpec, ctx: JobContext) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, default in handler.params:
            if name in CORE_PARAMS:
                kwargs[name] = ctx if name == "context" else getattr(ctx, name)
            elif name in ctx.state_history:
                kwargs[name] = ctx.state_history[name]
            elif name in ctx.initial_data:
                kwargs[name] = ctx.initial_data[name]
            elif default is inspect.Parameter.empty:
                raise _MissingParam(name)
        return kwargs

    async def _commit_step(
        self,
        lease: Lease,
        job_id: str,
        step: int,
        definition: JobDefinition | None,
        state: str,
        sh: dict[str, Any],
        initial: dict[str, Any],
        agg: dict[str, Any],
        actions: ActionFactory,
        error: dict[str, Any] | None,
    ) -> None:
        for _ in range(_MAX_CONFLICT_RETRIES):
            rec = await self._load_job(job_id)
            if rec is None or rec.data["step"] != step or rec.status not in _RUNNABLE:
                await self._release(lease)
                return
            plan = _Plan()
            plan.ops.append(Ack(lease))
            new = dict(rec.data)
            new["state_history"], new["initial_data"] = sh, initial
            if agg or "aggregation_results" in new:
                new["aggregation_results"] = agg
            try:
                if error is None and definition is not None:
                    error = self._check_events(plan, definition, job_id, state, actions)
                if error is not None or definition is None:
                    new["error"] = error
                    self._terminal_ops(plan, rec, new, JobStatus.FAILED, await self._parent_of(new))
                else:
                    await self._plan_action(plan, rec, new, definition, actions)
            except _Fail as exc:
                plan = _Plan()
                plan.ops.append(Ack(lease))
                new["error"] = exc.error
                self._terminal_ops(plan, rec, new, JobStatus.FAILED, await self._parent_of(new))
            try:
                await self._commit(plan)
                return
            except LeaseLostError:
                log.warning("job step lease lost; another runner owns it", extra={"job_id": job_id})
                return
            except ConflictError as exc:
                self._forget([exc.id])
                if exc.kind == JOB and exc.id == job_id:
                    fresh = await self._load_job(job_id, fresh=True)
                    if fresh is None or fresh.data["step"] != step or fresh.status not in _RUNNABLE:
                        await self._release(lease)
                        return
                continue
        log.error("job step kept conflicting; giving it back", extra={"job_id": job_id})
        with contextlib.suppress(LeaseLostError):
            await self.storage.nack(lease)
        self._step_wake.set()

    def _check_events(
        self, plan: _Plan, definition: JobDefinition, job_id: str, state: str, actions: ActionFactory
    ) -> dict[str, Any] | None:
        for name, payload in actions.events:
            if name in definition.events_schema:
                try:
                    payload = validate_data(definition.events_schema[name], payload)
                except SchemaError as exc:
                    err = EventValidationError(f"event {name!r}: {exc}")
                    return {"code": "EVENT_VALIDATION_ERROR", "message": str(err), "field": exc.field}
            elif self.config.STRICT_EVENT_VALIDATION:
                return {
                    "code": "EVENT_VALIDATION_ERROR",
                    "message": f"event {name!r} is not declared; declare it with bp.event({name!r}, schema)",
                }
            plan.ops.append(
                Append(job_id, "blueprint_event", None, {"name": name, "payload": payload, "state": state})
            )
            self._ev(plan, "blueprint_event", job_id, state=state, data={"name": name, "payload": payload})
        return None

    async def _plan_action(
        self,
        plan: _Plan,
        rec: Record,
        new: dict[str, Any],
        definition: JobDefinition,
        actions: ActionFactory,
        depth: int = 0,
    ) -> None:
        job_id, state = rec.id, new["state"]
        action = actions.action
        if action is None:
            spec = definition.states.get(state)
            if spec is not None and spec.is_end:
                sh = new["state_history"]
                if state in sh:
                    new["result"] = sh[state]
                elif sh:
                    new["result"] = sh[next(reversed(sh))]
                self._terminal_ops(plan, rec, new, JobStatus.FINISHED, await self._parent_of(new))
                return
            raise _Fail(
                "NO_ACTION", f"the handler of state {state!r} chose no next step and it is not an end state"
            )
        kind, spec_ = action
        if kind == "go_to":
            target = spec_["state"]
            if target not in definition.states:
                raise _Fail("UNKNOWN_STATE", f"go_to({target!r}): {definition.name} has no such state")
            await self._advance(plan, rec, new, target, depth=depth)
        elif kind == "dispatch_task":
            for target in spec_["transitions"].values():
                if target not in definition.states:
                    raise _Fail("UNKNOWN_STATE", f"dispatch_task transitions lead to {target!r}, not a state")
            task_id = self._task_ops(plan, job_id, state, spec_)
            new["wait"] = {
                "kind": "task",
                "tasks": [task_id],
                "pending": [task_id],
                "transitions": spec_["transitions"],
            }
            new.pop("progress", None)
            new.pop("progress_message", None)
            self._put_job(
                plan,
                rec,
                new,
                JobStatus.WAITING_FOR_WORKER,
                "job_waiting",
                {"task_id": task_id, "task_type": spec_["task_type"]},
            )
        elif kind == "dispatch_parallel":
            target = spec_["aggregate_into"]
            if target not in definition.states:
                raise _Fail("UNKNOWN_STATE", f"dispatch_parallel aggregate_into {target!r} is not a state")
            ids = [self._task_ops(plan, job_id, state, t, parallel=True) for t in spec_["tasks"]]
            new["wait"] = {"kind": "parallel", "tasks": ids, "pending": list(ids), "aggregate_into": target}
            new["aggregation_results"] = {}
            self._put_job(
                plan,
                rec,
                new,
                JobStatus.WAITING_FOR_WORKER,
                "job_waiting",
                {"task_ids": ids, "aggregate_into": target},
            )
        elif kind == "await_human_approval":
            for target in spec_["transitions"].values():
                if target not in definition.states:
                    raise _Fail(
                        "UNKNOWN_STATE", f"await_human_approval transitions lead to {target!r}, not a state"
                    )
            new["wait"] = {"kind": "approval", "token": secrets.token_urlsafe(24), **spec_}
            self._put_job(
                plan,
                rec,
                new,
                JobStatus.WAITING_FOR_APPROVAL,
                "job_waiting",
                {"integration": spec_["integration"], "message": spec_["message"]},
            )
        elif kind == "run_blueprint":
            try:
                child_def = self.get_definition(spec_["blueprint_name"])
            except BlueprintNotFoundError as exc:
                raise _Fail("BLUEPRINT_NOT_FOUND", str(exc)) from None
            depth = int(new.get("depth", 0)) + 1
            if depth > self.config.MAX_HOLARCHY_DEPTH:
                raise _Fail("MAX_DEPTH", f"child job depth {depth} exceeds MAX_HOLARCHY_DEPTH")
            try:
                child_data = self._validated_input(child_def, spec_["initial_data"])
            except InputValidationError as exc:
                raise _Fail("INVALID_INPUT_ERROR", f"child blueprint {child_def.name!r}: {exc}") from None
            child_id = new_ulid_str()
            await self._new_job_ops(
                plan,
                child_def,
                child_id,
                child_data,
                webhook_url=None,
                dispatch_timeout=spec_.get("dispatch_timeout") or new.get("dispatch_timeout"),
                result_timeout=spec_.get("result_timeout") or new.get("result_timeout"),
                client=new.get("client"),
                parent_job_id=job_id,
                depth=depth,
                inline=False,  # the parent starts waiting for the child in this write: let it start after
            )
            new["wait"] = {
                "kind": "child",
                "child_job_id": child_id,
                "blueprint_name": child_def.name,
                "transitions": spec_["transitions"],
            }
            self._put_job(
                plan, rec, new, JobStatus.WAITING_FOR_CHILDREN, "job_waiting", {"child_job_id": child_id}
            )

    def _task_ops(
        self, plan: _Plan, job_id: str, state: str, spec: dict[str, Any], *, parallel: bool = False
    ) -> str:
        task_id = new_ulid_str()
        now = self.clock.now()
        queue = task_queue(spec["task_type"])
        dt = spec.get("dispatch_timeout")
        data: dict[str, Any] = {
            "job_id": job_id,
            "task_type": spec["task_type"],
            "params": spec["params"],
            "queue": queue,
            "state": state,
            "attempt": 1,
        }
        # Only what is set is stored (readers use .get); plain ifs, no tuple of pairs to build per task.
        if parallel:
            data["parallel"] = True
        get = spec.get
        if value := get("priority"):
            data["priority"] = value
        if (value := get("max_retries")) is not None:
            data["max_retries"] = value
        if dt:
            data["dispatch_timeout"] = dt
        if value := get("result_timeout"):
            data["result_timeout"] = value
        if dt:
            data["dispatch_deadline"] = now + dt
        plan.ops.append(Put(TASK, task_id, data, 0, _T_QUEUED, job_id))
        plan.ops.append(
            Enqueue(
                queue,
                f"{task_id}:1",
                {"task_id": task_id, "job_id": job_id, "attempt": 1},
                spec.get("priority", 0),
            )
        )
        info = {"task_id": task_id, "task_type": spec["task_type"]}
        plan.ops.append(Append(job_id, "task_dispatched", None, info))
        self._ev(plan, "task_dispatched", job_id, task_id=task_id, state=state, data=info)
        if dt:
            plan.timers.append((f"d:{task_id}", now + dt, (task_id, 1, None)))
        return task_id

    # --- workers: take / progress / complete ------------------------------------------------------

    async def take_task(
        self, worker_id: str, skills: Sequence[str], *, wait_s: float = 0.0, lease_s: float | None = None
    ) -> Task | None:
        """Lease the next task of one of ``skills`` for ``worker_id``, waiting up to ``wait_s`` (long poll)."""
        tasks = await self.take_tasks(worker_id, skills, limit=1, wait_s=wait_s, lease_s=lease_s)
        return tasks[0] if tasks else None

    async def take_tasks(
        self,
        worker_id: str,
        skills: Sequence[str],
        *,
        limit: int = 1,
        wait_s: float = 0.0,
        lease_s: float | None = None,
    ) -> list[Task]:
        """Lease up to ``limit`` tasks (see :meth:`take_task`); each is recorded as running before return."""
        queues = [task_queue(s) for s in skills]
        lease_s = lease_s or self.config.TASK_LEASE_S
        out: list[Task] = []
        deadline = self.clock.monotonic() + wait_s
        while not out:
            remaining = max(0.0, deadline - self.clock.monotonic())
            leases = await self.storage.take(
                queues, owner=worker_id, lease_s=lease_s, limit=limit, wait_s=remaining
            )
            if not leases:
                return out
            try:
                out.extend(await self._claim_many(leases, worker_id, lease_s))
            except asyncio.CancelledError:
                # The caller left (a long poll whose worker hung up) after the store leased these: give them
                # back now rather than when their leases expire.
                await self._give_back_leases(leases)
                raise
            if remaining <= 0:
                break
        return out

    async def _give_back_leases(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            with contextlib.suppress(Exception):
                if not await self.release_task(lease.payload["task_id"], lease.token):
                    await self.storage.nack(lease)  # leased but not yet recorded as running

    def _claim_ops(self, plan: _Plan, lease: Lease, rec: Record, worker_id: str) -> Task:
        """Plan recording ``rec`` as running under ``lease`` for ``worker_id``; the Task to hand over."""
        task_id, attempt = rec.id, lease.payload["attempt"]
        now = self.clock.now()
        d = dict(rec.data)
        rt = d.get("result_timeout")
        d.update(worker_id=worker_id, token=lease.token, taken_at=now)
        if rt:
            d["result_deadline"] = now + rt
            plan.timers.append((f"r:{task_id}", now + rt, (task_id, attempt, lease.token)))
        plan.ops.append(Put(TASK, task_id, d, rec.version, _T_RUNNING, d["job_id"]))
        self._ev(plan, "task_taken", d["job_id"], task_id=task_id, data={"worker_id": worker_id})
        return Task(
            task_id,
            d["job_id"],
            d["task_type"],
            d["params"],
            lease.token,
            attempt,
            lease.priority,
            worker_id,
            d.get("result_deadline"),
        )

    async def _claimed(self, task: Task, lease: Lease, lease_s: float) -> None:
        if self.timers:
            self.timers.cancel(f"d:{task.task_id}")
        if task.result_deadline is not None:
            rt = task.result_deadline - self.clock.now()
            if rt > lease_s:
                with contextlib.suppress(LeaseLostError):
                    await self.storage.extend(lease, rt + 1.0)

    async def _claim_many(self, leases: Sequence[Lease], worker_id: str, lease_s: float) -> list[Task]:
        """Record every taken task as running in one write (``durable=False``: the store already holds the
        lease, so a power cut that loses this record loses nothing recovery cannot redo); on a version
        conflict fall back to claiming one by one."""
        plan = _Plan()
        claimed: list[tuple[Task, Lease]] = []
        for lease in leases:
            task_id = lease.payload["task_id"]
            rec = self._tasks.get(task_id) or await self._load_task(task_id)
            if rec is None or rec.status not in _OPEN or rec.data["attempt"] != lease.payload["attempt"]:
                plan.ops.append(Dequeue(lease.queue, lease.id))  # a stale delivery
                continue
            claimed.append((self._claim_ops(plan, lease, rec, worker_id), lease))
        if not plan.ops:
            return []
        try:
            await self._commit(plan, durable=False)
        except ConflictError:
            self._forget(lease.payload["task_id"] for lease in leases)
            out = []
            for lease in leases:
                task = await self._claim(lease, worker_id, lease_s)
                if task is not None:
                    out.append(task)
            return out
        for task, lease in claimed:
            await self._claimed(task, lease, lease_s)
        return [task for task, _ in claimed]

    async def _claim(self, lease: Lease, worker_id: str, lease_s: float) -> Task | None:
        task_id, attempt = lease.payload["task_id"], lease.payload["attempt"]
        for _ in range(_MAX_CONFLICT_RETRIES):
            rec = await self._load_task(task_id)
            if rec is None or rec.status not in _OPEN or rec.data["attempt"] != attempt:
                await self.storage.apply(Dequeue(lease.queue, lease.id))  # stale delivery
                return None
            plan = _Plan()
            task = self._claim_ops(plan, lease, rec, worker_id)
            try:
                await self._commit(plan, durable=False)
            except ConflictError:
                self._tasks.pop(task_id, None)
                continue
            await self._claimed(task, lease, lease_s)
            return task
        return None

    async def report_progress(self, task_id: str, progress: float, message: str | None = None) -> bool:
        """Record a running task's progress (0-100) and message on its job. Returns ``False`` when the task
        is no longer open (cancelled, timed out, done): the worker should stop."""
        if not 0 <= progress <= 100:
            raise InputValidationError("must be between 0 and 100", field="progress")
        trec = await self._load_task(task_id)
        if trec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        if trec.status not in _OPEN:
            return False
        job_id = trec.data["job_id"]
        ok = True

        def decide(rec: Record, plan: _Plan) -> None:
            nonlocal ok
            wait = rec.data.get("wait") or {}
            if rec.status in _TERMINAL or task_id not in wait.get("pending", ()):
                ok = False
                return
            new = dict(rec.data)
            new["progress"], new["progress_message"] = float(progress), message
            plan.ops.append(Put(JOB, job_id, new, rec.version, rec.status, new["blueprint"]))
            self._ev(
                plan,
                "task_progress",
                job_id,
                task_id=task_id,
                data={"progress": progress, "message": message},
            )

        await self._mutate_job(job_id, decide)
        return ok

    async def extend_task(self, task_id: str, token: int, lease_s: float | None = None) -> bool:
        """Keep a running task from being offered again: push its lease to now + ``lease_s`` (default
        ``TASK_LEASE_S``). Workers call it from their heartbeat for tasks that may outlast the lease.

        ``token`` is the delivery's (``Task.token``). Returns ``False`` when the lease is no longer held
        (it lapsed, or the task was withdrawn or leased to another worker): the task may run elsewhere, and
        this worker's result counts only if nobody took it meanwhile (see :meth:`complete_task`).
        """
        rec = await self._load_task(task_id)
        if rec is None:
            raise TaskNotFoundError(f"no task {task_id!r}")
        d = rec.data
        if rec.status != TaskStatus.RUNNING or d.get("token") not in (None, token):
            return False
        lease = self._task_lease(task_id, d, token)
        try:
            await self.storage.extend(lease, lease_s or self.config.TASK_LEASE_S)
        except LeaseLostError:
            return False
        return True

    async def release_task(self, task_id: str, token: int) -> bool:
        """Hand a leased task back at once (a nack): it is queued again for any worker, as if its lease had
        expired now. For a worker that took a task it will not run (a long poll whose caller hung up just as
        the task was leased, a worker stopping). Returns ``False`` if ``token`` no longer holds it."""
        for _ in range(_MAX_CONFLICT_RETRIES):
            rec = await self._load_task(task_id)
            if rec is None:
                raise TaskNotFoundError(f"no task {task_id!r}")
            d = rec.data
            if rec.status != TaskStatus.RUNNING or d.get("token") not in (None, token):
                return False
            try:
                await self.storage.nack(self._task_lease(task_id, d, token))
            except LeaseLostError:
                return False
            back = {
                k: v for k, v in d.items() if k not in ("worker_id", "token", "taken_at", "result_deadline")
            }
            self.timers.cancel(f"r:{task_id}")
            try:
                await self._commit(
                    self._single(Put(TASK, task_id, back, rec.version, _T_QUEUED, d["job_id"])),
                    durable=False,  # the queue already offers it again; a lost record write only looks stale
                )
            except ConflictError:
                self._tasks.pop(task_id, None)
                continue
            return True
        return False

    @staticmethod
    def _single(op: Op) -> _Plan:
        plan = _Plan()
        plan.ops.append(op)
        return plan

    @staticmethod
    def _task_lease(task_id: str, d: Mapping[str, Any], token: int) -> Lease:
        """The lease a delivery of the task holds (what the store's extend/nack check: queue, item, token)."""
        attempt = d["attempt"]
        return Lease(
            d["queue"], f"{task_id}:{attempt}", {}, 0, attempt, token, d.get("worker_id") or "", 0.0, 0.0
        )

    async def is_task_cancelled(self, task_id: str) -> bool:
        """Whether the task was withdrawn (cancelled or timed out); remote workers ask this on heartbeat."""
        rec = await self.storage.get(TASK, task_id)
        return rec is not None and rec.status in (TaskStatus.CANCELLED, TaskStatus.TIMED_OUT)

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
    ) -> str:
        """Submit a task's result. Returns what happened: ``"applied"``, ``"retry"`` (a retryable error, the
        task is queued again), or ``"ignored"`` (duplicate or late: recorded in history, changes nothing).

        ``status`` picks the transition; ``error.code`` drives retries/quarantine (see the docs).
        ``extra_ops`` are the executor's own records of the outcome (the workcell's workflow view, its action
        journal, datapoints): written in the same transaction as whatever the result leads to, also when it
        is ignored. A conflict on one of them raises :class:`~podium.errors.ConflictError` and writes nothing.
        """
        err: dict[str, Any] | None
        if error is None:
            err = None
        elif isinstance(error, str):
            err = {"code": None, "message": error}
        else:
            err = dict(error)
        result = {"status": status, "data": dict(data) if data is not None else None, "error": err}
        return await self._apply_result(
            task_id, result, source="worker", worker_id=worker_id, token=token, extra_ops=extra_ops
        )

    async def _apply_result(
        self,
        task_id: str,
        result: dict[str, Any],
        *,
        source: str,
        worker_id: str | None = None,
        token: int | None = None,
        expect_attempt: int | None = None,
        expect_token: int | None = None,
        expect_status: TaskStatus | None = None,
        extra_ops: Sequence[Op] = (),
    ) -> str:
        for _ in range(_MAX_CONFLICT_RETRIES):
            trec = self._tasks.get(task_id) or await self._load_task(task_id)
            if trec is None:
                raise TaskNotFoundError(f"no task {task_id!r}")
            td = trec.data
            if source == "timer" and (
                trec.status != expect_status
                or td["attempt"] != expect_attempt
                or (expect_token is not None and td.get("token") != expect_token)
            ):
                return "ignored"  # the timer is stale: the task moved on
            job_id = td["job_id"]
            if trec.status not in _OPEN:
                await self._record_ignored(
                    job_id, task_id, f"task is already {trec.status}", result, worker_id, extra_ops
                )
                return "ignored"
            if source == "worker":
                stale = self._stale_delivery(trec, token, worker_id)
                if stale is not None:
                    await self._record_ignored(job_id, task_id, stale, result, worker_id, extra_ops)
                    return "ignored"
            jrec = self._jobs.get(job_id) or await self._load_job(job_id)
            if jrec is None:
                raise JobNotFoundError(f"no job {job_id!r} for task {task_id!r}")
            plan = _Plan()
            outcome = await self._plan_result(plan, jrec, trec, result, source, worker_id)
            plan.ops.extend(extra_ops)
            try:
                await self._commit(plan)
            except ConflictError as exc:
                if exc.kind not in (JOB, TASK):
                    raise  # one of the caller's own records: retrying cannot help
                self._forget([exc.id, task_id, job_id])
                continue
            return outcome
        raise ConflictError(TASK, task_id, None, None)

    @staticmethod
    def _stale_delivery(trec: Record, token: int | None, worker_id: str | None) -> str | None:
        """Why a worker's result for an open task must be ignored, or ``None`` if it counts.

        With a ``token`` (the delivery's lease token) the result counts only if that delivery is still the
        task's current one: the record is ``running`` under the same token. A holder whose lease expired
        still counts as long as nobody took the task since (the record still names its token); once the task
        was leased again, or queued for another attempt, the old holder's result is ignored. Tasks leased
        straight to an in-process worker carry no token in their record: there the worker id decides.
        Without a token only the worker id is checked.
        """
        d = trec.data
        holder = d.get("worker_id")
        if token is not None:
            if trec.status != TaskStatus.RUNNING:
                return f"stale delivery: the task is queued again (attempt {d['attempt']})"
            held = d.get("token")
            if held is not None and held != token:
                return f"stale lease: the task was leased again (to {holder})"
        if worker_id is not None and holder is not None and holder != worker_id:
            return f"the task is held by {holder}, not {worker_id}"
        return None

    async def _record_ignored(
        self,
        job_id: str,
        task_id: str,
        reason: str,
        result: dict[str, Any],
        worker_id: str | None,
        extra_ops: Sequence[Op] = (),
    ) -> None:
        info = {
            "task_id": task_id,
            "reason": reason,
            "result_status": result.get("status"),
            "worker_id": worker_id,
        }
        await self.storage.apply(Append(job_id, "result_ignored", None, info), *extra_ops)
        self._count("result_ignored")
        if self._wants("result_ignored"):
            ev = EngineEvent("result_ignored", job_id, self.clock.now(), task_id=task_id, data=info)
            await self._emit([ev])

    async def _plan_result(
        self,
        plan: _Plan,
        jrec: Record,
        trec: Record,
        result: dict[str, Any],
        source: str,
        worker_id: str | None,
    ) -> str:
        now = self.clock.now()
        task_id, td = trec.id, dict(trec.data)
        job_id = jrec.id
        item = Dequeue(td["queue"], f"{task_id}:{td['attempt']}")
        wait = jrec.data.get("wait") or {}
        status = result.get("status")
        err = result.get("error") or None
        code = err.get("code") if isinstance(err, dict) else None
        timed_out = source == "timer"
        if self.timers:
            self.timers.cancel(f"d:{task_id}")
            self.timers.cancel(f"r:{task_id}")

        def close_task(task_status: TaskStatus) -> None:
            td.update(result=result, finished_at=now, completed_by=worker_id)
            plan.ops.append(Put(TASK, task_id, td, trec.version, str(task_status), job_id))
            plan.ops.append(item)

        if jrec.status in _TERMINAL or task_id not in wait.get("pending", ()):
            close_task(TaskStatus.CANCELLED if jrec.status == JobStatus.CANCELLED else TaskStatus.COMPLETED)
            info = {"task_id": task_id, "reason": f"job is {jrec.status}", "result_status": status}
            plan.ops.append(Append(job_id, "result_ignored", None, info))
            self._ev(plan, "result_ignored", job_id, task_id=task_id, data=info)
            return "ignored"

        new = dict(jrec.data)
        history_info = {
            "task_id": task_id,
            "status": status,
            "attempt": td["attempt"],
            "worker_id": worker_id,
        }
        if err:
            history_info["error"] = err
        plan.ops.append(
            Append(job_id, "task_timeout" if timed_out else "task_completed", status, history_info)
        )
        ev_type = "task_timeout" if timed_out else "task_completed"
        if self._wants(ev_type):
            self._ev(
                plan,
                ev_type,
                job_id,
                task_id=task_id,
                status=status,
                data={"result": result, "attempt": td["attempt"]},
            )
        else:
            self._count(ev_type)

        if code in RETRYABLE_CODES:
            max_retries = td.get("max_retries")
            if max_retries is None:
                max_retries = self.config.JOB_MAX_RETRIES
            if td["attempt"] <= max_retries:
                delay = min(
                    self.config.RETRY_BACKOFF_MAX_S,
                    self.config.RETRY_BACKOFF_BASE_S * (2 ** (td["attempt"] - 1)),
                )
                attempt = td["attempt"] + 1
                dt = td.get("dispatch_timeout")
                td.update(
                    attempt=attempt,
                    worker_id=None,
                    token=None,
                    result_deadline=None,
                    last_error=err,
                    dispatch_deadline=now + delay + dt if dt else None,
                )
                plan.ops.append(Put(TASK, task_id, td, trec.version, _T_QUEUED, job_id))
                plan.ops.append(item)
                plan.ops.append(
                    Enqueue(
                        td["queue"],
                        f"{task_id}:{attempt}",
                        {"task_id": task_id, "job_id": job_id, "attempt": attempt},
                        td.get("priority", 0),
                        delay,
                    )
                )
                plan.ops.append(
                    Append(
                        job_id,
                        "task_retry",
                        jrec.status,
                        {"task_id": task_id, "attempt": attempt, "delay_s": delay, "error": err},
                    )
                )
                self._ev(
                    plan,
                    "task_retry",
                    job_id,
                    task_id=task_id,
                    data={"attempt": attempt, "delay_s": delay, "error": err},
                )
                if dt:
                    plan.timers.append((f"d:{task_id}", now + delay + dt, (task_id, attempt, None)))
                return "retry"
            close_task(TaskStatus.TIMED_OUT if timed_out else TaskStatus.COMPLETED)
            new["error"] = {
                **(err or {}),
                "code": code,
                "message": f"task {task_id} failed {td['attempt']} times; last: {(err or {}).get('message')}",
            }
            await self._end_with_siblings(plan, jrec, new, JobStatus.QUARANTINED, task_id)
            return "applied"
        close_task(TaskStatus.TIMED_OUT if timed_out else TaskStatus.COMPLETED)
        if code in QUARANTINE_CODES or code == "INVALID_INPUT_ERROR":
            new["error"] = dict(err or {})
            final = JobStatus.QUARANTINED if code in QUARANTINE_CODES else JobStatus.FAILED
            await self._end_with_siblings(plan, jrec, new, final, task_id)
            return "applied"

        if wait.get("kind") == "parallel":
            agg = dict(new.get("aggregation_results") or {})
            agg[task_id] = result
            new["aggregation_results"] = agg
            pending = [t for t in wait["pending"] if t != task_id]
            if pending:
                new["wait"] = {**wait, "pending": pending}
                plan.ops.append(Put(JOB, job_id, new, jrec.version, jrec.status, new["blueprint"]))
            else:
                self._goto_ops(plan, jrec, new, wait["aggregate_into"], event="aggregate", aggregate=True)
            return "applied"

        target = wait.get("transitions", {}).get(status)
        if target is None:
            new["error"] = {
                "code": "UNHANDLED_STATUS",
                "message": f"worker returned status {status!r}, not one of {sorted(wait.get('transitions', {}))}",
                "task_error": err,
            }
            self._terminal_ops(plan, jrec, new, JobStatus.FAILED, await self._parent_of(new))
            return "applied"
        data = result.get("data")
        if isinstance(data, dict) and data:
            sh = dict(new["state_history"])
            sh.update(data)
            new["state_history"] = sh
        await self._advance(plan, jrec, new, target, extra={"task_id": task_id, "status": status})
        return "applied"

    async def _end_with_siblings(
        self, plan: _Plan, jrec: Record, new: dict[str, Any], status: JobStatus, task_id: str
    ) -> None:
        wait = jrec.data.get("wait") or {}
        others = [t for t in wait.get("pending", ()) if t != task_id]
        if others:
            recs = [
                r for r in [await self._load_task(t, fresh=True) for t in others] if r and r.status in _OPEN
            ]
            self._cancel_tasks_ops(plan, jrec.id, recs)
        self._terminal_ops(plan, jrec, new, status, await self._parent_of(new))

    # --- timers -----------------------------------------------------------------------------------

    async def _on_timer(self, key: str, payload: Any) -> None:
        if key == "hb":
            await self._heartbeat()
            return
        kind = key[0]
        task_id, attempt, token = payload
        if kind == "d":
            await self._dispatch_timeout(task_id, attempt)
        elif kind == "r":
            await self._apply_result(
                task_id,
                {
                    "status": "failure",
                    "data": None,
                    "error": {"code": "TIMEOUT_ERROR", "message": "no result within result_timeout"},
                },
                source="timer",
                expect_attempt=attempt,
                expect_token=token,
                expect_status=TaskStatus.RUNNING,
            )

    async def _dispatch_timeout(self, task_id: str, attempt: int) -> None:
        for _ in range(_MAX_CONFLICT_RETRIES):
            trec = await self._load_task(task_id, fresh=True)
            if trec is None or trec.status != TaskStatus.QUEUED or trec.data["attempt"] != attempt:
                return
            td = dict(trec.data)
            if td.get("dispatch_deadline") is not None and td["dispatch_deadline"] > self.clock.now():
                self.timers.schedule(f"d:{task_id}", td["dispatch_deadline"], (task_id, attempt, None))
                return
            jrec = await self._load_job(td["job_id"])
            if jrec is None:
                return
            plan = _Plan()
            td.update(finished_at=self.clock.now(), result={"status": "dispatch_timeout"})
            plan.ops.append(Put(TASK, task_id, td, trec.version, _T_TIMED_OUT, td["job_id"]))
            plan.ops.append(Dequeue(td["queue"], f"{task_id}:{attempt}"))
            plan.ops.append(Append(td["job_id"], "task_timeout", "dispatch_timeout", {"task_id": task_id}))
            self._ev(plan, "task_timeout", td["job_id"], task_id=task_id, data={"kind": "dispatch_timeout"})
            wait = jrec.data.get("wait") or {}
            if jrec.status not in _TERMINAL and task_id in wait.get("pending", ()):
                new = dict(jrec.data)
                target = (wait.get("transitions") or {}).get("timeout")
                if target is not None:
                    await self._advance(
                        plan, jrec, new, target, extra={"task_id": task_id, "status": "timeout"}
                    )
                else:
                    new["error"] = {
                        "code": "DISPATCH_TIMEOUT",
                        "message": f"no worker took task {task_id} ({td['task_type']}) within "
                        f"{td['dispatch_timeout']} s",
                    }
                    await self._end_with_siblings(plan, jrec, new, JobStatus.FAILED, task_id)
            try:
                await self._commit(plan)
                return
            except ConflictError as exc:
                self._forget([exc.id, task_id, td["job_id"]])

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
        data = {
            "skills": list(skills),
            "capacity": capacity,
            "kind": kind,
            "info": dict(info or {}),
            "last_seen": self.clock.now(),
            "instance": self.instance_id,
        }
        await self.storage.apply(Put(WORKER, worker_id, data, None, "online", kind))
        self._count("worker_registered")
        if self._wants("worker_registered"):
            ev = EngineEvent(
                "worker_registered", None, self.clock.now(), data={"worker_id": worker_id, **data}
            )
            await self._emit([ev])

    async def heartbeat_worker(self, worker_id: str, *, status: str = "online") -> None:
        """Refresh a worker's ``last_seen`` (and status)."""
        rec = await self.storage.get(WORKER, worker_id)
        if rec is None:
            raise JobNotFoundError(f"no worker {worker_id!r}")
        data = {**rec.data, "last_seen": self.clock.now()}
        with contextlib.suppress(ConflictError):
            await self.storage.apply(Put(WORKER, worker_id, data, rec.version, status, rec.group))

    async def list_workers(self) -> list[WorkerView]:
        """Registered executors with their skills, capacity, status and (for local ones) running count."""
        out = []
        for rec in await self.storage.list(WORKER, limit=10_000):
            d = rec.data
            local = self._workers.get(rec.id)
            out.append(
                WorkerView(
                    rec.id,
                    d["skills"],
                    d["capacity"],
                    d["kind"],
                    rec.status or "",
                    local.running if local is not None else 0,
                    d["last_seen"],
                    d.get("info", {}),
                )
            )
        return out

    async def _give_back_task(self, task: Task) -> None:
        """Return a task an in-process worker gave up on while stopping: it is due again now."""
        with contextlib.suppress(TaskNotFoundError):
            await self.release_task(task.task_id, task.token)

    def _attach_local(self, worker: InProcessWorker) -> None:
        """A started in-process worker: new tasks of its skills may be leased straight to it."""
        for skill in worker.skills:
            workers = self._local.setdefault(task_queue(skill), [])
            if worker not in workers:
                workers.append(worker)

    def _detach_local(self, worker: InProcessWorker) -> None:
        for workers in self._local.values():
            if worker in workers:
                workers.remove(worker)

    def add_worker(self, worker: InProcessWorker) -> None:
        """Attach an in-process worker (started with the engine, or now if the engine is running)."""
        self._workers[worker.worker_id] = worker
        worker.attach(self)
        if self._started:
            asyncio.get_running_loop().create_task(worker.start())


def _time_up(fut: asyncio.Future[Record | None]) -> None:
    """A job waiter's poll interval is over: wake it with None (it re-reads the store)."""
    if not fut.done():
        fut.set_result(None)


class _Fail(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message}
