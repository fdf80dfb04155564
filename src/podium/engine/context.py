"""What a handler sees: :class:`JobContext` and the :class:`ActionFactory` (``actions``).

A handler calls at most one action (``go_to``, ``dispatch_task``, ``dispatch_parallel``,
``await_human_approval``, ``run_blueprint``); a second one raises :class:`~podium.engine.errors.ActionError`
(a ``RuntimeError``, with Avtomatika's message). ``send_event`` may be called any number of times beside it.
A job ``policy`` with ``allowed_skills`` refuses other task types with
:class:`~podium.engine.errors.SkillNotAllowedError` (a ``PermissionError``), as Avtomatika does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from podium.engine.errors import ActionError, SkillNotAllowedError

__all__ = ["ActionFactory", "ClientConfig", "JobContext"]


class ClientConfig(NamedTuple):
    """The API client that created the job (from ``clients.toml`` once the server lands)."""

    token: str = ""
    plan: str = "unknown"
    params: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """The client's whole entry of ``clients.toml`` as one dict (``token``, ``plan`` and its own fields)."""
        return {"token": self.token, "plan": self.plan, **self.params}


class JobContext(NamedTuple):
    """The job as a handler sees it (Avtomatika's field names)."""

    job_id: str
    current_state: str
    initial_data: dict[str, Any]
    state_history: dict[str, Any]
    client: ClientConfig
    actions: ActionFactory
    data_stores: Any | None = None
    tracing_context: dict[str, Any] | None = None
    aggregation_results: dict[str, Any] | None = None
    webhook_url: str | None = None
    task_files: Any | None = None
    policy: dict[str, Any] | None = None


def _seconds(*values: float | None) -> float | None:
    for v in values:
        if v is not None:
            return float(v)
    return None


