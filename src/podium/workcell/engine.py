"""The workcell engine: a facade over the components that run workflows on instrument nodes.

A workflow run is a job of the :class:`~podium.engine.OrchestratorEngine` (same id) on a task chain: one
state per step, each step a ``workcell.step`` task that this workcell's executor (``workcell:<name>``) holds
until the scheduler starts it on its node. Pause, resume, cancel and retry-from-step are the engine's job
operations. The parts, each in its module:

- :class:`~podium.workcell.runner.StepRunner` starts a step, journals it and records its outcome;
- :class:`~podium.workcell.journal.RunJournal` writes the run's view, datapoints, resource effects and history
  in the same transaction as each job transition;
- :class:`~podium.workcell.reconcile.Reconciler` adopts step tasks and reconciles steps left in flight;
- :class:`~podium.workcell.monitor.NodeMonitor` reads node status only when needed;
- :class:`~podium.workcell.loading.StateLoader` loads the stored state at start and on take-over;
- the scheduler (:mod:`podium.workcell.scheduler`, pure) decides; this class launches what it decides.

One process per store owns the work (:class:`~podium.store.FencedOwnership` on ``workcell.owner``); the others
stand by. The durability rules (one fsync per step, the physical-step journal), the scheduling, the
node polling, the ownership and the admin commands are described in ``docs/workcell.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from podium.blobs import BlobStore
from podium.clock import Clock, system_clock
from podium.engine.chain import chain_name, state_name
from podium.engine.config import Config
from podium.engine.engine import OrchestratorEngine, job_end
from podium.engine.errors import TaskNotFoundError
from podium.engine.models import Task
from podium.errors import ConflictError
from podium.ids import new_ulid_str
from podium.store import FencedOwnership, Op, Put, Store
from podium.workcell._base import utcnow
from podium.workcell.actions import ActionStatus, OwnershipInfo
from podium.workcell.admin import NodeAdmin
from podium.workcell.datapoints import DatapointRepository
from podium.workcell.errors import WorkflowNotFoundError, WorkflowStateError
from podium.workcell.inputs import check_name, check_node_url
from podium.workcell.journal import RESOURCE_KIND, WORKFLOW_KIND, Listener, RunJournal
from podium.workcell.loading import LOCATION_KIND, NODE_KIND, STATUS_ID, STATUS_KIND, StateLoader
from podium.workcell.locations import Location, LocationDefinition
from podium.workcell.monitor import NodeMonitor
from podium.workcell.nodes import ConnectorFactory, NodeConnector, http_connector
from podium.workcell.prepare import build_workflow, check_parameters
from podium.workcell.reconcile import ACTION_KIND, STEP_TASK, Flight, Reconciler, StepExecutor
from podium.workcell.resources import Resource, ResourceDefinition, ResourceTable
from podium.workcell.runner import StepRunner
from podium.workcell.scheduler import (
    AbstractScheduler,
    Claim,
    Scheduler,
    WorkcellSnapshot,
    load_scheduler,
    step_claims,
    waiting_for,
)
from podium.workcell.settings import DEFAULT_SCHEDULER, WorkcellManagerSettings
from podium.workcell.workcell import (
    NodeRecord,
    WorkcellDefinition,
    WorkcellInfo,
    WorkcellState,
    WorkcellStatus,
)
from podium.workcell.workflows import SchedulerMetadata, Workflow, WorkflowDefinition, WorkflowState

__all__ = [
    "ACTION_KIND",
    "DEFINITION_KIND",
    "LOCATION_KIND",
    "RESOURCE_KIND",
    "WORKFLOW_KIND",
    "FileInput",
    "WorkcellEngine",
]

log = logging.getLogger("podium.workcell")

DEFINITION_KIND = "workcell.definition"
OWNER_LOCK = "workcell.owner"

_ACTIVE_STATES = [WorkflowState.QUEUED.value, WorkflowState.RUNNING.value, WorkflowState.PAUSED.value]
_TERMINAL_STATES = [WorkflowState.COMPLETED.value, WorkflowState.FAILED.value, WorkflowState.CANCELLED.value]

FileInput = tuple[str, bytes] | Path
"""A file parameter's value: ``(file name, content)`` or a local path."""


