"""Helpers that keep flow tests short (``penguiflow.testkit`` compatible).

- ``await run_one(flow, message)`` starts the flow, emits, returns the first Rookery result, stops it,
  and records the trace's events;
- ``assert_node_sequence(trace_id, [...])`` checks the order in which nodes started for that trace;
- ``get_recorded_events(trace_id)`` returns the recorded :class:`FlowEvent` history;
- ``simulate_error(...)`` builds a node function that fails a given number of times, for retry tests;
- ``assert_preserves_message_envelope(node)`` checks that a node keeps headers and trace id.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from itertools import groupby
from typing import Any
from weakref import WeakKeyDictionary

from .core import Flow
from .errors import FlowErrorCode
from .metrics import FlowEvent
from .node import Node
from .types import Headers, Message

__all__ = [
    "assert_node_sequence",
    "assert_preserves_message_envelope",
    "get_recorded_events",
    "run_one",
    "simulate_error",
]

_MAX_TRACE_HISTORY = 64
_TRACE_HISTORY: OrderedDict[str, list[FlowEvent]] = OrderedDict()


def _history_bucket(trace_id: str, *, reset: bool = False) -> list[FlowEvent]:
    bucket = _TRACE_HISTORY.get(trace_id)
    if bucket is None or reset:
        bucket = _TRACE_HISTORY[trace_id] = []
    _TRACE_HISTORY.move_to_end(trace_id)
    while len(_TRACE_HISTORY) > _MAX_TRACE_HISTORY:
        _TRACE_HISTORY.popitem(last=False)
    return bucket


class _Recorder:
    """A middleware that files every event under its trace id."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []

    async def __call__(self, event: FlowEvent) -> None:
        self.events.append(event)
        if event.trace_id is not None:
            _history_bucket(event.trace_id).append(event)


_RECORDERS: WeakKeyDictionary[Flow, _Recorder] = WeakKeyDictionary()


def _recorder_for(flow: Flow) -> _Recorder:
    recorder = _RECORDERS.get(flow)
    if recorder is None:
        recorder = _RECORDERS[flow] = _Recorder()
    if not any(existing is recorder for existing in flow._middlewares):
        flow.add_middleware(recorder)
    return recorder


async def run_one(
    flow: Flow,
    message: Message,
    *,
    registry: Any | None = None,
    timeout_s: float | None = 1.0,
) -> Any:
    """Run ``message`` through ``flow`` and return the first Rookery result (the flow is started and stopped).

    Raises ``TimeoutError`` if nothing reaches Rookery within ``timeout_s`` seconds.
    """
    if not isinstance(message, Message):
        raise TypeError("run_one expects a podium.flow.types.Message instance")
    _recorder_for(flow)
    _history_bucket(message.trace_id, reset=True)
    flow.run(registry=registry)
    try:
        await flow.emit(message)
        if timeout_s is None:
            return await flow.fetch()
        async with asyncio.timeout(timeout_s):
            return await flow.fetch()
    finally:
        await flow.stop()


def get_recorded_events(trace_id: str) -> tuple[FlowEvent, ...]:
    """The recorded events of ``trace_id`` (the last 64 traces are kept)."""
    return tuple(_TRACE_HISTORY.get(trace_id, ()))


def assert_node_sequence(trace_id: str, expected: Sequence[str]) -> None:
    """Assert that nodes started, for ``trace_id``, in the ``expected`` order (retries count once)."""
    events = _TRACE_HISTORY.get(trace_id)
    if not events:
        raise AssertionError(f"No recorded events for trace_id={trace_id!r}; run a flow with run_one first.")
    started = [
        event.node_name or event.node_id or "<anonymous>"
        for event in events
        if event.event_type == "node_start"
    ]
    actual = [name for name, _ in groupby(started)]
    if actual != list(expected):
        raise AssertionError(f"Node sequence mismatch:\n  expected: {list(expected)}\n  actual:   {actual}")


class _StubContext:
    async def emit(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def emit_nowait(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    async def emit_chunk(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(
            "the testkit stub context does not support emit_chunk; pass a context via the 'ctx' parameter"
        )


async def assert_preserves_message_envelope(
    node: Callable[[Message, Any], Awaitable[Any]] | Node,
    *,
    message: Message | None = None,
    ctx: Any | None = None,
) -> Message:
    """Run ``node`` once and assert it returns a :class:`Message` with the same headers and trace id."""
    if isinstance(node, Node):
        func: Callable[..., Awaitable[Any]] = node.func
        node_name = node.name
    else:
        func = node
        node_name = getattr(node, "__name__", "<anonymous>")
    if not inspect.iscoroutinefunction(func):
        raise TypeError("assert_preserves_message_envelope expects an async node")
    sample = message or Message(payload={}, headers=Headers(tenant="test"))
    result = await func(sample, ctx if ctx is not None else _StubContext())
    if not isinstance(result, Message):
        raise AssertionError(f"Node '{node_name}' must return a Message but produced {type(result).__name__}")
    mismatches = [name for name in ("headers", "trace_id") if getattr(result, name) != getattr(sample, name)]
    if mismatches:
        raise AssertionError(
            f"Node '{node_name}' altered Message {', '.join(mismatches)}; preserve the envelope"
        )
    return result


class _ErrorSimulation:
    def __init__(
        self,
        *,
        node_name: str,
        code: str,
        fail_times: int,
        exception_type: type[Exception],
        result_factory: Callable[[Any], Awaitable[Any] | Any] | None,
    ) -> None:
        self._node_name = node_name
        self._code = code
        self._fail_times = fail_times
        self._exception_type = exception_type
        self._result_factory = result_factory
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def failures(self) -> int:
        return min(self._attempts, self._fail_times)

    async def __call__(self, message: Any, _ctx: Any) -> Any:
        self._attempts += 1
        if self._attempts <= self._fail_times:
            raise self._exception_type(
                f"[{self._code}] simulated failure in {self._node_name} (attempt {self._attempts})"
            )
        if self._result_factory is None:
            return message
        result = self._result_factory(message)
        if inspect.isawaitable(result):
            return await result
        return result


def simulate_error(
    node_name: str,
    code: FlowErrorCode | str,
    *,
    fail_times: int = 1,
    result: Any | None = None,
    result_factory: Callable[[Any], Awaitable[Any] | Any] | None = None,
    exception_type: type[Exception] = RuntimeError,
) -> Callable[[Any, Any], Awaitable[Any]]:
    """Return an ``async def (message, ctx)`` that raises ``fail_times`` times, then succeeds.

    On success it returns ``result``, or ``result_factory(message)``, or the message itself. The returned
    function has a ``simulation`` attribute with ``attempts`` and ``failures`` counters.
    """
    if fail_times < 1:
        raise ValueError("fail_times must be >= 1")
    if result is not None and result_factory is not None:
        raise ValueError("Specify only one of result or result_factory")
    if result_factory is None and result is not None:
        constant = result

        def result_factory(_message: Any) -> Any:
            return constant

    simulation = _ErrorSimulation(
        node_name=node_name,
        code=code.value if isinstance(code, FlowErrorCode) else str(code),
        fail_times=fail_times,
        exception_type=exception_type,
        result_factory=result_factory,
    )

    async def _runner(message: Any, ctx: Any) -> Any:
        return await simulation(message, ctx)

    _runner.simulation = simulation  # type: ignore[attr-defined]
    return _runner
