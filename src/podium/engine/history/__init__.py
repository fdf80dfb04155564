"""Job history, Avtomatika's ``avtomatika.history`` face.

Avtomatika writes job and worker events to a second database (``HISTORY_DATABASE_URI``: SQLite or
PostgreSQL) through a history storage object. podium records every job's history in its own store, in the
same write as each transition, so no second database is needed: :class:`StoreHistoryStorage` answers
Avtomatika's reading calls from the store (``engine.history_storage``), and :class:`NoOpHistoryStorage` is
the object Avtomatika uses when history is off. ``HISTORY_DATABASE_URI`` is accepted and not used.
"""

from __future__ import annotations

from typing import Any

from podium.engine.history.noop import NoOpHistoryStorage
from podium.engine.models import JobStatus

__all__ = ["NoOpHistoryStorage", "StoreHistoryStorage"]


class StoreHistoryStorage(NoOpHistoryStorage):
    """Avtomatika's history reading calls, answered from the engine's store (writes are the store's own)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    async def get_job_history(self, job_id: str) -> list[dict[str, Any]]:
        """Every history entry of the job, oldest first (``event_type``, ``status``, ``timestamp``, data)."""
        return [
            {
                "job_id": e.subject_id,
                "event_type": e.event,
                "status": e.status,
                "timestamp": e.ts,
                **_dict(e.data),
            }
            for e in await self._engine.job_history(job_id)
        ]

    async def get_jobs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest jobs (``offset`` skips that many)."""
        views = await self._engine.list_jobs(limit=limit + offset, descending=True)
        return [v.to_dict() for v in views[offset:]]

    async def get_job_summary(self, client_token: str | None = None) -> dict[str, int]:
        """Number of jobs per status."""
        out: dict[str, int] = {}
        for status in JobStatus:
            out[str(status)] = await self._engine.count_jobs(status=str(status))
        return out


def _dict(data: Any) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {"data": data}
