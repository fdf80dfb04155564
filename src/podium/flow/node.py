"""Nodes: an async function plus a name and a :class:`NodePolicy` (``penguiflow.node`` compatible)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from .registry import ModelRegistry

__all__ = ["Node", "NodePolicy"]

_VALIDATE_MODES = frozenset({"both", "in", "out", "none"})


@dataclass(slots=True)
class NodePolicy:
    """How the runtime runs a node.

    Attributes:
        validate: which side is validated against the registered models: ``"both"``, ``"in"``,
            ``"out"`` or ``"none"`` (no pydantic work at all on the hot path).
        timeout_s: per-attempt time limit; ``None`` for none.
        max_retries: attempts after the first one before the message fails with a ``FlowError``.
        backoff_base: wait before the first retry, in seconds.
        backoff_mult: factor applied to the wait for each further retry.
        max_backoff: upper bound of the wait, in seconds.
    """

    validate: str = "both"
    timeout_s: float | None = None
    max_retries: int = 0
    backoff_base: float = 0.5
    backoff_mult: float = 2.0
    max_backoff: float | None = None

    def __post_init__(self) -> None:
        if self.validate not in _VALIDATE_MODES:
            raise ValueError("validate must be one of 'both', 'in', 'out', 'none'")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")
        if self.backoff_base < 0 or self.backoff_mult < 0:
            raise ValueError("backoff_base and backoff_mult must be >= 0")

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        delay = self.backoff_base * (self.backoff_mult ** max(attempt - 1, 0))
        if self.max_backoff is not None:
            delay = min(delay, self.max_backoff)
        return delay


class Node:
    """Wraps an ``async def fn(payload, ctx)`` with the metadata the runtime needs.

    Args:
        func: the coroutine function; exactly two positional parameters (the payload and the context).
        name: unique name in a flow (defaults to the function's name); the registry key.
        policy: validation, timeout and retry policy.
        allow_cycle: allow the node to be wired to itself (a controller loop).
    """

    __slots__ = ("__weakref__", "allow_cycle", "func", "name", "node_id", "policy")

    def __init__(
        self,
        func: Callable[..., Awaitable[Any]],
        name: str | None = None,
        policy: NodePolicy | None = None,
        allow_cycle: bool = False,
    ) -> None:
        if not inspect.iscoroutinefunction(func):
            raise TypeError("Node function must be declared with async def")
        self.func = func
        self.name: str = name or func.__name__
        self.policy = policy if policy is not None else NodePolicy()
        self.allow_cycle = allow_cycle
        self.node_id = os.urandom(16).hex()
        params = list(inspect.signature(func).parameters.values())
        if len(params) != 2:
            raise ValueError(
                f"Node '{self.name}' must accept exactly two parameters (message, ctx); got {len(params)}"
            )
        if params[1].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise ValueError("Context parameter must be positional")

    def adapters(
        self, registry: ModelRegistry | None
    ) -> tuple[TypeAdapter[Any] | None, TypeAdapter[Any] | None]:
        """The (input, output) adapters this node validates with under ``registry`` and its policy."""
        mode = self.policy.validate
        if registry is None or mode == "none":
            return None, None
        adapter_in, adapter_out = registry.adapters(self.name)
        return (
            adapter_in if mode in ("in", "both") else None,
            adapter_out if mode in ("out", "both") else None,
        )

    async def invoke(self, message: Any, ctx: Any, *, registry: ModelRegistry | None) -> Any:
        """Run the function once, validating input and output as the policy and registry say."""
        adapter_in, adapter_out = self.adapters(registry)
        if adapter_in is not None:
            message = adapter_in.validate_python(message)
        result = await self.func(message, ctx)
        if result is None or adapter_out is None:
            return result
        return adapter_out.validate_python(result)

    def to(self, *nodes: Node) -> tuple[Node, tuple[Node, ...]]:
        """Declare the successors of this node: ``a.to(b, c)``; ``a.to()`` makes ``a`` an egress node."""
        return self, nodes

    def __hash__(self) -> int:
        return hash(self.node_id)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"Node(name={self.name!r}, node_id={self.node_id})"
