"""Composable orchestration patterns (``penguiflow.patterns`` compatible).

All helpers return ordinary :class:`~podium.flow.node.Node` objects (validation ``"none"``), so they
inherit timeouts and retries like hand-written nodes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter

from .node import Node, NodePolicy
from .policies import PolicyLike, RoutingRequest, evaluate_policy
from .types import Message

if TYPE_CHECKING:
    from .core import Flow

__all__ = ["join_k", "map_concurrent", "predicate_router", "union_router"]

logger = logging.getLogger("podium.flow.patterns")

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")


async def map_concurrent(
    items: Iterable[PayloadT],
    worker: Callable[[PayloadT], Awaitable[ResultT]],
    *,
    max_concurrency: int = 8,
) -> list[ResultT]:
    """Run ``worker`` over ``items`` with at most ``max_concurrency`` calls at once; results keep item order.

    Uses ``max_concurrency`` tasks in all (not one per item). If a call raises, the others are cancelled
    and the exception propagates.
    """
    items_list = list(items)
    results: list[Any] = [None] * len(items_list)
    if not items_list:
        return []
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < len(items_list):
            index = next_index
            next_index += 1
            results[index] = await worker(items_list[index])

    lanes = [asyncio.ensure_future(lane()) for _ in range(min(max(1, max_concurrency), len(items_list)))]
    try:
        await asyncio.gather(*lanes)
    except BaseException:
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        raise
    return results


def _normalize_targets(context: Any, targets: Node | str | Sequence[Node | str]) -> list[Node]:
    target_list: Sequence[Node | str] = [targets] if isinstance(targets, Node | str) else list(targets)
    normalized: list[Node] = []
    candidates = getattr(context, "_outgoing", {})
    for target in target_list:
        if isinstance(target, Node):
            normalized.append(target)
            continue
        if not isinstance(target, str):
            raise TypeError("Targets must be Node or str")
        for candidate in candidates:
            if isinstance(candidate, Node) and candidate.name == target:
                normalized.append(candidate)
                break
        else:
            raise KeyError(f"No successor named '{target}'")
    return normalized


async def _apply_policy(
    policy: PolicyLike | None, message: Any, ctx: Any, node: Node, proposed: list[Node]
) -> list[Node]:
    if policy is None:
        return proposed
    request = RoutingRequest(
        message=message,
        context=ctx,
        node=node,
        proposed=tuple(proposed),
        trace_id=getattr(message, "trace_id", None),
    )
    decision = await evaluate_policy(policy, request)
    if decision is None:
        return []
    return _normalize_targets(ctx, decision)


def predicate_router(
    name: str,
    predicate: Callable[[Any], Sequence[Node | str] | Node | str | None],
    *,
    policy: PolicyLike | None = None,
) -> Node:
    """A node that sends each message to the successors ``predicate(message)`` names (nodes or names).

    ``None`` or an empty result drops the message; a ``policy`` may override or filter the targets.
    """

    async def router(msg: Any, ctx: Any) -> None:
        targets = predicate(msg)
        if targets is None:
            return
        proposed = _normalize_targets(ctx, targets)
        if not proposed:
            return
        selected = await _apply_policy(policy, msg, ctx, router_node, proposed)
        if selected:
            await ctx.emit(msg, to=selected)

    router_node = Node(router, name=name, policy=NodePolicy(validate="none"))
    return router_node


def union_router(name: str, union_model: Any, *, policy: PolicyLike | None = None) -> Node:
    """A node that validates a discriminated union and forwards each variant to the successor named
    after its ``kind`` (or, without one, after its class)."""
    adapter: TypeAdapter[Any] = TypeAdapter(union_model)

    async def router(msg: Any, ctx: Any) -> None:
        validated = adapter.validate_python(msg)
        target = getattr(validated, "kind", validated.__class__.__name__)
        proposed = _normalize_targets(ctx, target)
        if not proposed:
            raise KeyError(f"No successor matches '{target}'")
        selected = await _apply_policy(policy, validated, ctx, router_node, proposed)
        if selected:
            await ctx.emit(validated, to=selected)

    router_node = Node(router, name=name, policy=NodePolicy(validate="none"))
    return router_node


class _Buckets:
    """Open ``join_k`` buckets of one flow; listens to the flow so that stray buckets are freed."""

    def __init__(self, join: JoinState) -> None:
        self.join = join
        self.buckets: dict[str, list[Any]] = {}
        self.expiry: dict[str, asyncio.TimerHandle] = {}

    def add(self, trace_id: str, msg: Any) -> list[Any] | None:
        timer = self.expiry.pop(trace_id, None)
        if timer is not None:
            timer.cancel()
        bucket = self.buckets.get(trace_id)
        if bucket is None:
            limit = self.join.max_pending
            if limit is not None and len(self.buckets) >= limit:
                oldest = next(iter(self.buckets))
                logger.warning(
                    "join_k %r: evicting the bucket of trace %s (max_pending)", self.join.name, oldest
                )
                self.drop(oldest)
                self.join.evicted += 1
            bucket = self.buckets[trace_id] = []
        bucket.append(msg)
        if len(bucket) < self.join.k:
            return None
        del self.buckets[trace_id]
        return bucket

    def drop(self, trace_id: str) -> None:
        self.buckets.pop(trace_id, None)
        timer = self.expiry.pop(trace_id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, trace_id: str) -> None:
        self.expiry.pop(trace_id, None)
        if self.buckets.pop(trace_id, None) is not None:
            self.join.expired += 1

    # the flow's trace listener protocol
    def trace_idle(self, trace_id: str) -> None:
        ttl = self.join.idle_ttl_s
        if trace_id in self.buckets and trace_id not in self.expiry and ttl is not None:
            self.expiry[trace_id] = asyncio.get_running_loop().call_later(ttl, self._expire, trace_id)

    def trace_cancelled(self, trace_id: str) -> None:
        self.drop(trace_id)

    def flow_stopped(self) -> None:
        for timer in self.expiry.values():
            timer.cancel()
        self.expiry.clear()
        self.buckets.clear()


class JoinState:
    """The state of one ``join_k`` node, per flow it runs in."""

    def __init__(self, name: str, k: int, idle_ttl_s: float | None, max_pending: int | None) -> None:
        self.name = name
        self.k = k
        self.idle_ttl_s = idle_ttl_s
        self.max_pending = max_pending
        self.expired = 0
        self.evicted = 0
        self._per_flow: weakref.WeakKeyDictionary[Any, _Buckets] = weakref.WeakKeyDictionary()
        self._detached = _Buckets(self)

    def buckets_for(self, runtime: Flow | None) -> _Buckets:
        if runtime is None:
            return self._detached
        buckets = self._per_flow.get(runtime)
        if buckets is None:
            buckets = self._per_flow[runtime] = _Buckets(self)
            runtime._add_trace_listener(buckets)
        return buckets

    def pending_traces(self, runtime: Flow | None = None) -> int:
        """How many traces have an open (incomplete) bucket, in ``runtime`` or in all flows."""
        if runtime is not None:
            buckets = self._per_flow.get(runtime)
            return len(buckets.buckets) if buckets is not None else 0
        return len(self._detached.buckets) + sum(len(b.buckets) for b in self._per_flow.values())


class _JoinNode(Node):
    __slots__ = ("join_state",)
    join_state: JoinState


def join_k(name: str, k: int, *, idle_ttl_s: float | None = 60.0, max_pending: int | None = None) -> Node:
    """A node that collects ``k`` messages per trace id and then emits one aggregate.

    For :class:`Message` inputs the aggregate is the first message with ``payload`` set to the list of
    the ``k`` payloads; for other inputs it is the list of messages.

    Memory stays bounded: a trace's open bucket is dropped when the trace is cancelled, when the flow
    stops, and ``idle_ttl_s`` seconds after the trace has nothing left in flight anywhere in the flow
    (a stray or late message that can no longer be completed). ``max_pending`` optionally caps the number
    of open buckets (the oldest is evicted). The node's ``join_state`` exposes ``pending_traces()``.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    state = JoinState(name, k, idle_ttl_s, max_pending)

    async def aggregator(msg: Any, ctx: Any) -> Any:
        trace_id = getattr(msg, "trace_id", None)
        if trace_id is None:
            raise ValueError("join_k requires messages with trace_id")
        batch = state.buckets_for(getattr(ctx, "runtime", None)).add(trace_id, msg)
        if batch is None:
            return None
        first = batch[0]
        if isinstance(first, Message):
            return first.model_copy(update={"payload": [item.payload for item in batch]})
        return batch

    node = _JoinNode(aggregator, name=name, policy=NodePolicy(validate="none"))
    node.join_state = state
    return node
