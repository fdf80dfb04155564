"""Avtomatika 1.0b30's shapes on podium.engine: F filters, the blueprint views, ActionFactory, Config, locks."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from podium.engine import (
    ActionError,
    ActionFactory,
    Blueprint,
    BlueprintError,
    Config,
    F,
    FastF,
    SkillNotAllowedError,
    parse_condition,
)
from podium.engine.blueprint import ConditionalHandler
from podium.engine.storage.memory import MemoryStorage
from podium.testing import EngineHarness


def ctx(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)


@pytest.mark.parametrize(
    ("expr", "context", "expected"),
    [
        (F.initial_data["x"] == 1, ctx(initial_data={"x": 1}), True),
        (F.initial_data["x"] == 1, ctx(initial_data={}), False),
        ((F.a > 1) & ~(F.b == 2), ctx(a=2, b=3), True),
        ((F.a > 1) & ~(F.b == 2), ctx(a=2, b=2), False),
        ((F.s == "ok") | (F.s == "done"), ctx(s="done"), True),
        (F.role.in_(["admin", "ops"]), ctx(role="ops"), True),
        (F.role.not_in(["guest"]), ctx(role="guest"), False),
        (F.tags.contains("x"), ctx(tags=["x", "y"]), True),
        (F.a.b.c == "deep", ctx(a=ctx(b={"c": "deep"})), True),
        (F.a.b.c == "deep", ctx(a=None), False),
        ((F.nums[...] > 5).any(), ctx(nums=[1, 7]), True),
        ((F.nums[...] > 5).all(), ctx(nums=[6, 7, 1]), False),
        ((F.nums[...] > 5).any(), ctx(nums=None), False),
        (F.items.len() > 1, ctx(items=[1, 2]), True),
        (F.text.regexp(r"^done"), ctx(text="done!"), True),
        (F.text.startswith("he"), ctx(text="hello"), True),
        (F.text.upper() == "HI", ctx(text=None), False),
        (F.v.func(lambda v: v % 2 == 0), ctx(v=4), True),
        (F.raw.cast(int) == 42, ctx(raw="42"), True),
        (F.raw.cast(int) == 42, ctx(raw="nope"), False),  # a raising cast is false, not an error
        ((F.x + F.y) == 10, ctx(x=3, y=7), True),
        ((F.x / F.y) == 0, ctx(x=1, y=0), False),
        (F.v > 5, ctx(v=[1]), False),
        (F.missing == None, ctx(), True),  # noqa: E711
        (F.r.is_not(None), ctx(r=0), True),
        (F.attr_("resolve") == 1, ctx(resolve=1), True),
        (F.status == "x", None, False),
    ],
)
def test_f_filters_evaluate_like_avtomatika(expr: FastF, context: Any, expected: bool) -> None:
    assert isinstance(expr, FastF)
    assert expr.evaluate(context) is expected
    assert copy.deepcopy(expr).evaluate(context) is expected


def test_f_filters_and_strings_are_one_kind_and_combine() -> None:
    cond = parse_condition("initial_data.kind == 'a'") & (F.initial_data["n"] > 1)
    assert cond.evaluate({"initial_data": {"kind": "a", "n": 2}})
    assert not cond.evaluate({"initial_data": {"kind": "a", "n": 0}})
    with pytest.raises(TypeError, match="no truth value"):
        bool(F.x == 1)
    assert "initial_data" in repr(F.initial_data["n"] > 1)


def test_blueprint_views_and_find_handler() -> None:
    bp = Blueprint("views")

    @bp.handler("step", F.initial_data["v"] == 1)
    async def special(actions: ActionFactory) -> None: ...

    @bp.handler("step")
    async def default(actions: ActionFactory) -> None: ...

    @bp.handler(F.initial_data["v"] == 2)
    async def only_conditional(actions: ActionFactory) -> None: ...

    @bp.aggregator
    async def collect(aggregation_results: dict[str, Any], actions: ActionFactory) -> None: ...

    assert bp.handlers["step"] is default and "only_conditional" in bp.handlers
    assert bp.aggregator_handlers == {"collect": collect}
    assert [(c.state, c.func) for c in bp.conditional_handlers] == [
        ("step", special),
        ("only_conditional", only_conditional),
    ]
    assert bp.find_handler("step", ctx(initial_data={"v": 1})) is special
    assert bp.find_handler("step", ctx(initial_data={"v": 9})) is default
    assert bp.find_handler("collect", None) is collect
    with pytest.raises(ValueError, match="All conditions failed and no default handler registered"):
        bp.find_handler("only_conditional", ctx(initial_data={"v": 9}))
    assert ConditionalHandler(bp, "s", default, F.x == 1).evaluate(ctx(x=1))
    assert bp.get_handler_params(collect) == ("aggregation_results", "actions")


def test_unreachable_states_are_refused_only_when_every_target_is_known() -> None:
    bp = Blueprint("dead")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to("end")

    @bp.handler(is_end=True)
    async def end() -> None: ...

    @bp.handler
    async def orphan() -> None: ...

    with pytest.raises(BlueprintError, match="has unreachable states: orphan"):
        bp.validate()

    dynamic = Blueprint("dynamic")

    @dynamic.handler(is_start=True)
    async def begin(initial_data: dict[str, Any], actions: ActionFactory) -> None:
        actions.go_to(initial_data["next"])  # known only at run time: no error, a warning

    @dynamic.handler(is_end=True)
    async def reached() -> None: ...

    dynamic.validate()
    assert "digraph" in dynamic.render_graph()


def test_action_factory_as_avtomatika_builds_it() -> None:
    actions = ActionFactory("job-1", policy={"allowed_skills": ["ok"]})
    with pytest.raises(SkillNotAllowedError, match="not permitted by job policy"):
        actions.dispatch_task("other", {}, {})
    with pytest.raises(PermissionError):
        actions.dispatch_parallel([{"type": "other"}], "agg")
    actions.dispatch_parallel([{"type": "ok"}, {}], "agg")
    assert actions.parallel_tasks_to_dispatch is not None
    with pytest.raises(RuntimeError, match="Cannot set multiple actions in the same step"):
        actions.go_to("x")
    with pytest.raises(ActionError):
        actions.run_blueprint("child", {}, {})
    child = ActionFactory("job-2")
    child.run_blueprint("child", {}, {})
    assert child.sub_blueprint_to_run is not None and child.sub_blueprint_to_run["transitions"] == {}


def test_config_accepts_avtomatika_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://s3")
    monkeypatch.setenv("DISPATCHER_SOFT_LIMIT", "7")
    monkeypatch.setenv("CLIENT_API_PREFIX", "custom")
    cfg = Config()
    assert (cfg.S3_ENDPOINT_URL, cfg.DISPATCHER_SOFT_LIMIT, cfg.CLIENT_API_PREFIX) == (
        "http://s3",
        7,
        "custom",
    )
    cfg.HISTORY_DATABASE_URI = ""
    assert cfg.WORKER_AUTH_MODE == "mixed" and cfg.REPUTATION_MIN_THRESHOLD == 0.3


async def test_avtomatika_locks_on_memory_storage() -> None:
    storage = MemoryStorage()
    assert await storage.acquire_lock("k", "a", 10) is True
    assert await storage.acquire_lock("k", "b", 10) is False
    assert await storage.acquire_lock("k", "a", 10) is False  # not re-entrant, as in Avtomatika
    assert await storage.release_lock("k", "b") is False
    assert await storage.release_lock("k", "a") is True
    token = await storage.acquire_lock("k", "c", ttl_s=5)  # podium's fenced form still works
    assert isinstance(token, int) and not isinstance(token, bool)


def end_bp(end_name: str) -> Blueprint:
    bp = Blueprint(f"ends_{end_name}")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.go_to(end_name)

    bp.add_state(end_name, lambda: None, is_end=True)
    return bp


@pytest.mark.parametrize(
    ("strict", "end_name", "status"),
    [(False, "done", "finished"), (True, "done", "failed"), (True, "finished", "finished")],
)
async def test_end_state_rule_switch(strict: bool, end_name: str, status: str) -> None:
    async with EngineHarness(blueprints=[end_bp(end_name)], AVTOMATIKA_END_STATES=strict) as h:
        job = await h.join(await h.create_job(f"ends_{end_name}"))
    assert job.status == status


async def test_awaitable_data_stores_and_client_config() -> None:
    bp = Blueprint("stores", data_stores={"cache": {"hits": 1}})
    bp.add_data_store("counters", {})
    seen: dict[str, Any] = {}

    @bp.handler(is_start=True)
    async def start(data_stores: Any, client: Any, actions: ActionFactory) -> None:
        hits = await data_stores.cache.get("hits")
        await data_stores.cache.set("hits", hits + 1)
        await data_stores.counters.set("runs", 1)
        seen.update(
            config=client.config, hits=data_stores.cache["hits"], missing=await data_stores.cache.get("x")
        )
        actions.go_to("end")

    @bp.handler(is_end=True)
    async def end() -> None: ...

    async with EngineHarness(blueprints=[bp]) as h:
        job_id = await h.engine.create_job(
            "stores", {}, client={"token": "t", "plan": "pro", "params": {"lang": "en"}}
        )
        assert (await h.join(job_id)).status == "finished"
    assert seen == {"config": {"token": "t", "plan": "pro", "lang": "en"}, "hits": 2, "missing": None}
    assert bp.data_stores["cache"] == {"hits": 2}


def test_a_foreign_filter_with_resolve_is_accepted() -> None:
    class Foreign:  # the shape of fast_filter.F / magic_filter.F imported directly
        def resolve(self, obj: Any) -> bool:
            return bool(obj.initial_data.get("go"))

    bp = Blueprint("foreign")

    @bp.handler("step", Foreign())
    async def go(actions: ActionFactory) -> None: ...

    @bp.handler("step")
    async def stay(actions: ActionFactory) -> None: ...

    assert bp.find_handler("step", ctx(initial_data={"go": 1})) is go
    assert bp.find_handler("step", ctx(initial_data={})) is stay


async def test_job_policy_limits_the_skills_of_the_job_and_its_children() -> None:
    bp = Blueprint("guarded")
    seen: list[Any] = []

    @bp.handler(is_start=True)
    async def start(initial_data: dict[str, Any], policy: Any, actions: ActionFactory) -> None:
        seen.append(policy)
        if initial_data.get("child"):
            actions.run_blueprint("guarded", {}, {"success": "end"})
        else:
            actions.dispatch_task("forbidden", {}, {"success": "end"})

    @bp.handler(is_end=True)
    async def end() -> None: ...

    async with EngineHarness(blueprints=[bp]) as h:
        policy = {"allowed_skills": ["ok"]}
        job = await h.join(await h.engine.create_job("guarded", {}, policy=policy))
        assert job.status == "failed" and job.error is not None
        assert "not permitted by job policy" in job.error["message"]
        parent = await h.join(await h.engine.create_job("guarded", {"child": True}, policy=policy))
        assert parent.status == "failed"  # the child ran under the same policy, failed, and so did the parent
    assert seen == [policy, policy, policy]
