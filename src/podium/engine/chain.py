"""Task chains: a job definition that runs ``n`` tasks one after the other, built from its name.

``chain.<n>`` has the states ``step_0`` ... ``step_{n-1}`` and the end state ``completed``. Each step state
dispatches one task of the type named in the job's ``initial_data["task_type"]``, with params
``{"index": i}``; its ``succeeded`` result moves the job to the next state, any other result fails the job.
The workcell compiles a workflow run onto one (see :mod:`podium.workcell.engine`): what each step does is in
the run's own record, so the definition depends only on the number of steps.

Every engine resolves these names itself (the factory is registered in
:class:`~podium.engine.OrchestratorEngine`), so any instance on a store can run any chain job, also one
another process created, with nothing registered first.

The step handler is a pure decision (see :mod:`podium.engine._purity`): the engine runs it inside the write
that ends the previous step, so a step's end and the dispatch of the next step's task are one transaction.
"""

from __future__ import annotations

from typing import Any

from podium.engine.definition import JobDefinition
from podium.engine.errors import BlueprintError

__all__ = ["CHAIN_PREFIX", "COMPLETED", "build_chain", "chain_name", "state_name"]

CHAIN_PREFIX = "chain."
COMPLETED = "completed"


def chain_name(n_steps: int) -> str:
    """The name of the chain definition of ``n_steps`` steps."""
    return f"{CHAIN_PREFIX}{n_steps}"


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


def build_chain(name: str) -> JobDefinition:
    """The definition called ``name`` (``chain.<n>``); :class:`BlueprintError` for another name."""
    tail = name[len(CHAIN_PREFIX) :] if name.startswith(CHAIN_PREFIX) else ""
    if not tail.isdigit():
        raise BlueprintError(f"{name!r} is not a task chain ({CHAIN_PREFIX}<steps>)")
    n = int(tail)
    d = JobDefinition(name)
    for i in range(n):
        target = state_name(i + 1) if i + 1 < n else COMPLETED
        d.add_state(state_name(i), run_step, is_start=i == 0, targets=[target])
    d.add_state(COMPLETED, completed, is_start=n == 0, is_end=True)
    return d
