"""The planner's prompts and the texts it feeds back to the LLM (``penguiflow.planner.prompts``' surface).

Every function is pure: records and errors in, text out. The error texts are PenguiFlow's word for word,
since they end up in a run's metadata and code (and LLM prompts) written for PenguiFlow read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "build_summarizer_messages",
    "build_system_prompt",
    "build_user_prompt",
    "encode_json",
    "encode_json_data",
    "render_deadline_exhausted",
    "render_disallowed_node",
    "render_empty_parallel_plan",
    "render_hop_budget_violation",
    "render_invalid_node",
    "render_observation",
    "render_ordering_hint_violation",
    "render_output_validation_error",
    "render_parallel_limit",
    "render_parallel_setup_error",
    "render_parallel_unknown_failure",
    "render_parallel_with_next_node",
    "render_planning_hints",
    "render_repair_message",
    "render_resume_user_input",
    "render_sequential_only",
    "render_summary",
    "render_tool",
    "render_validation_error",
]


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(data, ensure_ascii=False, sort_keys=True)`` with its encoder made once, not per call.

    ``json.dumps`` with options builds a ``JSONEncoder`` and then a C encoder on every call, which costs as
    much as encoding a small payload, and the planner encodes several per step. The C encoder made here
    skips the circularity markers (they would have to be fresh per call); a cycle then ends in
    ``RecursionError``, and the payload is encoded again by ``json.dumps`` to raise what it raises. Same
    text, byte for byte.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    c_encode = make(
        None, encoder.default, json.encoder.encode_basestring, None, ": ", ", ", True, False, True
    )

    def encode(data: Any) -> str:
        try:
            return "".join(c_encode(data, 0))
        except RecursionError:
            return encoder.encode(data)

    return encode


_compact_json = _json_encoder()


def encode_json(data: Any) -> str:
    """``json.dumps(data, ensure_ascii=False, sort_keys=True)``, as every JSON text the LLM reads is made."""
    return _compact_json(data)


_SEPARATORS = (", ", ": ")
_DIGITS = "0123456789"
_ujson_dumps: Callable[..., str] | None = None


def _load_ujson() -> Callable[..., str]:
    """``ujson.dumps``, imported on first use: importing podium.flow loads pydantic and the standard library
    only (tests/flow/test_surface.py). Without ujson (a dependency of podium, but podium.flow may run
    without it), json's own encoder."""
    global _ujson_dumps
    dumps: Callable[..., str]
    try:
        import ujson
    except ImportError:
        dumps = _json_with_options
    else:
        dumps = ujson.dumps
    _ujson_dumps = dumps
    return dumps


def _json_with_options(data: Any, *options: Any) -> str:
    return _compact_json(data)


def encode_json_data(data: Any) -> str:
    """:func:`encode_json` for JSON data as ``model_dump(mode="json")`` returns it, in half the time.

    That is dicts with ``str`` keys, lists, ``str``, ``int``, ``float``, ``bool`` and ``None``, all of their
    exact types (a JSON-mode dump converts subclasses, tuples, sets, non-str keys, decimals and the like); on
    such data ujson with json's separators writes json's text byte for byte (escapes, key order, big ints,
    ``NaN``/``Infinity``; tests/flow/test_planner_json.py checks it against ``json.dumps`` on generated
    data) except the exponent of a float below 1e-4 (``1e-5`` where json writes ``1e-05``): any text with
    ``e-`` after a digit in it, and any data ujson refuses (too deep, an object it does not know), is
    encoded by json.
    Other data may differ (ujson writes a ``Decimal``, a non-str key's ``str()``, an object's ``__json__``):
    use :func:`encode_json` for it.
    """
    try:
        # positionally (keywords cost ujson a lookup each, more than encoding a small payload): ensure_ascii,
        # encode_html_chars, escape_forward_slashes, sort_keys, indent, allow_nan, reject_bytes, default,
        # separators
        text = (_ujson_dumps or _load_ujson())(
            data, False, False, False, True, 0, True, True, None, _SEPARATORS
        )
    except Exception:  # too deep, or not JSON data after all: json's text, or json's error
        return _compact_json(data)
    if "e-" in text and _small_exponent(text):  # maybe a float below 1e-4 (json: a two-digit exponent)
        return _compact_json(data)
    return text


def _small_exponent(text: str) -> bool:
    """Whether ``text`` may hold a float whose exponent ujson writes otherwise than json (``1e-5``, ``1e-05``):
    an ``e-`` right after a digit, as every such float is written. Text only says ``e-`` after a letter
    (``state-of-the-art``, ``re-run``) keeps ujson's text, the same as json's, without encoding it again."""
    at = text.find("e-", 1)
    while at != -1:
        if text[at - 1] in _DIGITS:
            return True
        at = text.find("e-", at + 2)
    return False


# -- the system and user prompts ----------------------------------------------------------------------------


def render_tool(record: Mapping[str, Any]) -> str:
    """One catalog entry (a :meth:`NodeSpec.to_tool_record`) as prompt lines; optional fields when set."""
    lines = [
        f"- name: {record['name']}",
        f"  desc: {record['desc']}",
        f"  side_effects: {record['side_effects']}",
        f"  args_schema: {_compact_json(record['args_schema'])}",
        f"  out_schema: {_compact_json(record['out_schema'])}",
    ]
    if tags := ", ".join(record.get("tags", ())):
        lines.append(f"  tags: {tags}")
    if scopes := ", ".join(record.get("auth_scopes", ())):
        lines.append(f"  auth_scopes: {scopes}")
    if record.get("cost_hint"):
        lines.append(f"  cost_hint: {record['cost_hint']}")
    if record.get("latency_hint_ms") is not None:
        lines.append(f"  latency_hint_ms: {record['latency_hint_ms']}")
    if record.get("safety_notes"):
        lines.append(f"  safety_notes: {record['safety_notes']}")
    if record.get("extra"):
        lines.append(f"  extra: {_compact_json(record['extra'])}")
    return "\n".join(lines)


