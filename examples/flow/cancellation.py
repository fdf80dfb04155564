"""Cancellation: cancel one trace (and the playbook it is running) while another trace finishes.

Run: python examples/flow/cancellation.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from podium.flow import Context, Flow, Headers, Message, Node, NodePolicy, create

NONE = NodePolicy(validate="none")


async def run() -> list[str]:
    log: list[str] = []
    sub_started = asyncio.Event()

    async def slow_search(message: Message, _ctx: Any) -> Message:
        sub_started.set()
        try:
            await asyncio.sleep(3600)  # a very slow backend
        except asyncio.CancelledError:
            log.append(f"subflow: cancelled for {message.payload}")
            raise
        return message

    def playbook() -> tuple[Flow, None]:
        return create(Node(slow_search, name="slow_search", policy=NONE).to()), None

    async def controller(message: Message, ctx: Context) -> Message:
        if message.payload == "slow question":
            await ctx.call_playbook(playbook, message)
        return message.model_copy(update={"payload": f"answer to {message.payload}"})

    flow = create(Node(controller, name="controller", policy=NONE).to())
    headers = Headers(tenant="acme")
    async with flow:
        slow = Message(payload="slow question", headers=headers)
        quick = Message(payload="quick question", headers=headers)
        await flow.emit(slow)
        await sub_started.wait()
        await flow.emit(quick)
        before = len(asyncio.all_tasks())
        cancelled = await flow.cancel(slow.trace_id)
        log.append(f"cancelled: {cancelled}; tasks {before} -> {len(asyncio.all_tasks())}")
        result = await flow.fetch()
        log.append(f"other trace: {result.payload}")
    return log


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
