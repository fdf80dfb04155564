"""Workflows and steps, as MADSci defines them (``workflow_types``/``step_types``), plus YAML loading.

A :class:`WorkflowDefinition` is what a user writes (a ``*.workflow.yaml`` or Python objects); a
:class:`Workflow` is one run of it, with its status flags, per-step status, results and history. The
JSON of a :class:`Workflow` validates as MADSci 0.8's ``Workflow``, so MADSci's ``WorkcellClient`` reads it.
"""

from __future__ import annotations

import difflib
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from podium.ids import new_ulid_str
from podium.wire.workcell._actions import ActionResult, ActionStatus, OwnershipInfo
from podium.wire.workcell._base import InputModel, WorkcellModel
from podium.wire.workcell._conditions import Conditions
from podium.wire.workcell._errors import WorkflowValidationError
from podium.wire.workcell._locations import LocationArgument
from podium.wire.workcell._parameters import (
    ParameterFeedForwardFile,
    ParameterFeedForwardJson,
    ParameterInputFile,
    ParameterInputJson,
    WorkflowParameters,
)

__all__ = [
    "SchedulerMetadata",
    "Step",
    "StepDefinition",
    "StepEffect",
    "StepParameters",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowMetadata",
    "WorkflowState",
    "WorkflowStatus",
    "load_workflow_definition",
]

_JsonParam = ParameterInputJson | ParameterFeedForwardJson
_FileParam = ParameterInputFile | ParameterFeedForwardFile


class StepParameters(InputModel):
    """Step fields taken from workflow parameters by name (MADSci's ``use_parameters``)."""

    name: str | _JsonParam | None = None
    description: str | _JsonParam | None = None
    action: str | _JsonParam | None = None
    node: str | _JsonParam | None = None
    args: dict[str, str | _JsonParam] = Field(
        default_factory=dict, validation_alias=AliasChoices("args", "arguments")
    )
    locations: dict[str, str | _JsonParam] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("locations", "location_args", "location_arguments"),
    )


class StepEffect(InputModel):
    """What a step does to the workcell's resources when it succeeds (a podium extension).

    ``move`` takes the top resource out of ``source``'s container into ``target``'s; ``consume`` takes
    ``quantity`` from a consumable (``refill`` adds it back); ``set`` sets an attribute of a resource.
    Locations and resources are named as in the workcell; values may use ``${parameter}``.
    """

    kind: Literal["move", "consume", "refill", "set"]
    source: str | None = None
    target: str | None = None
    key: str | None = None
    resource: str | None = None
    quantity: float | str | None = None
    field: str | None = None
    value: Any = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        # {"move": {"source": a, "target": b}} is the same as {"kind": "move", "source": a, "target": b}
        if isinstance(data, dict) and "kind" not in data and len(data) == 1:
            ((kind, body),) = data.items()
            if isinstance(body, dict):
                body = dict(body)
                if "from" in body:
                    body["source"] = body.pop("from")
                if "to" in body:
                    body["target"] = body.pop("to")
                return {"kind": kind, **body}
        return data

    @model_validator(mode="after")
    def _complete(self) -> StepEffect:
        if self.kind == "move" and not (self.source and self.target):
            raise ValueError("a move effect needs a source and a target location")
        if self.kind in {"consume", "refill"} and (self.resource is None or self.quantity is None):
            raise ValueError(f"a {self.kind} effect needs a resource and a quantity")
        if self.kind == "set" and (self.resource is None or self.field is None):
            raise ValueError("a set effect needs a resource and a field")
        return self


