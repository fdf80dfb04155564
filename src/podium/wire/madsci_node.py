"""The MADSci node REST protocol, as ``madsci.node_module`` 0.8.1 serves it, in pydantic v2 models.

Field names and JSON shapes are exactly MADSci's, so a podium node answers MADSci's ``RestNodeClient`` and
podium's :class:`~podium.nodes.NodeClient` drives nodes written with ``madsci.node_module``.

Routes (``{name}`` an action name, ``{id}`` an action id)::

    GET  /status                     NodeStatus (with computed ``ready`` and ``description``)
    GET  /info                       NodeInfo (actions with their args, locations, files, results)
    GET  /state                      a free-form JSON object
    GET  /log                        {event_id: Event}
    POST /config                     {key: value} -> NodeSetConfigResponse
    POST /admin/{command}            AdminCommandResponse (command from AdminCommands)
    POST /action/{name}              RestActionRequest -> {"action_id": ...}   (422 on bad args)
    POST /action/{name}/{id}/upload/{file_arg}   multipart, the file in a field named ``file``
    POST /action/{name}/{id}/start   ActionResult (REST shape: ``files`` is a list of file keys)
    GET  /action/{name}/{id}/status  a bare JSON string, an ActionStatus value
    GET  /action/{name}/{id}/result  ActionResult
    GET  /action/{name}/{id}/download    a ZIP of the result files (404 when there are none)
    GET  /action?action_id=          {action_id: [ActionResult, ...]} (history)
    GET  /action/{id}/status|result|download   the same without the action name

An unknown action id has status ``unknown`` (HTTP 200). A single ``Path`` result has the file key
``file`` and is zipped under its own file name; several files are zipped as ``{label}{suffix}``.

podium extensions, ignored by MADSci nodes and clients: ``action_id`` in the create body (a podium node
adopts it, which makes create idempotent), and ``?wait_s=`` on the status routes (a podium node holds the
request until the action ends or ``wait_s`` passes and says so with the ``X-Podium-Long-Poll`` header).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, field_validator

from podium.ids import new_ulid_str

__all__ = [
    "LONG_POLL_HEADER",
    "NODE_STATUS_HEADER",
    "ActionDefinition",
    "ActionRequest",
    "ActionResult",
    "ActionResultDefinition",
    "ActionStatus",
    "AdminCommandResponse",
    "AdminCommands",
    "ArgumentDefinition",
    "CreateActionResponse",
    "Error",
    "Event",
    "FileArgumentDefinition",
    "LocationArgument",
    "LocationArgumentDefinition",
    "NodeCapabilities",
    "NodeInfo",
    "NodeSetConfigResponse",
    "NodeStatus",
    "NodeType",
    "RestActionRequest",
    "UploadResponse",
]

LONG_POLL_HEADER = "X-Podium-Long-Poll"
NODE_STATUS_HEADER = "X-Podium-Node-Status"
"""podium extension: a podium node's ``start?wait_s=`` answer carries the node's status after the action
(compact JSON), so a client needs no separate ``/status`` request. MADSci nodes send neither header."""
"""Response header a podium node sets on a status answer when it honoured ``?wait_s=``."""


class _Model(BaseModel):
    # Tolerant readers: newer MADSci releases add fields; unknown ones are ignored, never an error.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ActionStatus(StrEnum):
    """Status of one action on a node (MADSci's values)."""

    NOT_STARTED = "not_started"
    NOT_READY = "not_ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """Whether the action has ended: succeeded, failed, cancelled, or refused as not ready (as MADSci)."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.CANCELLED, ActionStatus.NOT_READY}
)


class AdminCommands(StrEnum):
    """Admin commands a node may accept at ``POST /admin/{command}``."""

    SAFETY_STOP = "safety_stop"
    RESET = "reset"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"
    LOCK = "lock"
    UNLOCK = "unlock"
    GET_LOCATION = "get_location"


class NodeType(StrEnum):
    """What a node provides an interface for."""

    DEVICE = "device"
    COMPUTE = "compute"
    RESOURCE_MANAGER = "resource_manager"
    EVENT_MANAGER = "event_manager"
    WORKCELL_MANAGER = "workcell_manager"
    DATA_MANAGER = "data_manager"
    TRANSFER_MANAGER = "transfer_manager"


