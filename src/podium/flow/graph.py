"""Graph building: nodes and edges from ``node.to(...)`` pairs, the implicit endpoints, the cycle check."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ._edges import OPEN_SEA, ROOKERY, Endpoint, Floe
from .context import Context
from .errors import CycleError
from .node import Node

__all__ = ["FlowGraph", "has_cycle"]

logger = logging.getLogger("podium.flow.core")


def has_cycle(nodes: Sequence[Node], adjacency: Mapping[Node, Mapping[Node, None]]) -> bool:
    """Whether the graph has a cycle other than the self-loops of ``allow_cycle`` nodes (Kahn's algorithm)."""
    successors = {
        node: [child for child in children if not (child is node and node.allow_cycle)]
        for node, children in adjacency.items()
    }
    indegree = dict.fromkeys(nodes, 0)
    for children in successors.values():
        for child in children:
            indegree[child] += 1
    ready = [node for node, degree in indegree.items() if degree == 0]
    visited = 0
    while ready:
        node = ready.pop()
        visited += 1
        for succ in successors.get(node, ()):
            indegree[succ] -= 1
            if indegree[succ] == 0:
                ready.append(succ)
    return visited != len(nodes)


class FlowGraph:
    """The nodes, contexts and floes of one flow, built once from its adjacencies.

    Nodes without a parent are fed from ``OpenSea``; nodes without children (or whose only child is
    themselves) feed ``Rookery``. Raises :class:`CycleError` for a cycle unless ``allow_cycles``.
    """

    __slots__ = ("adjacency", "contexts", "floes", "nodes", "queue_maxsize")

    def __init__(
        self,
        adjacencies: Sequence[tuple[Node, Sequence[Node]]],
        *,
        queue_maxsize: int,
        allow_cycles: bool,
        make_context: Callable[[Node | Endpoint], Context],
    ) -> None:
        self.queue_maxsize = queue_maxsize
        self.nodes: dict[Node, None] = {}
        self.adjacency: dict[Node, dict[Node, None]] = {}
        self.contexts: dict[Node | Endpoint, Context] = {}
        self.floes: list[Floe] = []
        for start, successors in adjacencies:
            self.nodes.setdefault(start)
            self.adjacency.setdefault(start, {})
            for succ in successors:
                self.nodes.setdefault(succ)
                self.adjacency.setdefault(succ, {})
                self.adjacency[start][succ] = None
        names: dict[str, Node] = {}
        for node in self.nodes:
            if names.setdefault(node.name, node) is not node:
                logger.warning("duplicate node name %r in one flow; routing by name is ambiguous", node.name)
        if not allow_cycles and has_cycle(tuple(self.nodes), self.adjacency):
            raise CycleError("Flow contains a cycle; enable allow_cycles to bypass")

        for node in self.nodes:
            self.contexts[node] = make_context(node)
        self.contexts[OPEN_SEA] = make_context(OPEN_SEA)
        self.contexts[ROOKERY] = make_context(ROOKERY)

        has_parent: set[Node] = set()
        for parent, children in self.adjacency.items():
            for child in children:
                if not (parent is child and parent.allow_cycle):
                    has_parent.add(child)
                self._link(parent, child)
        for node in self.nodes:
            if node not in has_parent:
                self._link(OPEN_SEA, node)
        for node in self.nodes:
            children = self.adjacency.get(node, {})
            if not children or list(children) == [node]:
                self._link(node, ROOKERY)

    def _link(self, source: Node | Endpoint, target: Node | Endpoint) -> None:
        floe = Floe(source, target, maxsize=self.queue_maxsize)
        self.floes.append(floe)
        self.contexts[source].add_outgoing_floe(floe)
        self.contexts[target].add_incoming_floe(floe)
