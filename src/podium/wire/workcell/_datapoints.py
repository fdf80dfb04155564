"""Datapoints as data: a JSON value or a file a step produced, with a ULID and a label.

The JSON of a datapoint validates as MADSci's ``DataPoint`` (``ValueDataPoint`` / ``FileDataPoint``), so
MADSci's ``DataClient`` reads podium's data routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, Field

from podium.ids import new_ulid_str
from podium.wire.workcell._actions import OwnershipInfo
from podium.wire.workcell._base import WorkcellModel

__all__ = ["DataPoint"]


class DataPoint(WorkcellModel):
    """A value or a file produced by a step (or uploaded as a workflow input)."""

    datapoint_id: str = Field(
        default_factory=new_ulid_str, validation_alias=AliasChoices("datapoint_id", "_id")
    )
    label: str | None = None
    data_type: Literal["json", "file", "object_storage"]
    value: Any = None
    path: str | None = None
    data_timestamp: datetime | None = None
    ownership_info: OwnershipInfo = Field(default_factory=OwnershipInfo)
    workflow_id: str | None = None
    step_id: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json", exclude_none=True)
        doc.setdefault("ownership_info", {})
        doc["_id"] = self.datapoint_id
        if self.data_type == "json":
            doc.setdefault("value", None)
        return doc
