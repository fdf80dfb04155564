"""Planning MADSci's ``transfer`` and ``transfer_resource`` steps into ordinary robot steps, at submission.

In MADSci 0.8 a node-less step ``action: transfer`` with ``args: {source, target}`` asks the location
manager to plan a path and runs it as a child workflow; ``transfer_resource`` (``args: {resource_id,
target}``) first looks up where the resource is. podium plans the same path when the workflow is
submitted and puts its hops in place of the step, so the runtime only ever sees node steps:

- the graph has an edge from location A to location B for each :class:`TransferStepTemplate` whose node
  has a representation in both (both ``allow_transfers``), the cheapest template per pair, with
  MADSci's override precedence (pair, then source, then target, then the defaults) and optional
  capacity-aware cost;
- the path is the cheapest by Dijkstra; each hop becomes a step ``template.action`` on
  ``template.node_name`` with ``{source_argument_name: A, target_argument_name: B,
  **additional_location_args}`` as locations (so each node gets only its own representation) and
  ``additional_args`` as args, plus a ``move`` effect from A to B when both hold a container.

Pure: reads the locations, resources and capabilities it is given and changes nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from podium.workcell.errors import WorkflowValidationError
from podium.workcell.locations import Location, LocationTransferCapabilities, TransferStepTemplate
from podium.workcell.resources import ResourceTable
from podium.workcell.workflows import Step, StepEffect

__all__ = [
    "TRANSFER_ACTIONS",
    "TransferHop",
    "expand_transfer",
    "find_location",
    "plan_transfer",
    "resource_location",
    "template_move",
]

TRANSFER_ACTIONS = {
    "transfer": ("source", "target"),
    "transfer_resource": ("resource_id", "target"),
}
"""MADSci's node-less transfer actions: action -> required arguments (``await_completion`` optional)."""


@dataclass(frozen=True)
class TransferHop:
    """One leg of a planned transfer: ``template``'s node moves from ``source`` to ``target``."""

    source: Location
    target: Location
    template: TransferStepTemplate
    cost: float


def find_location(ref: str, locations: Mapping[str, Location]) -> Location | None:
    """A location by name, else by id (MADSci accepts either)."""
    if ref in locations:
        return locations[ref]
    return next((loc for loc in locations.values() if loc.location_id == ref), None)


def plan_transfer(
    source: str,
    target: str,
    *,
    locations: Mapping[str, Location],
    capabilities: LocationTransferCapabilities | None,
    resources: ResourceTable | None = None,
    step: str | None = None,
) -> list[TransferHop]:
    """The cheapest path of hops from ``source`` to ``target`` (names or ids; empty when they are the
    same place).

    Raises :class:`WorkflowValidationError` (naming ``step`` and the argument) for an unknown location, a
    location that does not allow transfers, or no path.
    """
    src = _endpoint(source, "source", locations, step)
    dst = _endpoint(target, "target", locations, step)
    if src.location_id == dst.location_id:
        return []
    if capabilities is None or not _has_templates(capabilities):
        raise WorkflowValidationError(
            "cannot plan a transfer: the workcell declares no transfer_capabilities (transfer_templates "
            "naming the robot that moves plates)",
            step=step,
            field="action",
        )
    graph = _graph(locations, capabilities, resources)
    path = _shortest(graph, src.location_name, dst.location_name)
    if path is None:
        raise WorkflowValidationError(
            f"no transfer path from '{src.location_name}' to '{dst.location_name}' (no chain of "
            "transfer_templates whose node has a representation for each location on the way)",
            step=step,
            field="args.target",
        )
    return path


def resource_location(
    ref: str,
    *,
    locations: Mapping[str, Location],
    resources: ResourceTable,
    earlier: Sequence[Step] = (),
    step: str | None = None,
) -> Location:
    """Where resource ``ref`` (id or unique name) will be when a step after ``earlier`` runs: the location
    whose container is it or holds it, followed through the ``move`` effects of the earlier steps of the
    same run (a move from the location it is in carries it along, as for a plate in a slot).

    Raises :class:`WorkflowValidationError` on ``args.resource_id`` when the resource is unknown or in no
    location.
    """
    res = resources.find(ref)
    if res is None:
        raise WorkflowValidationError(f"no resource '{ref}'", step=step, field="args.resource_id")
    chain = {res.resource_id}
    parent = res.parent_id
    while parent is not None and parent not in chain:
        chain.add(parent)
        up = resources.find(parent)
        parent = up.parent_id if up is not None else None
    here = next((loc for loc in locations.values() if loc.resource_id in chain), None)
    if here is None:
        raise WorkflowValidationError(
            f"resource '{ref}' is not in any location", step=step, field="args.resource_id"
        )
    if here.resource_id == res.resource_id:
        return here  # the location's own container: moves take what it holds, not it
    name = here.location_name
    for earlier_step in earlier:
        for effect in earlier_step.effects:
            if effect.kind == "move" and effect.source == name and effect.target in locations:
                name = str(effect.target)
    return locations[name]


