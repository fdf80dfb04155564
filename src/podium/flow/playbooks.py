"""Playbooks: subflows run on demand for one message, sharing its trace (``call_playbook``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from .errors import TraceCancelled
from .types import Message

if TYPE_CHECKING:
    from .core import Flow
    from .registry import ModelRegistry

__all__ = ["PlaybookFactory", "call_playbook"]

PlaybookFactory = Callable[[], "tuple[Flow, ModelRegistry | None]"]


async def call_playbook(
    playbook: PlaybookFactory,
    parent_msg: Message,
    timeout: float | None = None,  # noqa: ASYNC109 - PenguiFlow's signature
    *,
    runtime: Flow | None = None,
) -> Any:
    """Run a subflow built by ``playbook()`` for ``parent_msg`` and return its first Rookery payload.

    The subflow reuses the parent's trace id and headers, honours ``timeout`` (seconds), is cancelled
    with the parent trace (``runtime.cancel(trace_id)`` raises :class:`TraceCancelled` here), and is
    always stopped before this returns or raises.
    """
    flow, registry = playbook()
    flow.run(registry=registry)
    trace_id = getattr(parent_msg, "trace_id", None)
    unregister: Callable[[], None] | None = None
    cancelled_by_parent = False
    caller = asyncio.current_task()
    try:
        if runtime is not None and trace_id is not None:
            traces = runtime._traces
            if traces.is_trace_cancelled(trace_id):
                raise TraceCancelled(trace_id)
            if traces.worker_for_current_task() is None and caller is not None:
                # Not inside one of the runtime's workers (those are cancelled by the runtime itself):
                # interrupt the caller when the parent trace is cancelled.
                def _interrupt() -> None:
                    nonlocal cancelled_by_parent
                    cancelled_by_parent = True
                    caller.cancel()

                unregister = traces.on_trace_cancel(trace_id, _interrupt)
        try:
            await flow.emit(parent_msg)
            if timeout is None:
                result = await flow.fetch()
            else:
                async with asyncio.timeout(timeout):
                    result = await flow.fetch()
        except asyncio.CancelledError:
            if trace_id is not None:
                with suppress(Exception):
                    await flow.cancel(trace_id)
            if cancelled_by_parent and caller is not None and caller.uncancel() == 0:
                raise TraceCancelled(trace_id) from None
            raise
        return result.payload if isinstance(result, Message) else result
    finally:
        if unregister is not None:
            unregister()
        await asyncio.shield(flow.stop())
