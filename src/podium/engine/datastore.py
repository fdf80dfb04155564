"""Blueprint data stores (Avtomatika's ``avtomatika.datastore``).

``Blueprint(..., data_stores={"cache": {"k": "v"}})`` and ``bp.add_data_store("cache", {...})`` give handlers
``data_stores.cache``: an :class:`AsyncDictStore` with Avtomatika's awaitable ``get``/``set``
(``await data_stores.cache.get("k")``), shared by the blueprint's jobs in this process. It is also a mapping
(``data_stores.cache["k"]``, ``==`` a dict). Any other object given as a store (a Redis client, a database
pool) is handed to handlers as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["AsyncDictStore", "as_data_store"]


class AsyncDictStore(MutableMapping[str, Any]):
    """An in-process key-value store with awaitable ``get``/``set`` (a copy of the initial data)."""

    def __init__(self, initial_data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(initial_data or {})

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` (``default`` if none)."""
        return self._data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        self._data[key] = value

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._data.pop(key, None)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"AsyncDictStore({self._data!r})"


def as_data_store(value: Any) -> Any:
    """A mapping becomes an :class:`AsyncDictStore`; any other object (a client, a pool) stays as it is."""
    if isinstance(value, AsyncDictStore) or not isinstance(value, Mapping):
        return value
    return AsyncDictStore(value)
