"""RemoteNode: unary and streaming calls, bindings in the state store, cancellation of the remote task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from podium.flow import (
    FlowError,
    InMemoryStateStore,
    RemoteBinding,
    RemoteCallRequest,
    RemoteCallResult,
    RemoteNode,
    RemoteStreamEvent,
    StreamChunk,
    create,
)
from tests.flow.helpers import msg


class FakeTransport:
    def __init__(self, *, fail: bool = False) -> None:
        self.requests: list[RemoteCallRequest] = []
        self.cancelled: list[tuple[str, str]] = []
        self.finish = asyncio.Event()
        self.fail = fail

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        self.requests.append(request)
        if self.fail:
            raise RuntimeError("remote boom")
        return RemoteCallResult(
            result={"answer": 42}, context_id="ctx", task_id="task-1", agent_url=request.agent_url
        )

    async def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        self.requests.append(request)
        yield RemoteStreamEvent(text="partial", context_id="ctx", task_id="task-2", meta={"i": 0})
        await self.finish.wait()
        yield RemoteStreamEvent(result={"final": True}, done=True, task_id="task-2")

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        self.cancelled.append((agent_url, task_id))
        self.finish.set()


async def test_unary_call_records_binding_and_events() -> None:
    store, transport = InMemoryStateStore(), FakeTransport()
    node = RemoteNode(transport=transport, skill="Search.find", agent_url="https://agent", name="remote")
    flow = create(node.to(), state_store=store)
    flow.run()
    message = msg({"q": "penguins"}, meta={"user": "u1"})
    try:
        await flow.emit(message)
        assert await asyncio.wait_for(flow.fetch(), 1) == {"answer": 42}
    finally:
        await flow.stop()
    request = transport.requests[0]
    assert (
        request.message is message and request.skill == "Search.find" and request.metadata == {"user": "u1"}
    )
    assert await store.load_bindings(message.trace_id) == [
        RemoteBinding(
            trace_id=message.trace_id, context_id="ctx", task_id="task-1", agent_url="https://agent"
        )
    ]
    success = [e for e in await store.load_history(message.trace_id) if e.kind == "remote_call_success"]
    assert (
        success[0].payload["remote_task_id"] == "task-1" and success[0].payload["remote_response_bytes"] > 0
    )


async def test_streaming_call_mirrors_chunks_then_returns_the_result() -> None:
    transport = FakeTransport()
    node = RemoteNode(
        transport=transport, skill="Writer.draft", agent_url="https://agent", name="w", streaming=True
    )
    flow = create(node.to())
    flow.run()
    try:
        await flow.emit(msg("write"))
        chunk = await asyncio.wait_for(flow.fetch(), 1)
        assert chunk.payload == StreamChunk(stream_id=chunk.trace_id, seq=0, text="partial", meta={"i": 0})
        transport.finish.set()
        assert await asyncio.wait_for(flow.fetch(), 1) == {"final": True}
    finally:
        await flow.stop()
    assert transport.cancelled == []


async def test_cancelling_the_trace_cancels_the_remote_task() -> None:
    store, transport = InMemoryStateStore(), FakeTransport()
    node = RemoteNode(transport=transport, skill="Plan", agent_url="https://agent", name="r", streaming=True)
    flow = create(node.to(), state_store=store)
    flow.run()
    message = msg("plan")
    try:
        await flow.emit(message)
        await asyncio.wait_for(flow.fetch(), 1)
        assert await flow.cancel(message.trace_id)
        # cancel() returns after the node unwound, so the remote cancel has already happened
        assert transport.cancelled == [("https://agent", "task-2")]
    finally:
        await flow.stop()
    kinds = [e.kind for e in await store.load_history(message.trace_id)]
    assert "remote_call_cancelled" in kinds and "remote_call_success" not in kinds


async def test_remote_errors_become_flow_errors() -> None:
    store = InMemoryStateStore()
    node = RemoteNode(transport=FakeTransport(fail=True), skill="S", agent_url="https://agent", name="r")
    flow = create(node.to(), state_store=store, emit_errors_to_rookery=True)
    flow.run()
    message = msg("x")
    try:
        await flow.emit(message)
        error = await asyncio.wait_for(flow.fetch(), 1)
    finally:
        await flow.stop()
    assert isinstance(error, FlowError) and "remote boom" in error.message
    errors = [e for e in await store.load_history(message.trace_id) if e.kind == "remote_call_error"]
    assert errors[0].payload["remote_status"] == "error"


async def test_remote_node_requires_messages() -> None:
    node = RemoteNode(transport=FakeTransport(), skill="S", agent_url="u", name="r")
    with pytest.raises(TypeError):
        await node.func("not a message", None)
