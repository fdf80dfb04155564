"""prompts.encode_json_data writes json.dumps(data, ensure_ascii=False, sort_keys=True)'s text for JSON data.

The planner renders every step's action and (dumped) observation with it, and the LLM must read PenguiFlow's
text byte for byte: here it is compared with ``json.dumps`` on generated JSON data (what a JSON-mode dump
returns) with the characters, numbers and key orders where encoders differ, and on a table of edge cases.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from podium.flow import ModelRegistry, Node, build_catalog, tool
from podium.flow.planner import ReactPlanner, ScriptedLLM, prompts

TRICKY = [
    *(chr(code) for code in range(0x20)),
    '"', "\\", "/", "\x7f", "\x80", "\xa0", "é", "\u2028", "\u2029", "\ufeff", "\uffff", "\U0001f600",
    "\U0010ffff", "\ud800", "\udfff", "e-", "e+", "1e-05", "NaN", ",", ":", " ", "a", "z", "A", "0",
]  # fmt: skip


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TRICKY) for _ in range(rng.randrange(6)))


def _float(rng: random.Random) -> float:
    kind = rng.randrange(4)
    if kind == 0:  # any bit pattern: subnormals, huge, NaN, infinities
        value: float = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return value
    if kind == 1:  # around the bounds where repr switches to exponents (1e-4, 1e16)
        return rng.choice([1, -1]) * 10 ** rng.uniform(-7, 18)
    if kind == 2:
        return round(rng.uniform(-1e6, 1e6), rng.randrange(9))
    return rng.choice([0.0, -0.0, 1.0, 0.1, 1e-4, 1e-5, 1e16, 1e22, 5e-324, 1.7976931348623157e308])


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([rng.randrange(-1000, 1000), rng.getrandbits(70) - 2**69, 2**63, -(2**63) - 1])
    if kind == 2:
        return _float(rng)
    return _text(rng)


def _data(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(4) if depth else 0
    if kind == 0:
        return _scalar(rng)
    if kind == 1:
        return [_data(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {_text(rng): _data(rng, depth - 1) for _ in range(rng.randrange(5))}


def test_generated_json_data_reads_as_json_dumps_writes_it() -> None:
    rng = random.Random(20261207)
    for _ in range(4000):
        data = _data(rng, 4)
        assert prompts.encode_json_data(data) == _json(data), data


@pytest.mark.parametrize(
    "data",
    [
        {"b": 1, "a": [1, 2.5, {"z": None, "y": True}], "": {}, "é": [], "a\x00": "", "\U0001f600": 0},
        [1e-05, 1e-4, 1e16, 1e-320, float("nan"), float("inf"), -float("inf"), -0.0],
        [10**400, -(10**400), 2**64, 2**64 - 1, -(2**63), -(2**63) - 1],
        {"text": 'seals\nand "walruses" / \\ \u2028 \x7f \ud800 e-mail'},
        {"observation": {"hits": ["x:y", "a, b"], "meta": {"score": 1.5e-05, "n": None}}},
        {"text": "state-of-the-art re-run", "score": 2.5e-07, "at": ["e-", "1e-", 5e-05, "ee-e"]},
        {"text": "9e-5 and 1e-05 as text", "n": [1, 2.5, 1e-4]},
        ["state-of-the-art", "re-run", "e-mail", 1e-10, 1e16],
    ],
)
def test_edge_cases_read_as_json_dumps_writes_them(data: Any) -> None:
    assert prompts.encode_json_data(data) == _json(data)


def test_only_an_e_minus_after_a_digit_sends_the_text_to_json() -> None:
    # every float whose exponent ujson writes otherwise than json has a digit before its "e-"
    assert prompts._small_exponent('{"a": 1e-5}')
    assert prompts._small_exponent('["state-of-the-art", 2.5e-7]')
    assert prompts._small_exponent('{"a": "9e-"}')  # text can look like one: json writes it, the same text
    # "e-" after a letter (hyphenated words) keeps ujson's text, json's byte for byte
    assert not prompts._small_exponent('{"a": "state-of-the-art", "b": ["e-mail", "re-run"], "e-": 10.5}')
    assert not prompts._small_exponent('"e-"')


def test_nesting_deeper_than_ujson_goes_reads_as_json_writes_it() -> None:
    data: list[Any] = []
    inner = data
    for _ in range(1500):  # ujson stops at 1024 levels; json's C encoder at the recursion limit
        inner.append([])
        inner = inner[0]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)  # so that json writes it
    try:
        assert prompts.encode_json_data(data) == _json(data) == "[" * 1501 + "]" * 1501
    finally:
        sys.setrecursionlimit(limit)


def test_without_ujson_json_writes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ujson", None)  # import ujson fails
    monkeypatch.setattr(prompts, "_ujson_dumps", None)
    data = {"b": [1, 0.5, None], "a": "é/\n"}
    assert prompts.encode_json_data(data) == _json(data)
    assert prompts._ujson_dumps is prompts._json_with_options


def test_what_is_not_json_data_raises_as_json_dumps_does() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        prompts.encode_json_data(cycle)
    with pytest.raises(TypeError, match="not JSON serializable"):
        prompts.encode_json_data({"when": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        prompts.encode_json_data([b"bytes"])


def test_a_json_mode_dump_reads_as_json_dumps_writes_it() -> None:
    class Out(BaseModel):
        title: str
        score: float
        tags: dict[int, str]
        seen: set[int]
        ratio: float = float("nan")

    dumped = Out(title='a "b"\n', score=2.5e-06, tags={2: "x", 10: "y"}, seen={3}).model_dump(mode="json")
    assert prompts.encode_json_data(dumped) == _json(dumped)


class Topic(BaseModel):
    topic: str


class Quote(BaseModel):
    """An output whose own model_dump returns data json.dumps refuses (a Decimal), as an override may."""

    price: str

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return {"price": Decimal(self.price), "seen": ["a", "b"]}


class Hits(BaseModel):
    hits: list[str]
    score: float


@tool(desc="Quote a price")
async def quote(args: Topic, ctx: Any) -> Quote:
    return Quote(price="1.5")


@tool(desc="Search")
async def search(args: Topic, ctx: Any) -> Hits:
    score = 2.5e-06 if args.topic == "seals" else 0.25  # json writes 2.5e-06; ujson would write 2.5e-6
    return Hits(hits=[f'{args.topic}, "quoted": \\ / \u2028 é'], score=score)


def _planner(replies: list[dict[str, Any]]) -> tuple[ReactPlanner, ScriptedLLM]:
    registry = ModelRegistry()
    registry.register("quote", Topic, Quote)
    registry.register("search", Topic, Hits)
    nodes = [Node(quote, name="quote"), Node(search, name="search")]
    llm = ScriptedLLM(replies)
    return ReactPlanner(llm_client=llm, catalog=build_catalog(nodes, registry), max_iters=4), llm


DONE = {"thought": "done", "next_node": None, "args": {"ok": True}}


@pytest.mark.parametrize(
    "reply",
    [
        {"thought": "one", "next_node": "quote", "args": {"topic": "x"}},
        {
            "thought": "two",
            "plan": [{"node": "search", "args": {"topic": "y"}}, {"node": "quote", "args": {"topic": "x"}}],
        },
    ],
    ids=["sequential", "parallel"],
)
async def test_a_model_dump_override_s_data_is_written_by_json_and_refused_as_penguiflow_does(
    reply: dict[str, Any],
) -> None:
    planner, _llm = _planner([reply, DONE])
    with pytest.raises(TypeError, match="Decimal is not JSON serializable"):
        await planner.run("price?")  # the next prompt renders the step, as PenguiFlow's json.dumps does


async def test_the_planner_shows_the_llm_json_dumps_text_of_each_step() -> None:
    reply = {
        "thought": "search, then quote: both",
        "plan": [
            {"node": "search", "args": {"topic": "seals"}},
            {"node": "search", "args": {"topic": "é/ü"}},
        ],
    }
    planner, llm = _planner(
        [reply, {"thought": "again", "next_node": "search", "args": {"topic": "z"}}, DONE]
    )
    finish = await planner.run("find")
    assert finish.reason == "answer_complete"
    history = llm.calls[-1][2:]
    steps = finish.metadata["steps"]
    assert len(history) == 2 * len(steps) == 4
    for (said, saw), step in zip(zip(history[::2], history[1::2], strict=True), steps, strict=True):
        assert said["content"] == json.dumps(step["action"], ensure_ascii=False, sort_keys=True)
        expected = json.dumps({"observation": step["observation"]}, ensure_ascii=False, sort_keys=True)
        assert saw["content"] == expected
    assert "2.5e-06" in history[1]["content"] and '\\"quoted\\"' in history[3]["content"]
