"""The public surface: export lists, PenguiFlow's module layout, logger names, and what importing costs."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import podium.flow
from podium.flow import core, errors

# Each PenguiFlow 2.2.5 module's ``__all__`` (read off the installed package): ours must contain it.
PENGUIFLOW_ALL = {
    "types": ["FinalAnswer", "Headers", "Message", "PlanStep", "StreamChunk", "Thought", "WM"],
    "node": ["Node", "NodePolicy"],
    "core": [
        "Context",
        "CycleError",
        "DEFAULT_QUEUE_MAXSIZE",
        "Floe",
        "PenguiFlow",
        "call_playbook",
        "create",
    ],
    "catalog": ["NodeSpec", "SideEffect", "build_catalog", "tool"],
    "registry": ["ModelRegistry"],
    "metrics": ["FlowEvent"],
    "patterns": ["join_k", "map_concurrent", "predicate_router", "union_router"],
    "policies": [
        "DictRoutingPolicy",
        "PolicyCallable",
        "PolicyLike",
        "RoutingDecisionType",
        "RoutingPolicy",
        "RoutingRequest",
        "evaluate_policy",
    ],
    "streaming": ["chunk_to_ws_json", "emit_stream_events", "format_sse_event", "stream_flow"],
    "remote": ["RemoteCallRequest", "RemoteCallResult", "RemoteNode", "RemoteStreamEvent", "RemoteTransport"],
    "state": ["RemoteBinding", "StateStore", "StoredEvent"],
    "bus": ["BusEnvelope", "MessageBus"],
    "viz": ["flow_to_dot", "flow_to_mermaid"],
    "debug": ["format_flow_event"],
    "errors": ["FlowError", "FlowErrorCode"],
    "middlewares": ["FlowEvent", "LatencyCallback", "Middleware", "log_flow_events"],
    "testkit": [
        "assert_node_sequence",
        "assert_preserves_message_envelope",
        "get_recorded_events",
        "run_one",
        "simulate_error",
    ],
    "planner": [
        "ParallelCall",
        "ParallelJoin",
        "PlannerAction",
        "PlannerFinish",
        "PlannerPause",
        "ReactPlanner",
        "Trajectory",
        "TrajectoryStep",
        "TrajectorySummary",
    ],
}

PENGUIFLOW_TOP = {
    "BusEnvelope", "Context", "CycleError", "DEFAULT_QUEUE_MAXSIZE", "DictRoutingPolicy", "FinalAnswer",
    "FlowError", "FlowErrorCode", "FlowEvent", "Headers", "LatencyCallback", "Message", "MessageBus",
    "Middleware", "ModelRegistry", "Node", "NodePolicy", "NodeSpec", "PenguiFlow", "PlanStep", "PlannerAction",
    "PlannerFinish", "ReactPlanner", "RemoteBinding", "RemoteCallRequest", "RemoteCallResult", "RemoteNode",
    "RemoteStreamEvent", "RemoteTransport", "RoutingPolicy", "RoutingRequest", "SideEffect", "StateStore",
    "StoredEvent", "StreamChunk", "Thought", "Trajectory", "TrajectoryStep", "WM", "__version__",
    "build_catalog", "call_playbook", "chunk_to_ws_json", "create", "emit_stream_events", "flow_to_dot",
    "flow_to_mermaid", "format_flow_event", "format_sse_event", "join_k", "log_flow_events", "map_concurrent",
    "predicate_router", "stream_flow", "testkit", "tool", "union_router",
}  # fmt: skip
# What podium adds on top: its own name for the runtime, TraceCancelled, and the in-memory backends.
PODIUM_EXTRAS = {"Flow", "TraceCancelled", "InMemoryStateStore", "InMemoryMessageBus"}


def test_top_level_all_is_exactly_penguiflows_plus_podium_extras() -> None:
    assert set(podium.flow.__all__) == PENGUIFLOW_TOP | PODIUM_EXTRAS
    assert len(podium.flow.__all__) == len(set(podium.flow.__all__)), "duplicates in __all__"
    for name in podium.flow.__all__:
        assert hasattr(podium.flow, name), name


def test_every_penguiflow_submodule_exists_with_its_public_names() -> None:
    for module_name, names in PENGUIFLOW_ALL.items():
        module = importlib.import_module(f"podium.flow.{module_name}")
        assert set(names) <= set(module.__all__), module_name
        for name in module.__all__:
            assert hasattr(module, name), f"{module_name}.{name}"


def test_trace_cancelled_lives_in_core_and_penguiflow_alias_is_the_runtime() -> None:
    assert core.TraceCancelled is errors.TraceCancelled
    assert core.PenguiFlow is core.Flow
    assert issubclass(core.CycleError, RuntimeError)


def test_logger_names_mirror_penguiflows_under_podium_flow() -> None:
    assert core.logger.name == "podium.flow.core"


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout


def test_import_pulls_in_only_pydantic_and_the_standard_library() -> None:
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "from podium.flow import *\n"
        "import podium.flow.planner.react, podium.flow.testkit\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    loaded = json.loads(_run(code))
    allowed_third_party = {
        "pydantic",
        "pydantic_core",
        "typing_extensions",
        "annotated_types",
        "typing_inspection",
    }
    offenders = []
    for name in loaded:
        top = name.split(".")[0]
        if name == "podium" or name.startswith("podium.flow"):
            continue
        stdlib = top in sys.stdlib_module_names or top.startswith("_sysconfigdata_")
        if stdlib or top in allowed_third_party:
            continue
        offenders.append(name)
    assert offenders == []
    assert {"podium.flow.core", "podium.flow.patterns", "pydantic"} <= set(loaded)
    others = [name for name in loaded if name.startswith("podium.") and not name.startswith("podium.flow")]
    assert others == [], "nothing of the rest of podium"


def test_bare_import_is_lazy_and_names_load_on_first_use() -> None:
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import podium.flow\n"
        "bare = sorted(set(sys.modules) - before)\n"
        "podium.flow.Message\n"
        "print(json.dumps([bare, 'podium.flow.types' in sys.modules, 'podium.flow.patterns' in sys.modules]))\n"
    )
    bare, types_loaded, patterns_loaded = json.loads(_run(code))
    assert [name for name in bare if "podium" in name] == ["podium", "podium.flow"]
    assert all(name.startswith("podium") or name.split(".")[0] in sys.stdlib_module_names for name in bare)
    assert not any(name.startswith(("pydantic", "asyncio", "typing")) for name in bare)
    assert types_loaded and not patterns_loaded
    assert podium.flow.Message is importlib.import_module("podium.flow.types").Message
    assert "create" in dir(podium.flow)
    with pytest.raises(AttributeError):
        _ = podium.flow.NoSuchThing
