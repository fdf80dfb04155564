"""Schedulers: which queued workflows may start their next step now, in what order, and why not.

A scheduler is a pure function of (queue of workflows, workcell snapshot) -> one
:class:`~podium.workcell.workflows.SchedulerMetadata` per workflow. The snapshot holds the nodes' last
reported status, the locations, the resources and the *claims* currently held. A step's needs are
expressed as claims (its node, its locations, their container resources): the engine acquires all of a
step's claims at once when it starts the step and releases them when the step ends, the seed of the
reservation model. :class:`Scheduler` (FIFO) is the default; custom ones subclass
:class:`AbstractScheduler` (MADSci's interface: ``run_iteration(workflows)``) and are loaded by module
path from the ``scheduler`` setting. The engine sets :attr:`AbstractScheduler.snapshot` before each call.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from podium.errors import ConfigError
from podium.tokens import redact_url
from podium.workcell.conditions import evaluate
from podium.workcell.locations import Location, LocationArgument
from podium.workcell.resources import ResourceTable
from podium.workcell.workcell import NodeRecord
from podium.workcell.workflows import SchedulerMetadata, Step, Workflow

__all__ = [
    "AbstractScheduler",
    "Claim",
    "Scheduler",
    "WorkcellSnapshot",
    "effect_reasons",
    "fifo_decisions",
    "load_scheduler",
    "node_reason",
    "step_claims",
    "waiting_for",
]


@dataclass(frozen=True, slots=True, order=True)
class Claim:
    """One thing a step needs exclusively while it runs: a node, a location or a resource."""

    kind: Literal["node", "location", "resource"]
    name: str

    def describe(self) -> str:
        """``Node robot_1``, ``Location deck_1``..."""
        return f"{self.kind.capitalize()} {self.name}"


@dataclass(slots=True)
class WorkcellSnapshot:
    """What the scheduler may look at: a consistent view taken by the engine before each iteration."""

    nodes: Mapping[str, NodeRecord] = field(default_factory=dict)
    locations: Mapping[str, Location] = field(default_factory=dict)
    resources: ResourceTable = field(default_factory=ResourceTable)
    held: Mapping[Claim, str] = field(default_factory=dict)
    """Claims held by running steps: claim -> the workflow id holding it."""
    workcell_ok: bool = True


def step_claims(step: Step, locations: Mapping[str, Location] | None = None) -> list[Claim]:
    """The claims a step needs: its node, each location it names, and those locations' containers."""
    claims: list[Claim] = []
    if step.node:
        claims.append(Claim("node", step.node))
    for value in step.locations.values():
        name = value.location_name if isinstance(value, LocationArgument) else value
        if not name:
            continue
        claims.append(Claim("location", name))
        loc = (locations or {}).get(name)
        if loc is not None and loc.resource_id:
            claims.append(Claim("resource", loc.resource_id))
    return sorted(set(claims))


def fifo_decisions(workflows: Sequence[Workflow], snapshot: WorkcellSnapshot) -> dict[str, SchedulerMetadata]:
    """First in, first out over the claims model.

    Workflows are ranked by submission time (earlier = higher priority). A workflow is ready when it is
    queued, the workcell is ok, its step's node reports ready, none of its step's claims is held by
    another workflow or wanted by an earlier ready workflow, and the step's conditions hold.
    """
    ordered = sorted(workflows, key=lambda w: (w.submitted_time is None, w.submitted_time, w.workflow_id))
    taken: dict[Claim, str] = dict(snapshot.held)
    out: dict[str, SchedulerMetadata] = {}
    for rank, wf in enumerate(ordered):
        reasons: list[str] = []
        status = wf.status
        if status.paused:
            reasons.append("Workflow is paused")
        elif status.running:
            reasons.append("Workflow is already running")
        elif status.terminal:
            reasons.append(f"Workflow is not active ({status.description})")
        step = wf.current_step
        if step is not None and not reasons:
            if not snapshot.workcell_ok:
                reasons.append("Workcell is paused or not ok")
            if step.node:
                node = snapshot.nodes.get(step.node)
                if node is None:
                    reasons.append(f"Node {step.node} not found")
                elif not node.ready:
                    reasons.append(node_reason(step.node, node))
            claims = step_claims(step, snapshot.locations)
            for claim in claims:
                holder = taken.get(claim)
                if holder is not None and holder != wf.workflow_id:
                    reasons.append(f"{claim.describe()} is in use by workflow {holder}")
            for cond in step.conditions:
                reasons += evaluate(cond, locations=snapshot.locations, resources=snapshot.resources)
            reasons += effect_reasons(step, snapshot)
            if not reasons:
                for claim in claims:
                    taken[claim] = wf.workflow_id
        out[wf.workflow_id] = SchedulerMetadata(ready_to_run=not reasons, priority=-rank, reasons=reasons)
    return out


_OPERATOR_ACTIONS = (
    ("errored", "errored", "reset"),
    ("stopped", "stopped", "reset"),
    ("locked", "locked", "unlock"),
    ("paused", "paused", "resume"),
)
"""A node state that waits for an operator: (status flag, word, the admin command that clears it)."""


