"""Action results and errors, shaped as MADSci's ``action_types`` so its clients validate them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from podium.ids import new_ulid_str
from podium.wire.madsci_node import ActionStatus  # one enum for the node protocol and the steps that use it
from podium.wire.workcell._base import WorkcellModel

__all__ = ["ActionResult", "ActionStatus", "Error", "OwnershipInfo"]


class Error(WorkcellModel):
    """An error as MADSci records it."""

    message: str | None = None
    logged_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    error_type: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, at: datetime | None = None) -> Error:
        """An error describing ``exc``."""
        return cls(message=str(exc), error_type=type(exc).__name__, logged_at=at or datetime.now(UTC))


def _coerce_errors(value: Any) -> Any:
    if isinstance(value, str | dict | Error):
        value = [value]
    if isinstance(value, list):
        return [Error(message=v) if isinstance(v, str) else v for v in value]
    return value


class OwnershipInfo(WorkcellModel):
    """Who owns a workflow or datapoint (user, experiment, campaign, ...)."""

    user_id: str | None = None
    experiment_id: str | None = None
    campaign_id: str | None = None
    project_id: str | None = None
    node_id: str | None = None
    workcell_id: str | None = None
    lab_id: str | None = None
    step_id: str | None = None
    workflow_id: str | None = None
    manager_id: str | None = None


class ActionResult(WorkcellModel):
    """The result of one action on a node. Once stored in a workflow, ``datapoints`` maps each label to
    the ULID of the datapoint holding that output, and ``json_result``/``files`` are cleared."""

    action_id: str = Field(default_factory=new_ulid_str)
    status: ActionStatus
    errors: list[Error] = Field(default_factory=list)
    json_result: Any = None
    files: Any = None
    datapoints: dict[str, str | list[str]] | None = None
    history_created_at: datetime | None = Field(default_factory=lambda: datetime.now(UTC))

    _errors = field_validator("errors", mode="before")(_coerce_errors)
