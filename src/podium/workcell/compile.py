"""A workcell workflow compiled onto the engine: one job state per step.

A workflow run is an :class:`~podium.engine.OrchestratorEngine` job whose definition has the states
``step_0`` ... ``step_{n-1}`` and the end state ``completed``. Each step state dispatches one task of type
:data:`STEP_TASK` (``{"index": i}``) whose ``succeeded`` result moves the job to the next state; any other
result fails the job. The workcell's executor takes those tasks, and its scheduler decides when each one
runs on its node (node availability, locations, conditions). Pause, resume, cancel and retry-from-step are
the engine's job operations.

The definition depends only on the number of steps (what a step does is in the run's own record), so it is
built by name on any engine instance that meets such a job (:func:`build_definition` is registered as a
definition factory): no registration has to happen before a restart or on a standby process.

The step handler is a pure decision (see :mod:`podium.engine._purity`): the engine runs it inside the write
that ends the previous step, so a step's end and the dispatch of the next step's task are one transaction.
"""

from __future__ import annotations

from typing import Any

from podium.engine.definition import JobDefinition
from podium.engine.errors import BlueprintError

__all__ = ["COMPLETED", "DEFINITION_PREFIX", "STEP_TASK", "build_definition", "definition_name", "state_name"]

STEP_TASK = "workcell.step"
"""The task type of a workflow step (one queue per store: a store has one workcell owner)."""
DEFINITION_PREFIX = "workcell.steps."
COMPLETED = "completed"


def definition_name(n_steps: int) -> str:
    """The name of the job definition of a workflow of ``n_steps`` steps."""
    return f"{DEFINITION_PREFIX}{n_steps}"


def state_name(index: int) -> str:
    """The job state of step ``index``."""
    return f"step_{index}"


def run_step(actions: Any, current_state: str, initial_data: dict[str, Any]) -> None:
    """Dispatch the task of the current step; its success leads to the next step (or ``completed``)."""
    index = int(current_state[5:])
    nxt = "step_" + str(index + 1) if index + 1 < initial_data["n_steps"] else "completed"
    actions.dispatch_task(initial_data["task_type"], {"index": index}, transitions={"succeeded": nxt})


def completed() -> None:
    """The end state: the job finishes."""


def build_definition(name: str) -> JobDefinition:
    """The definition called ``name`` (``workcell.steps.<n>``); :class:`BlueprintError` for another name."""
    tail = name[len(DEFINITION_PREFIX) :] if name.startswith(DEFINITION_PREFIX) else ""
    if not tail.isdigit():
        raise BlueprintError(f"{name!r} is not a compiled workcell workflow ({DEFINITION_PREFIX}<steps>)")
    n = int(tail)
    d = JobDefinition(name)
    for i in range(n):
        target = state_name(i + 1) if i + 1 < n else COMPLETED
        d.add_state(state_name(i), run_step, is_start=i == 0, targets=[target])
    d.add_state(COMPLETED, completed, is_start=n == 0, is_end=True)
    return d