def node_reason(name: str, node: NodeRecord) -> str:
    """Why a step waits for ``node``, naming its state and, where an operator must act, the command
    (``POST /admin/{command}/{name}``, ``podium workcell node {name} {command}``)."""
    status = node.status
    if status is None:
        return f"Node {name} status unknown (not read yet)"
    errors = "; ".join(
        str(e.get("message") or e.get("error_type") or e) if isinstance(e, dict) else str(e)
        for e in (status.get("errors") or [])[-3:]
    )
    if status.get("disconnected"):
        why = f": {errors}" if errors else ""
        return (
            f"Node {name} is disconnected (no answer from {redact_url(node.node_url)}{why}); waiting for it"
        )
    for flag, word, command in _OPERATOR_ACTIONS:
        if status.get(flag):
            why = f" ({errors})" if errors and flag in ("errored", "stopped") else ""
            return (
                f"Node {name} is {word}{why}: an operator {command}s it "
                f"(POST /admin/{command}/{name}, or `podium workcell node {name} {command}`)"
            )
    if status.get("busy") or status.get("running_actions"):
        running = ", ".join(sorted(str(a) for a in status.get("running_actions") or []))
        return f"Node {name} is busy" + (f" (running {running})" if running else "")
    if status.get("initializing"):
        return f"Node {name} is initializing"
    if status.get("waiting_for_config"):
        return f"Node {name} is waiting for configuration: {sorted(status['waiting_for_config'])}"
    return f"Node {name} not ready: {node.status_description}"


def waiting_for(wf: Workflow) -> str | None:
    """What a queued run waits for (its scheduler reasons), or ``None`` when it is not waiting."""
    status = wf.status
    if status.terminal or status.running or status.paused or wf.scheduler_metadata.ready_to_run:
        return None
    return "; ".join(wf.scheduler_metadata.reasons) or None


def effect_reasons(step: Step, snapshot: WorkcellSnapshot) -> list[str]:
    """What a step's declared effects need before it starts: something to move at the source and room
    at the target; enough of a consumable."""
    reasons: list[str] = []
    table = snapshot.resources
    for effect in step.effects:
        if effect.kind == "move":
            src = snapshot.locations.get(str(effect.source))
            dst = snapshot.locations.get(str(effect.target))
            if src is None or dst is None or src.resource_id is None or dst.resource_id is None:
                continue
            try:
                if not table.children(src.resource_id):
                    reasons.append(f"Waiting for a resource in location {src.location_name}")
                target = table.get(dst.resource_id)
                if target.capacity is not None and len(table.children(dst.resource_id)) >= target.capacity:
                    reasons.append(f"Waiting for room in location {dst.location_name}")
            except Exception as exc:  # an unknown container: report, never crash the scheduler
                reasons.append(str(exc))
        elif effect.kind == "consume":
            res = table.find(str(effect.resource))
            try:
                qty = float(effect.quantity or 0)
            except ValueError:
                continue
            if res is not None and res.quantity is not None and res.quantity < qty:
                reasons.append(f"Waiting for {res.resource_name} to hold {qty:g} (it holds {res.quantity:g})")
    return reasons


class AbstractScheduler:
    """Base of every scheduler (MADSci's interface). Subclasses implement :meth:`run_iteration`.

    Contract: pure. Read only the given workflows and :attr:`snapshot`; change nothing; return a
    :class:`SchedulerMetadata` per workflow id (workflows left out are treated as not ready).
    """

    snapshot: WorkcellSnapshot

    def __init__(self, workcell_info: Any = None, state_handler: Any = None) -> None:
        self.workcell_info = workcell_info
        self.state_handler = state_handler
        self.snapshot = WorkcellSnapshot()
        self.running = True

    def run_iteration(self, workflows: list[Workflow]) -> dict[str, SchedulerMetadata]:
        """Decide, for each workflow, whether its next step may start and with what priority."""
        raise NotImplementedError("schedulers implement run_iteration(workflows)")


class Scheduler(AbstractScheduler):
    """The default: FIFO with node availability, claims (locks) and conditions (:func:`fifo_decisions`)."""

    def run_iteration(self, workflows: list[Workflow]) -> dict[str, SchedulerMetadata]:
        return fifo_decisions(workflows, self.snapshot)


def load_scheduler(path: str, **kwargs: Any) -> AbstractScheduler:
    """Instantiate the scheduler a setting names: ``package.module`` (its ``Scheduler`` class),
    ``package.module:ClassName`` or ``package.module.ClassName``. ConfigError if it cannot be loaded."""
    module_name, _, class_name = path.partition(":")
    candidates = [(module_name, class_name or "Scheduler")]
    if not class_name and "." in path:
        head, _, tail = path.rpartition(".")
        candidates.append((head, tail))
    errors = []
    for mod_name, cls_name in candidates:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            errors.append(f"{mod_name}: {exc}")
            continue
        cls = getattr(module, cls_name, None)
        if isinstance(cls, type) and hasattr(cls, "run_iteration"):
            instance = cls(**kwargs)
            if not hasattr(instance, "snapshot"):
                instance.snapshot = WorkcellSnapshot()
            return instance  # type: ignore[no-any-return]
        errors.append(f"{mod_name} has no scheduler class {cls_name}")
    raise ConfigError(f"settings field 'scheduler': cannot load {path!r} ({'; '.join(errors)})")
