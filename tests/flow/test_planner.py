"""podium.flow's ReactPlanner beyond PenguiFlow's own tests: durable pauses, repairs, hints, budgets."""

from __future__ import annotations

import asyncio
import contextvars
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from podium.flow import InMemoryStateStore, ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import PlannerFinish, PlannerPause, ReactPlanner, ScriptedLLM
from podium.flow.planner.llm import PlannerLLMError, parse_action
from podium.store.flow_state import StoreStateStore
from podium.store.sqlite import SQLiteStore


class Topic(BaseModel):
    topic: str


class Docs(BaseModel):
    docs: list[str]


class Merge(BaseModel):
    expect: int
    results: list[Docs]


CALLS: list[str] = []


@tool(desc="Search the wiki")
async def wiki(args: Topic, ctx: Any) -> Docs:
    CALLS.append(f"wiki:{args.topic}")
    return Docs(docs=[f"wiki on {args.topic}"])


@tool(desc="Search the web")
async def web(args: Topic, ctx: Any) -> Docs:
    CALLS.append(f"web:{args.topic}")
    return Docs(docs=[f"web on {args.topic}"])


@tool(desc="Merge results")
async def merge(args: Merge, ctx: Any) -> Docs:
    return Docs(docs=[doc for result in args.results for doc in result.docs])


@tool(desc="Ask a human before publishing", side_effects="external")
async def approve(args: Topic, ctx: Any) -> Topic:
    await ctx.pause("approval_required", {"topic": args.topic, "tenant": ctx.meta.get("tenant")})
    return args


def catalog() -> list[Any]:
    registry = ModelRegistry()
    for name, models in {"wiki": (Topic, Docs), "web": (Topic, Docs), "merge": (Merge, Docs)}.items():
        registry.register(name, *models)
    registry.register("approve", Topic, Topic)
    nodes = [
        Node(wiki, name="wiki"),
        Node(web, name="web"),
        Node(merge, name="merge"),
        Node(approve, name="approve"),
    ]
    return build_catalog(nodes, registry)


def call(node: str, **args: Any) -> dict[str, Any]:
    return {"thought": node, "next_node": node, "args": args}


FINISH = {"thought": "done", "next_node": None, "args": {"answer": "ok"}}


async def test_a_pause_resumes_in_a_new_planner_after_a_restart_on_sqlite(tmp_path: Path) -> None:
    CALLS.clear()
    path = tmp_path / "podium.db"
    # Given a planner on a SQLite store that pauses for approval after one search
    async with SQLiteStore(path) as store:
        planner = ReactPlanner(
            llm_client=ScriptedLLM([call("wiki", topic="krill"), call("approve", topic="krill")]),
            catalog=catalog(),
            state_store=StoreStateStore(store),
            hop_budget=3,
        )
        paused = await planner.run("publish krill facts", context_meta={"tenant": "acme"})
    assert isinstance(paused, PlannerPause)
    assert paused.payload == {"topic": "krill", "tenant": "acme"}
    # When another process opens the same database and resumes with the token
    async with SQLiteStore(path) as store:
        llm = ScriptedLLM([call("web", topic="krill"), call("wiki", topic="again"), FINISH])
        planner = ReactPlanner(
            llm_client=llm, catalog=catalog(), state_store=StoreStateStore(store), hop_budget=3
        )
        result = await planner.resume(paused.resume_token, user_input="approved by Ada")
    # Then the run goes on from the stored trajectory and budget: the LLM sees the history and the input,
    # the one hop left is spent on web, and the next tool call is refused for the budget
    assert isinstance(result, PlannerFinish) and result.reason == "answer_complete"
    first_prompt = [m["content"] for m in llm.calls[0]]
    assert "Resume input: approved by Ada" in first_prompt and any(
        '"wiki on krill"' in c for c in first_prompt
    )
    assert CALLS == ["wiki:krill", "web:krill"]
    assert [s["action"]["next_node"] for s in result.metadata["steps"]] == ["wiki", "approve", "web", "wiki"]
    assert "Hop budget exhausted" in result.metadata["steps"][-1]["error"]
    assert result.metadata["constraints"]["hops_used"] == 3


