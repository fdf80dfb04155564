"""Visualizer: print a flow as Mermaid and as Graphviz DOT (loops and OpenSea/Rookery marked).

Run: python examples/flow/visualizer.py
"""

from __future__ import annotations

from typing import Any

from podium.flow import Node, NodePolicy, create, flow_to_dot, flow_to_mermaid

NONE = NodePolicy(validate="none")


async def step(message: Any, _ctx: Any) -> Any:
    return message


def build() -> Any:
    triage = Node(step, name="triage", policy=NONE)
    controller = Node(step, name="controller", allow_cycle=True, policy=NONE)
    answer = Node(step, name="answer", policy=NONE)
    return create(triage.to(controller), controller.to(controller, answer))


def main() -> None:
    flow = build()
    print(flow_to_mermaid(flow, direction="LR"))
    print()
    print(flow_to_dot(flow, rankdir="LR"))


if __name__ == "__main__":
    main()
