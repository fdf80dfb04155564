"""From a definition to a runnable workflow: parameters, validation, locations (at submission), and
feed-forward values (when a step is about to run).

Everything that can be known at submission is checked then, so a bad submission is refused with an error
naming the step and nothing is queued: parameters without a value, ``${name}`` references to parameters
that do not exist, unknown nodes, actions a node does not offer (from its ``/info``), missing required
arguments, and locations that do not exist or have no representation for the step's node. References to
feed-forward parameters are left in place and filled in when their step runs. MADSci's node-less
``transfer`` / ``transfer_resource`` steps are planned here into one node step per hop
(:mod:`podium.workcell.transfers`), each checked like any other step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from podium.ids import new_ulid_str
from podium.workcell.errors import ParameterError, WorkflowValidationError
from podium.workcell.locations import Location, LocationArgument, LocationTransferCapabilities
from podium.workcell.parameters import ParameterInputJson, find_references, substitute
from podium.workcell.resources import ResourceTable
from podium.workcell.transfers import TRANSFER_ACTIONS, expand_transfer, template_move
from podium.workcell.workcell import NodeRecord
from podium.workcell.workflows import Step, StepDefinition, Workflow, WorkflowDefinition

__all__ = ["BUILTIN_ACTIONS", "build_workflow", "check_parameters", "resolve_step_for_run"]

BUILTIN_ACTIONS = {"wait": ("seconds",)}
"""MADSci's node-less workcell actions podium runs itself: action -> its required arguments
(``transfer`` and ``transfer_resource`` are planned into node steps at submission instead)."""

_SUBSTITUTED_FIELDS = ("name", "description", "node", "action")


def check_parameters(
    definition: WorkflowDefinition,
    json_inputs: Mapping[str, Any] | None,
    file_inputs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parameter values of a run (given inputs, then defaults). Raises :class:`ParameterError`."""
    json_inputs = dict(json_inputs or {})
    file_inputs = dict(file_inputs or {})
    params = definition.parameters
    known = params.key_set()
    for key in [*json_inputs, *file_inputs]:
        if key in params.feed_forward_keys():
            raise ParameterError(
                f"'{key}' is a feed-forward value computed during the run; it cannot be given as an input",
                parameter=key,
            )
        if key not in known:
            raise ParameterError(
                f"unknown parameter '{key}' (the workflow defines {sorted(known)})", parameter=key
            )
    values: dict[str, Any] = {}
    for p in params.json_inputs:
        if p.key in json_inputs:
            values[p.key] = json_inputs[p.key]
        elif _has_default(p):
            values[p.key] = p.default
        else:
            raise ParameterError(f"parameter '{p.key}' has no value and no default", parameter=p.key)
    for f in params.file_inputs:
        if f.key not in file_inputs:
            raise ParameterError(f"file parameter '{f.key}' was not provided", parameter=f.key)
    for key in file_inputs:
        if key in {p.key for p in params.json_inputs}:
            raise ParameterError(f"'{key}' is a JSON parameter, not a file", parameter=key)
    return values


def _has_default(p: ParameterInputJson) -> bool:
    # As in MADSci: a null default means "no default", the value must be given.
    return p.default is not None


def build_workflow(
    definition: WorkflowDefinition,
    *,
    parameter_values: Mapping[str, Any],
    nodes: Mapping[str, NodeRecord],
    locations: Mapping[str, Location],
    resources: ResourceTable | None = None,
    transfer_capabilities: LocationTransferCapabilities | None = None,
) -> Workflow:
    """A validated :class:`Workflow` run (not yet saved). Raises :class:`WorkflowValidationError`.

    ``transfer_capabilities`` (the workcell file's) plans ``transfer`` steps; without it they are refused.
    """
    params = definition.parameters
    deferred = params.feed_forward_keys()
    known = params.key_set()
    steps: list[Step] = []
    for index, sdef in enumerate(definition.steps):
        label = sdef.name or sdef.key or f"#{index} {sdef.action}"
        step = _substituted(sdef, parameter_values, known, label)
        expanded = [template_move(step, capabilities=transfer_capabilities, locations=locations)]
        if _is_transfer(step, deferred, label):
            expanded = expand_transfer(
                step,
                label=label,
                locations=locations,
                capabilities=transfer_capabilities,
                resources=resources,
                earlier=steps,
            )
        for one in expanded:
            _validate_step(
                one,
                index=index,
                label=label,
                deferred=deferred,
                definition=definition,
                nodes=nodes,
                locations=locations,
                resources=resources,
            )
        steps += expanded
    return Workflow(
        name=definition.name,
        label=definition.name,
        workflow_definition_id=definition.workflow_definition_id,
        definition_metadata=definition.definition_metadata,
        parameters=definition.parameters,
        parameter_values=dict(parameter_values),
        steps=steps,
        step_definitions=list(definition.steps),
        workflow_id=new_ulid_str(),
    )


