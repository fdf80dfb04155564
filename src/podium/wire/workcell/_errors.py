"""Errors of the workcell manager, rooted in :mod:`podium.errors`.

::

    PodiumError
    ├── InvalidInputError
    │   ├── WorkflowValidationError    a submission that cannot run (names the step and the field)
    │   │   └── ParameterError         a parameter with no value and no default, or an unknown ${name}
    │   └── UnsafePathError            a file name that would escape its folder
    ├── NotFoundError
    │   └── WorkflowNotFoundError      no workflow (or definition, datapoint, ...) with that id
    └── WorkflowStateError             an operation the workflow's (or workcell's) status does not allow
"""

from __future__ import annotations

from podium.errors import InvalidInputError, NotFoundError, PodiumError

__all__ = [
    "ParameterError",
    "UnsafePathError",
    "WorkflowNotFoundError",
    "WorkflowStateError",
    "WorkflowValidationError",
]


class WorkflowValidationError(InvalidInputError):
    """A workflow submission that cannot run. ``step`` names the offending step when there is one."""

    def __init__(self, message: str, *, step: str | None = None, field: str | None = None) -> None:
        self.step = step
        prefix = f"step '{step}': " if step is not None else ""
        super().__init__(prefix + message, field=field)


class ParameterError(WorkflowValidationError):
    """A parameter without a value (and no default), or a reference to a parameter that does not exist."""

    def __init__(self, message: str, *, parameter: str, step: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message, step=step, field=f"parameters.{parameter}")


class WorkflowNotFoundError(NotFoundError):
    """No record with that id."""


class WorkflowStateError(PodiumError):
    """The operation is not allowed in the workflow's current status (retry of a running workflow, ...)."""


class UnsafePathError(InvalidInputError):
    """A file name that is absolute or climbs out of its folder."""
