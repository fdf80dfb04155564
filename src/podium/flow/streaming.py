"""Streaming helpers: SSE and WebSocket renderings of chunks, and flow-level iterators."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .types import Message, StreamChunk

if TYPE_CHECKING:
    from .core import Flow
    from .node import Node

__all__ = ["chunk_to_ws_json", "emit_stream_events", "format_sse_event", "stream_flow"]


def format_sse_event(
    chunk: StreamChunk, *, event_name: str | None = None, retry_ms: int | None = None
) -> str:
    """Render ``chunk`` as one Server-Sent Events frame (``event``, ``id`` = seq, ``data``, blank line).

    Multi-line text becomes several ``data:`` lines, as the SSE format requires.
    """
    event = event_name or ("done" if chunk.done else "chunk")
    lines = [f"event: {event}", f"id: {chunk.seq}"]
    lines.extend(f"data: {line}" for line in chunk.text.split("\n"))
    if chunk.meta:
        lines.append(f"data: {json.dumps(chunk.meta, ensure_ascii=False)}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    return "\n".join(lines) + "\n\n"


def chunk_to_ws_json(chunk: StreamChunk, *, extra: dict[str, Any] | None = None) -> str:
    """Serialise ``chunk`` as a JSON text frame for a WebSocket."""
    payload: dict[str, Any] = {
        "stream_id": chunk.stream_id,
        "seq": chunk.seq,
        "text": chunk.text,
        "done": chunk.done,
        "meta": chunk.meta,
    }
    if extra:
        payload.update(extra)
    return json.dumps(payload, ensure_ascii=False)


async def stream_flow(
    flow: Flow,
    parent_msg: Message,
    *,
    to: Node | Sequence[Node] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - PenguiFlow's signature
    include_final: bool = False,
) -> AsyncIterator[Any]:
    """Emit ``parent_msg`` and yield the :class:`StreamChunk` payloads that reach Rookery.

    Stops after the ``done`` chunk, or, with ``include_final``, after the first non-chunk payload (which
    is yielded too). The caller stops the flow.
    """
    await flow.emit(parent_msg, to=to)
    while True:
        if timeout is None:
            result = await flow.fetch()
        else:
            async with asyncio.timeout(timeout):
                result = await flow.fetch()
        payload = result.payload if isinstance(result, Message) else result
        if isinstance(payload, StreamChunk):
            yield payload
            if payload.done and not include_final:
                return
            continue
        yield payload
        return


EventAdapter = Callable[[Any], tuple[str, bool, dict[str, Any]]]


def _default_adapter(event: Any) -> tuple[str, bool, dict[str, Any]]:
    return str(event), False, {}


async def emit_stream_events(
    source: AsyncIterable[Any],
    ctx: Any,
    parent_msg: Message,
    *,
    adapter: EventAdapter | None = None,
    to: Node | Sequence[Node] | None = None,
    final_meta: dict[str, Any] | None = None,
) -> None:
    """Turn an async iterable of provider events into ``ctx.emit_chunk`` calls.

    ``adapter(event)`` returns ``(text, done, meta)``; if the source ends without a ``done`` event an
    empty final chunk is emitted, so every stream ends with ``done=True``.
    """
    adapt = adapter or _default_adapter
    done_seen = False
    async for event in source:
        text, done, meta = adapt(event)
        await ctx.emit_chunk(parent=parent_msg, text=text, done=done, meta=meta, to=to)
        done_seen = done_seen or done
    if not done_seen:
        await ctx.emit_chunk(parent=parent_msg, text="", done=True, meta=final_meta or {}, to=to)
