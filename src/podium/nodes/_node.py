"""The node SDK: write an instrument node as a class with typed action methods.

A node is a :class:`RestNode` subclass whose methods marked with :func:`action` become actions. Parameter
type hints say what each argument is: ``Path`` (or ``list[Path]``) parameters are file inputs,
``LocationArgument`` parameters are locations, a parameter named ``action`` receives the
:class:`~podium.wire.madsci_node.ActionRequest`, and everything else is a JSON argument validated by
pydantic. An action returns JSON values, a ``Path``, an :class:`ActionFiles`, a tuple of those, or an
:class:`~podium.wire.madsci_node.ActionResult`; it fails by raising (:class:`ActionFailed` fails the action
only, any other exception also marks the node errored, as MADSci does).

Action lifecycle (MADSci's)::

    create -> not_started -> (start) -> running -> succeeded | failed | cancelled
                                     \\-> not_ready   (node busy, locked, paused, errored, stopped)
                                     \\-> failed      (missing file, bad arguments)

One blocking action runs at a time (``max_concurrent_actions``); ``@action(blocking=False)`` actions run
beside them. Sync action methods run in a worker thread; async ones on the node's event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import re
import shutil
import tempfile
import types
import typing
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from podium.clock import Clock, system_clock
from podium.errors import InvalidInputError
from podium.ids import is_ulid, new_ulid_str
from podium.tokens import TokenSet
from podium.wire.madsci_node import (
    ActionDefinition,
    ActionRequest,
    ActionResult,
    ActionResultDefinition,
    ActionStatus,
    AdminCommandResponse,
    AdminCommands,
    ArgumentDefinition,
    Error,
    Event,
    FileArgumentDefinition,
    LocationArgument,
    LocationArgumentDefinition,
    NodeCapabilities,
    NodeInfo,
    NodeStatus,
    NodeType,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["NODE_TOKEN_ENV", "ActionFailed", "ActionFiles", "RestNode", "action", "current_action"]

NODE_TOKEN_ENV = "NODE_API_TOKEN"
"""The variable a node reads its token(s) from when none are given (comma-separated for several)."""

logger = logging.getLogger("podium.nodes")

F = TypeVar("F", bound=Callable[..., Any])

_ACTION_ATTR = "__podium_action__"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

_current_action: contextvars.ContextVar[ActionRequest | None] = contextvars.ContextVar(
    "podium_current_action", default=None
)


def current_action() -> ActionRequest | None:
    """The request of the action running in this context (inside an action method), else ``None``."""
    return _current_action.get()


class ActionFailed(Exception):
    """Raise inside an action to fail it with ``message`` without marking the node errored."""

    def __init__(self, message: str, *, error_type: str = "ActionFailed", json_result: Any = None) -> None:
        self.message, self.error_type, self.json_result = message, error_type, json_result
        super().__init__(message)


class ActionFiles(BaseModel):
    """Several files returned by one action: subclass with ``Path`` fields, one per result label."""

    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict[str, Path]:
        """The files by label."""
        return {k: Path(v) for k, v in self.model_dump().items()}


@dataclass(frozen=True)
class _ActionMeta:
    name: str | None
    description: str | None
    blocking: bool


@overload
def action(func: F, /) -> F: ...


@overload
def action(
    *, name: str | None = None, description: str | None = None, blocking: bool = True
) -> Callable[[F], F]: ...


def action(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    blocking: bool = True,
) -> F | Callable[[F], F]:
    """Mark a node method as an action (``@action`` or ``@action(name=..., blocking=False)``).

    Args:
        func: The method, when used bare.
        name: The action's name; the method's name by default.
        description: Shown in ``/info``; the docstring's first paragraph by default.
        blocking: Whether the action takes the node's one action slot (default) or runs beside others.
    """

    def mark(f: F) -> F:
        if not callable(f):
            raise TypeError("@action marks a method")
        setattr(f, _ACTION_ATTR, _ActionMeta(name=name, description=description, blocking=blocking))
        return f

    return mark(func) if func is not None else mark


# --------------------------------------------------------------------------------------------------
# Reading an action's signature
# --------------------------------------------------------------------------------------------------


def _strip_annotated(tp: Any) -> tuple[Any, list[Any]]:
    meta: list[Any] = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, meta = args[0], meta + list(args[1:])
    return tp, meta


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(get_args(tp)):
            return _strip_annotated(args[0])[0], True
    return tp, False


def _is_path_list(tp: Any) -> bool:
    return get_origin(tp) in (list, typing.List) and get_args(tp) == (Path,)  # noqa: UP006


def _type_repr(tp: Any) -> str:
    if isinstance(tp, type) and get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "")


@dataclass(frozen=True)
class _FileParam:
    required: bool
    is_list: bool


@dataclass
class _ActionSpec:
    name: str
    func: Callable[..., Any]
    blocking: bool
    args_model: type[BaseModel]
    file_params: dict[str, _FileParam]
    location_params: frozenset[str]
    wants_action: bool
    is_async: bool
    definition: ActionDefinition


def _result_definitions(ret: Any) -> list[ActionResultDefinition]:
    if ret is inspect.Signature.empty or ret is None or ret is type(None):
        return []
    ret, _ = _strip_annotated(ret)
    if get_origin(ret) is tuple:
        out: list[ActionResultDefinition] = []
        for part in get_args(ret):
            if part is not Ellipsis:
                out.extend(_result_definitions(part))
        return out
    if ret is Path:
        return [ActionResultDefinition(result_label="file", result_type="file")]
    if isinstance(ret, type) and issubclass(ret, ActionFiles):
        return [
            ActionResultDefinition(result_label=label, result_type="file", description=f.description)
            for label, f in ret.model_fields.items()
        ]
    if isinstance(ret, type) and issubclass(ret, ActionResult):
        return []
    try:
        schema: dict[str, Any] | None = TypeAdapter(ret).json_schema()
    except Exception:  # a return type pydantic cannot describe still works; it just has no schema
        schema = None
    return [ActionResultDefinition(result_label="json_result", result_type="json", json_schema=schema)]


def _build_spec(func: Callable[..., Any], meta: _ActionMeta) -> _ActionSpec:
    name = meta.name or func.__name__
    doc = meta.description if meta.description is not None else inspect.getdoc(func) or ""
    description = doc.split("\n\n")[0].strip()
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    definition = ActionDefinition(name=name, description=description, blocking=meta.blocking)
    file_params: dict[str, _FileParam] = {}
    locations: set[str] = set()
    wants_action = False
    for pname, param in signature.parameters.items():
        if pname == "self":
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise InvalidInputError(
                "*args/**kwargs are not supported in podium actions", field=f"{name}.{pname}"
            )
        if pname == "action":
            wants_action = True
            continue
        hint = hints.get(pname, Any)
        base, meta_items = _strip_annotated(hint)
        inner, optional = _strip_optional(base)
        arg_doc = next((m for m in meta_items if isinstance(m, str)), "")
        has_default = param.default is not inspect.Parameter.empty
        required = not (has_default or optional)
        if inner is Path or _is_path_list(inner):
            file_params[pname] = _FileParam(required=required, is_list=inner is not Path)
            definition.files[pname] = FileArgumentDefinition(
                name=pname, description=arg_doc, required=required
            )
            continue
        default = param.default if has_default else (None if optional else ...)
        fields[pname] = (hint, default)
        if inner is LocationArgument or (isinstance(inner, type) and issubclass(inner, LocationArgument)):
            locations.add(pname)
            definition.locations[pname] = LocationArgumentDefinition(
                name=pname, description=arg_doc, required=required
            )
        else:
            definition.args[pname] = ArgumentDefinition(
                name=pname,
                description=arg_doc,
                argument_type=_type_repr(inner),
                required=required,
                default=param.default if has_default else None,
            )
    for result in _result_definitions(hints.get("return", signature.return_annotation)):
        definition.results[result.result_label] = result
    model_name = "".join(w.capitalize() for w in name.split("_")) + "Args"
    args_model = create_model(model_name, __config__=ConfigDict(extra="ignore"), **fields)
    return _ActionSpec(
        name=name,
        func=func,
        blocking=meta.blocking,
        args_model=args_model,
        file_params=file_params,
        location_params=frozenset(locations),
        wants_action=wants_action,
        is_async=inspect.iscoroutinefunction(func),
        definition=definition,
    )


# --------------------------------------------------------------------------------------------------
# Action runs
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    request: ActionRequest
    spec: _ActionSpec
    args: BaseModel
    status: ActionStatus = ActionStatus.NOT_STARTED
    errors: list[Error] = field(default_factory=list)
    json_result: Any = None
    files: dict[str, Path] = field(default_factory=dict)
    datapoints: dict[str, str | list[str]] | None = None
    history: list[ActionResult] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def result(self) -> ActionResult:
        return ActionResult(
            action_id=self.request.action_id,
            status=self.status,
            errors=list(self.errors),
            json_result=self.json_result,
            files=list(self.files) or None,
            datapoints=self.datapoints,
        )


class RestNode:
    """Base class of a node served over MADSci's node REST protocol.

    Class attributes a subclass may set: ``node_name``, ``node_description``, ``module_name``,
    ``module_version``, ``node_type``, ``max_concurrent_actions`` (blocking actions at once, default 1),
    ``error_on_exception`` (an unexpected exception marks the node errored, default True).

    Hooks a subclass may override: ``startup_handler`` / ``shutdown_handler`` (sync, called at start, on
    ``reset`` and at shutdown) and ``state_handler`` (returns the ``/state`` document; ``node_state`` by
    default). Admin commands call the methods of the same name (``lock``, ``pause``, ``reset``, ...);
    override them and call ``super()``.

    Args:
        node_name: Overrides the class's ``node_name`` (default: the class name in snake case).
        node_id: A stable id (ULID); a new one by default.
        node_url: The URL the node is reachable at, shown in ``/info``.
        clock: The clock for every wait in this node (long polls, simulated durations).
        work_dir: Where uploads and outputs go; a fresh temporary directory by default.
        history_limit: How many finished actions the node remembers.
        api_tokens: Tokens that open the node's API (kept only hashed): strings or a
            :class:`~podium.tokens.TokenSet`. Default: ``NODE_API_TOKEN`` (comma-separated for several),
            else none, and the node answers anyone. With tokens, every route but the docs answers 401
            without one (``Authorization: Bearer``, Basic auth from ``http://podium:<token>@host``, or
            ``X-Client-Token``).
    """

    node_name: ClassVar[str | None] = None
    node_description: ClassVar[str | None] = None
    module_name: ClassVar[str | None] = None
    module_version: ClassVar[str] = "0.1.0"
    node_type: ClassVar[NodeType] = NodeType.DEVICE
    max_concurrent_actions: ClassVar[int] = 1
    error_on_exception: ClassVar[bool] = True

    def __init__(
        self,
        *,
        node_name: str | None = None,
        node_id: str | None = None,
        node_url: str | None = None,
        clock: Clock = system_clock,
        work_dir: Path | str | None = None,
        history_limit: int = 1000,
        config: dict[str, Any] | None = None,
        api_tokens: TokenSet | Iterable[str] | None = None,
    ) -> None:
        if api_tokens is None:
            api_tokens = [t.strip() for t in os.environ.get(NODE_TOKEN_ENV, "").split(",") if t.strip()]
        self.api_tokens: TokenSet = (
            api_tokens if isinstance(api_tokens, TokenSet) else TokenSet.from_tokens(api_tokens)
        )
        cls_name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()
        self.name: str = node_name or type(self).node_name or cls_name
        self.clock = clock
        self._own_work_dir = work_dir is None
        self.work_dir = (
            Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="podium-node-"))
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.node_state: dict[str, Any] = {}
        self.config: dict[str, Any] = dict(config or {})
        self.status = NodeStatus(initializing=True)
        self._history_limit = history_limit
        self._pending: dict[str, _Run] = {}
        self._runs: dict[str, _Run] = {}
        self._log: dict[str, Event] = {}
        self._blocking_running = 0
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._started = False
        self.shutdown_callback: Callable[[], None] | None = None
        self.actions: dict[str, _ActionSpec] = {}
        for klass in reversed(type(self).__mro__):
            for attr in vars(klass).values():
                meta = getattr(attr, _ACTION_ATTR, None)
                if isinstance(meta, _ActionMeta):
                    spec = _build_spec(attr, meta)
                    self.actions[spec.name] = spec
        self.info = NodeInfo(
            node_name=self.name,
            node_id=node_id or new_ulid_str(),
            node_description=type(self).node_description or inspect.getdoc(type(self)),
            node_type=type(self).node_type,
            module_name=type(self).module_name or cls_name,
            module_version=type(self).module_version,
            node_url=node_url,
            capabilities=NodeCapabilities(
                get_info=True,
                get_state=True,
                get_status=True,
                send_action=True,
                get_action_status=True,
                get_action_result=True,
                get_action_history=True,
                action_files=True,
                send_admin_commands=True,
                set_config=True,
                get_resources=False,
                get_log=True,
                admin_commands=sorted(c.value for c in self._admin_commands()),
            ),
            actions={name: spec.definition for name, spec in self.actions.items()},
            config=self.config,
        )

    # ----------------------------------------------------------------------------------------------
    # Hooks
    # ----------------------------------------------------------------------------------------------

    def startup_handler(self) -> None:
        """Open connections to the instrument; called at start and on ``reset``."""

    def shutdown_handler(self) -> None:
        """Release the instrument; called at shutdown and on ``reset``."""

    def configure_app(self, app: FastAPI) -> None:
        """Add routes of your own to the node's FastAPI app (called once per app built)."""

    def state_handler(self) -> dict[str, Any]:
        """The document served at ``/state``: ``node_state`` unless overridden."""
        return self.node_state

    # ----------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Run ``startup_handler`` once (the ASGI lifespan does it; so does :meth:`asgi_transport`)."""
        if self._started:
            return
        self._started = True
        try:
            self.startup_handler()
        except Exception as exc:
            self._record_exception(exc, errored=True)
        finally:
            self.status.initializing = False
        self.log_event("node_start", {"node_name": self.name, "node_id": self.info.node_id})

    async def aclose(self) -> None:
        """Cancel running actions and call ``shutdown_handler``. Idempotent."""
        runs = [r for r in self._runs.values() if r.task is not None and not r.task.done()]
        for run in runs:
            assert run.task is not None
            run.task.cancel()
        for run in runs:
            assert run.task is not None
            await asyncio.gather(run.task, return_exceptions=True)
        if self._started:
            self._started = False
            try:
                self.shutdown_handler()
            except Exception as exc:
                self._record_exception(exc, errored=False)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self._own_work_dir = False

    def create_app(self) -> FastAPI:
        """A FastAPI app serving this node (startup and shutdown in its lifespan)."""
        from podium.nodes._app import create_node_app

        return create_node_app(self)

    def asgi_transport(self) -> Any:
        """An ``httpx.ASGITransport`` to this node's app, for socket-free tests (starts the node)."""
        import httpx

        self.ensure_started()
        return httpx.ASGITransport(app=self.create_app())

    def start_node(self, host: str = "127.0.0.1", port: int = 2000) -> None:
        """Serve the node with uvicorn until shut down (blocking; ``shutdown`` admin command stops it)."""
        import uvicorn

        if self.info.node_url is None:
            self.info.node_url = f"http://{host}:{port}"
        server = uvicorn.Server(uvicorn.Config(self.create_app(), host=host, port=port, log_level="warning"))

        def stop() -> None:
            server.should_exit = True

        self.shutdown_callback = stop
        server.run()

    # ----------------------------------------------------------------------------------------------
    # Helpers for action code
    # ----------------------------------------------------------------------------------------------

    def output_path(self, filename: str) -> Path:
        """A path for an output file of the running action (its own folder under ``work_dir``)."""
        req = _current_action.get()
        folder = self.work_dir / "outputs" / (req.action_id if req is not None else "misc")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / _safe_filename(filename)

    async def wait_if_paused(self) -> None:
        """Inside an action: wait while the node is paused (a checkpoint for ``pause``/``resume``)."""
        await self._resumed.wait()

    def log_event(self, event_type: str, data: Any, *, level: int = logging.INFO) -> None:
        """Add an entry to the node's ``/log`` (bounded to the latest 1000)."""
        event = Event(
            event_type=event_type, log_level=level, event_data=data, source={"node_id": self.info.node_id}
        )
        self._log[event.event_id] = event
        while len(self._log) > 1000:
            self._log.pop(next(iter(self._log)))
        logger.log(level, "%s: %s", event_type, data, extra={"node": self.name})

    # ----------------------------------------------------------------------------------------------
    # Admin commands
    # ----------------------------------------------------------------------------------------------

    def _admin_commands(self) -> list[AdminCommands]:
        return [c for c in AdminCommands if callable(getattr(self, c.value, None))]

    def lock(self) -> bool:
        """Refuse new actions until ``unlock``."""
        self.status.locked = True
        return True

    def unlock(self) -> bool:
        """Accept actions again after ``lock``."""
        self.status.locked = False
        return True

    def pause(self) -> bool:
        """Refuse new actions; running ones stop at their next :meth:`wait_if_paused`."""
        self.status.paused = True
        self._resumed.clear()
        return True

    def resume(self) -> bool:
        """Undo ``pause``."""
        self.status.paused = False
        self._resumed.set()
        return True

    def cancel(self) -> bool:
        """Cancel every running action (they end ``cancelled``)."""
        for run in list(self._runs.values()):
            if run.task is not None and not run.task.done():
                run.task.cancel()
        return True

    def safety_stop(self) -> bool:
        """Cancel running actions and refuse new ones until ``reset``."""
        self.status.stopped = True
        return self.cancel()

    def reset(self) -> bool:
        """Re-initialise: ``shutdown_handler`` then ``startup_handler``; clears errored/locked/paused/stopped."""
        try:
            self.shutdown_handler()
        except Exception as exc:
            self._record_exception(exc, errored=False)
        self.status.errored = self.status.locked = self.status.stopped = False
        self.resume()
        self.startup_handler()
        return True

    def shutdown(self) -> bool:
        """Stop serving (when the server that runs this node supports it)."""
        if self.shutdown_callback is None:
            return False
        self.shutdown_callback()
        return True

    def run_admin_command(self, command: AdminCommands) -> AdminCommandResponse:
        """Run an admin command; one the node does not implement answers ``success: false``."""
        method = getattr(self, command.value, None)
        if command not in self._admin_commands() or method is None:
            return AdminCommandResponse(
                success=False,
                errors=[
                    Error(
                        message=f"Admin command {command.value} not implemented by this node",
                        error_type="AdminCommandNotImplemented",
                    )
                ],
            )
        try:
            outcome = method()
        except Exception as exc:
            self._record_exception(exc, errored=True)
            return AdminCommandResponse(success=False, errors=[Error.from_exception(exc)])
        self.log_event("admin_command", {"command": command.value, "result": outcome})
        if isinstance(outcome, AdminCommandResponse):
            return outcome
        return AdminCommandResponse(success=outcome is None or bool(outcome))

    # ----------------------------------------------------------------------------------------------
    # The action protocol (used by the app)
    # ----------------------------------------------------------------------------------------------

    def create_action(self, action_name: str, body: dict[str, Any]) -> str:
        """Record a new action; return its id. Raises ``KeyError`` (unknown action) or ``ValidationError``."""
        spec = self.actions[action_name]
        wanted = body.get("action_id")
        if isinstance(wanted, str) and is_ulid(wanted):
            if wanted in self._pending or wanted in self._runs:
                return wanted  # idempotent: the caller retried a create it had already sent
            action_id = wanted
        else:
            action_id = new_ulid_str()
        raw_args = body.get("args") or {}
        if not isinstance(raw_args, dict):
            raise InvalidInputError("args must be a JSON object", field="args")
        args = spec.args_model.model_validate(raw_args)
        request = ActionRequest(
            action_id=action_id,
            action_name=action_name,
            args=args.model_dump(mode="json"),
            var_args=body.get("var_args"),
            var_kwargs=body.get("var_kwargs"),
        )
        self._pending[action_id] = _Run(request=request, spec=spec, args=args)
        return action_id

    def pending_upload_dir(self, action_id: str) -> Path:
        """Where uploads for a created action go."""
        folder = self.work_dir / "uploads" / action_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def attach_files(self, action_id: str, file_arg: str, paths: list[Path]) -> int:
        """Attach uploaded files to a created action. Raises ``KeyError`` for an unknown action or argument."""
        run = self._pending[action_id]
        param = run.spec.file_params.get(file_arg)
        if param is None:
            raise KeyError(file_arg)
        run.request.files[file_arg] = [str(p) for p in paths] if param.is_list else str(paths[0])
        return len(paths)

    def start_action(self, action_id: str) -> ActionResult:
        """Start a created action; idempotent for one already started."""
        run = self._pending.pop(action_id, None)
        if run is None:
            known = self._runs.get(action_id)
            if known is not None:
                return known.result()
            return ActionResult(
                action_id=action_id,
                status=ActionStatus.FAILED,
                errors=[Error(message=f"Action {action_id} not found", error_type="NotFound")],
            )
        self._remember(run)
        missing = [
            name for name, p in run.spec.file_params.items() if p.required and name not in run.request.files
        ]
        if missing:
            self._finish(
                run,
                ActionStatus.FAILED,
                [Error(message=f"Missing required files: {missing}", error_type="ValueError")],
            )
            return run.result()
        if not self.status.ready:
            error = Error(message=f"Node is not ready: {self.status.description}", error_type="NodeNotReady")
            self._finish(run, ActionStatus.NOT_READY, [error])
            return run.result()
        self._set_status(run, ActionStatus.RUNNING)
        self.status.running_actions.add(action_id)
        if run.spec.blocking:
            self._blocking_running += 1
            self.status.busy = self._blocking_running >= self.max_concurrent_actions
        run.task = asyncio.get_running_loop().create_task(self._execute(run), name=f"action-{action_id}")
        run.task.add_done_callback(functools.partial(self._task_done, run))
        return run.result()

    def get_run(self, action_id: str) -> _Run | None:
        """The started action with that id, if the node remembers it."""
        return self._runs.get(action_id)

    def action_status(self, action_id: str) -> ActionStatus:
        """The status of an action; ``not_started`` when only created, ``unknown`` when not known."""
        if action_id in self._pending:
            return ActionStatus.NOT_STARTED
        run = self._runs.get(action_id)
        return run.status if run is not None else ActionStatus.UNKNOWN

    def action_result(self, action_id: str) -> ActionResult:
        """The latest result of an action (status ``unknown`` with an error when not known)."""
        run = self._runs.get(action_id) or self._pending.get(action_id)
        if run is not None:
            return run.result()
        return ActionResult(
            action_id=action_id,
            status=ActionStatus.UNKNOWN,
            errors=[
                Error(
                    message=f"Action history for action with id '{action_id}' not found",
                    error_type="ActionHistoryNotFound",
                )
            ],
        )

    def action_history(self, action_id: str | None = None) -> dict[str, list[ActionResult]]:
        """Every status change of one action, or of all the node remembers."""
        if action_id is not None:
            run = self._runs.get(action_id)
            return {action_id: list(run.history) if run is not None else [self.action_result(action_id)]}
        return {aid: list(run.history) for aid, run in self._runs.items()}

    def write_files_zip(self, action_id: str, dest: Path) -> bool:
        """Zip an action's result files into ``dest``; ``False`` when it has none."""
        run = self._runs.get(action_id)
        if run is None or not run.files:
            return False
        with zipfile.ZipFile(dest, "w") as zf:
            if list(run.files) == ["file"]:
                path = run.files["file"]
                zf.write(path, path.name)
            else:
                for label, path in run.files.items():
                    zf.write(path, f"{label}{path.suffix}")
        return True

    # ----------------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------------

    def _remember(self, run: _Run) -> None:
        self._runs[run.request.action_id] = run
        # Forget the oldest finished actions beyond the limit (dicts keep start order).
        for action_id in list(self._runs):
            if len(self._runs) <= self._history_limit:
                break
            if self._runs[action_id].status.is_terminal:
                del self._runs[action_id]

    def _set_status(self, run: _Run, status: ActionStatus) -> None:
        run.status = status
        result = run.result()
        run.history.append(result)
        self.log_event("action_status_change", {"action_id": run.request.action_id, "status": status.value})

    def _finish(self, run: _Run, status: ActionStatus, errors: list[Error]) -> None:
        run.errors.extend(errors)
        self._set_status(run, status)
        run.done.set()

    def _record_exception(self, exc: BaseException, *, errored: bool) -> None:
        if errored:
            self.status.errored = True
        self.status.errors.append(Error.from_exception(exc))
        del self.status.errors[:-100]
        logger.error("node %s: %s: %s", self.name, type(exc).__name__, exc, extra={"node": self.name})

    def _call_kwargs(self, run: _Run) -> dict[str, Any]:
        kwargs: dict[str, Any] = {name: getattr(run.args, name) for name in type(run.args).model_fields}
        for name, param in run.spec.file_params.items():
            value = run.request.files.get(name)
            if value is None:
                kwargs[name] = None
            elif param.is_list:
                kwargs[name] = [Path(v) for v in value] if isinstance(value, list) else [Path(value)]
            else:
                kwargs[name] = Path(value[0] if isinstance(value, list) else value)
        if run.spec.wants_action:
            kwargs["action"] = run.request
        return kwargs

    async def _execute(self, run: _Run) -> None:
        token = _current_action.set(run.request)
        status: ActionStatus = ActionStatus.SUCCEEDED
        errors: list[Error] = []
        try:
            kwargs = self._call_kwargs(run)
            if run.spec.is_async:
                value = await run.spec.func(self, **kwargs)
            else:
                value = await asyncio.to_thread(run.spec.func, self, **kwargs)
            status, errors = self._apply_return(run, value)
        except asyncio.CancelledError:
            status, errors = (
                ActionStatus.CANCELLED,
                [Error(message="Action cancelled", error_type="Cancelled")],
            )
        except ActionFailed as exc:
            status, errors = ActionStatus.FAILED, [Error(message=exc.message, error_type=exc.error_type)]
            run.json_result = exc.json_result
        except Exception as exc:
            self._record_exception(exc, errored=self.error_on_exception)
            status, errors = ActionStatus.FAILED, [Error.from_exception(exc)]
        finally:
            _current_action.reset(token)
            self._end_run(run, status, errors)

    def _end_run(self, run: _Run, status: ActionStatus, errors: list[Error]) -> None:
        if run.done.is_set():
            return
        self.status.running_actions.discard(run.request.action_id)
        if run.spec.blocking:
            self._blocking_running -= 1
            self.status.busy = self._blocking_running >= self.max_concurrent_actions
        self._finish(run, status, errors)

    def _task_done(self, run: _Run, task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs _execute's cleanup: end the run here.
        if task.cancelled():
            self._end_run(
                run, ActionStatus.CANCELLED, [Error(message="Action cancelled", error_type="Cancelled")]
            )

    def _apply_return(self, run: _Run, value: Any) -> tuple[ActionStatus, list[Error]]:
        if isinstance(value, ActionResult):
            run.json_result = value.json_result
            run.datapoints = value.datapoints
            status = value.status if value.status.is_terminal else ActionStatus.SUCCEEDED
            return status, list(value.errors)
        parts = value if isinstance(value, tuple) else (value,)
        json_parts: list[Any] = []
        for part in parts:
            if isinstance(part, Path):
                run.files["file" if not run.files else f"file_{len(run.files)}"] = part
            elif isinstance(part, ActionFiles):
                run.files.update(part.as_dict())
            elif isinstance(part, BaseModel):
                json_parts.append(part.model_dump(mode="json"))
            elif part is not None:
                json_parts.append(part)
        if len(json_parts) == 1:
            run.json_result = json_parts[0]
        elif json_parts:
            merged: dict[str, Any] = {}
            for i, item in enumerate(json_parts):
                if isinstance(item, dict):
                    merged.update(item)
                else:
                    merged[f"result_{i}"] = item
            run.json_result = merged
        return ActionStatus.SUCCEEDED, []


def _safe_filename(name: str) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name).name).strip("._")
    return cleaned or "file"


def iter_form_files(form: Any) -> Iterator[Any]:
    """Every uploaded file in a multipart form, whatever its field name."""
    for _, value in form.multi_items():
        if hasattr(value, "filename") and hasattr(value, "read"):
            yield value
