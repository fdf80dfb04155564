"""Per-node pydantic models, validated through cached ``TypeAdapter``s."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

__all__ = ["ModelRegistry"]


@dataclass(slots=True)
class RegistryEntry:
    in_adapter: TypeAdapter[Any]
    out_adapter: TypeAdapter[Any]
    in_model: type[BaseModel]
    out_model: type[BaseModel]


class ModelRegistry:
    """Maps node names to their input and output models.

    Adapters are built once per model and shared between nodes that use the same model.
    """

    def __init__(self) -> None:
        self._entries: dict[str, RegistryEntry] = {}
        self._adapter_cache: dict[Any, TypeAdapter[Any]] = {}

    def _adapter(self, model: type[BaseModel]) -> TypeAdapter[Any]:
        adapter = self._adapter_cache.get(model)
        if adapter is None:
            adapter = self._adapter_cache[model] = TypeAdapter(model)
        return adapter

    def register(self, node_name: str, in_model: type[BaseModel], out_model: type[BaseModel]) -> None:
        """Register the models of ``node_name``; registering a name twice is an error."""
        if node_name in self._entries:
            raise ValueError(f"Node '{node_name}' already registered")
        if not (
            isinstance(in_model, type)
            and isinstance(out_model, type)
            and issubclass(in_model, BaseModel)
            and issubclass(out_model, BaseModel)
        ):
            raise TypeError("Models must inherit from pydantic.BaseModel")
        self._entries[node_name] = RegistryEntry(
            self._adapter(in_model), self._adapter(out_model), in_model, out_model
        )

    def adapters(self, node_name: str) -> tuple[TypeAdapter[Any], TypeAdapter[Any]]:
        """Return the (input, output) adapters of ``node_name``; ``KeyError`` if it is not registered."""
        try:
            entry = self._entries[node_name]
        except KeyError as exc:
            raise KeyError(f"Node '{node_name}' not registered") from exc
        return entry.in_adapter, entry.out_adapter

    def models(self, node_name: str) -> tuple[type[BaseModel], type[BaseModel]]:
        """Return the (input, output) models of ``node_name``; ``KeyError`` if it is not registered."""
        try:
            entry = self._entries[node_name]
        except KeyError as exc:
            raise KeyError(f"Node '{node_name}' not registered") from exc
        return entry.in_model, entry.out_model

    def __contains__(self, node_name: object) -> bool:
        return node_name in self._entries