class ActionFactory:
    """Records what the handler decided; the engine acts on it after the handler returns."""

    __slots__ = (
        "_default_dispatch_timeout",
        "_default_result_timeout",
        "_job_id",
        "_policy",
        "action",
        "context_updates",
        "events",
    )

    def __init__(
        self,
        job_id: str,
        default_dispatch_timeout: float | None = None,
        default_result_timeout: float | None = None,
        policy: dict[str, Any] | None = None,
    ) -> None:
        self._job_id = job_id
        self._policy = policy or {}
        self._default_dispatch_timeout = default_dispatch_timeout
        self._default_result_timeout = default_result_timeout
        self.action: tuple[str, dict[str, Any]] | None = None
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.context_updates: dict[str, Any] = {}

    def _set(self, kind: str, spec: dict[str, Any]) -> None:
        if self.action is not None:
            raise ActionError(
                "Cannot set multiple actions in the same step. "
                f"(job {self._job_id}: a handler may call one action; it called {self.action[0]}() and then {kind}())"
            )
        self.action = (kind, spec)

    def _check_allowed(self, task_type: Any) -> None:
        allowed = self._policy.get("allowed_skills")
        if allowed is not None and task_type and task_type not in allowed:
            raise SkillNotAllowedError(
                f"Task type '{task_type}' is not permitted by job policy. Allowed skills: {allowed}"
            )

    # --- the actions ---------------------------------------------------------------------------

    def go_to(self, state: str) -> None:
        """Move the job to ``state``; its handler runs next."""
        if not isinstance(state, str) or not state:
            raise ActionError("go_to() needs a state name")
        self._set("go_to", {"state": state})

    def dispatch_task(
        self,
        task_type: str,
        params: dict[str, Any] | None = None,
        transitions: dict[str, str] | None = None,
        *,
        dispatch_timeout: float | None = None,
        result_timeout: float | None = None,
        priority: float = 0,
        max_retries: int | None = None,
        dispatch_timeout_seconds: float | None = None,
        result_timeout_seconds: float | None = None,
        timeout_seconds: float | None = None,
        dispatch_strategy: str = "default",
        max_cost: float | None = None,
        **_extra: Any,
    ) -> None:
        """Hand a task to a worker; the worker's result ``status`` picks the next state from ``transitions``.

        ``dispatch_timeout`` bounds the wait for a worker to take it, ``result_timeout`` the wait for the
        result once taken (seconds; the ``*_seconds`` spellings are Avtomatika's). ``dispatch_strategy``
        (``default``/``fastest``: whichever worker asks first; ``round_robin``, ``least_connections``,
        ``cheapest``, ``best_value``, ``overflow``) and ``max_cost`` pick among the remote workers by the
        costs and load they report; when no worker's cost for the task is within ``max_cost`` the job is
        quarantined (see :mod:`podium.engine.strategy`), as it is when no live worker's skill accepts the
        task's ``params`` (its ``input_schema``), ``skill_version``/``skill_type`` or transitions. Other
        Avtomatika options are accepted and ignored.
        """
        if max_cost is not None and (isinstance(max_cost, bool) or not isinstance(max_cost, int | float)):
            raise ActionError(f"dispatch_task({task_type!r}): max_cost must be a number, not {max_cost!r}")
        if not isinstance(task_type, str) or not task_type:
            raise ActionError("dispatch_task() needs a task_type")
        if transitions is None:
            raise ActionError(
                f"dispatch_task({task_type!r}) needs transitions, e.g. {{'success': 'next_state'}}"
            )
        self._check_allowed(task_type)
        self._set(
            "dispatch_task",
            {
                "task_type": task_type,
                "params": dict(params or {}),
                "transitions": dict(transitions),
                "dispatch_timeout": _seconds(
                    dispatch_timeout, dispatch_timeout_seconds, self._default_dispatch_timeout
                ),
                "result_timeout": _seconds(
                    result_timeout, result_timeout_seconds, timeout_seconds, self._default_result_timeout
                ),
                "priority": int(priority),
                "max_retries": max_retries,
                # only when asked for: the shared queue stays the path of every other task
                **({"dispatch_strategy": str(dispatch_strategy)} if dispatch_strategy != "default" else {}),
                **({"max_cost": float(max_cost)} if max_cost is not None else {}),
                # Avtomatika's skill contract fields: checked against the workers' declared skills
                **{k: str(v) for k in ("skill_version", "skill_type") if (v := _extra.get(k)) is not None},
                **(
                    {"resource_requirements": dict(rr)}
                    if isinstance(rr := _extra.get("resource_requirements"), Mapping) and rr
                    else {}
                ),
            },
        )

    def dispatch_parallel(self, tasks: list[dict[str, Any]], aggregate_into: str) -> None:
        """Send several tasks at once; when all have results the job moves to ``aggregate_into``.

        Each task is ``{"type" (or "task_type"): ..., "params": {...}}`` with optional timeouts/priority.
        A task without a type is accepted here, as Avtomatika does, and fails the job when it is planned
        (error ``INVALID_TASK`` naming the task's index).
        """
        if not tasks:
            raise ActionError("dispatch_parallel() needs at least one task")
        specs = []
        for task in tasks:
            task_type = task.get("task_type") or task.get("type")
            self._check_allowed(task_type)
            specs.append(
                {
                    "task_type": task_type,
                    "params": dict(task.get("params") or {}),
                    "dispatch_timeout": _seconds(
                        task.get("dispatch_timeout"),
                        task.get("dispatch_timeout_seconds"),
                        self._default_dispatch_timeout,
                    ),
                    "result_timeout": _seconds(
                        task.get("result_timeout"),
                        task.get("result_timeout_seconds"),
                        self._default_result_timeout,
                    ),
                    "priority": int(task.get("priority", 0)),
                    "max_retries": task.get("max_retries"),
                }
            )
        self._set("dispatch_parallel", {"tasks": specs, "aggregate_into": aggregate_into})

    def await_human_approval(
        self,
        integration: str = "python",
        message: str = "",
        transitions: dict[str, str] | None = None,
    ) -> None:
        """Pause until someone approves or rejects (``engine.approve``/``engine.reject`` or over HTTP).

        ``transitions`` maps the decision (``"approved"``, ``"rejected"``, or any custom one) to a state.
        """
        if not transitions:
            raise ActionError(
                "await_human_approval() needs transitions, e.g. {'approved': 'go', 'rejected': 'stop'}"
            )
        self._set(
            "await_human_approval",
            {"integration": integration, "message": message, "transitions": dict(transitions)},
        )

    def run_blueprint(
        self,
        blueprint_name: str,
        initial_data: dict[str, Any] | None = None,
        transitions: dict[str, str] | None = None,
        dispatch_timeout: float | None = None,
        result_timeout: float | None = None,
    ) -> None:
        """Start a child job; the parent resumes when it ends (``success``/``failure`` pick the transition).

        The child's result is merged into the parent's ``state_history`` (its dict keys, or under
        ``"<blueprint_name>_result"``), and the full outcome is kept under ``"sub_job_<id>_result"``.
        Without a transition for the child's outcome (``transitions={}``, which Avtomatika accepts), the
        parent fails with ``UNHANDLED_STATUS`` / ``CHILD_JOB_FAILED`` when the child ends.
        """
        self._set(
            "run_blueprint",
            {
                "blueprint_name": blueprint_name,
                "initial_data": dict(initial_data or {}),
                "transitions": dict(transitions or {}),
                "dispatch_timeout": dispatch_timeout,
                "result_timeout": result_timeout,
            },
        )

    def send_event(self, event_type: str, payload: dict[str, Any] | None = None, *_: Any, **__: Any) -> None:
        """Emit a blueprint event; its ``payload`` is checked against the schema declared with ``bp.event``."""
        self.events.append((event_type, dict(payload or {})))

    def update_context(self, updates: dict[str, Any]) -> None:
        """Merge ``updates`` into the job's ``initial_data`` (Avtomatika compatibility)."""
        self.context_updates.update(updates)

    # --- Avtomatika's read-back properties ---------------------------------------------------------

    @property
    def next_state(self) -> str | None:
        """The ``go_to`` target, if that was the action."""
        return self.action[1]["state"] if self.action and self.action[0] == "go_to" else None

    @property
    def task_to_dispatch(self) -> dict[str, Any] | None:
        """The ``dispatch_task`` spec, if that was the action."""
        return self._spec("dispatch_task")

    @property
    def sub_blueprint_to_run(self) -> dict[str, Any] | None:
        """The ``run_blueprint`` spec, if that was the action."""
        return self._spec("run_blueprint")

    @property
    def parallel_tasks_to_dispatch(self) -> dict[str, Any] | None:
        """The ``dispatch_parallel`` spec (``tasks``, ``aggregate_into``), if that was the action."""
        return self._spec("dispatch_parallel")

    @property
    def pending_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The events ``send_event`` recorded, in order."""
        return self.events

    def _spec(self, kind: str) -> dict[str, Any] | None:
        return self.action[1] if self.action is not None and self.action[0] == kind else None
