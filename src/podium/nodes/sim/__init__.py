"""Simulated instruments for demos and tests, and helpers to run a set of them.

``make_sim_nodes()`` builds the standard four (``liquidhandler_1``, ``robotarm_1``, ``platereader_1``,
``sealer_1``); ``make_example_lab_nodes()`` the five of MADSci 0.8's ``examples/example_lab``
(``liquidhandler_1``/``_2``, ``robotarm_1``, ``platereader_1``, ``advanced_example_node``) as twins that declare
the same actions and arguments. Run them with :class:`~podium.nodes.NodeCluster` (threads, real sockets: ``run_sim_nodes``),
:func:`~podium.nodes.serve_nodes` (tasks of the running loop), or without sockets through
:func:`asgi_clients`. Durations run on the nodes' clock: with a ``ManualClock`` they take no real time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from podium.clock import Clock, system_clock
from podium.nodes._node import RestNode
from podium.nodes._serve import NodeCluster
from podium.nodes.client import NodeClient
from podium.nodes.sim._base import FailurePlan, SimNode
from podium.nodes.sim._example_lab import (
    EXAMPLE_LAB_NODE_TYPES,
    AdvancedExampleNode,
    ExampleLiquidHandlerNode,
    ExamplePlateReaderNode,
    ExampleRobotArmNode,
)
from podium.nodes.sim._instruments import (
    WELLS_96,
    LiquidHandlerNode,
    PlateReaderNode,
    RobotArmNode,
    SealerNode,
)

__all__ = [
    "EXAMPLE_LAB_NODE_TYPES",
    "SIM_NODE_TYPES",
    "WELLS_96",
    "AdvancedExampleNode",
    "ExampleLiquidHandlerNode",
    "ExamplePlateReaderNode",
    "ExampleRobotArmNode",
    "FailurePlan",
    "LiquidHandlerNode",
    "PlateReaderNode",
    "RobotArmNode",
    "SealerNode",
    "SimNode",
    "asgi_clients",
    "make_example_lab_nodes",
    "make_sim_nodes",
    "run_sim_nodes",
]

SIM_NODE_TYPES: dict[str, type[SimNode]] = {
    "liquidhandler_1": LiquidHandlerNode,
    "robotarm_1": RobotArmNode,
    "platereader_1": PlateReaderNode,
    "sealer_1": SealerNode,
}
"""The standard simulated workcell: node name -> class."""


def make_sim_nodes(
    *,
    clock: Clock = system_clock,
    seed: int = 0,
    speed: float = 1.0,
    default_duration_s: float | None = None,
    durations: Mapping[str, Mapping[str, float]] | None = None,
    work_dir: Path | str | None = None,
    api_token: str | None = None,
    node_types: Mapping[str, type[SimNode]] = SIM_NODE_TYPES,
) -> dict[str, SimNode]:
    """Build the standard simulated nodes (or ``node_types``: name -> class), by name.

    Args:
        clock: The clock every node waits on.
        seed: Base seed (each node gets ``seed + its index``).
        speed: Divides every duration.
        default_duration_s: Seconds for every action of every node (``0``: instant).
        durations: Per node name, seconds per action name.
        work_dir: Parent folder for the nodes' uploads and outputs (a temporary one each by default).
        api_token: A token every node requires (default: ``NODE_API_TOKEN``, else none).
    """
    nodes: dict[str, SimNode] = {}
    for index, (name, cls) in enumerate(node_types.items()):
        nodes[name] = cls(
            node_name=name,
            clock=clock,
            seed=seed + index,
            speed=speed,
            default_duration_s=default_duration_s,
            durations=(durations or {}).get(name),
            work_dir=Path(work_dir) / name if work_dir is not None else None,
            api_tokens=[api_token] if api_token else None,
        )
    return nodes


def make_example_lab_nodes(**kwargs: Any) -> dict[str, SimNode]:
    """The twins of MADSci's example lab, by the names its settings.yaml gives them (arguments as for
    :func:`make_sim_nodes`)."""
    return make_sim_nodes(node_types=EXAMPLE_LAB_NODE_TYPES, **kwargs)


def run_sim_nodes(
    nodes: Mapping[str, RestNode] | None = None, *, host: str = "127.0.0.1", **kwargs: object
) -> NodeCluster:
    """Start simulated nodes on free loopback ports (uvicorn threads); use as a context manager.

    ``nodes`` defaults to ``make_sim_nodes(**kwargs)``; read the URLs from ``.urls``.
    """
    if nodes is None:
        nodes = make_sim_nodes(**kwargs)  # type: ignore[arg-type]
    cluster = NodeCluster(nodes, host=host)
    cluster.start()
    return cluster


def asgi_clients(
    nodes: Mapping[str, RestNode], *, clock: Clock | None = None, token: str | None = None
) -> dict[str, NodeClient]:
    """A :class:`NodeClient` per node talking to its app in-process (no sockets), by node name."""
    return {
        name: NodeClient(
            f"http://{name}", token=token, transport=node.asgi_transport(), clock=clock or node.clock
        )
        for name, node in nodes.items()
    }