class WorkcellEngine:
    """Runs a workcell: see the module docstring. Use as an async context manager or start()/stop()."""

    def __init__(
        self,
        workcell: WorkcellDefinition,
        *,
        store: Store,
        data_dir: str | Path,
        settings: WorkcellManagerSettings | None = None,
        clock: Clock | None = None,
        connector_factory: ConnectorFactory | None = None,
        connectors: Mapping[str, NodeConnector] | None = None,
        scheduler: AbstractScheduler | None = None,
        own_store: bool = False,
        engine: OrchestratorEngine | None = None,
    ) -> None:
        self.workcell = workcell
        self.store = store
        self.settings = settings or WorkcellManagerSettings()
        self.clock: Clock = clock or (engine.clock if engine is not None else system_clock)
        self.data_dir = Path(data_dir)
        s3 = self.settings.s3_settings()
        self.datapoints = DatapointRepository(store, self.data_dir, BlobStore(s3) if s3 is not None else None)
        if scheduler is None:
            name = self.settings.scheduler
            scheduler = Scheduler() if name == DEFAULT_SCHEDULER else load_scheduler(name)
        self.scheduler = scheduler
        self._own_store = own_store
        self._own_engine = engine is None
        self.jobs: OrchestratorEngine = engine or OrchestratorEngine(
            store, Config(), clock=self.clock, serve_http=False
        )
        """The engine the workflow runs are jobs of (given, e.g. shared with the job server, or our own)."""
        self.info = WorkcellInfo(
            name=workcell.name, manager_id=workcell.manager_id, description=workcell.description, nodes={}
        )
        self.status = WorkcellStatus(initializing=True)
        self.nodes: dict[str, NodeRecord] = {}
        self.locations: dict[str, Location] = {}
        self.resources = ResourceTable()
        self._resource_versions: dict[str, int] = {}
        self._workflows: dict[str, Workflow] = {}
        self._definitions: dict[str, dict[str, Any]] = {}
        """Definitions known to be stored (immutable by id): a submission does not read the store."""
        self._versions: dict[str, int] = {}
        self._held: dict[Claim, str] = {}
        self._flights: dict[str, Flight] = {}
        self._tasks_held: dict[str, Task] = {}
        """Workflow id -> the step task the executor holds for it (waiting to start, or in flight)."""
        self._not_before: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False
        self.instance_id = new_ulid_str()
        """This process's name as lock owner."""
        self.ownership = FencedOwnership(
            self.store,
            OWNER_LOCK,
            self.instance_id,
            ttl_s=self.settings.owner_lock_ttl_s,
            clock=self.clock,
            on_acquired=self._take_over,
            on_lost=self._step_down,
            on_held=self._extend_task_leases,
            label=f"workcell {self.workcell.name}",
        )
        self.monitor = NodeMonitor(
            settings=self.settings,
            clock=self.clock,
            nodes=self.nodes,
            info=self.info,
            connector_factory=connector_factory or http_connector,
            connectors=connectors or {},
            busy_nodes=self._busy_nodes,
            is_owner=lambda: self.is_owner,
            stopping=lambda: self._stopping,
            wake=self.wake,
        )
        """Node monitoring: connectors, status reads and their back-off."""
        self._connectors = self.monitor.connectors
        self.listeners: list[Listener] = []
        """Called with ``(event, workflow)`` after every committed transition (metrics, progress, SSE)."""
        self.journal = RunJournal(
            store=store,
            datapoints=self.datapoints,
            locations=self.locations,
            resources=self.resources,
            workflows=self._workflows,
            versions=self._versions,
            resource_versions=self._resource_versions,
            in_flight=lambda workflow_id: workflow_id in self._flights,
            not_before=self._not_before,
            listeners=self.listeners,
            is_owner=lambda: self.is_owner,
        )
        """The run journal: view writes, datapoints, feed-forward, resource effects."""
        self.runner = StepRunner(
            store=store,
            clock=self.clock,
            settings=self.settings,
            lock=self._lock,
            jobs=self.jobs,
            journal=self.journal,
            monitor=self.monitor,
            datapoints=self.datapoints,
            workflows=self._workflows,
            flights=self._flights,
            held=self._held,
            tasks_held=self._tasks_held,
            not_before=self._not_before,
            nodes=self.nodes,
            locations=self.locations,
            connectors=self._connectors,
            instance_id=self.instance_id,
            worker_id=f"workcell:{workcell.name}",
            owner_token=lambda: self.ownership.token,
            is_owner=lambda: self.is_owner,
            stopping=lambda: self._stopping,
            schedule_locked=self._schedule_locked,
            wake=self.wake,
        )
        """The step runner: a step's start, action, journal phases and recorded outcome."""
        self.reconciler = Reconciler(
            store=store,
            clock=self.clock,
            lock=self._lock,
            workflows=self._workflows,
            versions=self._versions,
            flights=self._flights,
            tasks_held=self._tasks_held,
            held=self._held,
            nodes=self.nodes,
            locations=self.locations,
            connectors=self._connectors,
            instance_id=self.instance_id,
            owner_token=lambda: self.ownership.token,
            spawn=self._spawn,
            wake=self.wake,
            finish_step=self.runner.finish_step,
            builtin=self.runner.builtin,
            execute=self.runner.execute,
            with_timeout=self.runner.with_timeout,
        )
        """Step-task arrival, adoption and the reconciliation of steps sent before a restart."""
        self.loader = StateLoader(
            store=store,
            clock=self.clock,
            workcell=workcell,
            settings=self.settings,
            workcell_status=self.status,
            locations=self.locations,
            resource_versions=self._resource_versions,
            journal=self.journal,
            monitor=self.monitor,
            reconciler=self.reconciler,
            is_owner=lambda: self.is_owner,
        )
        """Reads the stored state at start-up and on a take-over."""
        self.node_admin = NodeAdmin(
            nodes=self.nodes,
            connector=self.connector,
            monitor=self.monitor,
            busy_nodes=self._busy_nodes,
            set_workcell_status=self.set_workcell_status,
            wake=self.wake,
        )
        """Operator commands to the nodes and the workcell."""
        self._executor = StepExecutor(
            self.reconciler,
            self.runner.worker_id,
            lease_s=self.settings.owner_lock_ttl_s,
            poll_wait_s=self.settings.scheduler_update_interval,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> WorkcellEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Load state from the store, reach the nodes, start the engine and the executor (which brings back
        the steps left in flight, to be reconciled), start scheduling."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        await self.store.open()
        if self._own_engine:
            await self.jobs.start()
        await self.ownership.acquire()
        await self.loader.locations_and_resources(self.resources)
        await self.loader.nodes()
        await self.loader.status()
        if self.settings.cold_start_delay:
            await self.clock.sleep(self.settings.cold_start_delay)
        await self.poll_nodes(update_info=True)
        if self.is_owner:
            await self.loader.active_workflows()
            await self._start_executor()
        else:
            log.info("workcell %s: another process owns this store; standing by", self.workcell.name)
        self.status.initializing = False
        self._tasks.append(asyncio.create_task(self._scheduler_loop(), name="workcell-scheduler"))
        self._tasks.append(asyncio.create_task(self.monitor.run(), name="workcell-nodes"))
        self._tasks.append(asyncio.create_task(self.ownership.run(), name="workcell-owner"))
        self.wake()

    async def stop(self) -> None:
        """Stop scheduling and polling. Steps in flight are abandoned (their journal says where they were)
        and every step task held is given back, so that the next owner has them at once."""
        if not self._started:
            await self.datapoints.drain()
            return
        self._stopping = True
        self._started = False
        flights = [f.runner for f in self._flights.values() if f.runner is not None]
        for task in [*self._tasks, *flights, *self._background]:
            task.cancel()
        for task in [*self._tasks, *flights, *self._background]:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        await self._stop_executor(give_back=True)
        self._flights.clear()
        self._held.clear()
        await self.ownership.release()
        await self.monitor.aclose()
        await self.datapoints.drain()  # the S3 copies in flight
        if self._own_engine:
            await self.jobs.stop()
        if self._own_store:
            await self.store.close()

    async def _start_executor(self) -> None:
        self.jobs.add_worker(self._executor)
        await self._executor.start()

    async def _stop_executor(self, *, give_back: bool) -> None:
        await self._executor.stop(grace_s=0)
        held = dict(self._tasks_held)
        self._tasks_held.clear()
        if give_back:
            for task in held.values():
                with contextlib.suppress(TaskNotFoundError, ConflictError):
                    await self.jobs.release_task(task.task_id, task.token)

    def _spawn(self, coro: Any, name: str) -> None:
        self._background.add(task := asyncio.create_task(coro, name=name))
        task.add_done_callback(self._background.discard)

    def wake(self) -> None:
        """Ask the scheduler to run now (something changed)."""
        self._wake.set()

    # --- single owner ---------------------------------------------------------------------------

    @property
    def is_owner(self) -> bool:
        """Whether this process holds the store lock that lets it schedule and send actions."""
        return self.ownership.is_owner

    @property
    def owner_token(self) -> int | None:
        """The fencing token of this process's ownership (``None`` while standing by)."""
        return self.ownership.token

    def _require_owner(self, what: str) -> None:
        if not self.is_owner:
            raise WorkflowStateError(
                f"cannot {what}: this workcell process is standing by (another process on the same store "
                "schedules); send it to that one"
            )

    async def _extend_task_leases(self) -> None:
        for wf_id, task in list(self._tasks_held.items()):
            try:
                kept = await self.jobs.extend_task(task.task_id, task.token, self.settings.owner_lock_ttl_s)
            except TaskNotFoundError:
                kept = False
            if not kept and self._tasks_held.get(wf_id) is task and wf_id not in self._flights:
                # Withdrawn, or leased elsewhere: it is no longer this executor's to start.
                del self._tasks_held[wf_id]

    async def check_ownership(self) -> bool:
        """Refresh the owner lock if held; take it if free (then load and reconcile everything). Returns
        whether this process owns the store now."""
        return await self.ownership.check()

    async def _step_down(self) -> None:
        """Lost the lock: stop every step in flight (the new owner reconciles them) and forget live state."""
        flights = [f.runner for f in self._flights.values() if f.runner is not None]
        for task in flights:
            task.cancel()
        for task in flights:
            with contextlib.suppress(BaseException):
                await task
        await self._stop_executor(give_back=False)
        async with self._lock:
            self._flights.clear()
            self._held.clear()
            self._workflows.clear()
            self._versions.clear()
            self._not_before.clear()
        self.journal.notify()

    async def _take_over(self, token: int) -> None:
        """Became the owner while running: read everything afresh and start the executor (the steps the old
        owner held come back as their leases lapse, and are reconciled)."""
        async with self._lock:
            self._workflows.clear()
            self._versions.clear()
            self.resources = self.journal.resources = ResourceTable()
            self._resource_versions.clear()
            self.locations.clear()
            await self.loader.locations_and_resources(self.resources)
            await self.loader.status()
            await self.loader.active_workflows()
        await self._start_executor()
        self.monitor.read_all_soon()
        self.wake()

    # --- nodes ----------------------------------------------------------------------------------

    def _busy_nodes(self) -> set[str]:
        return {f.claims[0].name for f in self._flights.values() if f.claims and f.claims[0].kind == "node"}

    async def poll_nodes(self, *, update_info: bool = False) -> None:
        """Read every node's status now (and info and state when asked or unknown), concurrently; nodes
        running one of this workcell's steps are left alone (the action's own calls track them)."""
        await self.monitor.poll_all(update_info=update_info)

    async def add_node(self, name: str, url: str) -> NodeRecord:
        """Add a node to the workcell (persisted). InvalidInputError for a name or URL that cannot serve
        (nothing kept); WorkflowStateError if the name is taken."""
        check_name(name, field="node_name")
        check_node_url(url, field="node_url")
        self._require_owner("add a node")
        if name in self.nodes:
            raise WorkflowStateError(f"node name {name!r} exists; node names must be unique")
        await self.store.put(NODE_KIND, name, {"node_url": url}, expected_version=0)
        self.monitor.register(name, url)
        await self.monitor.poll(name, update_info=True)
        self.wake()
        return self.nodes[name]

    def connector(self, name: str) -> NodeConnector:
        """The connector of a node; :class:`WorkflowNotFoundError` if there is no such node."""
        try:
            return self._connectors[name]
        except KeyError:
            raise WorkflowNotFoundError(f"no node {name!r} in the workcell") from None

    async def admin(self, command: str, node: str | None = None) -> list[dict[str, Any]]:
        """An admin command to one node, or to the whole workcell (see :mod:`podium.workcell.admin`)."""
        return await self.node_admin.send(command, node)

    async def set_workcell_status(
        self, *, paused: bool | None = None, locked: bool | None = None
    ) -> WorkcellStatus:
        """Pause/resume or lock/unlock the whole workcell (persisted). While it is paused or locked the
        scheduler starts no step; steps in flight finish."""
        self._require_owner("change the workcell's status")
        if paused is not None:
            self.status.paused = paused
        if locked is not None:
            self.status.locked = locked
        doc = {"paused": self.status.paused, "locked": self.status.locked}
        await self.store.put(STATUS_KIND, STATUS_ID, doc)
        log.info(
            "workcell %s: paused=%s locked=%s", self.workcell.name, self.status.paused, self.status.locked
        )
        self.wake()
        self.journal.notify()
        return self.status.model_copy()

    # --- definitions and submission ---------------------------------------------------------------

    async def save_definition(self, definition: WorkflowDefinition) -> str:
        """Store a workflow definition; return its id (storing the same id twice keeps the first)."""
        if definition.workflow_definition_id in self._definitions:
            return definition.workflow_definition_id
        existing = await self.store.get(DEFINITION_KIND, definition.workflow_definition_id)
        if existing is None:
            await self.store.put(
                DEFINITION_KIND,
                definition.workflow_definition_id,
                definition.model_dump(mode="json"),
                expected_version=0,
                group=definition.name,
            )
            self._definitions[definition.workflow_definition_id] = definition.model_dump(mode="json")
        else:
            self._definitions[existing.id] = existing.data
        return definition.workflow_definition_id

    async def get_definition(self, definition_id: str) -> WorkflowDefinition:
        """A stored definition; :class:`WorkflowNotFoundError` if none."""
        data = self._definitions.get(definition_id)
        if data is None:
            rec = await self.store.get(DEFINITION_KIND, definition_id)
            if rec is None:
                raise WorkflowNotFoundError(f"no workflow definition {definition_id!r}")
            data = self._definitions[definition_id] = rec.data
        return WorkflowDefinition.model_validate(data)

    async def submit(
        self,
        definition: WorkflowDefinition | str,
        *,
        json_inputs: Mapping[str, Any] | None = None,
        file_inputs: Mapping[str, FileInput] | None = None,
        file_input_paths: Mapping[str, str] | None = None,
        ownership: OwnershipInfo | None = None,
        workflow_id: str | None = None,
        extra_ops: Sequence[Op] = (),
    ) -> Workflow:
        """Validate and queue a run of ``definition`` (a definition, or the id of a stored one); ``workflow_id``
        (an idempotency key: a second run with it raises ConflictError) and ``extra_ops`` join its first write.
        Raises :class:`WorkflowValidationError` (naming the step and field) and queues nothing when the run
        could not start: missing parameters, unknown nodes, actions or locations."""
        if isinstance(definition, str):
            definition = await self.get_definition(definition)
        else:
            await self.save_definition(definition)
        files = dict(file_inputs or {})
        values = check_parameters(definition, json_inputs, files)
        wf = build_workflow(
            definition,
            parameter_values=values,
            nodes=self.nodes,
            locations=self.locations,
            resources=self.resources,
            transfer_capabilities=self.workcell.transfer_capabilities,
        )
        wf.workflow_id, now, ops = workflow_id or wf.workflow_id, utcnow(self.clock), list(extra_ops)
        paths = dict(file_input_paths or {})
        for key, value in files.items():
            if isinstance(value, Path):
                dp, op = self.datapoints.file_put(
                    value, filename=value.name, label=key, at=now, workflow_id=wf.workflow_id
                )
                paths.setdefault(key, str(value))
            else:
                name, content = value
                dp, op = self.datapoints.file_put(
                    content, filename=name, label=key, at=now, workflow_id=wf.workflow_id
                )
                paths.setdefault(key, name)
            wf.file_input_ids[key] = dp.datapoint_id
            ops.append(op)
        wf.file_input_paths = paths
        wf.ownership_info = ownership or OwnershipInfo()
        wf.submitted_time = now
        if not wf.steps:
            wf.status.completed = True
            wf.start_time = wf.end_time = now
        n = len(wf.steps)
        async with self._lock:
            ops, done = self.journal.wf_ops(
                wf, "submitted", {"definition_id": definition.workflow_definition_id}, extra=ops, new=True
            )
            with self.journal.change(wf.workflow_id):
                if self.is_owner:  # before the write: the first step's task reaches the executor with it
                    self._workflows[wf.workflow_id] = wf
                try:
                    await self.jobs.create_job(
                        chain_name(n),
                        {"task_type": STEP_TASK, "n_steps": n},
                        job_id=wf.workflow_id,
                        extra_ops=ops,
                    )
                except BaseException:
                    self._workflows.pop(wf.workflow_id, None)
                    raise
                done()
            if self.is_owner and not self._stopping:
                self._schedule_locked()  # its first step's task is here: start it if it can start now
            return wf.model_copy(deep=True)

    async def resubmit(self, workflow_id: str) -> Workflow:
        """A new run of the same definition with the same parameter values and input files."""
        old = await self.get_workflow(workflow_id)
        definition = await self.get_definition(old.workflow_definition_id)
        files: dict[str, FileInput] = {}
        for key, dp_id in old.file_input_ids.items():
            if key in {p.key for p in definition.parameters.file_inputs}:
                dp = await self.datapoints.get(dp_id)
                files[key] = await self.datapoints.local_file(dp)
        json_inputs = {
            k: v
            for k, v in old.parameter_values.items()
            if k not in definition.parameters.feed_forward_keys()
        }
        return await self.submit(
            definition,
            json_inputs=json_inputs,
            file_inputs=files,
            file_input_paths=old.file_input_paths,
            ownership=old.ownership_info,
        )

    # --- reading --------------------------------------------------------------------------------

    async def get_workflow(self, workflow_id: str, *, copy: bool = True) -> Workflow:
        """A workflow run (active ones from memory, finished ones from the store). ``copy=False`` returns
        the live object of an active run: read it before the next ``await``, never change it."""
        wf = self._workflows.get(workflow_id)
        if wf is not None:
            return wf.model_copy(deep=True) if copy else wf
        rec = await self.store.get(WORKFLOW_KIND, workflow_id)
        if rec is None:
            raise WorkflowNotFoundError(f"no workflow {workflow_id!r}")
        return Workflow.model_validate(rec.data)

    def active_workflows(self) -> list[Workflow]:
        """Workflows not yet in a terminal state, oldest first."""
        return [
            w.model_copy(deep=True)
            for w in sorted(self._workflows.values(), key=lambda w: w.workflow_id)
            if not w.status.terminal
        ]

    def queue(self) -> list[Workflow]:
        """The active workflows in the order the scheduler ranks them (highest priority first)."""
        return sorted(self.active_workflows(), key=lambda w: (-w.scheduler_metadata.priority, w.workflow_id))

    async def archived_workflows(self, number: int = 20) -> list[Workflow]:
        """The newest ``number`` finished workflows, newest first."""
        recs = await self.store.list(WORKFLOW_KIND, status=_TERMINAL_STATES, limit=number, descending=True)
        return [Workflow.model_validate(r.data) for r in recs]

    def state(self) -> WorkcellState:
        """The workcell's live state (``GET /state``)."""
        return WorkcellState(
            status=self.status,
            workflow_queue=[w.model_dump(mode="json") for w in self.queue()],
            workcell_info=self.info,
            nodes=dict(self.nodes),
        )

    async def wait_for(
        self,
        workflow_id: str,
        *,
        timeout_s: float | None = None,
        until: Callable[[Workflow], bool] | None = None,
    ) -> Workflow:
        """Wait (on the engine's events, no polling) until the workflow is terminal, or ``until`` holds."""
        check = until or (lambda w: w.status.terminal)

        async def wait() -> Workflow:
            end = job_end(workflow_id)  # the run's job ends in the write that makes the run terminal
            woken: asyncio.Future[None] | None = None
            try:
                while True:
                    event = self.journal.changed
                    if not self.is_owner and (woken is None or woken.done()):
                        woken = self.store.watch(end)  # before the read: no end slips in between
                    # Look at the live workflow (a deep copy per wake-up costs more than the step itself);
                    # copy only the one returned.
                    live = self._workflows.get(workflow_id)
                    if live is not None and workflow_id in self.journal.changing:
                        await event.wait()  # a change is being written: answer from what is committed
                        continue
                    wf = live if live is not None else await self.get_workflow(workflow_id)
                    if check(wf):
                        return wf.model_copy(deep=True) if wf is live else wf
                    if self.is_owner:
                        await event.wait()
                    elif woken is not None:
                        # The owner's changes raise no event here: the store wakes this instance when the
                        # run ends (Redis, PostgreSQL); other changes are seen by re-reading now and then.
                        changed: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
                        try:
                            with contextlib.suppress(TimeoutError):
                                await self.clock.wait_for(
                                    asyncio.wait({changed, woken}, return_when=asyncio.FIRST_COMPLETED),
                                    min(1.0, self.settings.owner_lock_ttl_s / 3),
                                )
                        finally:
                            changed.cancel()
            finally:
                if woken is not None:
                    self.store.unwatch(end, woken)

        return await self.clock.wait_for(wait(), timeout_s)

    async def clear_completed(self) -> int:
        """Forget finished workflows held in memory (they stay in the store's archive). Returns how many."""
        done = [k for k, w in self._workflows.items() if w.status.terminal and k not in self._flights]
        for k in done:
            self._workflows.pop(k, None)
            self._versions.pop(k, None)
        return len(done)

    # --- operations -----------------------------------------------------------------------------

    async def pause(self, workflow_id: str) -> Workflow:
        """Pause: no further step starts; a step in flight finishes and its result is kept (the job pauses
        at its end)."""
        self._require_owner("pause a workflow")
        async with self._lock:
            wf = self._active(workflow_id)
            if wf.status.terminal:
                raise WorkflowStateError(
                    f"workflow {workflow_id} is {wf.state.value}; only active workflows pause"
                )
            with self.journal.change(workflow_id):
                wf.status.paused = True
                wf.status.running = False
                await self.journal.job_op(wf, "paused", self.jobs.pause_job)
        return wf.model_copy(deep=True)

    async def resume(self, workflow_id: str) -> Workflow:
        """Resume a paused workflow (back to running if its step is still in flight, else queued)."""
        self._require_owner("resume a workflow")
        async with self._lock:
            wf = self._active(workflow_id)
            if not wf.status.paused:
                return wf.model_copy(deep=True)
            with self.journal.change(workflow_id):
                wf.status.paused = False
                wf.status.running = workflow_id in self._flights
                await self.journal.job_op(wf, "resumed", self.jobs.resume_job)
        self.wake()
        return wf.model_copy(deep=True)

    async def cancel(self, workflow_id: str) -> Workflow:
        """Cancel: the workflow ends now; a step in flight is asked to stop where the node allows it,
        and its late result is recorded in the step's history without reviving the workflow."""
        self._require_owner("cancel a workflow")
        async with self._lock:
            wf = self._active(workflow_id)
            if wf.status.terminal:
                return wf.model_copy(deep=True)
            with self.journal.change(workflow_id):
                self._mark_cancelled(wf)
                await self.journal.job_op(wf, "cancelled", self.jobs.cancel_job)
            if workflow_id not in self._flights:
                self._tasks_held.pop(workflow_id, None)
        return wf.model_copy(deep=True)

    def _mark_cancelled(self, wf: Workflow) -> None:
        now = utcnow(self.clock)
        wf.status.cancelled = True
        wf.status.running = False
        step = wf.current_step
        if step is not None and step.status in (
            ActionStatus.RUNNING,
            ActionStatus.NOT_STARTED,
            ActionStatus.NOT_READY,
        ):
            step.status = ActionStatus.CANCELLED
            if step.start_time and not step.end_time:
                step.end_time = now
                step.duration = now - step.start_time
        wf.end_time = now

    async def retry(self, workflow_id: str, index: int = -1) -> Workflow:
        """Run a finished (failed, cancelled or completed) workflow again from step ``index``
        (default: the step it stopped on; a completed workflow starts over)."""
        self._require_owner("retry a workflow")
        async with self._lock:
            wf = self._workflows.get(workflow_id) or await self.get_workflow(workflow_id)
            if not wf.status.terminal:
                raise WorkflowStateError(
                    f"workflow {workflow_id} is {wf.state.value}, not terminal: cannot retry"
                )
            if index < 0:
                index = 0 if wf.status.completed else wf.status.current_step_index
            if index >= len(wf.steps):
                raise WorkflowStateError(
                    f"workflow {workflow_id} has {len(wf.steps)} steps; cannot retry from {index}"
                )
            if workflow_id not in self._versions:
                rec = await self.store.get(WORKFLOW_KIND, workflow_id)
                self._versions[workflow_id] = rec.version if rec else 0

            async def retry_job(job_id: str, *, extra_ops: list[Op]) -> Any:
                return await self.jobs.retry_job(
                    job_id, state=state_name(index), allow_finished=True, extra_ops=extra_ops
                )

            with self.journal.change(workflow_id):
                wf.status.reset(index)
                wf.status.has_started = index > 0
                wf.end_time = None
                for step in wf.steps[index:]:
                    step.status = ActionStatus.NOT_STARTED
                    step.result = None
                    step.start_time = step.end_time = None
                    step.duration = None
                self._workflows[workflow_id] = wf
                self._not_before.pop(workflow_id, None)
                await self.journal.job_op(wf, "retried", retry_job, {"index": index})
        self.wake()
        return wf.model_copy(deep=True)

    def _active(self, workflow_id: str) -> Workflow:
        wf = self._workflows.get(workflow_id)
        if wf is None:
            raise WorkflowNotFoundError(f"no active workflow {workflow_id!r}")
        return wf

    # --- scheduling -----------------------------------------------------------------------------

    def snapshot(self) -> WorkcellSnapshot:
        """The view the scheduler decides on."""
        return WorkcellSnapshot(
            nodes=self.nodes,
            locations=self.locations,
            resources=self.resources,
            held=dict(self._held),
            workcell_ok=self.status.ok,
        )

    async def _scheduler_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed")
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._wake.wait(), self.settings.scheduler_update_interval)

    async def schedule_once(self) -> int:
        """One scheduler iteration: decide, then start every ready step whose claims are free.
        Returns how many steps started."""
        if not self.is_owner:
            return 0
        async with self._lock:
            started = self._schedule_locked()
        self.journal.notify()
        return started

    def _schedule_locked(self) -> int:
        """The body of :meth:`schedule_once`, under ``self._lock``: decides and launches, writes nothing
        (a step's first write is its journal's "sent"/"acknowledged"); each waiting run says why."""
        started = self._decide_and_start()
        for wf in self._workflows.values():
            wf.status.waiting_for = waiting_for(wf)
        return started

    def _decide_and_start(self) -> int:
        started = 0
        waiting = [
            w
            for w in self._workflows.values()
            if not w.status.terminal and w.workflow_id not in self._flights
        ]
        candidates = [w for w in waiting if w.workflow_id in self._tasks_held]
        for wf in waiting:
            if wf.workflow_id not in self._tasks_held:
                wf.scheduler_metadata = SchedulerMetadata(
                    ready_to_run=False,
                    reasons=[
                        "Workflow is paused"
                        if wf.status.paused
                        else "Waiting for the engine to dispatch the step"
                    ],
                )
        if not candidates:
            return 0
        self.scheduler.snapshot = self.snapshot()
        decisions = self.scheduler.run_iteration(candidates)
        now = self.clock.now()
        held = not self.status.ok
        for wf in candidates:
            wf.scheduler_metadata = decisions.get(wf.workflow_id) or SchedulerMetadata(
                ready_to_run=False, reasons=["The scheduler made no decision for this workflow"]
            )
            if held and wf.scheduler_metadata.ready_to_run:
                # Whatever a custom scheduler says, a paused or locked workcell starts nothing.
                wf.scheduler_metadata.ready_to_run = False
                wf.scheduler_metadata.reasons.append(_held_reason(self.status))
        self.monitor.status_needed(
            {
                str(w.current_step.node)
                for w in candidates
                if not w.status.paused
                and w.current_step is not None
                and w.current_step.node in self.nodes
                and not self.nodes[str(w.current_step.node)].ready
            }
        )
        ready = sorted(
            (w for w in candidates if w.scheduler_metadata.ready_to_run),
            key=lambda w: (-w.scheduler_metadata.priority, w.workflow_id),
        )
        for wf in ready:
            task = self._tasks_held.get(wf.workflow_id)
            if wf.status.paused or wf.status.terminal or wf.workflow_id in self._flights or task is None:
                continue
            if self._not_before.get(wf.workflow_id, 0.0) > now:
                wf.scheduler_metadata.reasons.append("Waiting before asking a not-ready node again")
                continue
            step = wf.current_step
            if step is None:
                continue
            claims = step_claims(step, self.locations)
            busy = [c for c in claims if self._held.get(c, wf.workflow_id) != wf.workflow_id]
            if busy:
                wf.scheduler_metadata.ready_to_run = False
                wf.scheduler_metadata.reasons += [
                    f"{c.describe()} is in use by workflow {self._held[c]}" for c in busy
                ]
                continue
            self.runner.start_step(wf, claims, task)
            started += 1
        return started

    # --- locations and resources ----------------------------------------------------------------

    def get_location(self, ref: str) -> Location:
        """A location by name or id."""
        if ref in self.locations:
            return self.locations[ref]
        for loc in self.locations.values():
            if loc.location_id == ref:
                return loc
        raise WorkflowNotFoundError(f"no location {ref!r}")

    async def add_location(self, definition: LocationDefinition) -> Location:
        """Add a location (and its container resource, if defined)."""
        self._require_owner("add a location")
        if definition.location_name in self.locations:
            raise WorkflowStateError(f"location {definition.location_name!r} exists")
        loc, changed = self.loader.location_from_definition(self.resources, definition, utcnow(self.clock))
        await self.journal.apply(
            [
                *self.journal.resource_ops(changed),
                Put(LOCATION_KIND, loc.location_id, loc.model_dump(mode="json"), expected_version=0),
            ]
        )
        self.locations[loc.location_name] = loc
        self.wake()
        return loc

    async def change_resources(self, change: Callable[[ResourceTable], list[Resource]]) -> list[Resource]:
        """Apply one change to the resource table and persist what it changed (one transaction); the
        scheduler re-evaluates conditions right after. The change raises to refuse (nothing is kept)."""
        self._require_owner("change resources")
        async with self._lock:
            backup = self.resources.snapshot()
            try:
                changed = change(self.resources)
                now = utcnow(self.clock)
                for r in changed:
                    if r.created_at is None:
                        r.created_at = now
                    r.updated_at = now
                await self.journal.apply(self.journal.resource_ops(changed))
            except BaseException:
                self.resources.restore(backup)
                raise
        self.wake()
        return changed

    async def create_resource(
        self, definition: ResourceDefinition, *, parent: str | None = None, key: str | None = None
    ) -> list[Resource]:
        """Create a resource from a definition, optionally inside a container (by id or name)."""
        parent_id = self._resource_ref(parent).resource_id if parent else None
        return await self.change_resources(lambda t: t.create(definition, parent_id=parent_id, key=key))

    def _resource_ref(self, ref: str) -> Resource:
        res = self.resources.find(ref)
        if res is None:
            try:
                loc = self.get_location(ref)
            except WorkflowNotFoundError:
                loc = None
            if loc is not None and loc.resource_id:
                return self.resources.get(loc.resource_id)
            raise WorkflowNotFoundError(f"no resource {ref!r}")
        return res

    def resolve_container(self, ref: str) -> str:
        """The id of a container named by resource id/name or by a location holding it."""
        return self._resource_ref(ref).resource_id


def _held_reason(status: WorkcellStatus) -> str:
    what = [w for w, on in (("paused", status.paused), ("locked", status.locked)) if on] or ["not ok"]
    return f"Workcell is {' and '.join(what)}"
