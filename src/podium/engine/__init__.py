"""podium.engine: durable state-machine jobs (a drop-in for Avtomatika's embedding API).

Change ``avtomatika`` to ``podium.engine`` in imports: ``Blueprint``, ``OrchestratorEngine``,
``podium.engine.context.ActionFactory``, ``podium.engine.config.Config``,
``podium.engine.storage.MemoryStorage`` (and ``SQLiteStorage(path)``, the durable embedded default).
The Python API the server builds on is documented in ``docs/engine.md``.
"""

from __future__ import annotations

from podium.engine.blueprint import Blueprint, HandlerDecorator
from podium.engine.conditions import Condition, F, FastF, FilterExpr, parse_condition
from podium.engine.config import Config
from podium.engine.context import ActionFactory, ClientConfig, JobContext
from podium.engine.definition import CORE_PARAMS, HandlerSpec, JobDefinition, StateSpec
from podium.engine.engine import STEPS_QUEUE, OrchestratorEngine, task_queue
from podium.engine.errors import (
    ActionError,
    BlueprintError,
    BlueprintNotFoundError,
    EngineError,
    EventValidationError,
    ExpressionError,
    InputValidationError,
    JobNotFoundError,
    JobStateError,
    SkillNotAllowedError,
    TaskNotFoundError,
)
from podium.engine.models import (
    ERROR_CODES,
    QUARANTINE_CODES,
    RETRYABLE_CODES,
    TERMINAL_STATUSES,
    EngineEvent,
    JobStatus,
    JobView,
    Task,
    TaskStatus,
    TaskView,
    WorkerView,
)
from podium.engine.storage import MemoryStorage, StorageBackend
from podium.engine.timers import TimerQueue
from podium.engine.workers import InProcessWorker, TaskError

__all__ = [
    "CORE_PARAMS",
    "ERROR_CODES",
    "QUARANTINE_CODES",
    "RETRYABLE_CODES",
    "STEPS_QUEUE",
    "TERMINAL_STATUSES",
    "ActionError",
    "ActionFactory",
    "Blueprint",
    "BlueprintError",
    "BlueprintNotFoundError",
    "ClientConfig",
    "Condition",
    "Config",
    "EngineError",
    "EngineEvent",
    "EventValidationError",
    "ExpressionError",
    "F",
    "FastF",
    "FilterExpr",
    "HandlerDecorator",
    "HandlerSpec",
    "InProcessWorker",
    "InputValidationError",
    "JobContext",
    "JobDefinition",
    "JobNotFoundError",
    "JobStateError",
    "JobStatus",
    "JobView",
    "MemoryStorage",
    "OrchestratorEngine",
    "SkillNotAllowedError",
    "StateSpec",
    "StorageBackend",
    "Task",
    "TaskError",
    "TaskNotFoundError",
    "TaskStatus",
    "TaskView",
    "TimerQueue",
    "WorkerView",
    "parse_condition",
    "task_queue",
]