def expand_transfer(
    step: Step,
    *,
    label: str,
    locations: Mapping[str, Location],
    capabilities: LocationTransferCapabilities | None,
    resources: ResourceTable | None,
    earlier: Sequence[Step] = (),
) -> list[Step]:
    """The node steps that carry out a ``transfer`` / ``transfer_resource`` step (parameters already
    substituted), one per hop. Its conditions go on the first hop, its effects and data labels on the
    last. Raises :class:`WorkflowValidationError` naming ``label`` and the field.
    """
    action = str(step.action)
    args = dict(step.args)
    allowed = {*TRANSFER_ACTIONS[action], "await_completion"}
    for name in TRANSFER_ACTIONS[action]:
        if name not in args:
            raise WorkflowValidationError(
                f"built-in action '{action}' needs argument '{name}'", step=label, field="args"
            )
    extra = sorted(set(args) - allowed)
    if extra:
        raise WorkflowValidationError(
            f"built-in action '{action}' takes {sorted(allowed)}, not {extra}", step=label, field="args"
        )
    if step.locations or step.files:
        raise WorkflowValidationError(
            f"built-in action '{action}' names its places in args, not in locations or files",
            step=label,
            field="locations" if step.locations else "files",
        )
    if not isinstance(args.get("await_completion", True), bool):
        raise WorkflowValidationError(
            "'await_completion' must be true or false", step=label, field="args.await_completion"
        )
    for name in TRANSFER_ACTIONS[action]:
        if not isinstance(args[name], str):
            raise WorkflowValidationError(
                f"'{name}' must be a location or resource name known at submission, not {args[name]!r}",
                step=label,
                field=f"args.{name}",
            )
    if action == "transfer_resource":
        if resources is None:
            raise WorkflowValidationError(
                "the workcell has no resource table", step=label, field="args.resource_id"
            )
        here = resource_location(
            args["resource_id"], locations=locations, resources=resources, earlier=earlier, step=label
        )
        source = here.location_name
    else:
        source = args["source"]
    hops = plan_transfer(
        source,
        args["target"],
        locations=locations,
        capabilities=capabilities,
        resources=resources,
        step=label,
    )
    return [_hop_step(step, hop, index, len(hops), label) for index, hop in enumerate(hops, 1)]


def template_move(
    step: Step, *, capabilities: LocationTransferCapabilities | None, locations: Mapping[str, Location]
) -> Step:
    """``step`` with a ``move`` effect when it calls a transfer template's action directly (a
    ``robotarm_1.transfer`` step with ``locations: {source, target}``): the lab's transfer capabilities say
    that action moves what is at the source to the target, which a MADSci node records in MADSci's resource
    manager and podium's workcell records itself. Unchanged when the step has effects of its own or either
    place holds no container."""
    if capabilities is None or step.effects or not step.node or not step.action:
        return step
    o = capabilities.override_transfer_templates
    templates = [*capabilities.transfer_templates]
    for group in (o.source_overrides, o.target_overrides) if o is not None else ():
        for listed in (group or {}).values():
            templates += listed
    for pairs in (o.pair_overrides or {}).values() if o is not None else ():
        for listed in pairs.values():
            templates += listed
    for t in templates:
        if (t.node_name, t.action) != (step.node, step.action):
            continue
        source, target = (
            step.locations.get(t.source_argument_name),
            step.locations.get(t.target_argument_name),
        )
        if not (isinstance(source, str) and isinstance(target, str)):
            continue
        src, dst = find_location(source, locations), find_location(target, locations)
        if src is None or dst is None or src.resource_id is None or dst.resource_id is None:
            continue
        move = StepEffect(kind="move", source=src.location_name, target=dst.location_name)
        return step.model_copy(update={"effects": [move]})
    return step


def _hop_step(step: Step, hop: TransferHop, index: int, count: int, label: str) -> Step:
    t = hop.template
    doc: dict[str, Any] = {
        "name": step.name,
        "key": step.key,
        "description": step.description or f"Transfer step {index} using {t.node_name}",
        "node": t.node_name,
        "action": t.action,
        "args": dict(t.additional_args),
        "locations": {
            t.source_argument_name: hop.source.location_name,
            t.target_argument_name: hop.target.location_name,
            **t.additional_location_args,
        },
        "conditions": [c.model_dump(mode="json") for c in step.conditions] if index == 1 else [],
        "data_labels": dict(step.data_labels) if index == count else {},
        "effects": [],
    }
    if count > 1:
        # MADSci's child workflow names its steps transfer_step_1..n.
        doc["name"] = f"{label} (transfer_step_{index})"
        doc["key"] = f"{step.key}.transfer_step_{index}" if step.key else None
        doc["description"] = f"Transfer step {index} using {t.node_name}"
    effects = []
    if hop.source.resource_id is not None and hop.target.resource_id is not None:
        effects.append(
            StepEffect(kind="move", source=hop.source.location_name, target=hop.target.location_name)
        )
    if index == count:
        effects += step.effects
    doc["effects"] = [e.model_dump(mode="json") for e in effects]
    return Step.model_validate(doc)


