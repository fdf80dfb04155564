"""Handlers' decisions as plan ops: a new job's first write, the action a handler chose, pure handlers run
inline (inside the write that moves the job), and the context a handler sees.

Owns turning an :class:`~podium.engine.context.ActionFactory`'s decision into ops through
:class:`~podium.engine.transitions.Transitions`. It must not commit, take steps or hold leases: the executor,
the job operations and the task results call it with a plan and commit that plan themselves.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from podium.engine.context import ActionFactory, ClientConfig, JobContext
from podium.engine.core import J_PENDING, J_RUNNING, EngineCore, Plan
from podium.engine.definition import CORE_PARAMS, HandlerSpec, JobDefinition
from podium.engine.errors import BlueprintNotFoundError, EventValidationError, InputValidationError
from podium.engine.keys import JOB, STEPS_QUEUE, worker_queue
from podium.engine.models import EngineEvent, JobStatus, check_transition
from podium.engine.registry import Registry, validated_input
from podium.engine.schema import SchemaError, validate_data
from podium.engine.strategy import NoWorker
from podium.engine.transitions import Transitions
from podium.ids import new_ulid_str
from podium.store.base import Append, Enqueue, Put, Record

__all__ = ["MAX_INLINE", "ActionPlanner", "Fail", "MissingParam", "context", "inject"]

MAX_INLINE = 8  # pure handlers folded into one write, at most (a loop of them still moves step by step)
_NO_CLIENT = ClientConfig("", "unknown", {})


class MissingParam(Exception):
    """A handler parameter found neither in state_history nor initial_data and without a default."""


_TARGETING = frozenset(
    {"dispatch_strategy", "max_cost", "skill_version", "skill_type", "resource_requirements"}
)
"""Task options that send a task through the dispatch strategies (without them: the shared queue)."""


class Fail(Exception):
    """A decision that ends the job as ``status`` (failed unless said) with ``error`` (code and message)."""

    def __init__(self, code: str, message: str, status: JobStatus = JobStatus.FAILED) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message}
        self.status = status


def inject(handler: HandlerSpec, ctx: JobContext) -> dict[str, Any]:
    """The handler's keyword arguments by name (context fields, then state_history, then initial_data)."""
    kwargs: dict[str, Any] = {}
    for name, default in handler.params:
        if name in CORE_PARAMS:
            kwargs[name] = ctx if name == "context" else getattr(ctx, name)
        elif name in ctx.state_history:
            kwargs[name] = ctx.state_history[name]
        elif name in ctx.initial_data:
            kwargs[name] = ctx.initial_data[name]
        elif default is inspect.Parameter.empty:
            raise MissingParam(name)
    return kwargs


def context(job_id: str, d: Mapping[str, Any], definition: JobDefinition) -> tuple[ActionFactory, JobContext]:
    """The actions and the context a handler of the job's current state sees (copies of its data)."""
    policy = d.get("policy")
    actions = ActionFactory(job_id, d.get("dispatch_timeout"), d.get("result_timeout"), policy=policy)
    client = d.get("client")
    agg = d.get("aggregation_results")
    ctx = JobContext(
        job_id=job_id,
        current_state=d["state"],
        initial_data=dict(d["initial_data"]),
        state_history=dict(d["state_history"]),
        client=ClientConfig(client.get("token", ""), client.get("plan", "unknown"), client.get("params", {}))
        if client
        else _NO_CLIENT,
        actions=actions,
        data_stores=SimpleNamespace(**definition.data_stores) if definition.data_stores else None,
        aggregation_results=dict(agg) if agg else {},
        webhook_url=d.get("webhook_url"),
        policy=dict(policy) if policy else None,
    )
    return actions, ctx


