"""The workcell's HTTP connector asks a MADSci node for its status after an action only when the action did
not succeed: a successful step costs the node its own create and start, nothing more."""

from __future__ import annotations

import httpx

from podium.clock import ManualClock
from podium.nodes import NodeClient
from podium.testing import drive
from podium.workcell import ActionCall, ActionStatus
from podium.workcell._http_nodes import HttpNodeConnector


class MadsciLikeNode:
    """No long-poll, its own action ids; ``fail`` makes every action fail (and the node errored)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if path == "/status":
            return httpx.Response(200, json={"ready": not self.fail, "errored": self.fail})
        if path.endswith("/start"):
            status = "failed" if self.fail else "succeeded"
            return httpx.Response(200, json={"action_id": "node-1", "status": status, "json_result": 1})
        if request.method == "POST" and path == "/action/home":
            return httpx.Response(200, json={"action_id": "node-1"})
        return httpx.Response(404, json={"detail": "Not Found"})


async def run(node: MadsciLikeNode) -> tuple[ActionStatus, dict[str, object] | None]:
    clock = ManualClock()
    client = NodeClient("http://node", transport=httpx.MockTransport(node), clock=clock)
    conn = HttpNodeConnector("arm", "http://node", client=client, clock=clock)
    try:
        outcome = await drive(
            clock, conn.run_action(ActionCall("01J0000000000000000000000A", "home", {}, {}))
        )
    finally:
        await conn.aclose()
    return outcome.status, outcome.node_status


async def test_a_successful_action_costs_create_and_start_only() -> None:
    node = MadsciLikeNode()
    status, node_status = await run(node)
    assert status is ActionStatus.SUCCEEDED and node_status is None
    assert node.calls == ["POST /action/home", "POST /action/home/node-1/start"]


async def test_after_a_failed_action_the_node_status_is_read() -> None:
    node = MadsciLikeNode(fail=True)
    status, node_status = await run(node)
    assert status is ActionStatus.FAILED
    assert node.calls[-1] == "GET /status" and node_status is not None and node_status["errored"] is True
