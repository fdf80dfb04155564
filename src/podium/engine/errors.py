"""Errors raised by :mod:`podium.engine`.

::

    PodiumError
    └── EngineError                     anything the engine refuses
        ├── BlueprintError              a blueprint or definition is malformed (at registration)
        │   └── ExpressionError         a ``.when()`` condition does not parse (carries ``position``)
        ├── ActionError                 a handler misused ``actions`` (two actions, bad arguments)
        │   └── SkillNotAllowedError    a task type the job's ``policy`` (``allowed_skills``) refuses
        ├── EventValidationError        ``send_event`` data does not match the declared schema
        └── JobStateError               the operation does not fit the job's status (approve a running job)
    NotFoundError
    └── JobNotFoundError / TaskNotFoundError / BlueprintNotFoundError
    InvalidInputError
    └── InputValidationError            ``initial_data`` does not match ``input_schema`` (names the field)
"""

from __future__ import annotations

from podium.errors import InvalidInputError, NotFoundError, PodiumError

__all__ = [
    "ActionError",
    "BlueprintError",
    "BlueprintNotFoundError",
    "EngineError",
    "EventValidationError",
    "ExpressionError",
    "InputValidationError",
    "JobNotFoundError",
    "JobStateError",
    "SkillNotAllowedError",
    "TaskNotFoundError",
]


class EngineError(PodiumError):
    """Base of the engine's own errors."""


class BlueprintError(EngineError, ValueError):
    """A blueprint or job definition is malformed; raised at registration, never at run time."""


class ExpressionError(BlueprintError):
    """A condition expression failed to parse; ``position`` is the 0-based character offset."""

    def __init__(self, message: str, *, expression: str, position: int) -> None:
        self.expression, self.position = expression, position
        pointer = " " * position + "^"
        super().__init__(f"{message} at position {position}:\n  {expression}\n  {pointer}")


class ActionError(EngineError, RuntimeError):
    """A handler used ``actions`` wrongly (for example two actions in one handler)."""


class SkillNotAllowedError(ActionError, PermissionError):
    """A task type outside the job policy's ``allowed_skills`` (a ``PermissionError``, as in Avtomatika)."""


class EventValidationError(EngineError):
    """``send_event`` data failed the event's declared schema."""


class JobStateError(EngineError):
    """The job is not in a status where this operation applies."""


class JobNotFoundError(NotFoundError):
    """No job with that id."""


class TaskNotFoundError(NotFoundError):
    """No task with that id."""


class BlueprintNotFoundError(NotFoundError):
    """No blueprint registered under that name or API endpoint."""


class InputValidationError(InvalidInputError):
    """``initial_data`` does not match the blueprint's ``input_schema``; ``field`` names where."""
