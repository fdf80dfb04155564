"""Remote calls: a node that delegates to another agent through a pluggable transport.

:func:`RemoteNode` proxies each message to ``transport.send`` (or ``transport.stream``, mirroring the
streamed text as :class:`StreamChunk` messages), records the trace -> remote task binding in the flow's
state store, and when the trace is cancelled calls ``transport.cancel`` for the remote task.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from . import _clock
from .errors import TraceCancelled
from .node import Node, NodePolicy
from .state import RemoteBinding
from .types import Message

if TYPE_CHECKING:
    from .core import Context, Flow

__all__ = ["RemoteCallRequest", "RemoteCallResult", "RemoteNode", "RemoteStreamEvent", "RemoteTransport"]


@dataclass(slots=True)
class RemoteCallRequest:
    """What a :class:`RemoteTransport` is asked to do."""

    message: Message
    skill: str
    agent_url: str
    agent_card: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    timeout_s: float | None = None


@dataclass(slots=True)
class RemoteCallResult:
    """The answer of :meth:`RemoteTransport.send`."""

    result: Any
    context_id: str | None = None
    task_id: str | None = None
    agent_url: str | None = None
    meta: Mapping[str, Any] | None = None


@dataclass(slots=True)
class RemoteStreamEvent:
    """One event of :meth:`RemoteTransport.stream`; ``result`` carries the final payload."""

    text: str | None = None
    done: bool = False
    meta: Mapping[str, Any] | None = None
    context_id: str | None = None
    task_id: str | None = None
    agent_url: str | None = None
    result: Any | None = None


class RemoteTransport(Protocol):
    """The minimal remote invocation surface (A2A or any other protocol)."""

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        """Perform a unary remote call."""

    def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        """Perform a remote call that yields streaming events."""

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        """Cancel the remote task ``task_id`` at ``agent_url``."""


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)


def _estimate_bytes(value: Any) -> int | None:
    """Best-effort size of ``value`` as JSON, for metrics."""
    if value is None:
        return None
    try:
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return len(json.dumps(data, default=_json_default).encode("utf-8"))
    except Exception:
        try:
            return len(str(value).encode("utf-8"))
        except Exception:
            return None


class _RemoteCall:
    """The bookkeeping of one remote invocation (ids learnt from the transport, sizes, events)."""

    def __init__(
        self,
        *,
        runtime: Flow,
        ctx: Context,
        owner: Node,
        transport: RemoteTransport,
        message: Message,
        agent_url: str,
        record_binding: bool,
        base_extra: dict[str, Any],
    ) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.owner = owner
        self.transport = transport
        self.message = message
        self.trace_id = message.trace_id
        self.agent_url = agent_url
        self.record_binding = record_binding
        self.base_extra = base_extra
        self.context_id: str | None = None
        self.task_id: str | None = None
        self.bound = False
        self.response_bytes = 0
        self.stream_events = 0
        self.started = _clock.monotonic()

    def extra(self, **additional: Any) -> dict[str, Any]:
        extra = dict(self.base_extra)
        extra["remote_agent_url"] = self.agent_url
        if self.context_id is not None:
            extra["remote_context_id"] = self.context_id
        if self.task_id is not None:
            extra["remote_task_id"] = self.task_id
        extra.update({key: value for key, value in additional.items() if value is not None})
        return extra

    async def record(self, event: str, level: int, latency_ms: float | None, **additional: Any) -> None:
        await self.runtime.record_remote_event(
            event=event,
            node=self.owner,
            context=self.ctx,
            trace_id=self.trace_id,
            latency_ms=latency_ms,
            level=level,
            extra=self.extra(**additional),
        )

    def elapsed_ms(self) -> float:
        return (_clock.monotonic() - self.started) * 1000

    async def learn(self, *, context_id: str | None, task_id: str | None, agent_url: str | None) -> None:
        if context_id is not None:
            self.context_id = context_id
        if task_id is not None:
            self.task_id = task_id
        if agent_url is not None:
            self.agent_url = agent_url
        if self.bound or self.context_id is None or self.task_id is None:
            return
        self.bound = True
        if self.record_binding:
            await self.runtime.save_remote_binding(
                RemoteBinding(
                    trace_id=self.trace_id,
                    context_id=self.context_id,
                    task_id=self.task_id,
                    agent_url=self.agent_url,
                )
            )
        if self.runtime._is_trace_cancelled(self.trace_id):
            await self.cancel_remote("pre_cancelled")
            raise TraceCancelled(self.trace_id)

    async def cancel_remote(self, reason: str) -> None:
        if self.task_id is None:
            return
        start = _clock.monotonic()
        try:
            await self.transport.cancel(agent_url=self.agent_url, task_id=self.task_id)
        except Exception as exc:
            latency = (_clock.monotonic() - start) * 1000
            await self.record(
                "remote_cancel_error",
                logging.ERROR,
                latency,
                remote_cancel_reason=reason,
                remote_error=repr(exc),
                remote_status="cancel_error",
            )
            return
        latency = (_clock.monotonic() - start) * 1000
        await self.record(
            "remote_call_cancelled",
            logging.INFO,
            latency,
            remote_cancel_reason=reason,
            remote_status="cancelled",
        )

    async def run_stream(self, request: RemoteCallRequest) -> Any:
        final: Any = None
        index = 0
        async for event in self.transport.stream(request):
            self.stream_events = index + 1
            await self.learn(context_id=event.context_id, task_id=event.task_id, agent_url=event.agent_url)
            chunk_bytes = 0
            if event.text is not None:
                chunk_bytes += len(event.text.encode("utf-8")) + (_estimate_bytes(event.meta) or 0)
                meta = dict(event.meta) if event.meta is not None else None
                await self.ctx.emit_chunk(parent=self.message, text=event.text, done=event.done, meta=meta)
            await self.record(
                "remote_stream_event",
                logging.DEBUG,
                self.elapsed_ms(),
                remote_stream_seq=index,
                remote_chunk_bytes=chunk_bytes or None,
                remote_chunk_done=event.done,
                remote_chunk_meta_keys=sorted(event.meta) if event.meta else None,
            )
            self.response_bytes += chunk_bytes
            if event.result is not None:
                self.response_bytes += _estimate_bytes(event.result) or 0
                final = event.result
            index += 1
        return final

    async def run_unary(self, request: RemoteCallRequest) -> Any:
        result = await self.transport.send(request)
        await self.learn(context_id=result.context_id, task_id=result.task_id, agent_url=result.agent_url)
        self.response_bytes += _estimate_bytes(result.result) or 0
        return result.result


def RemoteNode(
    *,
    transport: RemoteTransport,
    skill: str,
    agent_url: str,
    name: str,
    agent_card: Mapping[str, Any] | None = None,
    policy: NodePolicy | None = None,
    streaming: bool = False,
    record_binding: bool = True,
) -> Node:
    """A node that sends each :class:`Message` to ``skill`` at ``agent_url`` through ``transport``.

    Args:
        transport: the :class:`RemoteTransport` doing the calls.
        skill: the remote skill to invoke.
        agent_url: where the remote agent lives.
        name: the node name.
        agent_card: optional agent description passed along in the request.
        policy: the node policy (defaults to ``NodePolicy()``); its ``timeout_s`` is passed to the transport.
        streaming: use ``transport.stream`` and mirror text events as stream chunks.
        record_binding: save the trace -> remote task binding in the flow's state store.
    """
    node_policy = policy or NodePolicy()

    async def _remote_impl(message: Message, ctx: Context) -> Any:
        if not isinstance(message, Message):
            raise TypeError("Remote nodes require podium.flow.types.Message inputs")
        runtime = ctx.runtime
        if runtime is None:
            raise RuntimeError("Context is not bound to a running flow")
        owner = ctx.owner
        if not isinstance(owner, Node):
            raise RuntimeError("Remote context owner must be a Node")
        base_extra: dict[str, Any] = {
            "remote_skill": skill,
            "remote_transport": type(transport).__name__,
            "remote_streaming": streaming,
        }
        request_bytes = _estimate_bytes(message)
        if request_bytes is not None:
            base_extra["remote_request_bytes"] = request_bytes
        call = _RemoteCall(
            runtime=runtime,
            ctx=ctx,
            owner=owner,
            transport=transport,
            message=message,
            agent_url=agent_url,
            record_binding=record_binding,
            base_extra=base_extra,
        )
        request = RemoteCallRequest(
            message=message,
            skill=skill,
            agent_url=agent_url,
            agent_card=agent_card,
            metadata=message.meta,
            timeout_s=node_policy.timeout_s,
        )
        await call.record("remote_call_start", logging.DEBUG, 0.0)
        try:
            result = await (call.run_stream(request) if streaming else call.run_unary(request))
        except TraceCancelled:
            raise
        except asyncio.CancelledError:
            # The worker running this node is cancelled: by cancel(trace_id) (then the remote task is
            # cancelled too) or by stop() (then it is left alone).
            if call.task_id is not None and runtime._is_trace_cancelled(call.trace_id):
                await call.cancel_remote("trace_cancel")
            raise
        except Exception as exc:
            await call.record(
                "remote_call_error",
                logging.ERROR,
                call.elapsed_ms(),
                remote_error=repr(exc),
                remote_status="error",
            )
            raise
        await call.record(
            "remote_call_success",
            logging.INFO,
            call.elapsed_ms(),
            remote_response_bytes=call.response_bytes,
            remote_stream_events=call.stream_events,
            remote_status="success",
        )
        return result

    return Node(_remote_impl, name=name, policy=node_policy)
