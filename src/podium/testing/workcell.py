""":class:`WorkcellHarness`: a :class:`~podium.workcell.WorkcellEngine` on simulated nodes for a test.

Owns building the workcell on a memory store and a :class:`~podium.clock.ManualClock` with the simulated
instruments of :mod:`podium.nodes.sim` reached in-process (no sockets), or with the given node connectors;
``join`` (skipping virtual time by default: simulated actions take clock seconds), ``advance``, and closing
what it started. It must not reach into the workcell's private state: it is a user of its public API.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from podium.clock import Clock, ManualClock
from podium.nodes import RestNode
from podium.nodes.client import ActionOutcome as NodeOutcome
from podium.nodes.client import NodeClient
from podium.nodes.sim import make_sim_nodes
from podium.store import MemoryStore, Store
from podium.testing.events import DEFAULT_TIMEOUT_S
from podium.testing.time import drive, settle
from podium.workcell import (
    ActionCall,
    ActionOutcome,
    ActionStatus,
    Error,
    NodeConnector,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    Workflow,
    WorkflowDefinition,
)
from podium.workcell.nodes import Acknowledged

__all__ = ["SIM_WORKCELL", "SimConnector", "WorkcellHarness"]

T = TypeVar("T")

SIM_WORKCELL: dict[str, Any] = {
    "name": "sim_cell",
    "nodes": {
        name: f"http://{name}" for name in ("robotarm_1", "liquidhandler_1", "sealer_1", "platereader_1")
    },
    "locations": [
        {
            "location_name": "plate_stack",
            "representations": {"robotarm_1": [0, 0, 100]},
            "resource_definition": {"resource_name": "plate_stack", "base_type": "stack", "capacity": 10},
        },
        {
            "location_name": "lh_deck",
            "representations": {"robotarm_1": [300, 0, 20], "liquidhandler_1": "deck_1"},
            "resource_definition": {"resource_name": "lh_deck_slot", "base_type": "slot"},
        },
        {
            "location_name": "sealer_tray",
            "representations": {"robotarm_1": [600, 0, 20], "sealer_1": "tray"},
            "resource_definition": {"resource_name": "sealer_slot", "base_type": "slot"},
        },
        {
            "location_name": "reader_tray",
            "representations": {"robotarm_1": [900, 0, 20], "platereader_1": "tray"},
            "resource_definition": {"resource_name": "reader_slot", "base_type": "slot"},
        },
    ],
}
"""The default workcell: the four simulated instruments of :func:`podium.nodes.sim.make_sim_nodes` and
four locations (``plate_stack``, ``lh_deck``, ``sealer_tray``, ``reader_tray``)."""


class SimConnector:
    """A :class:`~podium.workcell.NodeConnector` onto a :class:`~podium.nodes.RestNode` in this process: the
    MADSci node protocol through the node's ASGI app (no sockets), on the given clock."""

    def __init__(self, name: str, node: RestNode, *, clock: Clock, download_dir: Path) -> None:
        self.name = name
        self.url = f"http://{name}"
        self.client = NodeClient(self.url, transport=node.asgi_transport(), clock=clock)
        """The node client the connector speaks through."""
        self._dir = download_dir

    async def get_status(self) -> dict[str, Any]:
        """The node's ``/status``."""
        return (await self.client.get_status()).model_dump(mode="json")

    async def get_info(self) -> dict[str, Any]:
        """The node's ``/info``."""
        return (await self.client.get_info()).model_dump(mode="json")

    async def get_state(self) -> dict[str, Any]:
        """The node's ``/state``."""
        return await self.client.get_state()

    async def send_admin_command(self, command: str) -> dict[str, Any]:
        """Send an admin command."""
        return (await self.client.send_admin_command(command)).model_dump(mode="json")

    async def run_action(
        self, call: ActionCall, *, on_acknowledged: Acknowledged | None = None
    ) -> ActionOutcome:
        """Run one action to its end (result files downloaded under the harness's folder)."""
        outcome = await self.client.run_action(
            call.action_name,
            call.args,
            files=dict(call.files) or None,
            action_id=call.action_id,
            download_dir=self._dir / call.action_id,
            on_created=on_acknowledged,
            created_as=call.created_as,
        )
        return _convert(call.action_id, outcome)

    async def get_action_outcome(self, node_action_id: str, action_name: str) -> ActionOutcome:
        """What the node knows about an action now."""
        outcome = await self.client.reconcile(
            node_action_id, action_name=action_name or None, download_dir=self._dir / node_action_id
        )
        return _convert(node_action_id, outcome)

    async def await_action(self, node_action_id: str, action_name: str) -> ActionOutcome:
        """Wait for an action the node has to end."""
        outcome = await self.client.reconcile(
            node_action_id,
            action_name=action_name or None,
            wait=True,
            download_dir=self._dir / node_action_id,
        )
        return _convert(node_action_id, outcome)

    async def aclose(self) -> None:
        """Close the client."""
        await self.client.aclose()


def _convert(action_id: str, outcome: NodeOutcome) -> ActionOutcome:
    return ActionOutcome(
        action_id=action_id,
        status=ActionStatus(outcome.status.value),
        errors=[Error.model_validate(e.model_dump(mode="json")) for e in outcome.errors],
        json_result=outcome.json_result,
        files=dict(outcome.files),
        datapoints=dict(outcome.datapoints) if outcome.datapoints else None,
        node_status=outcome.node_status.model_dump(mode="json") if outcome.node_status is not None else None,
    )