class StepDefinition(InputModel):
    """One step of a workflow definition: an action on a node.

    Fields podium does not know (``comment: ...``, as MADSci's example lab writes) are kept as they are and
    served back with the step: MADSci 0.8.1 accepts any extra step field, so a workflow it takes is taken.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str | None = None
    key: str | None = Field(default=None, validation_alias=AliasChoices("key", "step_key"))
    description: str | None = None
    action: str | None = None
    node: str | None = None
    args: dict[str, Any] = Field(default_factory=dict, validation_alias=AliasChoices("args", "arguments"))
    files: dict[str, _FileParam | str] = Field(default_factory=dict)
    locations: dict[str, str | LocationArgument | None] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("locations", "location_args", "location_arguments"),
    )
    conditions: list[Conditions] = Field(default_factory=list)
    data_labels: dict[str, str] = Field(default_factory=dict)
    use_parameters: StepParameters | None = Field(
        default=None, validation_alias=AliasChoices("use_parameters", "use_params", "params", "parameters")
    )
    effects: list[StepEffect] = Field(default_factory=list)

    @field_validator("locations", mode="before")
    @classmethod
    def _location_list(cls, value: Any) -> Any:
        # The 0.7 docs show `locations: [name, ...]`: each name is passed under its own name.
        if isinstance(value, list):
            return {str(v): v for v in value}
        return value

    @model_validator(mode="after")
    def _has_action(self) -> StepDefinition:
        if not self.action and not (self.use_parameters and self.use_parameters.action):
            hint = ""
            typo = difflib.get_close_matches("action", list(self.model_extra or {}), n=1, cutoff=0.7)
            if typo:
                hint = f" (is '{typo[0]}' meant to be 'action'?)"
            raise ValueError(
                f"step {self.name or self.key or '?'} needs an action (or use_parameters.action){hint}"
            )
        return self

    @property
    def label(self) -> str:
        """How messages name this step: its name, else its key, else its action."""
        return self.name or self.key or str(self.action)


class Step(StepDefinition):
    """A step of one workflow run: its status, latest result and result history."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    step_id: str = Field(default_factory=new_ulid_str)
    status: ActionStatus = ActionStatus.NOT_STARTED
    file_paths: dict[str, Any] = Field(default_factory=dict)
    result: ActionResult | None = None
    history: list[ActionResult] = Field(default_factory=list)
    last_status_update: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: timedelta | None = None


class WorkflowMetadata(WorkcellModel):
    """Free-form information about a workflow definition."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    author: str | None = None
    description: str | None = Field(default=None, validation_alias=AliasChoices("description", "info"))
    version: float | str = ""
    ownership_info: OwnershipInfo | None = None


class WorkflowDefinition(InputModel):
    """A workflow as a user writes it (top-level fields podium does not know are kept, as for steps)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str
    workflow_definition_id: str = Field(default_factory=new_ulid_str)
    definition_metadata: WorkflowMetadata = Field(
        default_factory=WorkflowMetadata, validation_alias=AliasChoices("definition_metadata", "metadata")
    )
    parameters: WorkflowParameters = Field(
        default_factory=WorkflowParameters,
        validation_alias=AliasChoices("parameters", "params", "workflow_params", "workflow_parameters"),
    )
    steps: list[StepDefinition] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _root_description(cls, data: Any) -> Any:
        if isinstance(data, dict) and "description" in data:
            data = dict(data)
            desc = data.pop("description")
            key = "metadata" if "metadata" in data else "definition_metadata"
            meta = data.get(key)
            if meta is None:
                data[key] = {"description": desc}
            elif isinstance(meta, dict) and "description" not in meta:
                data[key] = {**meta, "description": desc}
        return data

    @model_validator(mode="after")
    def _check(self) -> WorkflowDefinition:
        keys: set[str] = set()
        for step in self.steps:
            if step.key:
                if step.key in keys:
                    raise ValueError(f"step key {step.key!r} is used twice: step keys must be unique")
                keys.add(step.key)
            # Inline file parameters are promoted to workflow parameters (as MADSci does).
            for arg, value in list(step.files.items()):
                if isinstance(value, ParameterInputFile | ParameterFeedForwardFile):
                    if value.key not in self.parameters.key_set():
                        if isinstance(value, ParameterInputFile):
                            self.parameters.file_inputs.append(value)
                        else:
                            self.parameters.feed_forward.append(value)
                    step.files[arg] = value.key
            if step.use_parameters is not None:
                self._promote_inline(step.use_parameters)
        return self

    def _promote_inline(self, params: StepParameters) -> None:
        def promote(value: Any) -> Any:
            if isinstance(value, ParameterInputJson | ParameterFeedForwardJson):
                if value.key not in self.parameters.key_set():
                    if isinstance(value, ParameterInputJson):
                        self.parameters.json_inputs.append(value)
                    else:
                        self.parameters.feed_forward.append(value)
                return value.key
            return value

        for name in ("name", "description", "action", "node"):
            setattr(params, name, promote(getattr(params, name)))
        params.args = {k: promote(v) for k, v in params.args.items()}
        params.locations = {k: promote(v) for k, v in params.locations.items()}

    @property
    def description(self) -> str | None:
        """The definition's description, from its metadata."""
        return self.definition_metadata.description


