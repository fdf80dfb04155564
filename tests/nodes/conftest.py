"""Fixtures for the node tests: sim nodes on a ManualClock, reached through the ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from podium.clock import ManualClock
from podium.nodes import NodeClient, RestNode
from podium.nodes.sim import SimNode, make_sim_nodes


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock, tmp_path) -> AsyncIterator[dict[str, SimNode]]:  # type: ignore[no-untyped-def]
    nodes = make_sim_nodes(clock=clock, seed=7, work_dir=tmp_path / "nodes")
    yield nodes
    for node in nodes.values():
        await node.aclose()


@pytest.fixture
async def http_for() -> AsyncIterator[object]:
    """``http_for(node)``: a raw httpx client talking to a node's app in-process."""
    clients: list[httpx.AsyncClient] = []

    def make(node: RestNode) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=node.asgi_transport(), base_url="http://node")
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def client_for(clock: ManualClock) -> AsyncIterator[object]:
    """``client_for(node)``: a NodeClient on the manual clock talking to a node in-process."""
    clients: list[NodeClient] = []

    def make(node: RestNode, **kwargs: object) -> NodeClient:
        client = NodeClient("http://node", transport=node.asgi_transport(), clock=clock, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()
