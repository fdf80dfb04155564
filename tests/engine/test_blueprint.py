"""Blueprints and definitions: decorator forms, validation at registration, graphs, loading from a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import podium.engine as engine_pkg
from podium.engine import (
    ActionFactory,
    Blueprint,
    BlueprintError,
    JobDefinition,
    OrchestratorEngine,
)
from podium.engine.storage import MemoryStorage


def test_handler_forms_and_default_state_names() -> None:
    bp = Blueprint("forms", api_endpoint="/jobs/forms", api_version="v1")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("middle")

    @bp.handler
    async def middle(actions: ActionFactory) -> None:
        actions.go_to("done")

    @bp.handler("done", is_end=True)
    async def finish() -> None:
        pass

    assert bp.start_state == "start"
    assert set(bp.states) == {"start", "middle", "done"}
    assert bp.end_states == {"done"}
    bp.validate()
    assert bp.transitions() == {"start": {"middle"}, "middle": {"done"}, "done": set()}


def test_duplicate_default_and_second_start_are_refused() -> None:
    bp = Blueprint("dup")

    @bp.handler(is_start=True)
    async def a() -> None: ...

    with pytest.raises(BlueprintError, match="already registered"):

        @bp.handler("a")
        async def a2() -> None: ...

    with pytest.raises(BlueprintError, match="start state"):

        @bp.handler(is_start=True)
        async def b() -> None: ...


def test_unknown_injection_name_fails_at_registration() -> None:
    bp = Blueprint("di")
    with pytest.raises(BlueprintError, match="did you mean 'actions'"):

        @bp.handler(is_start=True)
        async def start(actoins: ActionFactory) -> None: ...

    with pytest.raises(BlueprintError, match=r"\*args"):

        @bp.handler
        async def other(*args: object) -> None: ...


def test_dangling_transition_and_missing_start_fail_registration() -> None:
    eng = OrchestratorEngine(MemoryStorage())
    bp = Blueprint("dangling")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("t", {}, transitions={"success": "nowhere"})

    with pytest.raises(BlueprintError, match="'nowhere'"):
        eng.register_blueprint(bp)
    with pytest.raises(BlueprintError, match="must have exactly one start state"):
        eng.register_blueprint(Blueprint("empty"))


def test_mermaid_graph() -> None:
    bp = Blueprint("graph")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("t", {}, transitions={"success": "ok", "failure": "bad"})

    @bp.handler(is_end=True)
    async def ok() -> None: ...

    @bp.handler(is_end=True)
    async def bad() -> None: ...

    eng = OrchestratorEngine(MemoryStorage())
    eng.register_blueprint(bp)
    text = eng.blueprint_graph("graph")
    assert text.splitlines()[0] == "stateDiagram-v2"
    for line in ("[*] --> start", "start --> ok", "start --> bad", "ok --> [*]", "bad --> [*]"):
        assert f"    {line}" in text.splitlines()


def test_programmatic_definition_is_registered_like_a_blueprint() -> None:
    async def step(actions: ActionFactory) -> None:
        actions.go_to("last")

    async def last() -> None: ...

    d = JobDefinition("wf", api_endpoint="/wf")
    d.add_state("first", step, is_start=True, targets=["last"])
    d.add_state("last", last, is_end=True)
    eng = OrchestratorEngine(MemoryStorage())
    eng.register_definition(d)
    assert eng.get_definition("/wf") is d
    assert "first --> last" in eng.blueprint_graph("wf")


def test_blueprints_dir_loads_every_blueprint(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(
        "from podium.engine import Blueprint\n"
        "bp = Blueprint('one')\n"
        "@bp.handler(is_start=True, is_end=True)\n"
        "async def start():\n    pass\n"
    )
    (tmp_path / "two.py").write_text(
        "from podium.engine import Blueprint\n"
        "flow = Blueprint('two', api_endpoint='/jobs/two')\n"
        "@flow.handler(is_start=True, is_end=True)\n"
        "async def s():\n    pass\n"
    )
    (tmp_path / "notes.txt").write_text("not python")
    eng = OrchestratorEngine(MemoryStorage())
    assert sorted(eng.load_blueprints(tmp_path)) == ["one", "two"]
    assert eng.get_definition("/jobs/two").name == "two"


def test_public_exports_do_not_drift() -> None:
    assert sorted(engine_pkg.__all__) == sorted(set(engine_pkg.__all__))
    for name in engine_pkg.__all__:
        assert hasattr(engine_pkg, name), name
    expected = {
        "Blueprint",
        "OrchestratorEngine",
        "Config",
        "ActionFactory",
        "JobContext",
        "MemoryStorage",
        "F",
        "JobDefinition",
        "InProcessWorker",
        "TaskError",
        "JobStatus",
        "EngineEvent",
        "TimerQueue",
    }
    assert expected <= set(engine_pkg.__all__)


def test_avtomatika_module_names_import() -> None:
    from podium.engine.blueprint import Blueprint as B
    from podium.engine.config import Config
    from podium.engine.context import ActionFactory as A
    from podium.engine.storage import MemoryStorage as M
    from podium.engine.storage import SQLiteStorage
    from podium.engine.storage.memory import MemoryStorage as M2

    assert B is Blueprint and A is ActionFactory and M is M2
    assert SQLiteStorage.__name__ == "SQLiteStorage"
    assert Config().EXECUTOR_MAX_CONCURRENT_JOBS == 100


def test_config_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from podium.engine.config import Config
    from podium.errors import ConfigError

    monkeypatch.setenv("EXECUTOR_MAX_CONCURRENT_JOBS", "7")
    monkeypatch.setenv("JOB_MAX_RETRIES", "5")
    cfg = Config()
    assert (cfg.EXECUTOR_MAX_CONCURRENT_JOBS, cfg.JOB_MAX_RETRIES) == (7, 5)
    cfg.JOB_MAX_RETRIES = 1  # attributes may be overridden in code, as with Avtomatika
    assert cfg.JOB_MAX_RETRIES == 1
    monkeypatch.setenv("EXECUTOR_MAX_CONCURRENT_JOBS", "zero")
    with pytest.raises(ConfigError, match="EXECUTOR_MAX_CONCURRENT_JOBS"):
        Config.load()