class SchedulerMetadata(WorkcellModel):
    """The scheduler's decision about one workflow: may its next step start, how urgent, and why not."""

    ready_to_run: bool = False
    priority: int = 0
    reasons: list[str] = Field(default_factory=list)


class WorkflowState(StrEnum):
    """The six states of the lifecycle diagram."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowStatus(WorkcellModel):
    """Status flags of a workflow run (MADSci's ``WorkflowStatus``)."""

    current_step_index: int = 0
    paused: bool = False
    completed: bool = False
    failed: bool = False
    cancelled: bool = False
    running: bool = False
    has_started: bool = False

    def reset(self, step_index: int = 0) -> None:
        """Back to queued at ``step_index``."""
        self.current_step_index = step_index
        self.paused = self.completed = self.failed = self.cancelled = self.running = False
        self.has_started = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def queued(self) -> bool:
        """Active and not running."""
        return self.active and not self.running

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active(self) -> bool:
        """Being scheduled: neither terminal nor paused."""
        return not (self.terminal or self.paused)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def terminal(self) -> bool:
        """Completed, failed or cancelled."""
        return self.completed or self.failed or self.cancelled

    @computed_field  # type: ignore[prop-decorator]
    @property
    def started(self) -> bool:
        """Past its first step."""
        return self.current_step_index > 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Neither failed nor cancelled."""
        return not (self.failed or self.cancelled)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> str:
        """A human description of the status."""
        i = self.current_step_index
        if self.completed:
            return "Completed Successfully"
        if self.failed:
            return f"Failed on step {i}"
        if self.cancelled:
            return f"Cancelled on step {i}"
        if self.paused:
            return f"Paused on step {i}"
        if self.running:
            return f"Running step {i}"
        return f"Queued on step {i}"

    @property
    def state(self) -> WorkflowState:
        """The lifecycle state these flags stand for."""
        if self.completed:
            return WorkflowState.COMPLETED
        if self.failed:
            return WorkflowState.FAILED
        if self.cancelled:
            return WorkflowState.CANCELLED
        if self.paused:
            return WorkflowState.PAUSED
        if self.running:
            return WorkflowState.RUNNING
        return WorkflowState.QUEUED


class Workflow(WorkcellModel):
    """One run of a workflow definition."""

    name: str
    workflow_definition_id: str = Field(default_factory=new_ulid_str)
    definition_metadata: WorkflowMetadata = Field(
        default_factory=WorkflowMetadata, validation_alias=AliasChoices("definition_metadata", "metadata")
    )
    parameters: WorkflowParameters = Field(default_factory=WorkflowParameters)
    scheduler_metadata: SchedulerMetadata = Field(default_factory=SchedulerMetadata)
    label: str | None = None
    workflow_id: str = Field(default_factory=new_ulid_str)
    steps: list[Step] = Field(default_factory=list)
    parameter_values: dict[str, Any] = Field(default_factory=dict)
    file_input_paths: dict[str, str] = Field(default_factory=dict)
    file_input_ids: dict[str, str] = Field(default_factory=dict)
    ownership_info: OwnershipInfo = Field(default_factory=OwnershipInfo)
    status: WorkflowStatus = Field(default_factory=WorkflowStatus)
    step_index: int = 0
    simulate: bool = False
    submitted_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    step_definitions: list[StepDefinition] = Field(default_factory=list)
    _datapoint_reader: Any = PrivateAttr(default=None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration(self) -> timedelta | None:
        """End time minus start time, once ended."""
        if self.start_time and self.end_time:
            return self.end_time - self.start_time
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float | None:
        """:attr:`duration` in seconds."""
        d = self.duration
        return d.total_seconds() if d is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def completed_steps(self) -> int:
        """Steps that succeeded."""
        return sum(1 for s in self.steps if s.status == ActionStatus.SUCCEEDED)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_steps(self) -> int:
        """Steps that failed."""
        return sum(1 for s in self.steps if s.status == ActionStatus.FAILED)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def skipped_steps(self) -> int:
        """Steps cancelled."""
        return sum(1 for s in self.steps if s.status == ActionStatus.CANCELLED)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def step_statistics(self) -> dict[str, int]:
        """Counts of steps by outcome."""
        return {
            "completed_steps": self.completed_steps,
            "failed_steps": self.failed_steps,
            "skipped_steps": self.skipped_steps,
            "total_steps": len(self.steps),
        }

    @property
    def state(self) -> WorkflowState:
        """The lifecycle state."""
        return self.status.state

    @property
    def current_step(self) -> Step | None:
        """The step at ``status.current_step_index``, if any."""
        i = self.status.current_step_index
        return self.steps[i] if 0 <= i < len(self.steps) else None

    def definition(self) -> WorkflowDefinition:
        """The definition this run was made from."""
        return WorkflowDefinition(
            name=self.name,
            workflow_definition_id=self.workflow_definition_id,
            definition_metadata=self.definition_metadata,
            parameters=self.parameters,
            steps=self.step_definitions,
        )

    def get_step_by_key(self, key: str) -> Step:
        """The step with that key (KeyError if none)."""
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(f"step with key {key} not found in workflow run {self.workflow_id}")

    def get_step_by_name(self, name: str) -> Step:
        """The step with that name (KeyError if none)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"step {name} not found in workflow run {self.workflow_id}")

    def get_datapoint_id(self, step_key: str | None = None, label: str | None = None) -> str:
        """The id of the datapoint a step (by key or name) produced, under ``label`` if it made several."""
        for step in self.steps:
            if step_key is None or step.key == step_key or step.name == step_key:
                ids = (step.result.datapoints if step.result else None) or {}
                if not ids:
                    raise KeyError(f"no datapoints in step {step_key} of workflow run {self.workflow_id}")
                if label is None:
                    if len(ids) != 1:
                        raise ValueError(
                            f"step {step_key} has several datapoints ({sorted(ids)}): give a label"
                        )
                    value = next(iter(ids.values()))
                elif label in ids:
                    value = ids[label]
                else:
                    raise KeyError(f"label {label} not found in step {step_key} of {self.workflow_id}")
                return value if isinstance(value, str) else value[0]
        raise KeyError(f"no step {step_key} in workflow run {self.workflow_id}")

    def get_datapoint(self, step_key: str | None = None, label: str | None = None) -> Any:
        """The datapoint a step produced, fetched through the client that returned this workflow."""
        if self._datapoint_reader is None:
            raise RuntimeError(
                "this workflow was not returned by a WorkcellClient; use client.get_datapoint(id)"
            )
        return self._datapoint_reader(self.get_datapoint_id(step_key, label))


