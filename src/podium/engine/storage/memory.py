"""In-memory storage (Avtomatika's ``avtomatika.storage.memory.MemoryStorage``)."""

from __future__ import annotations

from podium.store.memory import MemoryStore

__all__ = ["MemoryStorage"]


class MemoryStorage(MemoryStore):
    """Everything in the process; nothing survives it. ``MemoryStorage(clock=ManualClock())`` in tests."""