async def test_an_unknown_resume_token_is_a_key_error() -> None:
    planner = ReactPlanner(llm_client=ScriptedLLM([]), catalog=catalog(), state_store=InMemoryStateStore())
    with pytest.raises(KeyError):
        await planner.resume("nope")


async def test_replies_wrapped_in_prose_or_fences_are_repaired_without_asking_again() -> None:
    fenced = "Sure! Here is my action:\n```json\n" + json.dumps(FINISH) + "\n```\nHope that helps."
    llm = ScriptedLLM([fenced])
    result = await ReactPlanner(llm_client=llm, catalog=catalog()).run("q")
    assert isinstance(result, PlannerFinish) and result.payload == {"answer": "ok"} and len(llm.calls) == 1


async def test_replies_that_stay_invalid_end_in_a_clear_error_naming_the_problem() -> None:
    llm = ScriptedLLM(["not json at all", '{"next_node": null}', "[]"])
    with pytest.raises(PlannerLLMError, match=r"after repair attempts \(3\); last error: .*"):
        await ReactPlanner(llm_client=llm, catalog=catalog()).run("q")
    assert len(llm.calls) == 3 and "invalid JSON" in llm.calls[1][-1]["content"]


def test_parse_action_reads_mappings_and_reports_what_is_wrong() -> None:
    assert parse_action({"thought": "t"}).thought == "t"  # type: ignore[union-attr]
    assert "thought" in str(parse_action('{"next_node": "x"}'))
    assert parse_action(42) == "expected a JSON object as text, got int"


async def test_parallel_fan_out_joins_and_hints_apply_to_parallel_plans() -> None:
    CALLS.clear()
    fan_out = {
        "thought": "both",
        "plan": [{"node": "wiki", "args": {"topic": "seals"}}, {"node": "web", "args": {"topic": "seals"}}],
        "join": {"node": "merge"},
    }
    llm = ScriptedLLM([fan_out, fan_out, FINISH])
    planner = ReactPlanner(llm_client=llm, catalog=catalog(), planning_hints={"max_parallel": 1})
    limited = await planner.run("q")
    assert "max_parallel=1" in limited.metadata["steps"][0]["error"] and CALLS == []  # type: ignore[union-attr]

    CALLS.clear()
    planner = ReactPlanner(llm_client=ScriptedLLM([fan_out, FINISH]), catalog=catalog())
    result = await planner.run("q")
    observation = result.metadata["steps"][0]["observation"]  # type: ignore[union-attr]
    assert sorted(CALLS) == ["web:seals", "wiki:seals"]
    assert observation["join"]["observation"] == {"docs": ["wiki on seals", "web on seals"]}


async def test_a_deadline_ends_the_run_with_the_last_observation() -> None:
    now = [0.0]

    @tool(desc="slow")
    async def slow(args: Topic, ctx: Any) -> Docs:
        now[0] += 10  # the injected clock moves past the deadline while the tool runs
        return Docs(docs=["late"])

    registry = ModelRegistry()
    registry.register("slow", Topic, Docs)
    planner = ReactPlanner(
        llm_client=ScriptedLLM([call("slow", topic="x")]),
        catalog=build_catalog([Node(slow, name="slow")], registry),
        deadline_s=5,
        time_source=lambda: now[0],
    )
    result = await planner.run("q")
    assert isinstance(result, PlannerFinish) and result.reason == "budget_exhausted"
    assert result.payload == {"docs": ["late"]} and result.metadata["thought"].startswith("Deadline reached")


async def test_concurrent_runs_of_one_planner_keep_their_own_pauses() -> None:
    replies = [call("approve", topic="a"), call("approve", topic="b")]
    planner = ReactPlanner(llm_client=ScriptedLLM(replies), catalog=catalog())
    first, second = await asyncio.gather(planner.run("a"), planner.run("b"))
    assert isinstance(first, PlannerPause) and isinstance(second, PlannerPause)
    assert {first.payload["topic"], second.payload["topic"]} == {"a", "b"}
    assert first.resume_token != second.resume_token