def _local_now() -> datetime:
    return datetime.now()


class Error(_Model):
    """An error as MADSci reports it (``logged_at`` is a naive local timestamp in MADSci)."""

    message: str | None = None
    logged_at: datetime = Field(default_factory=_local_now)
    error_type: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> Error:
        """An error carrying the exception's message and class name."""
        return cls(message=str(exc), error_type=type(exc).__name__)


def _coerce_errors(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str | Error | dict):
        value = [value]
    if isinstance(value, list):
        return [Error(message=v) if isinstance(v, str) else v for v in value]
    return value


class LocationArgument(_Model):
    """A location as one node sees it: its own ``representation`` of it, and the location's name."""

    representation: Any = Field(validation_alias=AliasChoices("representation", "location"))
    resource_id: str | None = None
    location_name: str | None = None
    reservation: dict[str, Any] | None = None

    @property
    def location(self) -> Any:
        """The representation (MADSci's older name for it)."""
        return self.representation

    @property
    def name(self) -> str | None:
        """The location's name, when the workcell sent it."""
        return self.location_name


class ActionRequest(_Model):
    """An action to run on a node: what a caller assembles before sending it."""

    action_id: str = Field(default_factory=new_ulid_str)
    action_name: str
    args: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, str | list[str]] = Field(default_factory=dict)
    var_args: list[Any] | None = None
    var_kwargs: dict[str, Any] | None = None


class RestActionRequest(_Model):
    """The body of ``POST /action/{name}``. ``action_id`` is a podium extension (MADSci nodes ignore it)."""

    args: dict[str, Any] = Field(default_factory=dict)
    var_args: list[Any] | None = None
    var_kwargs: dict[str, Any] | None = None
    action_id: str | None = None


class CreateActionResponse(_Model):
    """The answer to ``POST /action/{name}``."""

    action_id: str


class UploadResponse(_Model):
    """The answer to a file upload."""

    status: str = "uploaded"
    file_arg: str
    file_count: int | None = None


class ActionResult(_Model):
    """An action's result over REST: ``files`` lists file keys to fetch from the download route."""

    action_id: str = Field(default_factory=new_ulid_str)
    status: ActionStatus
    errors: list[Error] = Field(default_factory=list)
    json_result: Any = None
    files: list[str] | None = None
    datapoints: dict[str, str | list[str]] | None = None
    history_created_at: datetime | None = Field(default_factory=lambda: datetime.now(UTC))

    _coerce = field_validator("errors", mode="before")(_coerce_errors)

    @field_validator("files", mode="before")
    @classmethod
    def _files_as_keys(cls, value: Any) -> Any:
        # MADSci's in-process results carry a path or a {label: path} mapping; over REST only the keys.
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, str):
            return ["file"]
        return value