def _substituted(sdef: StepDefinition, values: Mapping[str, Any], known: set[str], label: str) -> Step:
    doc = sdef.model_dump(mode="json", exclude_none=False)
    for name in sorted(
        find_references(
            {k: doc[k] for k in ("args", "locations", "effects", "conditions", *_SUBSTITUTED_FIELDS)}
        )
    ):
        if name not in known:
            raise ParameterError(
                f"refers to '${{{name}}}', which is not a parameter of the workflow",
                parameter=name,
                step=label,
            )
    for key in ("args", "locations", "effects", "conditions", *_SUBSTITUTED_FIELDS):
        doc[key] = substitute(doc[key], values)
    use = sdef.use_parameters
    if use is not None:
        for key in _SUBSTITUTED_FIELDS:
            ref = getattr(use, key)
            if isinstance(ref, str) and ref in values:
                doc[key] = values[ref]
        for arg, ref in use.args.items():
            if isinstance(ref, str) and ref in values:
                doc["args"][arg] = values[ref]
        for arg, ref in use.locations.items():
            if isinstance(ref, str) and ref in values:
                doc["locations"][arg] = values[ref]
    try:
        return Step.model_validate(doc)
    except Exception as exc:
        raise WorkflowValidationError(f"invalid after substituting parameters: {exc}", step=label) from None


def _deferred_refs(value: Any, deferred: set[str]) -> bool:
    return bool(find_references(value) & deferred)


def _is_transfer(step: Step, deferred: set[str], label: str) -> bool:
    """Whether ``step`` is a node-less transfer to plan now; refuses one whose places are feed-forward."""
    use = step.use_parameters
    node_deferred = _deferred_refs(step.node, deferred) or bool(use and use.node in deferred)
    if step.node or node_deferred or step.action not in TRANSFER_ACTIONS:
        return False
    for name in TRANSFER_ACTIONS[str(step.action)]:
        if _deferred_refs(step.args.get(name), deferred) or bool(use and use.args.get(name) in deferred):
            raise WorkflowValidationError(
                f"'{name}' of a {step.action} comes from a feed-forward value, but the transfer path is "
                "planned at submission: give it as an input parameter",
                step=label,
                field=f"args.{name}",
            )
    return True


def _validate_step(
    step: Step,
    *,
    index: int,
    label: str,
    deferred: set[str],
    definition: WorkflowDefinition,
    nodes: Mapping[str, NodeRecord],
    locations: Mapping[str, Location],
    resources: ResourceTable | None,
) -> None:
    use = step.use_parameters
    node_deferred = _deferred_refs(step.node, deferred) or bool(use and use.node in deferred)
    if not step.node and not node_deferred:
        _validate_builtin(step, label, deferred)
        return
    if node_deferred:
        return  # the node is only known once the feed-forward value arrives; checked when the step runs
    assert step.node is not None
    node = nodes.get(step.node)
    if node is None:
        raise WorkflowValidationError(
            f"node '{step.node}' is not in the workcell (nodes: {sorted(nodes)})", step=label, field="node"
        )
    actions = node.actions
    action_def: Mapping[str, Any] | None = None
    if actions is not None and not _deferred_refs(step.action, deferred):
        if step.action not in actions:
            raise WorkflowValidationError(
                f"node '{step.node}' has no action '{step.action}' (it offers {sorted(a for a in actions if a)})",
                step=label,
                field="action",
            )
        action_def = actions[step.action]
    # Locations: each named location must exist and have a representation for this node.
    for arg, value in list(step.locations.items()):
        if value is None or isinstance(value, LocationArgument) or _deferred_refs(value, deferred):
            continue
        loc = locations.get(str(value))
        if loc is None:
            raise WorkflowValidationError(
                f"location '{value}' (argument '{arg}') does not exist in the workcell",
                step=label,
                field="locations",
            )
        if step.node not in loc.representations:
            raise WorkflowValidationError(
                f"location '{value}' has no representation for node '{step.node}'",
                step=label,
                field="locations",
            )
        step.locations[arg] = loc.argument_for(step.node)
    # Files: each must name a file parameter (or feed-forward file).
    file_keys = {p.key for p in definition.parameters.file_inputs} | {
        p.key for p in definition.parameters.feed_forward if p.parameter_type == "feed_forward_file"
    }
    for arg, ref in step.files.items():
        key = ref if isinstance(ref, str) else ref.key
        if key not in file_keys:
            raise WorkflowValidationError(
                f"file argument '{arg}' refers to '{key}', which is not a file parameter",
                step=label,
                field="files",
            )
    if action_def is not None:
        _check_required(step, action_def, label, deferred)
    for effect in step.effects:
        for name in (effect.source, effect.target):
            if name is not None and name not in locations and not _deferred_refs(name, deferred):
                raise WorkflowValidationError(
                    f"effect names unknown location '{name}'", step=label, field="effects"
                )
        res_ref = effect.resource
        if (
            resources is not None
            and res_ref
            and resources.find(res_ref) is None
            and not _deferred_refs(res_ref, deferred)
        ):
            raise WorkflowValidationError(
                f"effect names unknown resource '{effect.resource}'", step=label, field="effects"
            )
    for cond in step.conditions:
        name = getattr(cond, "location_name", None)
        if name and name not in locations:
            raise WorkflowValidationError(
                f"condition names unknown location '{name}'", step=label, field="conditions"
            )