async def test_a_branch_timing_out_with_asyncio_timeout_fails_alone() -> None:
    @tool(desc="gives up after a moment")
    async def impatient(args: Topic, ctx: Any) -> Docs:
        async with asyncio.timeout(0.01):  # needs its own task: the timeout cancels current_task()
            await asyncio.Event().wait()
        return Docs(docs=[])

    registry = ModelRegistry()
    registry.register("impatient", Topic, Docs)
    registry.register("wiki", Topic, Docs)
    plan = {
        "thought": "both",
        "plan": [{"node": "impatient", "args": {"topic": "a"}}, {"node": "wiki", "args": {"topic": "b"}}],
    }
    nodes = [Node(impatient, name="impatient"), Node(wiki, name="wiki")]
    planner = ReactPlanner(llm_client=ScriptedLLM([plan, FINISH]), catalog=build_catalog(nodes, registry))
    result = await asyncio.wait_for(planner.run("q"), 5)
    branches = result.metadata["steps"][0]["observation"]["branches"]  # type: ignore[union-attr]
    assert branches[0]["failure"]["error_code"] == "TimeoutError"
    assert branches[1]["observation"] == {"docs": ["wiki on b"]}


def _pair_catalog(first: Any, second: Any) -> list[Any]:
    registry = ModelRegistry()
    registry.register("first", Topic, Docs)
    registry.register("second", Topic, Docs)
    return build_catalog([Node(first, name="first"), Node(second, name="second")], registry)


PAIR_PLAN = {
    "thought": "both",
    "plan": [{"node": "first", "args": {"topic": "a"}}, {"node": "second", "args": {"topic": "b"}}],
}

BRANCH_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("branch_var", default=None)


async def test_parallel_branches_run_in_tasks_and_contexts_of_their_own() -> None:
    seen: list[tuple[asyncio.Task[Any] | None, str | None]] = []

    async def record(args: Topic, ctx: Any) -> Docs:
        seen.append((asyncio.current_task(), BRANCH_VAR.get()))
        BRANCH_VAR.set(args.topic)
        return Docs(docs=[args.topic])

    planner = ReactPlanner(
        llm_client=ScriptedLLM([PAIR_PLAN, FINISH]),
        catalog=_pair_catalog(tool(desc="one")(record), tool(desc="two")(record)),
    )
    result = await planner.run("q")
    assert isinstance(result, PlannerFinish) and result.reason == "answer_complete"
    (first_task, first_var), (second_task, second_var) = seen
    assert first_task is not None and second_task is not None
    assert len({id(first_task), id(second_task), id(asyncio.current_task())}) == 3
    assert first_var is None and second_var is None  # neither saw the other's (or leaked into the planner)
    assert BRANCH_VAR.get() is None


