"""Node workers: one task per node that takes its messages in order and runs them under the node's policy.

A node's function runs inside its worker task (no task per message): validation, timeout and retries with
backoff (``_execute``), then routing of the result (``_route_result``; controller loops and their budgets in
``controller_postprocess``), and a :class:`FlowError` when a node fails for good.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

from . import _clock
from ._edges import trace_of
from .context import Context
from .errors import FlowError, FlowErrorCode, TraceCancelled
from .node import Node
from .registry import ModelRegistry
from .runtime import ExcInfo, TraceRuntime, Worker
from .types import WM, FinalAnswer, Message

__all__ = [
    "BUDGET_EXCEEDED_TEXT",
    "DEADLINE_EXCEEDED_TEXT",
    "TOKEN_BUDGET_EXCEEDED_TEXT",
    "NodeSpec",
    "NodeWorkers",
]

BUDGET_EXCEEDED_TEXT = "Hop budget exhausted"
DEADLINE_EXCEEDED_TEXT = "Deadline exceeded"
TOKEN_BUDGET_EXCEEDED_TEXT = "Token budget exhausted"


class NodeSpec:
    """What a worker needs per node, resolved once at ``run()``."""

    __slots__ = ("adapter_in", "adapter_out", "expects_message", "func", "policy", "timeout_s")

    def __init__(self, node: Node, registry: ModelRegistry | None) -> None:
        self.func = node.func
        self.policy = node.policy
        self.timeout_s = node.policy.timeout_s
        self.adapter_in, self.adapter_out = node.adapters(registry)
        self.expects_message = False
        models = getattr(registry, "models", None)
        if models is not None:
            try:
                out_model = models(node.name)[1]
                self.expects_message = isinstance(out_model, type) and issubclass(out_model, Message)
            except Exception:
                self.expects_message = False


class NodeWorkers:
    """The worker tasks of a flow's nodes, over the flow's shared :class:`TraceRuntime`."""

    def __init__(self, traces: TraceRuntime, *, emit_errors_to_rookery: bool) -> None:
        self._traces = traces
        self._emit_errors_to_rookery = emit_errors_to_rookery
        self._specs: dict[Node, NodeSpec] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False

    def start(self, contexts: dict[Node, Context], registry: ModelRegistry | None) -> None:
        """Start one worker task per node (``contexts`` maps each node to its context)."""
        loop = asyncio.get_running_loop()
        self._specs = {node: NodeSpec(node, registry) for node in contexts}
        for node, context in contexts.items():
            worker = Worker(node, context)
            worker.task = loop.create_task(self._run(worker), name=f"podium.flow:{node.name}")
            self._traces.workers.append(worker)
            self.tasks.append(worker.task)

    async def stop(self) -> None:
        """Cancel every worker task and wait for it; a node's running trace is cancelled with it."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self._traces.workers.clear()

    async def _run(self, worker: Worker) -> None:
        node = worker.node
        context = worker.context
        spec = self._specs[node]
        traces = self._traces
        inbox = context._inbox
        items = inbox.items
        buffer = context._buffer
        while True:
            try:
                if buffer:
                    message = buffer.popleft()
                elif items:
                    edge, message = items.popleft()
                    edge._release()
                else:
                    message = await inbox.get()
            except asyncio.CancelledError:
                if traces.observed(logging.DEBUG):
                    await traces.emit_event(
                        event="node_cancelled",
                        node=node,
                        context=context,
                        trace_id=None,
                        attempt=0,
                        latency_ms=None,
                        level=logging.DEBUG,
                    )
                raise

            trace_id = trace_of(message)
            deadline_s = message.deadline_s if isinstance(message, Message) else None
            if deadline_s is not None and _clock.wall_time() > deadline_s:
                await self._skip_expired(node, context, message, trace_id)
                continue
            if (
                trace_id is not None
                and (traces.cancelled or traces.trace_events)
                and traces.is_trace_cancelled(trace_id)
            ):
                if traces.observed(logging.INFO):
                    await traces.emit_event(
                        event="trace_cancel_drop",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=0,
                        latency_ms=None,
                        level=logging.INFO,
                    )
                await traces.finalize_message(message)
                continue

            worker.trace_id = trace_id
            try:
                await self._execute(spec, worker, message, trace_id)
            except TraceCancelled:
                await self._trace_cancelled_event(node, context, trace_id)
            except asyncio.CancelledError:
                task = worker.task
                if self.stopping or (not worker.cancel_pending and task is not None and task.cancelling()):
                    raise  # stop(), or someone cancelled the worker itself
                # A trace cancellation, or a CancelledError raised by the node's own code.
                await self._trace_cancelled_event(node, context, trace_id)
            finally:
                worker.trace_id = None
                worker.invoking = False
                if worker.cancel_pending:
                    worker.cancel_pending = False
                    task = worker.task
                    if task is not None and task.cancelling() and not self.stopping:
                        task.uncancel()
                if worker.unwound is not None:
                    if not worker.unwound.done():
                        worker.unwound.set_result(None)
                    worker.unwound = None
                await traces.finalize_message(message)

    async def _trace_cancelled_event(self, node: Node, context: Context, trace_id: Any) -> None:
        if self._traces.observed(logging.INFO):
            await self._traces.emit_event(
                event="node_trace_cancelled",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
            )

    async def _skip_expired(self, node: Node, context: Context, message: Message, trace_id: Any) -> None:
        if self._traces.observed(logging.INFO):
            await self._traces.emit_event(
                event="deadline_skip",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=0,
                latency_ms=None,
                level=logging.INFO,
                extra={"deadline_s": message.deadline_s},
            )
        payload = message.payload
        if not isinstance(payload, FinalAnswer):
            payload = FinalAnswer(text=DEADLINE_EXCEEDED_TEXT)
        await self._traces.emit_to_rookery(message.model_copy(update={"payload": payload}), source=node)
        await self._traces.finalize_message(message)

    async def _execute(self, spec: NodeSpec, worker: Worker, message: Any, trace_id: Any) -> None:
        """Run ``message`` through the worker's node with the node's policy: validation, timeout, retries.

        ``worker.invoking`` is true while the node's function (with its validation) runs: what a FlowEvent
        counts as the trace's in-flight invocations, as PenguiFlow does.
        """
        node = worker.node
        context = worker.context
        func = spec.func
        adapter_in = spec.adapter_in
        adapter_out = spec.adapter_out
        timeout_s = spec.timeout_s
        attempt = 0
        traces = self._traces
        while True:
            if traces.observed(logging.DEBUG):
                await traces.emit_event(
                    event="node_start",
                    node=node,
                    context=context,
                    trace_id=trace_id,
                    attempt=attempt,
                    latency_ms=0.0,
                    level=logging.DEBUG,
                )
            start = _clock.monotonic()
            try:
                worker.invoking = True
                payload = message if adapter_in is None else adapter_in.validate_python(message)
                if timeout_s is None:
                    result = await func(payload, context)
                    if result is not None and adapter_out is not None:
                        result = adapter_out.validate_python(result)
                else:
                    async with asyncio.timeout(timeout_s):
                        result = await func(payload, context)
                        if result is not None and adapter_out is not None:
                            result = adapter_out.validate_python(result)
                worker.invoking = False
                if result is not None:
                    if spec.expects_message and not isinstance(result, Message):
                        warnings.warn(
                            f"Node '{node.name}' is registered for Message -> Message outputs but returned "
                            f"{type(result).__name__}. Return a podium.flow.types.Message to preserve "
                            "headers, trace_id, and meta.",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                    await self._route_result(node, context, message, result)
                if traces.observed(logging.INFO):
                    await traces.emit_event(
                        event="node_success",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=(_clock.monotonic() - start) * 1000,
                        level=logging.INFO,
                    )
                return
            except (TraceCancelled, asyncio.CancelledError):
                raise
            except Exception as exc:
                worker.invoking = False
                latency = (_clock.monotonic() - start) * 1000
                timed_out = isinstance(exc, TimeoutError)
                exc_info: ExcInfo = (type(exc), exc, exc.__traceback__)
                level = logging.WARNING if timed_out else logging.ERROR
                if traces.observed(level):
                    await traces.emit_event(
                        event="node_timeout" if timed_out else "node_error",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=latency,
                        level=level,
                        extra={"exception": repr(exc)},
                        exc_info=exc_info,
                    )
                if attempt >= spec.policy.max_retries:
                    await self._fail(node, context, trace_id, exc, attempt, latency, timed_out, exc_info)
                    return
                attempt += 1
                delay = spec.policy.backoff_delay(attempt)
                if traces.observed(logging.INFO):
                    await traces.emit_event(
                        event="node_retry",
                        node=node,
                        context=context,
                        trace_id=trace_id,
                        attempt=attempt,
                        latency_ms=None,
                        level=logging.INFO,
                        extra={"sleep_s": delay, "exception": repr(exc)},
                    )
                await _clock.sleep(delay)

    async def _route_result(self, node: Node, context: Context, incoming: Any, result: Any) -> None:
        traces = self._traces
        if isinstance(result, Message):
            payload = result.payload
            if isinstance(payload, WM | FinalAnswer):
                destination, prepared, targets, deliver_rookery = self.controller_postprocess(
                    node, context, incoming, result
                )
                if deliver_rookery:
                    copy = prepared.model_copy(deep=True) if isinstance(prepared, Message) else prepared
                    await traces.emit_to_rookery(copy, source=node)
                if destination == "rookery":
                    await traces.emit_to_rookery(prepared, source=node)
                else:
                    await context.emit(prepared, to=targets)
                return
        # The common case, inlined: every successor, counting the message per trace.
        trace_id = trace_of(result)
        counts = traces.trace_counts
        bus = traces.message_bus
        if trace_id is None and traces.untraced is not None:
            for floe in context._out_floes:
                traces.tag_untraced(floe.target, result, trace_of(incoming))
        for floe in context._out_floes:
            if trace_id is not None:
                counts[trace_id] = counts.get(trace_id, 0) + 1
            if bus is not None:
                await traces.publish_to_bus(floe.source, floe.target, result)
            queue = floe.queue
            if 0 < queue.maxsize <= queue._count:
                await queue.put(result)
            else:
                queue.put_nowait(result)

    def controller_postprocess(
        self, node: Node, context: Context, incoming: Any, result: Any
    ) -> tuple[str, Any, list[Node] | None, bool]:
        """Decide where a controller's result goes: back to the node, or to Rookery as a final answer."""
        if isinstance(result, Message):
            payload = result.payload
            if isinstance(payload, WM):
                if result.deadline_s is not None and _clock.wall_time() > result.deadline_s:
                    return "rookery", self._final(result, DEADLINE_EXCEEDED_TEXT), None, False
                if payload.budget_tokens is not None and payload.tokens_used >= payload.budget_tokens:
                    return "rookery", self._final(result, TOKEN_BUDGET_EXCEEDED_TEXT), None, False
                incoming_hops: int | None = None
                if isinstance(incoming, Message) and isinstance(incoming.payload, WM):
                    incoming_hops = incoming.payload.hops
                current_hops = payload.hops
                if incoming_hops is not None and current_hops <= incoming_hops:
                    next_hops = incoming_hops + 1
                else:
                    next_hops = current_hops
                if payload.budget_hops is not None and next_hops >= payload.budget_hops:
                    return "rookery", self._final(result, BUDGET_EXCEEDED_TEXT), None, False
                prepared = result
                if next_hops != current_hops:
                    updated = payload.model_copy(update={"hops": next_hops})
                    prepared = result.model_copy(update={"payload": updated})
                stream_updates = payload.budget_hops is None and payload.budget_tokens is None
                return "context", prepared, [node], stream_updates
            if isinstance(payload, FinalAnswer):
                return "rookery", result, None, False
        return "context", result, None, False

    @staticmethod
    def _final(result: Message, text: str) -> Message:
        return result.model_copy(update={"payload": FinalAnswer(text=text)})

    async def _fail(
        self,
        node: Node,
        context: Context,
        trace_id: Any,
        exc: Exception,
        attempt: int,
        latency: float,
        timed_out: bool,
        exc_info: ExcInfo,
    ) -> None:
        metadata: dict[str, Any] = {"attempt": attempt, "latency_ms": latency}
        if timed_out:
            code = FlowErrorCode.NODE_TIMEOUT
            timeout_s = node.policy.timeout_s
            message = None if timeout_s is None else f"Node '{node.name}' timed out after {timeout_s:.2f}s"
            metadata["timeout_s"] = timeout_s
        else:
            code = FlowErrorCode.NODE_EXCEPTION
            message = f"Node '{node.name}' raised {type(exc).__name__}: {exc}"
            metadata["exception_repr"] = repr(exc)
        flow_error = FlowError.from_exception(
            trace_id=trace_id,
            node_name=node.name,
            node_id=node.node_id,
            exc=exc,
            code=code,
            message=message,
            metadata=metadata,
        )
        for listener in self._traces.failure_listeners:
            listener(flow_error)
        if self._traces.observed(logging.ERROR):
            await self._traces.emit_event(
                event="node_failed",
                node=node,
                context=context,
                trace_id=trace_id,
                attempt=attempt,
                latency_ms=latency,
                level=logging.ERROR,
                extra={"exception": repr(exc), "flow_error": flow_error.to_payload()},
                exc_info=exc_info,
            )
        if self._emit_errors_to_rookery and trace_id is not None:
            await self._traces.emit_to_rookery(flow_error, source=node)