class ArgumentDefinition(_Model):
    """One argument of an action."""

    name: str
    description: str = ""
    argument_type: str
    required: bool
    default: Any = None

    @field_validator("description", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value


class LocationArgumentDefinition(ArgumentDefinition):
    """A location argument of an action."""

    argument_type: Literal["location"] = "location"


class FileArgumentDefinition(ArgumentDefinition):
    """A file argument of an action."""

    argument_type: Literal["file"] = "file"


class ActionResultDefinition(_Model):
    """One declared result of an action: ``result_type`` is ``json``, ``file`` or ``datapoint``."""

    result_label: str
    description: str | None = None
    result_type: Literal["json", "file", "datapoint"]
    json_schema: dict[str, Any] | None = None


def _by_name(value: Any, key: str) -> Any:
    if isinstance(value, list):
        return {(item[key] if isinstance(item, dict) else getattr(item, key)): item for item in value}
    return value


class ActionDefinition(_Model):
    """An action a node offers. Lists of definitions are accepted and keyed by name, as MADSci does."""

    name: str
    description: str = ""
    args: dict[str, ArgumentDefinition] = Field(default_factory=dict)
    locations: dict[str, LocationArgumentDefinition] = Field(default_factory=dict)
    files: dict[str, FileArgumentDefinition] = Field(default_factory=dict)
    results: dict[str, ActionResultDefinition] = Field(default_factory=dict)
    blocking: bool = False
    asynchronous: bool = True
    accepts_var_args: bool = False
    accepts_var_kwargs: bool = False
    var_args_schema: dict[str, Any] | None = None
    var_kwargs_schema: dict[str, Any] | None = None

    @field_validator("description", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("args", "locations", "files", mode="before")
    @classmethod
    def _args_by_name(cls, value: Any) -> Any:
        return _by_name(value, "name")

    @field_validator("results", mode="before")
    @classmethod
    def _results_by_label(cls, value: Any) -> Any:
        return _by_name(value, "result_label")


class NodeCapabilities(_Model):
    """What a node supports. ``None`` means not stated."""

    get_info: bool | None = None
    get_state: bool | None = None
    get_status: bool | None = None
    send_action: bool | None = None
    get_action_status: bool | None = None
    get_action_result: bool | None = None
    get_action_history: bool | None = None
    action_files: bool | None = None
    send_admin_commands: bool | None = None
    set_config: bool | None = None
    get_resources: bool | None = None
    get_log: bool | None = None
    events: bool | None = None
    resources: bool | None = None
    admin_commands: list[str] = Field(default_factory=list)


class NodeInfo(_Model):
    """What a node says about itself at ``GET /info``."""

    node_name: str
    node_id: str = Field(default_factory=new_ulid_str)
    node_description: str | None = None
    node_type: NodeType | str = NodeType.DEVICE
    module_name: str
    module_version: str = "0.0.1"
    capabilities: NodeCapabilities | None = None
    node_url: str | None = None
    actions: dict[str, ActionDefinition] = Field(default_factory=dict)
    config: Any = None
    config_schema: dict[str, Any] | None = None
    intrinsic_locations: list[dict[str, Any]] = Field(default_factory=list)
    location_representation_templates: list[dict[str, Any]] = Field(default_factory=list)


class NodeStatus(_Model):
    """A node's status; ``ready`` and ``description`` are computed and serialised, as in MADSci."""

    busy: bool = False
    running_actions: set[str] = Field(default_factory=set)
    paused: bool = False
    locked: bool = False
    stopped: bool = False
    errored: bool = False
    disconnected: bool = False
    errors: list[Error] = Field(default_factory=list)
    initializing: bool = False
    waiting_for_config: set[str] = Field(default_factory=set)
    config_values: dict[str, Any] = Field(default_factory=dict)

    _coerce = field_validator("errors", mode="before")(_coerce_errors)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ready(self) -> bool:
        """Whether the node accepts a new action now."""
        return not (
            self.busy
            or self.locked
            or self.stopped
            or self.errored
            or self.initializing
            or self.paused
            or self.disconnected
            or self.waiting_for_config
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def description(self) -> str:
        """Why the node is not ready, or ``Node is ready``."""
        reasons = [
            text
            for flag, text in (
                (self.busy, "Node is busy"),
                (self.locked, "Node is locked"),
                (self.stopped, "Node is stopped"),
                (self.errored, "Node is in an error state"),
                (self.disconnected, "Node is disconnected"),
                (self.initializing, "Node is initializing"),
                (self.paused, "Node is paused"),
            )
            if flag
        ]
        if self.waiting_for_config:
            reasons.append(f"Node is missing configuration values: {sorted(self.waiting_for_config)}")
        return "; ".join(reasons) if reasons else "Node is ready"


class AdminCommandResponse(_Model):
    """The answer to an admin command."""

    success: bool = True
    errors: list[Error] = Field(default_factory=list)
    data: Any = None

    _coerce = field_validator("errors", mode="before")(_coerce_errors)


class NodeSetConfigResponse(_Model):
    """The answer to ``POST /config``."""

    success: bool


class Event(_Model):
    """One entry of a node's log (``GET /log``); serialised with ``_id`` as MADSci does."""

    event_id: str = Field(
        default_factory=new_ulid_str,
        serialization_alias="_id",
        validation_alias=AliasChoices("_id", "event_id"),
    )
    event_type: str = "unknown"
    log_level: int = 20
    alert: bool = False
    event_timestamp: datetime = Field(default_factory=_local_now)
    source: dict[str, Any] = Field(default_factory=dict)
    event_data: Any = Field(default_factory=dict)
