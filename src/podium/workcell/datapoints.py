"""Datapoints: every result a step produces (a JSON value or a file), stored with a ULID and a label.

Records live in the store (kind ``workcell.datapoint``); files are kept under ``<data_dir>/datapoints/
<datapoint_id>/<file name>``, every path built with :func:`~podium.workcell.files.safe_join`. The model,
:class:`DataPoint`, is defined in :mod:`podium.wire.workcell`.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from podium.ids import new_ulid_str
from podium.store import Put, Store
from podium.wire.workcell import DataPoint
from podium.workcell.actions import OwnershipInfo
from podium.workcell.errors import WorkflowNotFoundError
from podium.workcell.files import safe_filename, safe_join

__all__ = ["DATAPOINT_KIND", "DataPoint", "DatapointRepository"]

DATAPOINT_KIND = "workcell.datapoint"


class DatapointRepository:
    """Datapoints on a store plus a folder for their files."""

    def __init__(self, store: Store, data_dir: str | Path) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "datapoints"

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