class ActionPlanner:
    """Plans what handlers decide (see the module docstring)."""

    def __init__(self, core: EngineCore, registry: Registry, transitions: Transitions) -> None:
        self.core = core
        self.config = core.config
        self.clock = core.clock
        self.registry = registry
        self.transitions = transitions

    async def parent_of(self, data: Mapping[str, Any]) -> Record | None:
        """The parent job's record of a child job's data (``None`` for a top-level job)."""
        pid = data.get("parent_job_id")
        return await self.core.load_job(pid) if pid else None

    async def new_job_ops(
        self,
        plan: Plan,
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
        policy: Mapping[str, Any] | None = None,
    ) -> None:
        """Plan a new job: its record, history and first step; when the start handler is a pure decision, the
        step runs now and the job is written as it stands after it (one write, see :meth:`inline`)."""
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
        if policy:
            data["policy"] = dict(policy)
        created = Append(job_id, "job_created", J_PENDING, {"blueprint": definition.name, "state": state})
        if inline and definition.states[state].pure:
            now = self.clock.now()
            vrec = Record(JOB, job_id, 0, data, J_PENDING, definition.name, now, now)
            mark = plan.mark()
            if await self.inline(plan, vrec, definition, 0):
                plan.ops.insert(mark[0], created)  # the job's first entry, before its decision's
                self.core.count("job_created")
                if self.core.wants("job_created"):
                    ev = EngineEvent(
                        "job_created", job_id, now, J_PENDING, state, data={"blueprint": definition.name}
                    )
                    plan.events.insert(mark[1], ev)
                return
        plan.ops += [
            Put(JOB, job_id, data, 0, J_PENDING, definition.name),
            Enqueue(STEPS_QUEUE, f"{job_id}.1", {"job_id": job_id, "step": 1}),
            created,
        ]
        self.core.ev(
            plan, "job_created", job_id, status=J_PENDING, state=state, data={"blueprint": definition.name}
        )

    async def inline(
        self, plan: Plan, rec: Record, definition: JobDefinition, depth: int, *, throwaway: bool = False
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
        core = self.core
        if (
            depth >= MAX_INLINE
            or not core.started
            or core.stopping
            or d["step"] > self.config.MAX_TRANSITIONS_PER_JOB
        ):
            return False
        # Both callers checked that the state is pure (every handler of it); the one found is checked again.
        actions, ctx = context(rec.id, d, definition)
        try:
            handler = definition.find_spec(d["state"], ctx, aggregate=bool(d.get("aggregate")))
            if handler is None or not handler.pure:
                return False
            result = handler.fn(**inject(handler, ctx))
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
            if self.check_events(plan, definition, rec.id, new["state"], actions) is not None:
                plan.rollback(mark)
                return False
            await self.plan_action(plan, rec, new, definition, actions, depth + 1)
        except (Fail, ValueError):
            plan.rollback(mark)
            return False
        return True

    async def advance(
        self,
        plan: Plan,
        rec: Record,
        data: dict[str, Any],
        target: str,
        *,
        event: str = "transition",
        extra: dict[str, Any] | None = None,
        depth: int = 0,
    ) -> None:
        """:meth:`Transitions.goto_ops`, except that a pure handler of ``target`` runs at once and its
        decision joins this write (one write instead of two; see :meth:`inline`)."""
        definition = self.registry.definition(data["blueprint"])
        if definition is not None and not data.get("pause_requested") and depth < MAX_INLINE:
            spec = definition.states.get(target)
            if spec is not None and spec.pure:
                virtual = dict(data)
                virtual["state"], virtual["step"] = target, int(data["step"]) + 1
                virtual.pop("wait", None)
                virtual.pop("aggregate", None)
                check_transition(rec.status or J_PENDING, J_RUNNING)
                vrec = Record(JOB, rec.id, rec.version, virtual, J_RUNNING, rec.group, rec.created_at)
                mark = plan.mark()
                if await self.inline(plan, vrec, definition, depth, throwaway=True):
                    info = (
                        {"state": target, "from": data["state"], **extra}
                        if extra
                        else {"state": target, "from": data["state"]}
                    )
                    # The transition's entry goes before those of the decision taken in its new state.
                    plan.ops.insert(mark[0], Append(rec.id, event, J_RUNNING, info))
                    self.core.count(event)
                    if self.core.wants(event):
                        ev = EngineEvent(event, rec.id, self.clock.now(), J_RUNNING, target, None, info)
                        plan.events.insert(mark[1], ev)
                    return
        self.transitions.goto_ops(plan, rec, data, target, event=event, extra=extra)

    def check_events(
        self, plan: Plan, definition: JobDefinition, job_id: str, state: str, actions: ActionFactory
    ) -> dict[str, Any] | None:
        """Record the blueprint events a handler sent; the error if one fails its schema (or is undeclared)."""
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
            self.core.ev(
                plan, "blueprint_event", job_id, state=state, data={"name": name, "payload": payload}
            )
        return None

    async def plan_action(
        self,
        plan: Plan,
        rec: Record,
        new: dict[str, Any],
        definition: JobDefinition,
        actions: ActionFactory,
        depth: int = 0,
    ) -> None:
        """Plan the action the handler chose (or the end of the job); :class:`Fail` for an invalid one."""
        job_id, state = rec.id, new["state"]
        action = actions.action
        tr = self.transitions
        if action is None:
            spec = definition.states.get(state)
            if spec is not None and spec.is_end:
                sh = new["state_history"]
                if state in sh:
                    new["result"] = sh[state]
                elif sh:
                    new["result"] = sh[next(reversed(sh))]
                status = JobStatus.FINISHED
                if self.config.AVTOMATIKA_END_STATES and state != "finished":
                    status = JobStatus.FAILED  # Avtomatika 1.0b30: only "finished" finishes
                tr.terminal_ops(plan, rec, new, status, await self.parent_of(new))
                return
            raise Fail(
                "NO_ACTION", f"the handler of state {state!r} chose no next step and it is not an end state"
            )
        kind, spec_ = action
        if kind == "go_to":
            target = spec_["state"]
            if target not in definition.states:
                raise Fail("UNKNOWN_STATE", f"go_to({target!r}): {definition.name} has no such state")
            await self.advance(plan, rec, new, target, depth=depth)
        elif kind == "dispatch_task":
            for target in spec_["transitions"].values():
                if target not in definition.states:
                    raise Fail("UNKNOWN_STATE", f"dispatch_task transitions lead to {target!r}, not a state")
            if not _TARGETING.isdisjoint(spec_):
                spec_ = await self._target(spec_)
            task_id = tr.task_ops(plan, job_id, state, spec_)
            new["wait"] = {
                "kind": "task",
                "tasks": [task_id],
                "pending": [task_id],
                "transitions": spec_["transitions"],
            }
            new.pop("progress", None)
            new.pop("progress_message", None)
            tr.put_job(
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
                raise Fail("UNKNOWN_STATE", f"dispatch_parallel aggregate_into {target!r} is not a state")
            for i, t in enumerate(spec_["tasks"]):
                if not t["task_type"]:
                    raise Fail("INVALID_TASK", f"dispatch_parallel(): tasks[{i}] has no 'type'")
            ids = [tr.task_ops(plan, job_id, state, t, parallel=True) for t in spec_["tasks"]]
            new["wait"] = {"kind": "parallel", "tasks": ids, "pending": list(ids), "aggregate_into": target}
            new["aggregation_results"] = {}
            tr.put_job(
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
                    raise Fail(
                        "UNKNOWN_STATE", f"await_human_approval transitions lead to {target!r}, not a state"
                    )
            new["wait"] = {"kind": "approval", "token": secrets.token_urlsafe(24), **spec_}
            tr.put_job(
                plan,
                rec,
                new,
                JobStatus.WAITING_FOR_APPROVAL,
                "job_waiting",
                {"integration": spec_["integration"], "message": spec_["message"]},
            )
        elif kind == "run_blueprint":
            await self._run_blueprint(plan, rec, new, spec_)

    async def _target(self, spec_: dict[str, Any]) -> dict[str, Any]:
        """The task spec with the queue of the worker its ``dispatch_strategy``/``max_cost`` chose among the
        remote workers in the store (the shared queue when the strategy leaves it to whoever asks first);
        quarantine when none may take it (over the cost limit, failing the skill's contract or input
        schema, below the reputation threshold)."""
        dispatch = self.core.dispatch
        if dispatch is None:
            return spec_
        choice = await dispatch.fleet.choose(spec_)
        if isinstance(choice, NoWorker):
            raise Fail("NO_SUITABLE_WORKER", choice.reason, JobStatus.QUARANTINED)
        if choice is None:
            return spec_
        return {**spec_, "queue": worker_queue(choice, spec_["task_type"]), "worker_id": choice}

    async def _run_blueprint(
        self, plan: Plan, rec: Record, new: dict[str, Any], spec_: dict[str, Any]
    ) -> None:
        try:
            child_def = self.registry.get_definition(spec_["blueprint_name"])
        except BlueprintNotFoundError as exc:
            raise Fail("BLUEPRINT_NOT_FOUND", str(exc)) from None
        depth = int(new.get("depth", 0)) + 1
        if depth > self.config.MAX_HOLARCHY_DEPTH:
            raise Fail("MAX_DEPTH", f"child job depth {depth} exceeds MAX_HOLARCHY_DEPTH")
        try:
            child_data = validated_input(child_def, spec_["initial_data"])
        except InputValidationError as exc:
            raise Fail("INVALID_INPUT_ERROR", f"child blueprint {child_def.name!r}: {exc}") from None
        child_id = new_ulid_str()
        await self.new_job_ops(
            plan,
            child_def,
            child_id,
            child_data,
            webhook_url=None,
            dispatch_timeout=spec_.get("dispatch_timeout") or new.get("dispatch_timeout"),
            result_timeout=spec_.get("result_timeout") or new.get("result_timeout"),
            client=new.get("client"),
            parent_job_id=rec.id,
            depth=depth,
            policy=new.get("policy"),  # a child job is held to its parent's policy
            inline=False,  # the parent starts waiting for the child in this write: let it start after
        )
        new["wait"] = {
            "kind": "child",
            "child_job_id": child_id,
            "blueprint_name": child_def.name,
            "transitions": spec_["transitions"],
        }
        self.transitions.put_job(
            plan, rec, new, JobStatus.WAITING_FOR_CHILDREN, "job_waiting", {"child_job_id": child_id}
        )
