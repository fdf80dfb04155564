"""Render a flow's graph as Mermaid or Graphviz DOT, marking loops and the OpenSea/Rookery endpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .core import Endpoint
from .node import Node

if TYPE_CHECKING:
    from .core import Flow

__all__ = ["flow_to_dot", "flow_to_mermaid"]

_MERMAID_STYLES = {
    "endpoint": "fill:#e0f2fe,stroke:#0369a1,stroke-width:1px",
    "controller_loop": "fill:#fef3c7,stroke:#b45309,stroke-width:1px",
}


@dataclass
class _VisualNode:
    identifier: str
    label: str
    classes: list[str] = field(default_factory=list)


@dataclass
class _VisualEdge:
    source: str
    target: str
    label: str | None


def flow_to_mermaid(flow: Flow, *, direction: str = "TD") -> str:
    """Return a Mermaid ``graph`` of ``flow`` (``direction``: ``"TD"``, ``"LR"``, ...)."""
    nodes, edges = _collect_graph(flow)
    lines = [f"graph {direction}"]
    used: set[str] = set()
    for node in nodes:
        lines.append(f'    {node.identifier}["{_escape(node.label)}"]')
        used.update(node.classes)
    for class_name in sorted(used):
        lines.append(f"    classDef {class_name} {_MERMAID_STYLES[class_name]}")
    for node in nodes:
        if node.classes:
            lines.append(f"    class {node.identifier} {' '.join(node.classes)}")
    for edge in edges:
        label = f"|{edge.label}|" if edge.label else ""
        lines.append(f"    {edge.source} -->{label} {edge.target}")
    return "\n".join(lines)


def flow_to_dot(flow: Flow, *, rankdir: str = "TB") -> str:
    """Return a Graphviz ``digraph`` of ``flow`` (``rankdir``: ``"TB"``, ``"LR"``, ...)."""
    nodes, edges = _collect_graph(flow)
    lines = ["digraph PenguiFlow {", f"    rankdir={rankdir}", "    node [shape=box, style=rounded]"]
    for node in nodes:
        attributes = [f'label="{_escape(node.label)}"']
        if "endpoint" in node.classes:
            attributes += ["shape=oval", 'style="filled"', 'fillcolor="#e0f2fe"']
        elif "controller_loop" in node.classes:
            attributes += ['style="rounded,filled"', 'fillcolor="#fef3c7"']
        lines.append(f"    {node.identifier} [{', '.join(attributes)}]")
    for edge in edges:
        if edge.label:
            lines.append(f'    {edge.source} -> {edge.target} [label="{_escape(edge.label)}"]')
        else:
            lines.append(f"    {edge.source} -> {edge.target}")
    lines.append("}")
    return "\n".join(lines)


def _collect_graph(flow: Flow) -> tuple[list[_VisualNode], list[_VisualEdge]]:
    nodes: dict[object, _VisualNode] = {}
    edges: list[_VisualEdge] = []
    used_ids: set[str] = set()

    def ensure(entity: Node | Endpoint) -> _VisualNode:
        node = nodes.get(entity)
        if node is None:
            label = entity.name or getattr(entity, "node_id", "node")
            identifier = _unique_id(label, used_ids)
            used_ids.add(identifier)
            node = nodes[entity] = _VisualNode(identifier, label)
            if isinstance(entity, Endpoint):
                node.classes.append("endpoint")
            elif entity.allow_cycle:
                node.classes.append("controller_loop")
        return node

    for floe in flow._floes:
        source, target = floe.source, floe.target
        if source is None or target is None:
            continue
        src, tgt = ensure(source), ensure(target)
        label: str | None = None
        if source is target:
            label = "loop"
            if "controller_loop" not in src.classes:
                src.classes.append("controller_loop")
        elif isinstance(source, Endpoint):
            label = "ingress"
        elif isinstance(target, Endpoint):
            label = "egress"
        edges.append(_VisualEdge(src.identifier, tgt.identifier, label))
    return list(nodes.values()), edges


def _unique_id(label: str, used: set[str]) -> str:
    base = re.sub(r"[^0-9A-Za-z_]", "_", label) or "node"
    candidate, index = base, 1
    while candidate in used:
        index += 1
        candidate = f"{base}_{index}"
    return candidate


def _escape(label: str) -> str:
    return label.replace('"', '\\"')
