"""Datapoints: every result a step produces (a JSON value or a file), stored with a ULID and a label.

Records live in the store (kind ``workcell.datapoint``); files are kept under ``<data_dir>/datapoints/
<datapoint_id>/<file name>``, every path built with :func:`~podium.workcell.files.safe_join`. The model,
:class:`DataPoint`, is defined in :mod:`podium.wire.workcell`.

With a bucket (``WORKCELL_S3_*``, :class:`podium.blobs.BlobStore`) each file datapoint is also copied to S3 as
``datapoints/<datapoint_id>/<file name>`` once its record is written, in the background (the step's
transaction never waits on S3; the local file stays the first copy; a failed upload is logged and the local
file kept). A file whose local copy is gone is read back from S3, its size checked against the record's.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from podium.blobs import BlobStore
from podium.ids import new_ulid_str
from podium.store import Op, Put, Store
from podium.wire.workcell import DataPoint
from podium.workcell.actions import OwnershipInfo
from podium.workcell.errors import WorkflowNotFoundError
from podium.workcell.files import safe_filename, safe_join

__all__ = ["DATAPOINT_KIND", "DataPoint", "DatapointRepository"]

DATAPOINT_KIND = "workcell.datapoint"
S3_PREFIX = "datapoints"

log = logging.getLogger("podium.workcell")


class DatapointRepository:
    """Datapoints on a store plus a folder for their files."""

    def __init__(self, store: Store, data_dir: str | Path, blobs: BlobStore | None = None) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "datapoints"
        self.blobs = blobs
        self._uploads: set[asyncio.Task[None]] = set()

    # --- S3 copies --------------------------------------------------------------------------------

    @staticmethod
    def s3_key(dp: DataPoint) -> str:
        """Where a file datapoint's copy lives in the bucket: ``datapoints/<id>/<file name>``."""
        return f"{S3_PREFIX}/{dp.datapoint_id}/{Path(dp.path or '').name}"

    def offload(self, ops: Iterable[Op]) -> None:
        """Copy the file datapoints among ``ops`` (just written) to S3 in the background; nothing without
        a bucket. :meth:`drain` waits for the copies in flight."""
        if self.blobs is None:
            return
        for op in ops:
            if isinstance(op, Put) and op.kind == DATAPOINT_KIND and op.status == "file":
                dp = DataPoint.model_validate(op.data)
                task = asyncio.get_running_loop().create_task(self._upload(dp), name=f"datapoint-s3-{op.id}")
                self._uploads.add(task)
                task.add_done_callback(self._uploads.discard)

    async def _upload(self, dp: DataPoint) -> None:
        assert self.blobs is not None
        try:
            meta = await self.blobs.upload_file(self.file_path(dp), self.s3_key(dp))  # ETag and size checked
        except Exception as exc:
            log.warning("datapoint %s: S3 upload failed, the local file stays: %s", dp.datapoint_id, exc)
            return
        log.debug("datapoint %s on S3: %s (%d bytes)", dp.datapoint_id, meta.key, meta.size)

    async def drain(self) -> None:
        """Wait for the S3 copies in flight (a stopping workcell calls it)."""
        while self._uploads:
            await asyncio.gather(*self._uploads, return_exceptions=True)

    async def local_file(self, dp: DataPoint) -> Path:
        """A file datapoint's local file, brought back from its S3 copy (size checked) when it is gone."""
        path = self.file_path(dp)
        if self.blobs is not None and not path.is_file():
            if await self.blobs.head(self.s3_key(dp)) is None:
                raise WorkflowNotFoundError(f"datapoint {dp.datapoint_id}: its file is gone")
            expect = {"size": dp.size_bytes} if dp.size_bytes is not None else None
            await self.blobs.download_file(self.s3_key(dp), path, expect=expect)
        return path

    async def open_file(self, dp: DataPoint) -> Path | AsyncIterator[bytes]:
        """A file datapoint's content: its local path, or, when the local copy is gone and a bucket is set,
        a stream of its S3 copy (size checked against the record's). :class:`WorkflowNotFoundError` if
        neither exists."""
        path = self.file_path(dp)
        if path.is_file() or self.blobs is None:
            return path
        meta = await self.blobs.head(self.s3_key(dp))
        if meta is None:
            raise WorkflowNotFoundError(f"datapoint {dp.datapoint_id}: its file is gone")
        if dp.size_bytes is not None and meta.size != dp.size_bytes:
            raise WorkflowNotFoundError(
                f"datapoint {dp.datapoint_id}: its S3 copy has {meta.size} bytes, {dp.size_bytes} recorded"
            )
        return self.blobs.stream(meta.key, expected_size=meta.size)

    def value_put(
        self,
        value: Any,
        *,
        label: str,
        at: datetime,
        workflow_id: str | None = None,
        step_id: str | None = None,
        ownership: OwnershipInfo | None = None,
    ) -> tuple[DataPoint, Put]:
        """A JSON datapoint and the store operation that records it (to batch with other writes)."""
        dp = DataPoint(
            data_type="json",
            label=label,
            value=value,
            data_timestamp=at,
            workflow_id=workflow_id,
            step_id=step_id,
            ownership_info=ownership or OwnershipInfo(workflow_id=workflow_id, step_id=step_id),
        )
        return dp, self.put_op(dp)

    def file_put(
        self,
        source: Path | bytes,
        *,
        filename: str,
        label: str,
        at: datetime,
        workflow_id: str | None = None,
        step_id: str | None = None,
        move: bool = False,
    ) -> tuple[DataPoint, Put]:
        """Copy (or move) a file into the data folder as a file datapoint; return it and its store op."""
        dp_id = new_ulid_str()
        folder = safe_join(self.files_dir, dp_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = safe_join(folder, safe_filename(filename))
        if isinstance(source, bytes):
            target.write_bytes(source)
        elif move:
            shutil.move(str(source), target)
        else:
            shutil.copyfile(source, target)
        dp = DataPoint(
            datapoint_id=dp_id,
            data_type="file",
            label=label,
            path=str(target),
            data_timestamp=at,
            workflow_id=workflow_id,
            step_id=step_id,
            size_bytes=target.stat().st_size,
            ownership_info=OwnershipInfo(workflow_id=workflow_id, step_id=step_id),
        )
        return dp, self.put_op(dp)

    @staticmethod
    def put_op(dp: DataPoint) -> Put:
        """The store write for a datapoint (created once, never overwritten)."""
        return Put(
            DATAPOINT_KIND,
            dp.datapoint_id,
            dp.model_dump(mode="json"),
            expected_version=0,
            status=dp.data_type,
            group=dp.workflow_id,
        )

    async def get(self, datapoint_id: str) -> DataPoint:
        """The datapoint; :class:`WorkflowNotFoundError` if none."""
        rec = await self.store.get(DATAPOINT_KIND, datapoint_id)
        if rec is None:
            raise WorkflowNotFoundError(f"no datapoint {datapoint_id!r}")
        return DataPoint.model_validate(rec.data)

    async def latest(self, number: int = 100) -> list[DataPoint]:
        """The newest datapoints first."""
        recs = await self.store.list(DATAPOINT_KIND, limit=number, descending=True)
        return [DataPoint.model_validate(r.data) for r in recs]

    async def for_workflow(self, workflow_id: str) -> list[DataPoint]:
        """Datapoints of one workflow run, oldest first."""
        recs = await self.store.list(DATAPOINT_KIND, group=workflow_id, limit=10_000)
        return [DataPoint.model_validate(r.data) for r in recs]

    def file_path(self, dp: DataPoint) -> Path:
        """The file of a file datapoint, proven to lie inside the data folder."""
        if dp.path is None:
            raise WorkflowNotFoundError(f"datapoint {dp.datapoint_id} has no file")
        path = Path(dp.path)
        return safe_join(self.files_dir, *path.relative_to(self.files_dir.resolve()).parts)
