"""A podium flow served as an A2A agent in its own process, for tests/flow/test_a2a_remote.py.

    python -m tests.flow.a2a_agent_app MARKER_DIR

Prints the port it listens on (127.0.0.1), then serves until killed. The node streams two partials and
answers; for the question "hang" it waits until cancelled and writes MARKER_DIR/cancelled-<question>.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from podium.flow import Message, Node, NodePolicy, create
from podium.flow.a2a import A2AAgentCard, A2AServerAdapter, A2ASkill, create_a2a_app

MARKERS = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")


async def census(message: Message, ctx: Any) -> dict[str, Any]:
    colony = message.payload["colony"]
    await ctx.emit_chunk(parent=message, text=f"counting {colony}")
    if colony == "hang":
        (MARKERS / "started-hang").write_text("1")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            (MARKERS / "cancelled-hang").write_text(message.trace_id)
            raise
    await ctx.emit_chunk(parent=message, text="done counting", done=True)
    return {"colony": colony, "pairs": 1200, "tenant": message.headers.tenant}


def main() -> None:
    flow = create(Node(census, name="census", policy=NodePolicy(validate="none")).to())
    card = A2AAgentCard(
        name="census agent",
        description="counts penguin nests",
        skills=[A2ASkill(name="census", description="nests")],
    )
    adapter = A2AServerAdapter(
        flow, agent_card=card, agent_url="http://census.test", default_headers={"tenant": "a2a"}
    )
    app = create_a2a_app(adapter, include_docs=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
