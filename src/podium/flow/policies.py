"""Routing policies that let routers change their targets at runtime (``penguiflow.policies`` compatible)."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from .node import Node

if TYPE_CHECKING:
    from .core import Context

__all__ = [
    "DictRoutingPolicy",
    "PolicyCallable",
    "PolicyLike",
    "RoutingDecisionType",
    "RoutingPolicy",
    "RoutingRequest",
    "evaluate_policy",
]

RoutingDecisionType: TypeAlias = Node | str | Sequence[Node | str] | None


@dataclass(slots=True)
class RoutingRequest:
    """What a router asks its policy: the message and the successors it proposes."""

    message: Any
    context: Context
    node: Node
    proposed: tuple[Node, ...]
    trace_id: str | None

    @property
    def node_name(self) -> str:
        return self.node.name or self.node.node_id

    @property
    def proposed_names(self) -> tuple[str, ...]:
        return tuple(candidate.name or candidate.node_id for candidate in self.proposed)


class RoutingPolicy(Protocol):
    """Decides the targets of a router; may return them directly or as an awaitable."""

    def select(self, request: RoutingRequest) -> RoutingDecisionType | Awaitable[RoutingDecisionType]:
        """Return the targets for ``request`` (``None`` drops the message)."""


PolicyCallable = Callable[[RoutingRequest], RoutingDecisionType | Awaitable[RoutingDecisionType]]
PolicyLike = RoutingPolicy | PolicyCallable


async def evaluate_policy(policy: PolicyLike, request: RoutingRequest) -> RoutingDecisionType:
    """Evaluate ``policy`` (an object with ``select`` or a callable), sync or async."""
    select = getattr(policy, "select", None)
    candidate = select(request) if select is not None else cast(PolicyCallable, policy)(request)
    if inspect.isawaitable(candidate):
        return cast(RoutingDecisionType, await candidate)
    return candidate


KeyFn = Callable[[RoutingRequest], str | None]


def _by_trace_id(request: RoutingRequest) -> str | None:
    return request.trace_id


class DictRoutingPolicy:
    """A routing policy read from a mapping ``key -> targets`` (from code, JSON or an environment variable).

    Args:
        mapping: the routing table.
        default: the decision for keys not in the table (``None`` drops the message).
        key_getter: computes the key of a request; defaults to its trace id.
    """

    def __init__(
        self,
        mapping: Mapping[str, RoutingDecisionType],
        *,
        default: RoutingDecisionType = None,
        key_getter: KeyFn | None = None,
    ) -> None:
        self._mapping: dict[str, RoutingDecisionType] = dict(mapping)
        self._default = default
        self._key_getter = key_getter or _by_trace_id

    def select(self, request: RoutingRequest) -> RoutingDecisionType:
        key = self._key_getter(request)
        if key is None:
            return self._default
        return self._mapping.get(key, self._default)

    def update_mapping(self, mapping: Mapping[str, RoutingDecisionType]) -> None:
        """Replace the routing table (takes effect for the next message)."""
        self._mapping = dict(mapping)

    def set_default(self, decision: RoutingDecisionType) -> None:
        self._default = decision

    @classmethod
    def from_json(cls, payload: str, **kwargs: Any) -> DictRoutingPolicy:
        data = json.loads(payload)
        if not isinstance(data, Mapping):
            raise TypeError("JSON payload must decode to a mapping")
        return cls(data, **kwargs)

    @classmethod
    def from_json_file(cls, path: str, **kwargs: Any) -> DictRoutingPolicy:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read(), **kwargs)

    @classmethod
    def from_env(
        cls,
        env_var: str,
        *,
        loader: Callable[[str], Mapping[str, RoutingDecisionType]] | None = None,
        default: RoutingDecisionType = None,
        key_getter: KeyFn | None = None,
    ) -> DictRoutingPolicy:
        raw = os.getenv(env_var)
        if raw is None:
            raise KeyError(f"Environment variable '{env_var}' not set")
        data = json.loads(raw) if loader is None else loader(raw)
        if not isinstance(data, Mapping):
            raise TypeError("Policy loader must return a mapping")
        return cls(data, default=default, key_getter=key_getter)