_HINT_LINES = (
    ("constraints", "Respect the following constraints: {}"),
    ("preferred_order", "Preferred order (if feasible): {}"),
    ("parallel_groups", "Allowed parallel groups: {}"),
    ("disallow_nodes", "Disallowed tools: {}"),
    ("preferred_nodes", "Preferred tools: {}"),
    ("budget", "Budget hints: {}"),
)


def render_planning_hints(hints: Mapping[str, Any]) -> str:
    """The planning hints as guidance lines ('' when there are none)."""
    return "\n".join(text.format(hints[key]) for key, text in _HINT_LINES if hints.get(key))


def build_system_prompt(
    catalog: Sequence[Mapping[str, Any]],
    *,
    extra: str | None = None,
    planning_hints: Mapping[str, Any] | None = None,
) -> str:
    """The system prompt: the JSON-only rules, the tool catalog, extra guidance and planning hints."""
    lines = [
        "You are PenguiFlow ReactPlanner, a JSON-only planner.",
        "Follow these rules strictly:",
        "1. Respond with valid JSON matching the PlannerAction schema.",
        "2. Use the provided tools when necessary; never invent new tool names.",
        "3. Keep 'thought' concise and factual.",
        "4. When the task is complete, set 'next_node' to null and include the final payload in 'args'.",
        "5. Do not emit plain text outside JSON.",
        "",
        "Available tools:",
        "\n".join(render_tool(item) for item in catalog) or "(none)",
    ]
    if extra:
        lines.extend(["", "Additional guidance:", extra])
    if planning_hints and (rendered := render_planning_hints(planning_hints)):
        lines.extend(["", rendered])
    return "\n".join(lines)


def build_user_prompt(query: str, context_meta: Mapping[str, Any] | None = None) -> str:
    """The user's query (with the caller's context, if any) as compact JSON."""
    if context_meta:
        return _compact_json({"query": query, "context": dict(context_meta)})
    return _compact_json({"query": query})


def render_observation(
    *, observation: Any | None, error: str | None, failure: Mapping[str, Any] | None = None
) -> str:
    """What a step produced, as the JSON the LLM reads next: observation, error and structured failure."""
    payload: dict[str, Any] = {}
    if observation is not None:
        payload["observation"] = observation
    if error:
        payload["error"] = error
    if failure:
        payload["failure"] = dict(failure)
    return _compact_json(payload or {"observation": None})


def render_summary(summary: Mapping[str, Any]) -> str:
    return "Trajectory summary: " + _compact_json(summary)


def render_resume_user_input(user_input: str) -> str:
    return f"Resume input: {user_input}"


def build_summarizer_messages(
    query: str, history: Sequence[Mapping[str, Any]], base_summary: Mapping[str, Any]
) -> list[dict[str, str]]:
    """The messages asking a summariser LLM for a compact ``TrajectorySummary``."""
    return [
        {
            "role": "system",
            "content": "You are a summariser producing compact JSON state. "
            "Respond with valid JSON matching the TrajectorySummary schema.",
        },
        {
            "role": "user",
            "content": _compact_json(
                {"query": query, "history": list(history), "current_summary": dict(base_summary)}
            ),
        },
    ]


# -- errors fed back to the LLM -----------------------------------------------------------------------------


def render_repair_message(error: str) -> str:
    return f"Previous response was invalid JSON or schema mismatch: {error}. Reply with corrected JSON only."


def render_invalid_node(node_name: str, available: Sequence[str]) -> str:
    return f"tool '{node_name}' is not in the catalog. Choose one of: {', '.join(sorted(available))}."


def render_validation_error(node_name: str, error: str) -> str:
    return f"args for tool '{node_name}' did not validate: {error}. Return corrected JSON."


def render_output_validation_error(node_name: str, error: str) -> str:
    return (
        f"tool '{node_name}' returned data that did not validate: {error}. "
        "Ensure the tool output matches the declared schema."
    )


def render_hop_budget_violation(limit: int) -> str:
    return (
        "Hop budget exhausted; you have used all available tool calls. "
        f"Finish with the best answer so far or reply with no_path. (limit={limit})"
    )


def render_deadline_exhausted() -> str:
    return "Deadline reached. Provide the best available conclusion or return no_path."


def render_disallowed_node(node_name: str) -> str:
    return f"tool '{node_name}' is not permitted by constraints. Choose an allowed tool or revise the plan."


def render_ordering_hint_violation(expected: Sequence[str], proposed: str) -> str:
    return (
        f"Ordering hint reminder: follow the preferred sequence [{', '.join(expected)}]. "
        f"Proposed: {proposed}. Revise the plan."
    )


def render_parallel_limit(max_parallel: int) -> str:
    return f"Parallel action exceeds max_parallel={max_parallel}. Reduce parallel fan-out."


def render_sequential_only(node_name: str) -> str:
    return f"tool '{node_name}' must run sequentially. Do not include it in a parallel plan."


def render_parallel_setup_error(errors: Sequence[str]) -> str:
    return f"Parallel plan invalid: {'; '.join(errors)}. Revise the plan and retry."


def render_empty_parallel_plan() -> str:
    return "Parallel plan must include at least one branch in 'plan'."


def render_parallel_with_next_node(next_node: str) -> str:
    return (
        f"Parallel plan cannot set next_node='{next_node}'. "
        "Use 'join' to continue or finish the run explicitly."
    )


def render_parallel_unknown_failure(node_name: str) -> str:
    return f"tool '{node_name}' failed during parallel execution. Investigate the tool and adjust the plan."
