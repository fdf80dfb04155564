"""Errors of the workcell manager, rooted in :mod:`podium.errors` (defined in :mod:`podium.wire.workcell`,
so the client raises the same classes).

::

    PodiumError
    ├── InvalidInputError
    │   ├── WorkflowValidationError    a submission that cannot run (names the step and the field)
    │   │   └── ParameterError         a parameter with no value and no default, or an unknown ${name}
    │   ├── UnsafePathError            a file name that would escape its folder
    │   └── ResourceError              a resource operation that cannot be done (podium.workcell.resources)
    ├── NotFoundError
    │   └── WorkflowNotFoundError      no workflow (or definition, datapoint, ...) with that id
    └── WorkflowStateError             an operation the workflow's (or workcell's) status does not allow
"""

from __future__ import annotations

from podium.wire.workcell import (
    ParameterError,
    UnsafePathError,
    WorkflowNotFoundError,
    WorkflowStateError,
    WorkflowValidationError,
)

__all__ = [
    "ParameterError",
    "UnsafePathError",
    "WorkflowNotFoundError",
    "WorkflowStateError",
    "WorkflowValidationError",
]
