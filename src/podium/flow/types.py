"""Typed message and controller models (``penguiflow.types`` compatible)."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field

from . import _clock

__all__ = [
    "WM",
    "FinalAnswer",
    "Headers",
    "Message",
    "PlanStep",
    "StreamChunk",
    "Thought",
]


def _new_trace_id() -> str:
    # Same shape as uuid4().hex (32 lowercase hex characters), at a fraction of the cost.
    return os.urandom(16).hex()


def _now() -> float:
    return _clock.wall_time()


class Headers(BaseModel):
    """Routing headers carried by every :class:`Message`."""

    tenant: str
    topic: str | None = None
    priority: int = 0


class Message(BaseModel):
    """The envelope that travels along the edges of a flow.

    ``deadline_s`` is an absolute wall-clock time (seconds since the epoch); a message whose deadline has
    passed is not run by the next node but turned into a ``FinalAnswer("Deadline exceeded")`` at Rookery.
    """

    payload: Any
    headers: Headers
    trace_id: str = Field(default_factory=_new_trace_id)
    ts: float = Field(default_factory=_now)
    deadline_s: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class StreamChunk(BaseModel):
    """One piece of a streamed output; ``seq`` counts from 0 per ``stream_id`` without gaps."""

    stream_id: str
    seq: int
    text: str
    done: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)


class PlanStep(BaseModel):
    """One step a controller plans to take."""

    kind: Literal["retrieve", "web", "sql", "summarize", "route", "stop"]
    args: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = 1


class Thought(BaseModel):
    """An intermediate reasoning artefact of a controller loop."""

    steps: list[PlanStep]
    rationale: str
    done: bool = False


class WM(BaseModel):
    """Working memory of a controller loop; the runtime counts ``hops`` and enforces the budgets."""

    query: str
    facts: list[Any] = Field(default_factory=list)
    hops: int = 0
    budget_hops: int | None = 8
    tokens_used: int = 0
    budget_tokens: int | None = None
    confidence: float = 0.0


class FinalAnswer(BaseModel):
    """The terminal payload of a controller loop (also produced when a budget or deadline runs out)."""

    text: str
    citations: list[str] = Field(default_factory=list)
