"""podium.flow: typed, in-process async flows (a drop-in for PenguiFlow 2.2.5).

Imports only pydantic and the standard library, and lazily: ``import podium.flow`` itself loads
nothing else; each name is imported from its submodule on first use (PEP 562). Change ``penguiflow`` to ``podium.flow`` in imports
(submodules included: ``podium.flow.core``, ``.types``, ``.patterns``, ...) and existing code runs.

Quick start::

    from podium.flow import Headers, Message, Node, NodePolicy, create

    async def shout(msg: Message, ctx) -> Message:
        return msg.model_copy(update={"payload": msg.payload.upper()})

    flow = create(Node(shout, name="shout", policy=NodePolicy(validate="none")).to())
    flow.run()
    await flow.emit(Message(payload="hi", headers=Headers(tenant="acme")))
    print((await flow.fetch()).payload)   # HI
    await flow.stop()
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not imported from typing: that module alone costs more than this whole package
if TYPE_CHECKING:
    from typing import Any

    from . import testkit
    from .bus import BusEnvelope, InMemoryMessageBus, MessageBus
    from .catalog import NodeSpec, SideEffect, build_catalog, tool
    from .core import DEFAULT_QUEUE_MAXSIZE, Context, CycleError, Flow, PenguiFlow, call_playbook, create
    from .debug import format_flow_event
    from .errors import FlowError, FlowErrorCode, TraceCancelled
    from .metrics import FlowEvent
    from .middlewares import LatencyCallback, Middleware, log_flow_events
    from .node import Node, NodePolicy
    from .patterns import join_k, map_concurrent, predicate_router, union_router
    from .planner import PlannerAction, PlannerFinish, ReactPlanner, Trajectory, TrajectoryStep
    from .policies import DictRoutingPolicy, RoutingPolicy, RoutingRequest
    from .registry import ModelRegistry
    from .remote import RemoteCallRequest, RemoteCallResult, RemoteNode, RemoteStreamEvent, RemoteTransport
    from .state import InMemoryStateStore, RemoteBinding, StateStore, StoredEvent
    from .streaming import chunk_to_ws_json, emit_stream_events, format_sse_event, stream_flow
    from .types import WM, FinalAnswer, Headers, Message, PlanStep, StreamChunk, Thought
    from .viz import flow_to_dot, flow_to_mermaid

__version__ = "2.2.5"
"""The PenguiFlow version whose public surface this package serves."""

# public name -> submodule that defines it
_EXPORTS = {
    "BusEnvelope": "bus",
    "InMemoryMessageBus": "bus",
    "MessageBus": "bus",
    "NodeSpec": "catalog",
    "SideEffect": "catalog",
    "build_catalog": "catalog",
    "tool": "catalog",
    "Context": "core",
    "CycleError": "core",
    "DEFAULT_QUEUE_MAXSIZE": "core",
    "Flow": "core",
    "PenguiFlow": "core",
    "call_playbook": "core",
    "create": "core",
    "format_flow_event": "debug",
    "FlowError": "errors",
    "FlowErrorCode": "errors",
    "TraceCancelled": "errors",
    "FlowEvent": "metrics",
    "LatencyCallback": "middlewares",
    "Middleware": "middlewares",
    "log_flow_events": "middlewares",
    "Node": "node",
    "NodePolicy": "node",
    "join_k": "patterns",
    "map_concurrent": "patterns",
    "predicate_router": "patterns",
    "union_router": "patterns",
    "PlannerAction": "planner",
    "PlannerFinish": "planner",
    "ReactPlanner": "planner",
    "Trajectory": "planner",
    "TrajectoryStep": "planner",
    "DictRoutingPolicy": "policies",
    "RoutingPolicy": "policies",
    "RoutingRequest": "policies",
    "ModelRegistry": "registry",
    "RemoteCallRequest": "remote",
    "RemoteCallResult": "remote",
    "RemoteNode": "remote",
    "RemoteStreamEvent": "remote",
    "RemoteTransport": "remote",
    "InMemoryStateStore": "state",
    "RemoteBinding": "state",
    "StateStore": "state",
    "StoredEvent": "state",
    "chunk_to_ws_json": "streaming",
    "emit_stream_events": "streaming",
    "format_sse_event": "streaming",
    "stream_flow": "streaming",
    "testkit": "testkit",
    "FinalAnswer": "types",
    "Headers": "types",
    "Message": "types",
    "PlanStep": "types",
    "StreamChunk": "types",
    "Thought": "types",
    "WM": "types",
    "flow_to_dot": "viz",
    "flow_to_mermaid": "viz",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if name == module_name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_QUEUE_MAXSIZE",
    "WM",
    "BusEnvelope",
    "Context",
    "CycleError",
    "DictRoutingPolicy",
    "FinalAnswer",
    "Flow",
    "FlowError",
    "FlowErrorCode",
    "FlowEvent",
    "Headers",
    "InMemoryMessageBus",
    "InMemoryStateStore",
    "LatencyCallback",
    "Message",
    "MessageBus",
    "Middleware",
    "ModelRegistry",
    "Node",
    "NodePolicy",
    "NodeSpec",
    "PenguiFlow",
    "PlanStep",
    "PlannerAction",
    "PlannerFinish",
    "ReactPlanner",
    "RemoteBinding",
    "RemoteCallRequest",
    "RemoteCallResult",
    "RemoteNode",
    "RemoteStreamEvent",
    "RemoteTransport",
    "RoutingPolicy",
    "RoutingRequest",
    "SideEffect",
    "StateStore",
    "StoredEvent",
    "StreamChunk",
    "Thought",
    "TraceCancelled",
    "Trajectory",
    "TrajectoryStep",
    "__version__",
    "build_catalog",
    "call_playbook",
    "chunk_to_ws_json",
    "create",
    "emit_stream_events",
    "flow_to_dot",
    "flow_to_mermaid",
    "format_flow_event",
    "format_sse_event",
    "join_k",
    "log_flow_events",
    "map_concurrent",
    "predicate_router",
    "stream_flow",
    "testkit",
    "tool",
    "union_router",
]
