"""Remote flows: a RemoteNode in this process calls an A2A agent served by podium in another process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from podium.flow import (
    InMemoryStateStore,
    Message,
    NodePolicy,
    RemoteNode,
    StreamChunk,
    create,
)
from podium.flow.a2a import A2AClientError, A2AHttpTransport
from tests.flow.helpers import EventLog, msg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    markers = tmp_path_factory.mktemp("a2a-agent")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.flow.a2a_agent_app", str(markers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # until uvicorn answers (the socket is bound before it prints, so no refusal)
            try:
                if httpx.get(f"{url}/agent", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        yield url, markers
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
async def transport() -> AsyncIterator[A2AHttpTransport]:
    transport = A2AHttpTransport(timeout_s=10)
    yield transport
    await transport.aclose()


async def test_unary_call_returns_the_remote_result_and_records_binding_and_metrics(
    agent: tuple[str, Path], transport: A2AHttpTransport
) -> None:
    url, _markers = agent
    store, log = InMemoryStateStore(), EventLog()
    node = RemoteNode(transport=transport, skill="census", agent_url=url, name="remote")
    flow = create(node.to(), state_store=store, middlewares=[log])
    flow.run()
    try:
        message = msg({"colony": "cape-adare"})
        await flow.emit(message)
        result = await asyncio.wait_for(flow.fetch(), 10)
    finally:
        await flow.stop()
    assert result == {"colony": "cape-adare", "pairs": 1200, "tenant": "acme"}
    (binding,) = await store.load_bindings(message.trace_id)
    assert binding.agent_url == url and binding.context_id == message.trace_id
    success = next(e for e in log.events if e.event_type == "remote_call_success")
    assert success.extra["remote_response_bytes"] > 0 and success.extra["remote_request_bytes"] > 0
    assert success.latency_ms is not None and success.latency_ms > 0


async def test_streaming_partials_are_mirrored_into_the_local_flow(
    agent: tuple[str, Path], transport: A2AHttpTransport
) -> None:
    url, _markers = agent
    node = RemoteNode(transport=transport, skill="census", agent_url=url, name="remote", streaming=True)
    flow = create(node.to())
    flow.run()
    try:
        message = msg({"colony": "ross"})
        await flow.emit(message)
        items = [await asyncio.wait_for(flow.fetch(), 10) for _ in range(3)]
    finally:
        await flow.stop()
    chunks = [item.payload for item in items[:2]]
    assert all(isinstance(item, Message) and item.trace_id == message.trace_id for item in items[:2])
    assert [(c.text, c.seq, c.done) for c in chunks if isinstance(c, StreamChunk)] == [
        ("counting ross", 0, False),
        ("done counting", 1, True),
    ]
    assert items[2] == {"colony": "ross", "pairs": 1200, "tenant": "acme"}


async def test_cancelling_the_local_trace_cancels_the_remote_task(
    agent: tuple[str, Path], transport: A2AHttpTransport
) -> None:
    url, markers = agent
    log = EventLog()
    node = RemoteNode(transport=transport, skill="census", agent_url=url, name="remote", streaming=True)
    flow = create(node.to(), middlewares=[log])
    flow.run()
    try:
        message = msg({"colony": "hang"})
        await flow.emit(message)
        first = await asyncio.wait_for(flow.fetch(), 10)  # the remote node is running: its partial arrived
        assert first.payload.text == "counting hang"
        assert await flow.cancel(message.trace_id)
    finally:
        await flow.stop()
    cancelled = next(e for e in log.events if e.event_type == "remote_call_cancelled")
    assert cancelled.extra["remote_cancel_reason"] == "trace_cancel"
    # the other process sees its node cancelled (by /tasks/cancel, or by the dropped stream, whichever
    # reaches it first): wait for its marker, bounded
    marker = markers / "cancelled-hang"
    for _ in range(500):
        if marker.exists():
            break
        await asyncio.sleep(0.01)
    assert marker.read_text()


async def test_a_remote_failure_is_a_node_failure_here(
    agent: tuple[str, Path], transport: A2AHttpTransport
) -> None:
    url, _markers = agent
    node = RemoteNode(
        transport=transport, skill="census", agent_url=url, name="remote", policy=NodePolicy(max_retries=0)
    )
    flow = create(node.to(), emit_errors_to_rookery=True)
    flow.run()
    try:
        await flow.emit(Message(payload={"nothing": 1}, headers=msg(None).headers))  # KeyError remotely
        error = await asyncio.wait_for(flow.fetch(), 10)
    finally:
        await flow.stop()
    assert (
        str(error.code) == "NODE_EXCEPTION"
        and "KeyError" in error.message
        and "A2AClientError" in error.message
    )
    assert issubclass(A2AClientError, RuntimeError)


def test_the_official_a2a_sdk_client_discovers_and_calls_the_agent(agent: tuple[str, Path]) -> None:
    from bench.peervenv import peer_python

    url, _markers = agent
    python = peer_python("a2a-sdk", ["a2a-sdk==1.3.0"])
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "flow" / "a2a_sdk_client.py"), url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    card, reply, error = (json.loads(line) for line in done.stdout.splitlines())
    assert card == {"card": "census agent", "skills": ["census"], "binding": "JSONRPC"}
    message = reply["message"]
    assert message["role"] == "ROLE_AGENT" and message["taskId"]
    assert message["parts"] == [{"data": {"colony": "ross", "pairs": 1200.0, "tenant": "a2a"}}]
    assert error["error"] == "InternalError" and "raised TypeError" in error["text"]
