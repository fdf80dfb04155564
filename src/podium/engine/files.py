"""A job's files on S3 (``task_files``), when ``Config.S3_*`` is set: handed to handlers that ask for
``task_files``, every transfer appended to the job's history (event ``s3_operation``), and the job's objects and
local folder removed when it ends (``S3_AUTO_CLEANUP``, Avtomatika's managed mode).

Without S3 settings a handler asking for ``task_files`` receives ``None``, as in Avtomatika. The transfers
themselves (streaming, ETag and size checks) are :mod:`podium.blobs`'.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from podium.blobs import BlobStore, S3Settings, TaskFiles
from podium.engine.core import EngineCore
from podium.engine.models import EngineEvent

__all__ = ["JOB_END_EVENTS", "JobFiles"]

log = logging.getLogger("podium.engine")

JOB_END_EVENTS = frozenset({"job_finished", "job_failed", "job_cancelled", "job_quarantined"})


class JobFiles:
    """Builds each job's :class:`~podium.blobs.TaskFiles` and cleans them up when the job ends."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.settings = S3Settings.from_config(core.config)
        self.blobs = BlobStore(self.settings) if self.settings is not None else None
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.blobs is not None

    def for_job(self, job_id: str) -> TaskFiles | None:
        """The job's files (``None`` when S3 is not configured)."""
        if self.blobs is None:
            return None
        return TaskFiles(
            self.blobs, job_id, self.core.config.TASK_FILES_DIR, on_event=partial(self._audit, job_id)
        )

    async def _audit(
        self, job_id: str, operation: str, uri: str, local: str, metadata: dict[str, Any]
    ) -> None:
        await self.core.storage.append(
            job_id,
            "s3_operation",
            data={"operation": operation, "s3_uri": uri, "local_path": local, **metadata},
        )

    def on_event(self, event: EngineEvent) -> None:
        """Subscribed to the job-end events when cleanup is on: remove the job's objects and folder."""
        if event.job_id is None or self.blobs is None:
            return
        task = asyncio.get_running_loop().create_task(self._cleanup(event.job_id), name="s3-cleanup")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _cleanup(self, job_id: str) -> None:
        files = self.for_job(job_id)
        if files is None:
            return
        try:
            await files.cleanup()
        except Exception:  # the job has ended; a failed cleanup must not touch it: log and go on
            log.exception("cleanup of job %s's S3 files failed", job_id, extra={"job_id": job_id})

    async def drain(self) -> None:
        """Wait for cleanups under way (at stop)."""
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
