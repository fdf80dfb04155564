"""A flow served as an A2A agent: the HTTP surface through the ASGI app, bindings in podium's store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.flow import Message, Node, NodePolicy, create
from podium.flow.a2a import A2AAgentCard, A2AServerAdapter, A2ASkill, create_a2a_app
from podium.store.flow_state import StoreStateStore
from podium.store.sqlite import SQLiteStore

CARD = A2AAgentCard(
    name="Colony agent",
    description="Answers questions about penguin colonies",
    skills=[A2ASkill(name="census", description="counts nests")],
)


SLOW_STARTED: list[asyncio.Event] = []


async def answer(message: Message, ctx: Any) -> dict[str, Any]:
    question = message.payload["q"]
    if question == "fail":
        raise ValueError("no such colony")
    await ctx.emit_chunk(parent=message, text=f"looking up {question}")
    if question == "slow":
        SLOW_STARTED[-1].set()
        await asyncio.Event().wait()  # until cancelled
    return {"answer": question.upper()}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, StoreStateStore]]:
    async with SQLiteStore(tmp_path / "podium.db") as store:
        state = StoreStateStore(store)
        flow = create(Node(answer, name="answer", policy=NodePolicy(validate="none")).to(), state_store=state)
        app = create_a2a_app(A2AServerAdapter(flow, agent_card=CARD, agent_url="http://colony.test"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://colony.test") as client:
                yield client, state


def sse(text: str) -> list[tuple[str, list[str]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        name = next(line[7:] for line in lines if line.startswith("event: "))
        events.append((name, [line[6:] for line in lines if line.startswith("data: ")]))
    return events


async def test_agent_card_and_send_with_the_binding_in_the_store(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, state = served
    card = (await client.get("/agent")).json()
    assert card["name"] == "Colony agent" and card["skills"][0]["name"] == "census"

    body = {"payload": {"q": "adelie"}, "headers": {"tenant": "acme"}, "contextId": "chat-7"}
    reply = (await client.post("/message/send", json=body)).json()
    assert reply["status"] == "succeeded" and reply["output"] == {"answer": "ADELIE"}
    assert reply["contextId"] == "chat-7" and reply["taskId"] == reply["traceId"]
    (binding,) = await state.load_bindings(reply["traceId"])
    assert (binding.task_id, binding.context_id, binding.agent_url) == (
        reply["taskId"],
        "chat-7",
        "http://colony.test",
    )

    # The node's success event is saved by its worker after the output went on to the reply: wait for it.
    async def saved_success() -> list[str]:
        while True:
            kinds = [e.kind for e in await state.load_history(reply["traceId"])]
            if "node_success" in kinds:
                return kinds
            await asyncio.sleep(0.005)

    kinds = await asyncio.wait_for(saved_success(), 5)
    assert kinds[0] == "node_start" and kinds[-1] == "node_success"


async def test_stream_sends_status_chunks_artifact_done(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, _state = served
    body = {"payload": {"q": "gentoo"}, "headers": {"tenant": "acme"}, "taskId": "task-1"}
    response = await client.post("/message/stream", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-a2a-task-id"] == "task-1"
    events = sse(response.text)
    assert [name for name, _ in events] == ["status", "chunk", "artifact", "done"]
    assert events[1][1][0] == "looking up gentoo" and json.loads(events[1][1][1])["taskId"] == "task-1"
    assert json.loads(events[2][1][0])["output"] == {"answer": "GENTOO"}


async def test_a_failing_node_fails_the_task_instead_of_hanging(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, _state = served
    body = {"payload": {"q": "fail"}, "headers": {"tenant": "acme"}}
    reply = (await asyncio.wait_for(client.post("/message/send", json=body), 5)).json()
    assert reply["status"] == "failed"
    assert reply["error"]["code"] == "NODE_EXCEPTION" and "no such colony" in reply["error"]["message"]


async def test_cancel_ends_a_running_task_as_cancelled(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, _state = served
    SLOW_STARTED.append(asyncio.Event())
    body = {"payload": {"q": "slow"}, "headers": {"tenant": "acme"}, "taskId": "long-1"}
    sending = asyncio.create_task(client.post("/message/send", json=body))
    await asyncio.wait_for(SLOW_STARTED[-1].wait(), 5)
    cancel = (await client.post("/tasks/cancel", json={"taskId": "long-1"})).json()
    assert cancel["cancelled"] is True and cancel["traceId"]
    reply = (await asyncio.wait_for(sending, 5)).json()
    assert reply["status"] == "cancelled" and reply["taskId"] == "long-1"
    assert (await client.post("/tasks/cancel", json={"taskId": "long-1"})).json() == {
        "taskId": "long-1",
        "cancelled": False,
    }


async def test_bad_requests_get_a_4xx_naming_the_problem(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, _state = served
    no_tenant = await client.post("/message/send", json={"payload": {"q": "x"}, "headers": {}})
    assert no_tenant.status_code == 422 and "tenant" in no_tenant.json()["detail"]
    no_payload = await client.post("/message/send", json={"headers": {"tenant": "acme"}})
    assert no_payload.status_code == 422 and "payload" in no_payload.text
    no_task = await client.post("/tasks/cancel", json={})
    assert no_task.status_code == 422 and "taskId" in no_task.text


async def test_json_rpc_binding_answers_errors_as_json_rpc_errors(
    served: tuple[httpx.AsyncClient, StoreStateStore],
) -> None:
    client, _state = served
    card = (await client.get("/.well-known/agent-card.json")).json()
    assert card["supportedInterfaces"][0]["protocolBinding"] == "JSONRPC"
    assert card["skills"] == [{"id": "census", "name": "census", "description": "counts nests", "tags": []}]

    async def call(body: object) -> dict[str, Any]:
        response = await client.post("/", content=body if isinstance(body, bytes) else json.dumps(body))
        assert response.status_code == 200
        reply: dict[str, Any] = response.json()
        return reply

    part = {"data": {"q": "emperor"}}
    meta = {"headers": {"tenant": "acme"}}
    send = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"parts": [part], "metadata": meta}},
    }
    ok = await call(send)
    assert ok["id"] == 1 and ok["result"]["message"]["parts"] == [{"data": {"answer": "EMPEROR"}}]
    assert (await call(b"{not json"))["error"]["code"] == -32700
    assert (await call({"id": 2, "method": "SendMessage"}))["error"]["code"] == -32600
    assert (await call({"jsonrpc": "2.0", "id": 3, "method": "Nope"}))["error"]["code"] == -32601
    no_parts = {"jsonrpc": "2.0", "id": 4, "method": "SendMessage", "params": {"message": {"parts": []}}}
    assert (await call(no_parts))["error"] == {
        "code": -32602,
        "message": "params.message.parts: at least one part is required",
    }
    no_tenant = {"jsonrpc": "2.0", "id": 5, "method": "SendMessage", "params": {"message": {"parts": [part]}}}
    assert (await call(no_tenant))["error"]["code"] == -32602
    unknown_task = {"jsonrpc": "2.0", "id": 6, "method": "CancelTask", "params": {"id": "nope"}}
    assert (await call(unknown_task))["error"]["code"] == -32001