class WorkcellHarness:
    """A workcell for one test: ``async with WorkcellHarness() as h: await h.join((await h.submit(wf)).workflow_id)``.

    Args:
        workcell: The workcell (a definition or its dict); default :data:`SIM_WORKCELL`.
        nodes: By node name, a :class:`~podium.nodes.RestNode` (reached in-process) or a ready
            :class:`~podium.workcell.NodeConnector` (an ``InProcessNode``). Default: the simulated nodes of
            :func:`~podium.nodes.sim.make_sim_nodes` on the harness clock, closed by the harness.
        store: The store; default a new :class:`MemoryStore` on ``clock``, closed by the harness.
        clock: The clock; default a new :class:`ManualClock`.
        data_dir: The workcell's data folder; default a temporary one, removed on close.
        settings: The workcell settings; default slow background loops (the scheduler runs on events).
        skip_time: Whether :meth:`join` skips virtual time by default (on: simulated actions take seconds).
        sim_options: Keyword arguments for ``make_sim_nodes`` (``seed``, ``default_duration_s``, ...).
    """

    def __init__(
        self,
        workcell: WorkcellDefinition | Mapping[str, Any] | None = None,
        *,
        nodes: Mapping[str, RestNode | NodeConnector] | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        data_dir: str | Path | None = None,
        settings: WorkcellManagerSettings | None = None,
        skip_time: bool = True,
        **sim_options: Any,
    ) -> None:
        if not isinstance(workcell, WorkcellDefinition):
            workcell = WorkcellDefinition.model_validate(
                dict(workcell if workcell is not None else SIM_WORKCELL)
            )
        self.clock: Clock = clock if clock is not None else ManualClock()
        """The clock of the workcell, its engine and the simulated nodes."""
        self._tmp = Path(tempfile.mkdtemp(prefix="podium-testing-")) if data_dir is None else None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(self._tmp or ".")
        """The workcell's data folder."""
        self._own_nodes: list[RestNode] = []
        if nodes is None:
            made = make_sim_nodes(clock=self.clock, work_dir=self.data_dir / "nodes", **sim_options)
            self._own_nodes = list(made.values())
            nodes = made
        self.nodes: dict[str, RestNode | NodeConnector] = dict(nodes)
        """The nodes by name, as given (or made)."""
        connectors = {
            name: SimConnector(name, node, clock=self.clock, download_dir=self.data_dir / "downloads" / name)
            if isinstance(node, RestNode)
            else node
            for name, node in self.nodes.items()
        }
        self._own_store = store is None
        self.store: Store = store if store is not None else MemoryStore(clock=self.clock)
        """The workcell's store."""
        if settings is None:
            settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=30.0)
        self.workcell = WorkcellEngine(
            workcell,
            store=self.store,
            data_dir=self.data_dir,
            settings=settings,
            clock=self.clock,
            connectors=connectors,
        )
        """The workcell under test."""
        self.skip_time = skip_time
        self._closed = False

    @property
    def manual_clock(self) -> ManualClock:
        """The clock as a :class:`ManualClock`; :class:`TypeError` when the harness runs on another clock."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError(f"this harness runs on {type(self.clock).__name__}, not a ManualClock")
        return self.clock

    async def __aenter__(self) -> WorkcellHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the workcell (and its engine; opens the store). Idempotent."""
        await self.workcell.start()

    async def close(self) -> None:
        """Stop the workcell (it closes its connectors), then close what the harness made. Idempotent."""
        await self.workcell.stop()
        if self._closed:
            return
        self._closed = True
        for node in self._own_nodes:
            await node.aclose()
        if self._own_store:
            await self.store.close()
        if self._tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    async def submit(
        self, definition: WorkflowDefinition | Mapping[str, Any] | str, **kwargs: Any
    ) -> Workflow:
        """Submit a workflow (a definition, its dict, or a stored definition's id); see ``WorkcellEngine.submit``."""
        if isinstance(definition, Mapping):
            definition = WorkflowDefinition.model_validate(dict(definition))
        return await self.workcell.submit(definition, **kwargs)

    async def join(
        self, workflow_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, skip_time: bool | None = None
    ) -> Workflow:
        """The run once terminal; :class:`TimeoutError` naming its status after ``timeout_s`` real seconds.

        With ``skip_time`` (default: the harness's, on) a manual clock jumps to each pending deadline while
        the run waits on it (node actions, polls); otherwise time moves only through :meth:`advance`.
        """
        wait = self.workcell.wait_for(workflow_id)
        try:
            if skip_time if skip_time is not None else self.skip_time:
                return await asyncio.wait_for(drive(self.manual_clock, wait), timeout_s)
            return await asyncio.wait_for(wait, timeout_s)
        except TimeoutError:
            status = (await self.workcell.get_workflow(workflow_id)).status.description
            raise TimeoutError(
                f"workflow {workflow_id} did not end within {timeout_s} s (real time): {status}"
            ) from None

    async def advance(self, seconds: float) -> None:
        """Move the manual clock ``seconds`` forward, firing due timers in order, then settle at the new time."""
        clock = self.manual_clock
        await clock.advance(seconds)
        await settle(clock)

    async def drive(self, aw: Awaitable[T]) -> T:
        """Await ``aw``, skipping virtual time to each pending deadline (see :func:`podium.testing.drive`)."""
        return await drive(self.manual_clock, aw)
