"""Instrument nodes over MADSci's node REST protocol: the client, the node SDK, and serving helpers.

- :class:`NodeClient` drives any node (podium's or one written with ``madsci.node_module``).
- :class:`RestNode` and :func:`action` write a node; :class:`NodeServer` / :func:`serve_node` serve it.
- :mod:`podium.nodes.sim` has simulated instruments for demos and tests.
"""

from podium.nodes._node import ActionFailed, ActionFiles, RestNode, action, current_action
from podium.nodes._serve import NodeCluster, NodeServer, serve_node, serve_nodes
from podium.nodes.client import ActionOutcome, NodeClient, send_admin_command_all
from podium.nodes.errors import (
    ActionTimeoutError,
    NodeError,
    NodeProtocolError,
    NodeRateLimitedError,
    NodeRequestError,
    NodeUnreachableError,
)
from podium.wire.madsci_node import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    AdminCommands,
    LocationArgument,
    NodeInfo,
    NodeStatus,
)

__all__ = [
    "ActionFailed",
    "ActionFiles",
    "ActionOutcome",
    "ActionRequest",
    "ActionResult",
    "ActionStatus",
    "ActionTimeoutError",
    "AdminCommands",
    "LocationArgument",
    "NodeClient",
    "NodeCluster",
    "NodeError",
    "NodeInfo",
    "NodeProtocolError",
    "NodeRateLimitedError",
    "NodeRequestError",
    "NodeServer",
    "NodeStatus",
    "NodeUnreachableError",
    "RestNode",
    "action",
    "current_action",
    "send_admin_command_all",
    "serve_node",
    "serve_nodes",
]
