"""How the workcell reaches its nodes: one small protocol, :class:`NodeConnector`.

The workcell never speaks HTTP to nodes itself. A connector runs one action end to end under a
caller-chosen ``action_id`` (so a crash can be reconciled with the node by that id), reports when the node
has acknowledged the action, and answers status/info/state/admin. :func:`http_connector` adapts
``podium.nodes.NodeClient`` (the MADSci node REST protocol); :class:`InProcessNode` runs Python callables
as a node (tests, demos, benchmarks) with the same contract.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from podium.clock import Clock, system_clock
from podium.workcell.actions import ActionStatus, Error

__all__ = [
    "ActionCall",
    "ActionOutcome",
    "ConnectorFactory",
    "InProcessNode",
    "NodeConnector",
    "http_connector",
]


@dataclass(slots=True)
class ActionCall:
    """One action to run: the stable ``action_id`` is chosen (and journaled) before anything is sent."""

    action_id: str
    action_name: str
    args: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    created_as: str | None = None
    """The node already holds this action created, under this id (acknowledged before a crash, never
    started): send its files and start it by that id instead of creating it again."""


@dataclass(slots=True)
class ActionOutcome:
    """What came of an action. ``files`` are local copies of the result files (label -> path)."""

    action_id: str
    status: ActionStatus
    errors: list[Error] = field(default_factory=list)
    json_result: Any = None
    files: dict[str, Path] = field(default_factory=dict)
    datapoints: dict[str, Any] | None = None
    node_status: dict[str, Any] | None = None
    """The node's status read right after the action, when the connector has it."""


Acknowledged = Callable[[str], Awaitable[None]]
"""Called with the node's own id for the action once the node has accepted it."""


