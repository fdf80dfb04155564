"""History turned off (Avtomatika's ``avtomatika.history.noop.NoOpHistoryStorage``)."""

from __future__ import annotations

from typing import Any

__all__ = ["NoOpHistoryStorage"]


class NoOpHistoryStorage:
    """Records nothing and answers empty: Avtomatika's history object when ``HISTORY_DATABASE_URI`` is unset."""

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    async def log_job_event(self, event_data: dict[str, Any]) -> None:
        """Dropped (podium's store records job history itself)."""

    async def log_worker_event(self, event_data: dict[str, Any]) -> None:
        """Dropped."""

    async def get_job_history(self, job_id: str) -> list[dict[str, Any]]:
        """No history."""
        return []

    async def get_jobs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """No jobs."""
        return []

    async def get_job_summary(self, client_token: str | None = None) -> dict[str, int]:
        """No counts."""
        return {}

    async def get_worker_history(self, worker_id: str, since_days: int = 7) -> list[dict[str, Any]]:
        """No worker history."""
        return []
