"""Fixtures for the node tests: sim nodes on a ManualClock, reached through the ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import httpx
import pytest

from podium.clock import ManualClock
from podium.nodes import NodeClient, RestNode
from podium.nodes.sim import SimNode, make_sim_nodes

T = TypeVar("T")


async def drive(clock: ManualClock, aw: Awaitable[T], *, max_steps: int = 20_000) -> T:
    """Run ``aw`` to completion, moving the manual clock to each pending deadline.

    With no deadline pending, the work is in flight (the event loop, or a thread reading a file): give it
    a moment of real time instead of moving the clock.
    """
    task = asyncio.ensure_future(aw)
    for _ in range(max_steps):
        if task.done():
            return task.result()
        for _ in range(30):  # let runnable work settle before time moves
            await asyncio.sleep(0)
        deadline = clock.next_deadline
        if task.done():
            continue
        if deadline is not None:
            await clock.set(max(deadline, clock.now()))
        else:
            await asyncio.sleep(0.0005)
    task.cancel()
    raise AssertionError("did not finish: the clock ran out of steps")


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
