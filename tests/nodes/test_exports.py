"""The public surfaces of podium.nodes and podium.nodes.sim: explicit export lists that fail when they drift."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "podium.nodes": [
        "ActionFailed", "ActionFiles", "ActionOutcome", "ActionRequest", "ActionResult", "ActionStatus",
        "ActionTimeoutError", "AdminCommands", "LocationArgument", "NodeClient", "NodeCluster", "NodeError",
        "NodeInfo", "NodeProtocolError", "NodeRateLimitedError", "NodeRequestError", "NodeServer", "NodeStatus",
        "NodeUnreachableError", "RestNode", "action", "current_action", "send_admin_command_all", "serve_node",
        "serve_nodes",
    ],
    "podium.nodes.sim": [
        "SIM_NODE_TYPES", "WELLS_96", "FailurePlan", "LiquidHandlerNode", "PlateReaderNode", "RobotArmNode",
        "SealerNode", "SimNode", "asgi_clients", "make_sim_nodes", "run_sim_nodes", "AdvancedExampleNode",
        "EXAMPLE_LAB_NODE_TYPES", "ExampleLiquidHandlerNode", "ExamplePlateReaderNode", "ExampleRobotArmNode",
        "make_example_lab_nodes",
    ],
    "podium.nodes.client": [
        "ActionOutcome", "FileArg", "NodeClient", "PollPlan", "estimate_end_s", "expected_end_s",
        "request_headers", "send_admin_command_all",
    ],
    "podium.nodes.errors": [
        "ActionTimeoutError", "NodeError", "NodeProtocolError", "NodeRateLimitedError", "NodeRequestError",
        "NodeUnreachableError",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_exports_are_explicit_and_resolve(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPECTED[module_name])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_nodes_depend_on_wire_not_on_the_engine() -> None:
    import subprocess
    import sys

    code = "import sys, podium.nodes.sim; print(sorted(m for m in sys.modules if m.startswith(('podium.engine', 'podium.workcell', 'podium.server', 'podium.store'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
