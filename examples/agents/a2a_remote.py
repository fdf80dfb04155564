"""An A2A agent called from another flow: flow B is served over HTTP (A2A), flow A reaches it through a
RemoteNode with the HTTP transport, and B's streamed partials show up in A as A's own stream chunks.

Both run in this one process here, on a loopback port; in production B runs elsewhere
(``uvicorn app:app``) and A only needs its URL.

Run: python examples/agents/a2a_remote.py
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from podium.flow import Headers, Message, Node, NodePolicy, RemoteNode, StreamChunk, create
from podium.flow.a2a import A2AAgentCard, A2AHttpTransport, A2AServerAdapter, A2ASkill, create_a2a_app


async def forecast(message: Message, ctx: Any) -> dict[str, Any]:
    """Flow B's one node: streams its progress, then answers."""
    site = message.payload["site"]
    await ctx.emit_chunk(parent=message, text=f"reading sea ice at {site}")
    await ctx.emit_chunk(parent=message, text="model run complete", done=True)
    return {"site": site, "ice_cover": 0.82}


async def main() -> None:
    # Flow B, served as an A2A agent on a free loopback port
    flow_b = create(Node(forecast, name="forecast", policy=NodePolicy(validate="none")).to())
    card = A2AAgentCard(
        name="ice agent",
        description="sea ice forecasts",
        skills=[A2ASkill(name="forecast", description="ice cover")],
    )
    app = create_a2a_app(
        A2AServerAdapter(flow_b, agent_card=card, agent_url="http://ice.example"), include_docs=False
    )
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # IPPROTO_TCP: asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)

    # Flow A: a remote node that streams from B
    transport = A2AHttpTransport()
    remote = RemoteNode(transport=transport, skill="forecast", agent_url=url, name="ice", streaming=True)
    flow_a = create(remote.to())
    flow_a.run()
    try:
        await flow_a.emit(Message(payload={"site": "Cape Crozier"}, headers=Headers(tenant="lab")))
        while True:
            item = await flow_a.fetch()
            if isinstance(item, Message) and isinstance(item.payload, StreamChunk):
                print(f"partial #{item.payload.seq}: {item.payload.text}")
                continue
            print(f"answer: {item}")
            break
    finally:
        await flow_a.stop()
        await transport.aclose()
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