async def test_parallel_branches_that_suspend_run_concurrently_and_are_cancelled_with_the_run() -> None:
    ready = asyncio.Event()
    release = asyncio.Event()
    cancelled: list[str] = []

    @tool(desc="waits for the second branch")
    async def first(args: Topic, ctx: Any) -> Docs:
        await ready.wait()  # set by the second branch: the branches must be running at the same time
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(args.topic)
            raise
        return Docs(docs=[])

    @tool(desc="lets the first branch go on")
    async def second(args: Topic, ctx: Any) -> Docs:
        await asyncio.sleep(0)
        ready.set()
        return Docs(docs=[args.topic])

    planner = ReactPlanner(llm_client=ScriptedLLM([PAIR_PLAN, FINISH]), catalog=_pair_catalog(first, second))
    run = asyncio.create_task(planner.run("q"))
    await asyncio.wait_for(ready.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert cancelled == ["a"]


async def test_models_that_override_model_dump_or_model_validate_keep_their_override() -> None:
    class Shouting(BaseModel):
        topic: str

        @classmethod
        def model_validate(cls, obj: Any, **kwargs: Any) -> Shouting:
            return super().model_validate({"topic": str(obj["topic"]).upper()}, **kwargs)

    class Tagged(Docs):
        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            return {**super().model_dump(**kwargs), "tag": "custom"}

    @tool(desc="echo")
    async def echo(args: Shouting, ctx: Any) -> Tagged:
        return Tagged(docs=[args.topic])

    registry = ModelRegistry()
    registry.register("echo", Shouting, Tagged)
    planner = ReactPlanner(
        llm_client=ScriptedLLM([call("echo", topic="quiet"), FINISH]),
        catalog=build_catalog([Node(echo, name="echo")], registry),
    )
    result = await planner.run("q")
    assert isinstance(result, PlannerFinish)
    assert result.metadata["steps"][0]["observation"] == {"docs": ["QUIET"], "tag": "custom"}


async def test_a_join_gets_only_the_fields_its_model_has_and_what_the_llm_gave_wins() -> None:
    class Summary(BaseModel):
        expect: int
        branches: list[dict[str, Any]]
        success_count: int
        failure_count: int
        failures: list[Any]

    seen: list[Summary] = []

    @tool(desc="summarise")
    async def summarise(args: Summary, ctx: Any) -> Docs:
        seen.append(args)
        return Docs(docs=[f"{args.success_count}/{args.expect}"])

    @tool(desc="breaks")
    async def breaks(args: Topic, ctx: Any) -> Docs:
        raise LookupError(f"no {args.topic}")

    registry = ModelRegistry()
    registry.register("wiki", Topic, Docs)
    registry.register("breaks", Topic, Docs)
    registry.register("summarise", Summary, Docs)
    nodes = [Node(wiki, name="wiki"), Node(breaks, name="breaks"), Node(summarise, name="summarise")]
    fan_out = {
        "thought": "two",
        "plan": [{"node": "wiki", "args": {"topic": "a"}}, {"node": "wiki", "args": {"topic": "b"}}],
        "join": {"node": "summarise", "args": {"expect": 5}},
    }
    planner = ReactPlanner(llm_client=ScriptedLLM([fan_out, FINISH]), catalog=build_catalog(nodes, registry))
    result = await planner.run("q")
    assert isinstance(result, PlannerFinish)
    assert len(seen) == 1 and seen[0].expect == 5  # the LLM's value, not the branch count
    assert (seen[0].success_count, seen[0].failure_count, seen[0].failures) == (2, 0, [])
    assert [b["args"] for b in seen[0].branches] == [{"topic": "a"}, {"topic": "b"}]
    assert seen[0].branches[0]["observation"] == {"docs": ["wiki on a"]}
    assert result.metadata["steps"][0]["observation"]["join"]["observation"] == {"docs": ["2/5"]}

    failing = {
        **fan_out,
        "plan": [{"node": "wiki", "args": {"topic": "a"}}, {"node": "breaks", "args": {"topic": "x"}}],
    }
    planner = ReactPlanner(llm_client=ScriptedLLM([failing, FINISH]), catalog=build_catalog(nodes, registry))
    result = await planner.run("q")
    assert isinstance(result, PlannerFinish)
    observation = result.metadata["steps"][0]["observation"]
    assert observation["stats"] == {"success": 1, "failed": 1} and len(seen) == 1  # the join was skipped
    assert observation["branches"][0] == {
        "node": "wiki",
        "args": {"topic": "a"},
        "observation": {"docs": ["wiki on a"]},
    }
    assert observation["branches"][1]["error"] == "tool 'breaks' raised LookupError: no x"
    assert observation["branches"][1]["failure"]["error_code"] == "LookupError"
    assert observation["join"] == {
        "node": "summarise",
        "status": "skipped",
        "reason": "branch_failures",
        "failures": [
            {
                "node": "breaks",
                "error": "tool 'breaks' raised LookupError: no x",
                "failure": observation["branches"][1]["failure"],
            }
        ],
    }


async def test_a_run_whose_tools_and_llm_do_not_suspend_never_turns_the_loop() -> None:
    # each parallel branch still runs as a task of its own (see the next tests), started eagerly: a branch
    # done in its first step schedules nothing, so the whole run finishes in one step of the caller
    fan_out = {
        "thought": "both",
        "plan": [{"node": "wiki", "args": {"topic": "a"}}, {"node": "web", "args": {"topic": "b"}}],
        "join": {"node": "merge"},
    }
    planner = ReactPlanner(
        llm_client=ScriptedLLM([fan_out, call("wiki", topic="c"), FINISH]), catalog=catalog()
    )
    loop = asyncio.get_running_loop()
    ready = loop._ready  # type: ignore[attr-defined]
    before = len(ready)
    run = planner.run("q")
    with pytest.raises(StopIteration) as done:
        run.send(None)
    assert done.value.value.reason == "answer_complete"
    assert done.value.value.metadata["steps"][0]["observation"]["stats"] == {"success": 2, "failed": 0}
    assert len(ready) == before  # nothing was scheduled
