"""Mermaid and DOT renderings mark loops and the OpenSea/Rookery endpoints."""

from __future__ import annotations

from podium.flow import Node, NodePolicy, create, flow_to_dot, flow_to_mermaid
from tests.flow.helpers import identity

NONE = NodePolicy(validate="none")


def test_mermaid_and_dot_mark_loops_ingress_and_egress() -> None:
    controller = Node(identity, name="controller", allow_cycle=True, policy=NONE)
    worker = Node(identity, name="worker two", policy=NONE)
    flow = create(controller.to(controller, worker))

    mermaid = flow_to_mermaid(flow, direction="LR")
    assert mermaid.splitlines()[0] == "graph LR"
    assert "    controller -->|loop| controller" in mermaid
    assert "    OpenSea -->|ingress| controller" in mermaid
    assert "    worker_two -->|egress| Rookery" in mermaid
    assert "    controller --> worker_two" in mermaid
    assert 'worker_two["worker two"]' in mermaid
    assert "classDef controller_loop" in mermaid and "class controller controller_loop" in mermaid
    assert "class OpenSea endpoint" in mermaid and "class Rookery endpoint" in mermaid
    assert flow_to_mermaid(flow).startswith("graph TD")

    dot = flow_to_dot(flow, rankdir="LR")
    assert dot.startswith("digraph PenguiFlow {\n    rankdir=LR")
    assert 'controller -> controller [label="loop"]' in dot
    assert 'OpenSea -> controller [label="ingress"]' in dot
    assert 'worker_two -> Rookery [label="egress"]' in dot
    assert 'Rookery [label="Rookery", shape=oval' in dot
    assert 'controller [label="controller", style="rounded,filled"' in dot
    assert dot.endswith("}")


def test_duplicate_labels_get_unique_ids() -> None:
    a = Node(identity, name="step", policy=NONE)
    b = Node(identity, name="step", policy=NONE)
    mermaid = flow_to_mermaid(create(a.to(b)))
    assert "step --> step_2" in mermaid