def _endpoint(ref: str, arg: str, locations: Mapping[str, Location], step: str | None) -> Location:
    loc = find_location(ref, locations)
    if loc is None:
        raise WorkflowValidationError(
            f"{arg} location '{ref}' does not exist in the workcell", step=step, field=f"args.{arg}"
        )
    if not loc.allow_transfers:
        raise WorkflowValidationError(
            f"{arg} location '{loc.location_name}' does not allow transfers", step=step, field=f"args.{arg}"
        )
    return loc


def _has_templates(caps: LocationTransferCapabilities) -> bool:
    o = caps.override_transfer_templates
    return bool(
        caps.transfer_templates
        or (o is not None and (o.source_overrides or o.target_overrides or o.pair_overrides))
    )


def _keyed(table: Mapping[str, Any] | None, loc: Location) -> Any:
    if not table:
        return None
    for key in (loc.location_id, loc.location_name):
        if key in table:
            return table[key]
    return None


def _templates(
    caps: LocationTransferCapabilities, src: Location, dst: Location
) -> Sequence[TransferStepTemplate]:
    o = caps.override_transfer_templates
    if o is not None:
        pair = _keyed(o.pair_overrides, src)
        found = _keyed(pair, dst) if pair is not None else None
        for candidate in (found, _keyed(o.source_overrides, src), _keyed(o.target_overrides, dst)):
            if candidate:
                return list(candidate)
    return caps.transfer_templates


def _capacity_factor(
    caps: LocationTransferCapabilities, dst: Location, resources: ResourceTable | None
) -> float:
    cfg = caps.capacity_cost_config
    if cfg is None or not cfg.enabled or resources is None or dst.resource_id is None:
        return 1.0
    res = resources.find(dst.resource_id)
    if res is None or res.capacity is None or res.capacity <= 0:
        return 1.0
    held = res.quantity if res.quantity is not None else len(resources.children(res.resource_id))
    ratio = float(held) / float(res.capacity)
    if ratio >= cfg.full_capacity_threshold:
        return cfg.full_capacity_multiplier
    if ratio >= cfg.high_capacity_threshold:
        return cfg.high_capacity_multiplier
    return 1.0


def _graph(
    locations: Mapping[str, Location],
    caps: LocationTransferCapabilities,
    resources: ResourceTable | None,
) -> dict[str, list[TransferHop]]:
    """Location name -> the cheapest hop to each location reachable in one step."""
    usable = [loc for loc in locations.values() if loc.allow_transfers]
    graph: dict[str, list[TransferHop]] = {}
    for src in usable:
        for dst in usable:
            if src.location_id == dst.location_id:
                continue
            best: TransferHop | None = None
            for t in _templates(caps, src, dst):
                if t.node_name not in src.representations or t.node_name not in dst.representations:
                    continue
                base = 1.0 if t.cost_weight is None else t.cost_weight
                hop = TransferHop(src, dst, t, base * _capacity_factor(caps, dst, resources))
                if best is None or hop.cost < best.cost:
                    best = hop
            if best is not None:
                graph.setdefault(src.location_name, []).append(best)
    return graph


def _shortest(graph: Mapping[str, list[TransferHop]], source: str, target: str) -> list[TransferHop] | None:
    """Dijkstra over ``graph``; ties go to the fewer-hop, then alphabetically first, route."""
    best: dict[str, tuple[float, int]] = {source: (0.0, 0)}
    came: dict[str, TransferHop] = {}
    queue: list[tuple[float, int, str]] = [(0.0, 0, source)]
    done: set[str] = set()
    while queue:
        cost, hops, here = heapq.heappop(queue)
        if here in done:
            continue
        done.add(here)
        if here == target:
            path: list[TransferHop] = []
            while here != source:
                hop = came[here]
                path.append(hop)
                here = hop.source.location_name
            return path[::-1]
        for hop in graph.get(here, []):
            there = hop.target.location_name
            candidate = (cost + hop.cost, hops + 1)
            if there not in done and (there not in best or candidate < best[there]):
                best[there] = candidate
                came[there] = hop
                heapq.heappush(queue, (candidate[0], candidate[1], there))
    return None
