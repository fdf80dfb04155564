"""Shared model configuration of the workcell wire models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["InputModel", "WorkcellModel"]


class WorkcellModel(BaseModel):
    """Base of the models the workcell serves: names as MADSci spells them, aliases accepted."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The JSON document (aliases as MADSci's clients expect, computed fields included)."""
        return self.model_dump(mode="json", by_alias=False)


class InputModel(WorkcellModel):
    """Base of the models users write (workflow and step definitions): unknown fields are errors."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