@runtime_checkable
class NodeConnector(Protocol):
    """The contract the workcell relies on. Every method may raise on a transport failure."""

    url: str

    async def get_status(self) -> dict[str, Any]:
        """The node's ``/status`` JSON (with ``ready``)."""
        ...

    async def get_info(self) -> dict[str, Any]:
        """The node's ``/info`` JSON (with ``actions``)."""
        ...

    async def get_state(self) -> dict[str, Any]:
        """The node's ``/state`` JSON."""
        ...

    async def send_admin_command(self, command: str) -> dict[str, Any]:
        """Send an admin command (lock, unlock, reset, shutdown, ...)."""
        ...

    async def run_action(
        self, call: ActionCall, *, on_acknowledged: Acknowledged | None = None
    ) -> ActionOutcome:
        """Run the action to a terminal status and return its result (files downloaded locally).

        Calls ``on_acknowledged`` with the node's id for the action once the node has accepted it (before
        it starts). podium nodes adopt ``action_id``; MADSci nodes make their own id, which is why the
        workcell journals the acknowledged id and reconciles with it.
        """
        ...

    async def get_action_outcome(self, node_action_id: str, action_name: str) -> ActionOutcome:
        """What the node knows now about an action (by the node's id for it): ``unknown`` if it has no
        record of it; for a terminal action, its full result. Used to reconcile after a crash."""
        ...

    async def await_action(self, node_action_id: str, action_name: str) -> ActionOutcome:
        """Wait for an action the node already has to end; return its result."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


ConnectorFactory = Callable[[str, str], NodeConnector]
"""``(node_name, url) -> NodeConnector``."""


def http_connector(name: str, url: str) -> NodeConnector:
    """A connector over HTTP to a MADSci-protocol node, through ``podium.nodes.NodeClient``."""
    from podium.workcell._http_nodes import HttpNodeConnector

    return HttpNodeConnector(name, url)


ActionFn = Callable[..., Any]


class InProcessNode:
    """A node made of Python callables, behind the same contract as a remote node.

    Each action is a function (sync or async) taking the step's args by name (locations arrive as
    :class:`dict` location arguments, files as paths) and returning a JSON value, or a ``dict`` with
    ``json_result``/``files``; raising fails the action. ``delay_s`` makes every action take that long on
    the given clock. Actions are remembered by id, so re-sending an id does not run it twice.
    """

    def __init__(
        self,
        name: str,
        actions: Mapping[str, ActionFn],
        *,
        clock: Clock | None = None,
        delay_s: float = 0.0,
        url: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.url = url or f"inprocess://{name}"
        self.actions = dict(actions)
        self.clock = clock or system_clock
        self.delay_s = delay_s
        self.state: dict[str, Any] = state if state is not None else {}
        self.ready = True
        self.locked = False
        self.runs: dict[str, asyncio.Task[ActionOutcome]] = {}
        self.calls: list[ActionCall] = []
        self.admin_log: list[str] = []
        self.acknowledged = asyncio.Event()
        """Set once an action has been accepted and its acknowledgement recorded by the caller."""
        self.gate: asyncio.Event | None = None
        """When set, actions wait for it to be set before finishing (tests hold steps in flight)."""

    async def get_status(self) -> dict[str, Any]:
        busy = any(not t.done() for t in self.runs.values())
        ready = self.ready and not self.locked
        return {
            "ready": ready,
            "busy": busy,
            "locked": self.locked,
            "errored": False,
            "disconnected": False,
            "description": "OK" if ready else ("locked" if self.locked else "not ready"),
        }

    async def get_info(self) -> dict[str, Any]:
        actions: dict[str, Any] = {}
        for name, fn in self.actions.items():
            args = {}
            for pname, param in inspect.signature(fn).parameters.items():
                if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    continue
                args[pname] = {"name": pname, "required": param.default is inspect.Parameter.empty}
            actions[name] = {
                "name": name,
                "description": fn.__doc__ or "",
                "args": args,
                "locations": {},
                "files": {},
            }
        return {
            "node_name": self.name,
            "node_id": self.name,
            "module_name": "podium.workcell.InProcessNode",
            "module_version": "0.1.0",
            "node_url": self.url,
            "actions": actions,
            "capabilities": {"admin_commands": ["lock", "unlock", "reset", "shutdown"]},
        }

    async def get_state(self) -> dict[str, Any]:
        return dict(self.state)

    async def send_admin_command(self, command: str) -> dict[str, Any]:
        self.admin_log.append(command)
        if command == "lock":
            self.locked = True
        elif command == "unlock":
            self.locked = False
        return {"success": True, "errors": []}

    async def run_action(
        self, call: ActionCall, *, on_acknowledged: Acknowledged | None = None
    ) -> ActionOutcome:
        self.calls.append(call)
        task = self.runs.get(call.created_as or call.action_id)
        if task is None:
            # Created: acknowledged (and journaled by the caller) before it starts, like a remote node.
            if on_acknowledged is not None:
                await on_acknowledged(call.action_id)
            task = asyncio.ensure_future(self._execute(call))
            self.runs[call.action_id] = task
        elif on_acknowledged is not None:
            await on_acknowledged(call.action_id)
        self.acknowledged.set()
        return await asyncio.shield(task)

    async def get_action_outcome(self, action_id: str, action_name: str) -> ActionOutcome:
        task = self.runs.get(action_id)
        if task is None:
            return ActionOutcome(action_id, ActionStatus.UNKNOWN)
        if not task.done():
            return ActionOutcome(action_id, ActionStatus.RUNNING)
        return task.result()

    async def await_action(self, action_id: str, action_name: str) -> ActionOutcome:
        task = self.runs.get(action_id)
        if task is None:
            return ActionOutcome(action_id, ActionStatus.UNKNOWN)
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        return None

    async def _execute(self, call: ActionCall) -> ActionOutcome:
        fn = self.actions.get(call.action_name)
        if fn is None:
            return ActionOutcome(
                call.action_id, ActionStatus.FAILED, [Error(message=f"no action {call.action_name}")]
            )
        try:
            if self.delay_s:
                await self.clock.sleep(self.delay_s)
            if self.gate is not None:
                await self.gate.wait()
            kwargs: dict[str, Any] = {**call.args, **{k: v for k, v in call.files.items()}}
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return ActionOutcome(call.action_id, ActionStatus.FAILED, [Error.from_exception(exc)])
        if isinstance(result, dict) and ("json_result" in result or "files" in result):
            files = {k: Path(v) for k, v in (result.get("files") or {}).items()}
            return ActionOutcome(
                call.action_id, ActionStatus.SUCCEEDED, json_result=result.get("json_result"), files=files
            )
        if isinstance(result, Path):
            return ActionOutcome(call.action_id, ActionStatus.SUCCEEDED, files={"file": result})
        return ActionOutcome(call.action_id, ActionStatus.SUCCEEDED, json_result=result)
