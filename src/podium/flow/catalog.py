"""Tool catalog for planners: describe nodes with their models and side effects."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from .node import Node
from .registry import ModelRegistry

__all__ = ["NodeSpec", "SideEffect", "build_catalog", "tool"]

SideEffect = Literal["pure", "read", "write", "external", "stateful"]

_TOOL_ATTR = "__penguiflow_tool__"  # the attribute name PenguiFlow's @tool uses, so both read each other


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A planner-visible description of a node."""

    node: Node
    name: str
    desc: str
    args_model: type[BaseModel]
    out_model: type[BaseModel]
    side_effects: SideEffect = "pure"
    tags: Sequence[str] = field(default_factory=tuple)
    auth_scopes: Sequence[str] = field(default_factory=tuple)
    cost_hint: str | None = None
    latency_hint_ms: int | None = None
    safety_notes: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_tool_record(self) -> dict[str, Any]:
        """A serialisable record (with JSON schemas) for prompting."""
        return {
            "name": self.name,
            "desc": self.desc,
            "side_effects": self.side_effects,
            "tags": list(self.tags),
            "auth_scopes": list(self.auth_scopes),
            "cost_hint": self.cost_hint,
            "latency_hint_ms": self.latency_hint_ms,
            "safety_notes": self.safety_notes,
            "args_schema": self.args_model.model_json_schema(),
            "out_schema": self.out_model.model_json_schema(),
            "extra": dict(self.extra),
        }


def _unique(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values or ()))


def tool(
    *,
    desc: str | None = None,
    side_effects: SideEffect = "pure",
    tags: Sequence[str] | None = None,
    auth_scopes: Sequence[str] | None = None,
    cost_hint: str | None = None,
    latency_hint_ms: int | None = None,
    safety_notes: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Annotate a node function with catalog metadata."""
    payload: dict[str, Any] = {
        "desc": desc,
        "side_effects": side_effects,
        "tags": _unique(tags),
        "auth_scopes": _unique(auth_scopes),
        "cost_hint": cost_hint,
        "latency_hint_ms": latency_hint_ms,
        "safety_notes": safety_notes,
        "extra": dict(extra) if extra else {},
    }

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        setattr(func, _TOOL_ATTR, payload)
        return func

    return decorator


def _metadata(func: Callable[..., Any]) -> dict[str, Any]:
    raw: Mapping[str, Any] = getattr(func, _TOOL_ATTR, None) or {}
    fallback = inspect.getdoc(func) or func.__name__
    return {
        "desc": raw.get("desc") or fallback,
        "side_effects": raw.get("side_effects", "pure"),
        "tags": tuple(raw.get("tags", ())),
        "auth_scopes": tuple(raw.get("auth_scopes", ())),
        "cost_hint": raw.get("cost_hint"),
        "latency_hint_ms": raw.get("latency_hint_ms"),
        "safety_notes": raw.get("safety_notes"),
        "extra": dict(raw.get("extra", {})),
    }


def build_catalog(nodes: Sequence[Node], registry: ModelRegistry) -> list[NodeSpec]:
    """Describe ``nodes`` using the models registered for them."""
    specs: list[NodeSpec] = []
    for node in nodes:
        in_model, out_model = registry.models(node.name)
        specs.append(
            NodeSpec(
                node=node, name=node.name, args_model=in_model, out_model=out_model, **_metadata(node.func)
            )
        )
    return specs