def load_workflow_definition(source: str | Path | dict[str, Any] | WorkflowDefinition) -> WorkflowDefinition:
    """A workflow definition from a YAML file path, YAML text, a mapping or a definition.

    Raises :class:`WorkflowValidationError` naming the file and the field on bad input.
    """
    if isinstance(source, WorkflowDefinition):
        return source
    origin = "workflow"
    data: Any = source
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(source).expanduser()
        origin = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise WorkflowValidationError(f"cannot read {path}: {exc.strerror}", field="workflow") from None
        except yaml.YAMLError as exc:
            raise WorkflowValidationError(f"{path}: invalid YAML: {exc}", field="workflow") from None
    elif isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise WorkflowValidationError(f"invalid YAML: {exc}", field="workflow") from None
    if not isinstance(data, dict):
        raise WorkflowValidationError(f"{origin}: expected a mapping with name and steps", field="workflow")
    try:
        return WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise WorkflowValidationError(f"{origin}: {_explain(exc, data)}", field="workflow") from None


def _explain(exc: ValidationError, data: dict[str, Any]) -> str:
    parts = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            steps = data.get("steps") or []
            if loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
                s = steps[loc[1]]
                where = f"step '{s.get('name') or s.get('key') or loc[1]}' " + ".".join(
                    str(p) for p in loc[2:]
                )
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
