"""podium.flow: typed, in-process async flows (a drop-in for PenguiFlow 2.2.5).

Imports only pydantic and the standard library. Change ``penguiflow`` to ``podium.flow`` in imports
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
