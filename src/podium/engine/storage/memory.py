"""In-memory storage (Avtomatika's ``avtomatika.storage.memory.MemoryStorage``)."""

from __future__ import annotations

from podium.store.memory import MemoryStore

__all__ = ["MemoryStorage"]


class MemoryStorage(MemoryStore):
    """Everything in the process; nothing survives it. ``MemoryStorage(clock=ManualClock())`` in tests.

    Besides podium's fenced locks (``acquire_lock(name, owner, ttl_s=...)`` -> token), Avtomatika's lock calls
    work: ``await acquire_lock(key, holder, ttl)`` -> ``True``/``False`` and ``await release_lock(key, holder)``.
    """

    async def acquire_lock(
        self, name: str, owner: str, ttl: float | None = None, *, ttl_s: float | None = None
    ) -> int | None:
        """Podium's form (``ttl_s=``) returns the fencing token or ``None``; Avtomatika's (a positional
        ``ttl``) returns ``True`` or ``False``."""
        if ttl_s is not None:
            return await super().acquire_lock(name, owner, ttl_s=ttl_s)
        if ttl is None:
            raise TypeError("acquire_lock() needs a ttl (seconds)")
        held = self._locks.get(name)
        if held is not None and held[0] == owner and held[2] > self.clock.now():
            return False  # Avtomatika's locks are not re-entrant
        return await super().acquire_lock(name, owner, ttl_s=ttl) is not None

    async def release_lock(self, name: str, owner: str, token: int | None = None) -> bool:
        """Release with the fencing token (podium) or by holder only (Avtomatika)."""
        if token is None:
            held = self._locks.get(name)
            if held is None or held[0] != owner:
                return False
            token = held[1]
        return await super().release_lock(name, owner, token)