def _validate_builtin(step: Step, label: str, deferred: set[str]) -> None:
    action = str(step.action)
    if action not in BUILTIN_ACTIONS:
        raise WorkflowValidationError(
            f"names no node, and '{action}' is not a built-in workcell action "
            f"(built-in: {', '.join(sorted({*BUILTIN_ACTIONS, *TRANSFER_ACTIONS}))})",
            step=label,
            field="node",
        )
    given = dict(step.args)
    if step.use_parameters is not None:
        given.update(step.use_parameters.args)
    for name in BUILTIN_ACTIONS[action]:
        if name not in given:
            raise WorkflowValidationError(
                f"built-in action '{action}' needs argument '{name}'", step=label, field="args"
            )
    seconds = step.args.get("seconds")
    number = isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0
    if "seconds" in step.args and not _deferred_refs(seconds, deferred) and not number:
        raise WorkflowValidationError(
            f"built-in action 'wait' needs 'seconds' as a number >= 0, not {seconds!r}",
            step=label,
            field="args.seconds",
        )


def _named(defs: Any) -> dict[str, Mapping[str, Any]]:
    if isinstance(defs, Mapping):
        return {str(k): v for k, v in defs.items() if isinstance(v, Mapping)}
    if isinstance(defs, list):
        return {str(d.get("name")): d for d in defs if isinstance(d, Mapping)}
    return {}


def _check_required(step: Step, action_def: Mapping[str, Any], label: str, deferred: set[str]) -> None:
    use = step.use_parameters
    given = set(step.args) | set(step.locations) | set(step.files)
    if use is not None:
        given |= set(use.args) | set(use.locations)
    for kind in ("args", "locations", "files"):
        for name, arg in _named(action_def.get(kind)).items():
            if arg.get("required") and name not in given:
                noun = {"args": "argument", "locations": "location", "files": "file"}[kind]
                raise WorkflowValidationError(
                    f"action '{step.action}' of node '{step.node}' needs {noun} '{name}'",
                    step=label,
                    field=kind,
                )


def resolve_step_for_run(
    workflow: Workflow,
    step: Step,
    *,
    nodes: Mapping[str, NodeRecord],
    locations: Mapping[str, Location],
) -> Step:
    """The step with feed-forward values filled in and its locations resolved for its node (a copy).

    Raises :class:`WorkflowValidationError` if a feed-forward value is still missing or the node/location
    it names is unknown.
    """
    values = workflow.parameter_values
    deferred = workflow.parameters.feed_forward_keys()
    doc = step.model_dump(mode="json")
    missing = (
        find_references({k: doc[k] for k in ("args", "locations", "effects", *_SUBSTITUTED_FIELDS)})
        & deferred
    ) - set(values)
    if missing:
        raise ParameterError(
            f"feed-forward value '{sorted(missing)[0]}' was not produced by an earlier step",
            parameter=sorted(missing)[0],
            step=step.label,
        )
    for key in ("args", "locations", "effects", *_SUBSTITUTED_FIELDS):
        doc[key] = substitute(doc[key], values)
    use = step.use_parameters
    if use is not None:
        for key in _SUBSTITUTED_FIELDS:
            ref = getattr(use, key)
            if isinstance(ref, str) and ref in values:
                doc[key] = values[ref]
        for arg, ref in use.args.items():
            if isinstance(ref, str) and ref in values:
                doc["args"][arg] = values[ref]
        for arg, ref in use.locations.items():
            if isinstance(ref, str) and ref in values:
                doc["locations"][arg] = values[ref]
    resolved = Step.model_validate(doc)
    if resolved.node and resolved.node not in nodes:
        raise WorkflowValidationError(
            f"node '{resolved.node}' is not in the workcell", step=step.label, field="node"
        )
    for arg, value in list(resolved.locations.items()):
        if value is None or isinstance(value, LocationArgument):
            continue
        loc = locations.get(str(value))
        if loc is None or resolved.node not in loc.representations:
            raise WorkflowValidationError(
                f"location '{value}' is unknown or has no representation for node '{resolved.node}'",
                step=step.label,
                field="locations",
            )
        resolved.locations[arg] = loc.argument_for(str(resolved.node))
    return resolved
