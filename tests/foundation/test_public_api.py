"""The public surfaces of every podium package: explicit export lists that fail when they drift."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPECTED = {
    "podium": ["__version__"],
    "podium.cli": ["app", "main"],
    "podium.client": [
        "AsyncJobClient", "JobClient", "JobClientError", "JobNotFoundError", "JobWaitTimeout", "QuotaExceededError",
        "WorkcellClient"
    ],
    "podium.clock": ["Clock", "ManualClock", "SystemClock", "system_clock"],
    "podium.engine": [
        "ActionError", "ActionFactory", "Blueprint", "BlueprintError", "BlueprintNotFoundError", "CORE_PARAMS",
        "ClientConfig", "Condition", "Config", "ERROR_CODES", "EngineError", "EngineEvent", "EventValidationError",
        "ExpressionError", "F", "FastF", "FilterExpr", "HandlerDecorator", "HandlerSpec", "InProcessWorker",
        "InputValidationError", "JobContext", "JobDefinition", "JobNotFoundError", "JobStateError", "JobStatus",
        "JobView", "MemoryStorage", "OrchestratorEngine", "QUARANTINE_CODES", "RETRYABLE_CODES", "STEPS_QUEUE",
        "SkillNotAllowedError", "StateSpec", "StorageBackend", "TERMINAL_STATUSES", "Task", "TaskError", "TaskNotFoundError", "TaskStatus",
        "TaskView", "TimerQueue", "WorkerView", "parse_condition", "task_queue"
    ],
    "podium.engine.history": ["NoOpHistoryStorage", "StoreHistoryStorage"],
    "podium.engine.storage": ["MemoryStorage", "RedisStorage", "SQLiteStorage", "StorageBackend"],
    "podium.errors": [
        "ConfigError", "ConflictError", "InvalidInputError", "LeaseLostError", "LockLostError",
        "MissingDependencyError", "NotFoundError", "PodiumError", "SchemaMismatchError", "StoreError"
    ],
    "podium.flow": [
        "BusEnvelope", "Context", "CycleError", "DEFAULT_QUEUE_MAXSIZE", "DictRoutingPolicy", "FinalAnswer", "Flow",
        "FlowError", "FlowErrorCode", "FlowEvent", "Headers", "InMemoryMessageBus", "InMemoryStateStore",
        "LatencyCallback", "Message", "MessageBus", "Middleware", "ModelRegistry", "Node", "NodePolicy", "NodeSpec",
        "PenguiFlow", "PlanStep", "PlannerAction", "PlannerFinish", "ReactPlanner", "RemoteBinding",
        "RemoteCallRequest", "RemoteCallResult", "RemoteNode", "RemoteStreamEvent", "RemoteTransport",
        "RoutingPolicy", "RoutingRequest", "SideEffect", "StateStore", "StoredEvent", "StreamChunk", "Thought",
        "TraceCancelled", "Trajectory", "TrajectoryStep", "WM", "__version__", "build_catalog", "call_playbook",
        "chunk_to_ws_json", "create", "emit_stream_events", "flow_to_dot", "flow_to_mermaid", "format_flow_event",
        "format_sse_event", "join_k", "log_flow_events", "map_concurrent", "predicate_router", "stream_flow",
        "testkit", "tool", "union_router"
    ],
    "podium.flow.a2a": [
        "A2AAgentCard", "A2AClientError", "A2AHttpTransport", "A2AMessagePayload", "A2AServerAdapter", "A2ASkill",
        "A2ATaskCancelRequest", "create_a2a_app"
    ],
    "podium.flow.planner": [
        "ParallelCall", "ParallelJoin", "PlannerAction", "PlannerFinish", "PlannerPause", "ReactPlanner",
        "ScriptedLLM", "Trajectory", "TrajectoryStep", "TrajectorySummary"
    ],
    "podium.ids": [
        "derived_ulid_str", "is_ulid", "new_ulid_str", "span_id_of", "trace_id_of", "traceparent_of",
        "ulid_timestamp_ms"
    ],
    "podium.log": ["ID_FIELDS", "JsonFormatter", "TextFormatter", "bind_ids", "configure_logging", "get_logger"],
    "podium.nodes": [
        "ActionFailed", "ActionFiles", "ActionOutcome", "ActionRequest", "ActionResult", "ActionStatus",
        "ActionTimeoutError", "AdminCommands", "LocationArgument", "NodeClient", "NodeCluster", "NodeError",
        "NodeInfo", "NodeProtocolError", "NodeRateLimitedError", "NodeRequestError", "NodeServer", "NodeStatus",
        "NodeUnreachableError", "RestNode", "action", "current_action", "send_admin_command_all", "serve_node",
        "serve_nodes"
    ],
    "podium.nodes.sim": [
        "FailurePlan", "LiquidHandlerNode", "PlateReaderNode", "RobotArmNode", "SIM_NODE_TYPES", "SealerNode",
        "SimNode", "WELLS_96", "asgi_clients", "make_sim_nodes", "run_sim_nodes", "AdvancedExampleNode",
        "EXAMPLE_LAB_NODE_TYPES", "ExampleLiquidHandlerNode", "ExamplePlateReaderNode", "ExampleRobotArmNode",
        "make_example_lab_nodes"
    ],
    "podium.dashboard": [
        "DASHBOARD_PATHS", "MAX_DEFINITION_BYTES", "mount_jobs_dashboard", "mount_workcell_dashboard"
    ],
    "podium.ops": [
        "EngineMetrics", "MissedPolicy", "RateLimited", "RateLimiter", "RateLimits", "SCHEDULER_LOCK", "SCHEDULE_KIND", "Schedule", "Scheduler", "Tracing", "WorkflowSubmit",
        "load_schedules", "traceparent", "workcell_submit"
    ],
    "podium.server": [
        "ApiError", "ClientRegistry", "QuotaExceeded", "QuotaTracker", "RunningServer", "ServerSettings",
        "WebhookSender", "WorkerTokens", "create_app", "job_path", "start_server"
    ],
    "podium.settings": ["CoreSettings", "PodiumSettings", "SettingsConfigDict", "settings_files"],
    "podium.store": [
        "Ack", "Append", "Delete", "Dequeue", "Enqueue", "FencedOwnership", "Fetch", "HistoryEntry", "Lease", "MemoryStore",
        "Op", "PostgresStore", "Put", "Record", "RedisStore", "SCHEMA_VERSION", "SQLiteStore", "Store", "Wake", "open_store"
    ],
    "podium.tomlfile": ["header_line", "key_line", "read_toml", "where"],
    "podium.testing": [
        "EngineHarness", "EventLog", "WorkcellHarness", "drive", "join", "settle", "wait_event", "watch"
    ],
    "podium.tokens": [
        "CLIENT_TOKEN_HEADER", "DOCS_PATHS", "TokenGuard", "TokenSet", "hash_token", "local_token_file",
        "new_token", "node_entry_url", "read_token_file", "redact_url", "split_url_token", "token_from_headers",
        "url_with_token", "write_token_file"
    ],
    "podium.wire.workcell": [
        "ActionResult", "ActionStatus", "CONSUMABLE_TYPES", "CONTAINER_TYPES", "CapacityCostConfig", "Condition",
        "Conditions", "DataPoint", "Error", "ExpressionCondition", "GridKey", "InputModel", "Location",
        "LocationArgument", "LocationDefinition", "LocationTransferCapabilities", "NoResourceInLocationCondition",
        "NodeRecord", "Operator", "OwnershipInfo", "ParameterError", "ParameterFeedForwardFile",
        "ParameterFeedForwardJson", "ParameterInputFile", "ParameterInputJson", "ParameterTypes",
        "ParsedExpression", "Resource", "ResourceChildFieldCheckCondition", "ResourceDefinition",
        "ResourceFieldCheckCondition", "ResourceInLocationCondition", "ResourceTemplate", "ResourceType",
        "LOCATION_CONTAINER_TEMPLATE", "SchedulerMetadata", "Step", "StepDefinition", "StepEffect", "StepParameters", "TransferStepTemplate", "TransferTemplateOverrides",
        "UnsafePathError", "WorkcellDefinition", "WorkcellInfo", "WorkcellModel", "WorkcellState", "WorkcellStatus",
        "Workflow", "WorkflowDefinition", "WorkflowMetadata", "WorkflowNotFoundError", "WorkflowParameters",
        "WorkflowState", "WorkflowStateError", "WorkflowStatus", "WorkflowValidationError", "coerce_parameter",
        "find_references", "load_workflow_definition", "parse_expression", "substitute"
    ],
    "podium.workcell": [
        "AbstractScheduler", "ActionCall", "ActionOutcome", "ActionResult", "ActionStatus", "CapacityCostConfig",
        "Claim", "DataPoint", "Error", "ExpressionCondition", "InProcessNode", "Location", "LocationArgument",
        "LocationDefinition", "LocationTransferCapabilities", "NoResourceInLocationCondition", "NodeConnector",
        "NodeRecord", "OwnershipInfo", "ParameterError", "ParameterFeedForwardFile", "ParameterFeedForwardJson",
        "ParameterInputFile", "ParameterInputJson", "Resource", "ResourceChildFieldCheckCondition",
        "ResourceDefinition", "ResourceFieldCheckCondition", "ResourceInLocationCondition", "ResourceTable",
        "ResourceType", "Scheduler", "SchedulerMetadata", "Step", "StepDefinition", "StepEffect",
        "TransferStepTemplate", "TransferTemplateOverrides", "UnsafePathError", "WorkcellDefinition",
        "WorkcellEngine", "WorkcellInfo", "WorkcellManagerSettings", "WorkcellSnapshot", "WorkcellState",
        "Workflow", "WorkflowDefinition", "WorkflowNotFoundError", "WorkflowParameters", "WorkflowState",
        "WorkflowStateError", "WorkflowStatus", "WorkflowValidationError", "load_workcell",
        "load_workflow_definition"
    ],
    "podium.workcell.demo": ["DEMO_DIR", "main", "report", "run_demo", "serve_sim_nodes"],
    "podium.worker": ["TaskContext", "TaskFailed", "Worker", "WorkerAuthError", "WorkerState"],
}  # fmt: skip
# packages that export nothing at their own level (their modules are the surface)
NO_EXPORTS = {"podium.store.migrations", "podium.store.migrations.versions", "podium.wire"}
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("module_name", sorted(EXPECTED))
def test_exports_are_explicit_and_resolve(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPECTED[module_name])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_every_package_is_recorded() -> None:
    packages = {".".join(p.parent.relative_to(SRC).parts) for p in (SRC / "podium").rglob("__init__.py")}
    assert packages - set(EXPECTED) - NO_EXPORTS == set(), "record the new package's __all__ in EXPECTED"
    for name in NO_EXPORTS:
        assert not hasattr(importlib.import_module(name), "__all__"), f"{name} exports names now: record them"


def test_podium_testing_loads_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, podium.testing as t; print(sorted(m for m in sys.modules if m.startswith"
        "(('podium.engine', 'podium.workcell')))); t.EngineHarness"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_open_store_by_url(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from podium.store import MemoryStore, SQLiteStore, open_store

    assert isinstance(open_store("memory://"), MemoryStore)
    store = open_store(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(store, SQLiteStore) and str(store.path) == f"{tmp_path}/x.db"
    with pytest.raises(ValueError, match="unknown store URL scheme 'mongo'"):
        open_store("mongo://x")


def test_importing_podium_is_cheap() -> None:
    import subprocess
    import sys

    code = "import sys, podium; print(sorted(m for m in sys.modules if m.startswith(('pydantic','fastapi','sqlalchemy'))))"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[]"
    )
