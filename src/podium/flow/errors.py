"""Traceable exceptions of the flow runtime.

Hierarchy::

    Exception
    ├── FlowError           a node failed for good (retries exhausted, timeout); carries trace and node
    └── TraceCancelled      work for one trace id was cancelled (``podium.flow.core``)
    RuntimeError
    └── CycleError          the graph has a cycle that is not an allowed self-loop (``podium.flow.core``)

``FlowErrorCode`` values are stable strings, safe to store and compare across versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

__all__ = ["CycleError", "FlowError", "FlowErrorCode", "TraceCancelled"]


class FlowErrorCode(str, Enum):  # noqa: UP042 - str() of a member must stay PenguiFlow's
    """Stable error codes surfaced by the runtime."""

    NODE_TIMEOUT = "NODE_TIMEOUT"
    NODE_EXCEPTION = "NODE_EXCEPTION"
    TRACE_CANCELLED = "TRACE_CANCELLED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    HOP_BUDGET_EXHAUSTED = "HOP_BUDGET_EXHAUSTED"
    TOKEN_BUDGET_EXHAUSTED = "TOKEN_BUDGET_EXHAUSTED"


class FlowError(Exception):
    """A node failure with the trace id, the node, a stable code and the original exception."""

    __slots__ = (
        "code",
        "exception_type",
        "message",
        "metadata",
        "node_id",
        "node_name",
        "original_exc",
        "trace_id",
    )

    def __init__(
        self,
        *,
        trace_id: str | None,
        node_name: str | None,
        code: FlowErrorCode | str,
        message: str,
        original_exc: BaseException | None = None,
        node_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.trace_id = trace_id
        self.node_name = node_name
        self.node_id = node_id
        self.code: str = code.value if isinstance(code, FlowErrorCode) else str(code)
        self.message = message
        self.original_exc = original_exc
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.exception_type: str | None = type(original_exc).__name__ if original_exc is not None else None

    def __str__(self) -> str:
        trace = f" trace={self.trace_id}" if self.trace_id else ""
        node = f" node={self.node_name}" if self.node_name else ""
        return f"[{self.code}] {self.message}{trace}{node}".strip()

    def unwrap(self) -> BaseException | None:
        """Return the wrapped exception, if any."""
        return self.original_exc

    def to_payload(self) -> dict[str, Any]:
        """Return a JSON-serialisable representation of the error."""
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.trace_id is not None:
            payload["trace_id"] = self.trace_id
        if self.node_name is not None:
            payload["node_name"] = self.node_name
        if self.node_id is not None:
            payload["node_id"] = self.node_id
        if self.exception_type is not None:
            payload["exception_type"] = self.exception_type
        if self.metadata:
            payload["metadata"] = dict(self.metadata)
        return payload

    @classmethod
    def from_exception(
        cls,
        *,
        trace_id: str | None,
        node_name: str | None,
        node_id: str | None,
        exc: BaseException,
        code: FlowErrorCode,
        message: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> FlowError:
        """Build a ``FlowError`` around ``exc``."""
        return cls(
            trace_id=trace_id,
            node_name=node_name,
            node_id=node_id,
            code=code,
            message=message or str(exc) or exc.__class__.__name__,
            original_exc=exc,
            metadata=metadata,
        )


class TraceCancelled(Exception):
    """Raised when work for one ``trace_id`` is cancelled; other traces keep running."""

    def __init__(self, trace_id: str | None) -> None:
        super().__init__(f"trace cancelled: {trace_id}")
        self.trace_id = trace_id


class CycleError(RuntimeError):
    """Raised by ``create`` when the graph has a cycle other than a node's allowed self-loop."""
