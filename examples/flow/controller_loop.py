"""A controller loop: a node that loops on itself with working memory (WM) until it answers,
or until its hop budget, token budget or deadline runs out (then the runtime answers for it).

Run: python examples/flow/controller_loop.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from podium.flow import WM, FinalAnswer, Headers, Message, Node, NodePolicy, create


async def controller(message: Message, _ctx: Any) -> Message:
    wm: WM = message.payload
    if len(wm.facts) >= 3:
        answer = FinalAnswer(text=f"{wm.query}: " + "; ".join(wm.facts), citations=["wiki"])
        return message.model_copy(update={"payload": answer})
    fact = f"fact {len(wm.facts) + 1} about {wm.query}"
    updated = wm.model_copy(update={"facts": [*wm.facts, fact], "tokens_used": wm.tokens_used + 40})
    return message.model_copy(update={"payload": updated})


async def run() -> list[str]:
    node = Node(controller, name="controller", allow_cycle=True, policy=NodePolicy(validate="none"))
    flow = create(node.to(node))
    answers: list[str] = []
    headers = Headers(tenant="acme")
    async with flow:
        for wm, deadline in (
            (WM(query="penguins", budget_hops=8), None),  # enough budget: a real answer
            (WM(query="krill", budget_hops=2), None),  # runs out of hops
            (WM(query="orcas", budget_hops=8, budget_tokens=100), None),  # runs out of tokens
            (WM(query="seals"), time.time() - 1),  # already past its deadline
        ):
            await flow.emit(Message(payload=wm, headers=headers, deadline_s=deadline))
            result = await flow.fetch()
            answers.append(f"{wm.query}: {result.payload.text}")
    return answers


def main() -> None:
    for line in asyncio.run(run()):
        print(line)


if __name__ == "__main__":
    main()
